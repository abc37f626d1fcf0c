//! Who may call what on a host, by the identity of the caller's certificate (mutual TLS):
//!
//! | resource | callers |
//! |---|---|
//! | `GET /health` | any identity of the operator's CA |
//! | `GET /metrics` | `operator`, `metrics` (a Prometheus scraper) |
//! | `/channel`, `/channel/{id}/...` | a `host:*`; per migration only the source host the offer named |
//! | everything else (images, containers, migrations, settle, info) | `control`, `operator` |
//!
//! A host therefore never takes container or migration orders from another host, and a
//! migration's images are restored only from the host that offered it. Without TLS
//! (`--insecure`, for a lab) nothing is checked.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ferry_tls::{Identity, Peer};
use ferry_wire::migration::{MigrationId, MigrationView};
use ferry_wire::ProblemType;

use crate::api::AppState;
use crate::error::ApiError;
use crate::API_BASE;

/// Which identities a resource admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    AnyIdentity,
    Hosts,
    Operators,
    Scrapers,
}

/// The access rule for a path under the API base.
pub fn required(method: &Method, path: &str) -> Access {
    if path == ferry_metrics::PATH {
        return Access::Scrapers;
    }
    let path = path.strip_prefix(API_BASE).unwrap_or(path);
    if method == Method::GET && path == "/health" {
        Access::AnyIdentity
    } else if path == "/channel" || path.starts_with("/channel/") {
        Access::Hosts
    } else {
        Access::Operators
    }
}

pub fn admits(access: Access, id: &Identity) -> bool {
    match access {
        Access::AnyIdentity => true,
        Access::Hosts => matches!(id, Identity::Host(_)),
        Access::Operators => matches!(id, Identity::Control | Identity::Operator),
        Access::Scrapers => matches!(id, Identity::Operator | Identity::Metrics),
    }
}

fn forbidden(detail: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, ProblemType::Forbidden, detail).into_response()
}

/// Middleware: refuses a caller its identity does not admit (403 ProblemDetails).
pub async fn authorize(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Request,
    next: Next,
) -> Response {
    if !app.mutual_tls {
        return next.run(req).await;
    }
    // The listener lets no connection through without an identity; this is the backstop.
    let Some(id) = &peer.identity else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            ProblemType::Unauthorized,
            "a client certificate of the operator's CA is required",
        )
        .into_response();
    };
    let access = required(req.method(), req.uri().path());
    if !admits(access, id) {
        let who = match access {
            Access::Hosts => "only another ferry host may",
            Access::Scrapers => "only an operator or a metrics scraper may",
            _ => "only control or an operator may",
        };
        return forbidden(format!(
            "{id} may not {} {}: {who}",
            req.method(),
            req.uri().path()
        ));
    }
    // A migration's channel: only its source.
    if let (Identity::Host(name), Some(mid)) = (id, channel_migration(req.uri().path())) {
        let engine = app.engine.clone();
        let view = tokio::task::spawn_blocking(move || engine.view(&mid)).await;
        if let Ok(Ok(MigrationView::Incoming(v))) = view {
            if &v.source != name {
                return forbidden(format!(
                    "{id} may not act on migration {} from host '{}'",
                    v.id, v.source
                ));
            }
        }
    }
    next.run(req).await
}

/// The migration id of a `/channel/{id}...` path.
fn channel_migration(path: &str) -> Option<MigrationId> {
    let rest = path.strip_prefix(API_BASE)?.strip_prefix("/channel/")?;
    let id = rest.split('/').next()?;
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_talk_on_the_channel_and_operators_order() {
        let host = Identity::Host("mec3".into());
        let cases = [
            (Method::GET, "/ferry/v1/health", [true, true, true]),
            (Method::GET, "/ferry/v1/containers", [false, true, true]),
            (Method::POST, "/ferry/v1/containers", [false, true, true]),
            (
                Method::POST,
                "/ferry/v1/containers/a/migrate",
                [false, true, true],
            ),
            (
                Method::POST,
                "/ferry/v1/migrations/m-1/settle",
                [false, true, true],
            ),
            (Method::POST, "/ferry/v1/channel", [true, false, false]),
            (
                Method::PUT,
                "/ferry/v1/channel/m-1/images",
                [true, false, false],
            ),
            (Method::GET, "/ferry/v1/info", [false, true, true]),
            (Method::GET, "/metrics", [false, false, true]),
        ];
        for (method, path, expected) in cases {
            let got = [&host, &Identity::Control, &Identity::Operator]
                .map(|id| admits(required(&method, path), id));
            assert_eq!(got, expected, "{method} {path}");
        }
        assert!(!admits(
            required(&Method::POST, "/ferry/v1/containers"),
            &Identity::Ran
        ));
        // A scraper reads the metrics and nothing else.
        assert!(admits(
            required(&Method::GET, "/metrics"),
            &Identity::Metrics
        ));
        for path in [
            "/ferry/v1/containers",
            "/ferry/v1/migrations",
            "/ferry/v1/channel",
        ] {
            assert!(
                !admits(required(&Method::GET, path), &Identity::Metrics),
                "{path}"
            );
        }
    }
}
