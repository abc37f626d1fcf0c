//! Who holds each subscription at the RAN. An application (a client with an access token)
//! sees and changes only the subscriptions it made, and holds at most
//! `max_per_client` of them; ferry's parts (control, the operator) see every one and are
//! not capped. One guard in front of every subscription resource of MEC 012 and MEC 013
//! keeps the rule in one place; the list handlers leave out what [`Owners::visible`] hides.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mec_http::http::ApiError;
use mec_http::oauth::Caller;

use crate::{lock, Ran};

/// The subscription collections of both APIs (`{collection}/{id}` is one subscription).
const COLLECTIONS: [&str; 7] = [
    "/rni/v2/subscriptions",
    "/location/v2/subscriptions/userTracking",
    "/location/v2/subscriptions/zonalTraffic",
    "/location/v2/subscriptions/periodic",
    "/location/v2/subscriptions/zoneStatus",
    "/location/v2/subscriptions/distance",
    "/location/v2/subscriptions/area/circle",
];

/// Subscriptions one client may hold unless the operator says otherwise (`ferry ran
/// --max-subscriptions-per-client`), as on control.
pub const DEFAULT_MAX_PER_CLIENT: usize = 64;

/// The subscriptions' holders: id -> the owner ([`Caller::owner`]; `None` for ferry's parts).
pub struct Owners {
    by_id: Mutex<HashMap<String, Option<String>>>,
    max_per_client: AtomicUsize,
}

impl Owners {
    pub fn new(max_per_client: usize) -> Owners {
        Owners {
            by_id: Mutex::new(HashMap::new()),
            max_per_client: AtomicUsize::new(max_per_client),
        }
    }

    pub fn set_max_per_client(&self, n: usize) {
        self.max_per_client.store(n, Ordering::Relaxed);
    }

    /// Whether `caller` may see subscription `id` (one nobody recorded is not visible to
    /// clients).
    pub(crate) fn visible(&self, caller: &Caller, id: &str) -> bool {
        match lock(&self.by_id).get(id) {
            Some(owner) => caller.may_access(owner.as_deref()),
            None => caller.owner().is_none(),
        }
    }

    /// A client may make one more subscription while it holds fewer than the cap (expired
    /// and deleted ones no longer count: `exists` says which still do).
    fn admit(&self, caller: &Caller, exists: impl Fn(&str) -> bool) -> Result<(), ApiError> {
        let Some(me) = caller.owner() else {
            return Ok(());
        };
        let mut by_id = lock(&self.by_id);
        by_id.retain(|id, _| exists(id));
        let held = by_id.values().filter(|o| o.as_deref() == Some(me)).count();
        if held >= self.max_per_client.load(Ordering::Relaxed) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{me} holds {held} subscriptions at the RAN already, the most a client may \
                     (delete some, or ask the operator to raise --max-subscriptions-per-client)"
                ),
            ));
        }
        Ok(())
    }
}

/// A request's subscription resource: a collection, or one subscription in it.
enum Target<'a> {
    Collection,
    One(&'a str),
}

fn target(path: &str) -> Option<Target<'_>> {
    COLLECTIONS.iter().find_map(|c| {
        let rest = path.strip_prefix(c)?;
        match rest.strip_prefix('/') {
            None if rest.is_empty() => Some(Target::Collection),
            Some(id) if !id.is_empty() && !id.contains('/') => Some(Target::One(id)),
            _ => None,
        }
    })
}

/// The guard (a middleware inside authentication, so the caller is known).
pub(crate) async fn guard(State(ran): State<Ran>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let Some(t) = target(&path) else {
        return next.run(req).await;
    };
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        // Authentication always names the caller; without one nothing passes.
        return ApiError::new(StatusCode::UNAUTHORIZED, "no authenticated caller").into_response();
    };
    let owners = &ran.inner.owners;
    let method = req.method().clone();
    match t {
        Target::Collection if method == Method::POST => {
            if let Err(e) = owners.admit(&caller, |id| ran.subscription_exists(id)) {
                return e.into_response();
            }
            let resp = next.run(req).await;
            if resp.status() == StatusCode::CREATED {
                let id = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| l.rsplit('/').next());
                if let Some(id) = id {
                    lock(&owners.by_id).insert(id.to_string(), caller.owner().map(str::to_string));
                }
            }
            resp
        }
        Target::Collection => next.run(req).await,
        Target::One(id) => {
            let known = lock(&owners.by_id).get(id).cloned();
            if let Some(owner) = &known {
                if !caller.may_access(owner.as_deref()) {
                    return ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!("subscription '{id}' belongs to another client"),
                    )
                    .into_response();
                }
            }
            let id = id.to_string();
            let resp = next.run(req).await;
            if method == Method::DELETE && resp.status() == StatusCode::NO_CONTENT {
                lock(&owners.by_id).remove(&id);
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn app(id: &str) -> Caller {
        Caller::Client {
            client_id: format!("app-{id}"),
            scopes: BTreeSet::new(),
            app_instance_id: Some(id.to_string()),
        }
    }

    #[test]
    fn subscription_paths_are_recognised_and_nothing_else() {
        assert!(matches!(
            target("/rni/v2/subscriptions"),
            Some(Target::Collection)
        ));
        assert!(matches!(
            target("/rni/v2/subscriptions/rni-7"),
            Some(Target::One("rni-7"))
        ));
        assert!(matches!(
            target("/location/v2/subscriptions/area/circle/geo-3"),
            Some(Target::One("geo-3"))
        ));
        assert!(target("/location/v2/subscriptions/area/circle/geo-3/x").is_none());
        assert!(target("/rni/v2/subscriptionsX").is_none());
        assert!(target("/location/v2/queries/users").is_none());
    }

    #[test]
    fn clients_see_their_own_and_are_capped() {
        let o = Owners::new(2);
        lock(&o.by_id).insert("s1".into(), Some("a".into()));
        lock(&o.by_id).insert("s2".into(), None);
        assert!(o.visible(&app("a"), "s1"));
        assert!(!o.visible(&app("b"), "s1"));
        assert!(!o.visible(&app("a"), "s2"), "control's subscription");
        assert!(o.visible(&Caller::Local, "s1"));
        assert!(o.admit(&app("a"), |_| true).is_ok());
        lock(&o.by_id).insert("s3".into(), Some("a".into()));
        assert!(o.admit(&app("a"), |_| true).is_err(), "a holds 2 of 2");
        assert!(o.admit(&app("b"), |_| true).is_ok());
        // An expired subscription no longer counts.
        assert!(o.admit(&app("a"), |id| id != "s3").is_ok());
        assert!(!o.visible(&app("a"), "s3"));
    }
}
