//! The operator's dashboard: a web page served by control itself, live from control's own
//! state.
//!
//! - What it shows: the topology (hosts, cells with their coverage, links with rate and
//!   delay, from `Config::topology`), where the UEs are (MEC 013 `queries/users` at the RAN,
//!   read every second while someone watches and at once after a handover), each app instance
//!   and its host, the relocations with their phases and the migration report's timings,
//!   the MEC 021 notifications as they are queued, and the last benchmark results
//!   (`Config::bench_results`).
//! - Live: `GET /ferry/dashboard/events` is a server-sent event stream. It starts with a
//!   `snapshot` of everything, then sends what changes: `relocation` and `instance` when the
//!   store writes one (`Store::changes`, whoever wrote it), a relocation's migration phase as
//!   the controller sees it move, `notification`, `ues`. A viewer that falls behind gets a
//!   fresh `snapshot` instead of the events it missed; a reconnecting `EventSource` gets one
//!   too. The page never polls.
//! - Who may look: the operator, by certificate, or a browser with a session. A browser gets
//!   a session from a login link the operator asks for (`ferry control dashboard`, `POST
//!   /ferry/control/v1/dashboard/links`): a random one-time ticket valid for
//!   [`TICKET_LIFETIME`], exchanged at [`LOGIN_PATH`] for a session cookie (`HttpOnly`,
//!   `Secure`, `SameSite=Strict`, path `/ferry/dashboard`, [`SESSION_LIFETIME`]). A session
//!   only reads the dashboard: every other API of control still needs a certificate or a
//!   token. Without TLS (a developer's loopback control) nothing is checked, as for every
//!   other API of control.
//!
//! The page is plain HTML, CSS and one ES module (`dashboard/`), built into the binary: no
//! build step, nothing fetched from elsewhere (its Content-Security-Policy says `'self'`).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use mec_api::ams::MobilityStatus;
use mec_api::app_lcm::AppInstanceInfo;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::relocation::RelocationRecord;
use crate::store::{Change, Table};
use crate::{lock, Control};

/// Where the page lives.
pub const BASE: &str = "/ferry/dashboard";
/// Where a login link's ticket is exchanged for a session.
pub const LOGIN_PATH: &str = "/ferry/dashboard/login";
/// Where the operator asks for a login link.
pub const LINKS_PATH: &str = "/ferry/control/v1/dashboard/links";
/// How long a login link works (once).
pub const TICKET_LIFETIME: Duration = Duration::from_secs(120);
/// How long a browser's session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const COOKIE: &str = "ferry_dashboard";
/// Login links and sessions kept at most (the oldest go first).
const MAX_TICKETS: usize = 64;
const MAX_SESSIONS: usize = 256;
/// What a snapshot carries of the past.
const RECENT_NOTIFICATIONS: usize = 100;
const RECENT_RELOCATIONS: usize = 50;
/// How often the UEs are read while someone watches.
const UE_EVERY: Duration = Duration::from_secs(1);
/// Events buffered per viewer before it lags (and gets a snapshot instead).
const EVENT_BUFFER: usize = 256;
/// Largest benchmark file served.
const MAX_BENCH_FILE: u64 = 16 << 20;

/// The topology as the page draws it (from the topology file control was given).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopologyView {
    pub hosts: Vec<TopoHost>,
    pub cells: Vec<TopoCell>,
    pub links: Vec<TopoLink>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopoHost {
    pub name: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopoCell {
    pub name: String,
    /// The MEC host serving it.
    pub host: String,
    pub latitude: f64,
    pub longitude: f64,
    pub radius_m: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopoLink {
    pub a: String,
    pub b: String,
    pub rate_mbit: Option<f64>,
    pub delay_ms: Option<f64>,
}

/// A UE as the RAN's MEC 013 API last said.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UeView {
    pub address: String,
    /// Its cell (`accessPointId`) and the host serving it (`zoneId`).
    pub cell: String,
    pub host: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// One MEC 021 MobilityProcedureNotification as queued to its subscribers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    pub at_ms: u64,
    pub status: MobilityStatus,
    pub app_instance_id: String,
    pub ue: Option<String>,
    /// Subscriptions it was queued for.
    pub subscribers: usize,
}

/// The migration phase a relocation is in, as the controller last saw it on the source.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LivePhase {
    pub phase: ferry_wire::migration::Phase,
    pub since_ms: u64,
}

/// A relocation record with its live migration phase (while in flight).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelocationView {
    #[serde(flatten)]
    pub record: RelocationRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LivePhase>,
}

/// An app instance: where it runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub id: String,
    pub name: Option<String>,
    pub app_d_id: String,
    pub state: mec_api::app_lcm::InstantiationState,
    pub host: Option<String>,
    pub address: Option<String>,
}

impl From<&AppInstanceInfo> for InstanceView {
    fn from(i: &AppInstanceInfo) -> InstanceView {
        InstanceView {
            id: i.id.clone(),
            name: i.app_instance_name.clone(),
            app_d_id: i.app_d_id.clone(),
            state: i.instantiation_state,
            host: i.ferry_host.clone(),
            address: i.ferry_address.clone(),
        }
    }
}

/// A file of the last benchmark results.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchFile {
    pub name: String,
    pub href: String,
    pub modified_ms: u64,
    pub bytes: u64,
}

/// Everything the page shows (the `snapshot` event, and `GET /ferry/dashboard/state`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Control's clock (Unix ms): the page measures elapsed times against it.
    pub now_ms: u64,
    pub topology: Option<TopologyView>,
    /// MEC host -> its API's URL.
    pub hosts: std::collections::BTreeMap<String, String>,
    pub instances: Vec<InstanceView>,
    /// The latest relocations, oldest first.
    pub relocations: Vec<RelocationView>,
    /// The latest notifications, oldest first.
    pub notifications: Vec<NotificationView>,
    pub ues: Vec<UeView>,
    pub bench: Vec<BenchFile>,
}

/// What changed, for the viewers (besides the store's own changes).
#[derive(Debug, Clone)]
enum Event {
    Notification(NotificationView),
    Ues,
    /// A relocation's live phase moved.
    Relocation(String),
}

/// The dashboard's state, kept in `Control`.
pub struct Dashboard {
    events: tokio::sync::broadcast::Sender<Event>,
    notifications: std::sync::Mutex<VecDeque<NotificationView>>,
    ues: std::sync::Mutex<Vec<UeView>>,
    live: std::sync::Mutex<HashMap<String, LivePhase>>,
    /// SHA-256 of each open login ticket -> until when it works.
    tickets: std::sync::Mutex<HashMap<String, Instant>>,
    /// SHA-256 of each session -> until when it lasts.
    sessions: std::sync::Mutex<HashMap<String, Instant>>,
    /// Wakes the UE reader (a viewer arrived, a UE handed over).
    ue_wake: tokio::sync::Notify,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            events: tokio::sync::broadcast::channel(EVENT_BUFFER).0,
            notifications: Default::default(),
            ues: Default::default(),
            live: Default::default(),
            tickets: Default::default(),
            sessions: Default::default(),
            ue_wake: tokio::sync::Notify::new(),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn digest(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// 32 random bytes in hex; `None` if the OS's random source fails (then no link is made).
fn secret() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(hex::encode(b))
}

/// Keeps `map` within `max` entries that have not expired, dropping the oldest first.
fn prune(map: &mut HashMap<String, Instant>, max: usize) {
    let now = Instant::now();
    map.retain(|_, until| *until > now);
    while map.len() >= max {
        let Some(oldest) = map.iter().min_by_key(|(_, u)| **u).map(|(k, _)| k.clone()) else {
            break;
        };
        map.remove(&oldest);
    }
}

impl Dashboard {
    fn publish(&self, e: Event) {
        // Nobody watching is fine.
        let _ = self.events.send(e);
    }

    /// A MEC 021 notification was queued for `subscribers` subscriptions.
    pub(crate) fn notified(&self, ev: &crate::ams::MobilityEvent, subscribers: usize) {
        let n = NotificationView {
            at_ms: now_ms(),
            status: ev.status,
            app_instance_id: ev.app_instance_id.clone(),
            ue: ev.associate_id.first().map(|a| a.value.clone()),
            subscribers,
        };
        {
            let mut recent = lock(&self.notifications);
            if recent.len() >= RECENT_NOTIFICATIONS {
                recent.pop_front();
            }
            recent.push_back(n.clone());
        }
        self.publish(Event::Notification(n));
    }

    /// The controller saw relocation `id`'s migration enter `phase` on the source host.
    pub(crate) fn migration_phase(&self, id: &str, phase: ferry_wire::migration::Phase) {
        let changed = {
            let mut live = lock(&self.live);
            let same = live.get(id).is_some_and(|l| l.phase == phase);
            if !same {
                live.insert(
                    id.to_string(),
                    LivePhase {
                        phase,
                        since_ms: now_ms(),
                    },
                );
            }
            !same
        };
        if changed {
            self.publish(Event::Relocation(id.to_string()));
        }
    }

    /// A UE handed over: read where the UEs are now (if someone watches).
    pub(crate) fn ue_moved(&self) {
        self.ue_wake.notify_one();
    }

    /// A new login ticket (see the module docs).
    fn new_ticket(&self) -> Option<String> {
        let t = secret()?;
        let mut tickets = lock(&self.tickets);
        prune(&mut tickets, MAX_TICKETS);
        tickets.insert(digest(&t), Instant::now() + TICKET_LIFETIME);
        Some(t)
    }

    /// Uses up a ticket; a session if it was open.
    fn exchange(&self, ticket: &str) -> Option<String> {
        let until = lock(&self.tickets).remove(&digest(ticket))?;
        if until < Instant::now() {
            return None;
        }
        let s = secret()?;
        let mut sessions = lock(&self.sessions);
        prune(&mut sessions, MAX_SESSIONS);
        sessions.insert(digest(&s), Instant::now() + SESSION_LIFETIME);
        Some(s)
    }

    fn session_valid(&self, session: &str) -> bool {
        lock(&self.sessions)
            .get(&digest(session))
            .is_some_and(|until| *until > Instant::now())
    }

    fn end_session(&self, session: &str) {
        lock(&self.sessions).remove(&digest(session));
    }
}

// ---- routes ----

/// The page, its data and the login (which is what makes a session).
pub(crate) fn routes(c: Control) -> Router {
    let viewer = Router::new()
        .route(BASE, get(|| async { redirect(&format!("{BASE}/")) }))
        .route(&format!("{BASE}/"), get(index))
        .route(&format!("{BASE}/app.js"), get(app_js))
        .route(&format!("{BASE}/style.css"), get(style_css))
        .route(&format!("{BASE}/state"), get(state))
        .route(&format!("{BASE}/events"), get(events))
        .route(&format!("{BASE}/bench/{{file}}"), get(bench_file))
        .route(&format!("{BASE}/logout"), post(logout))
        .route_layer(axum::middleware::from_fn_with_state(
            c.clone(),
            require_viewer,
        ));
    viewer
        .route(LOGIN_PATH, get(login))
        .with_state(c)
        .layer(axum::middleware::from_fn(security_headers))
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// The page's policy: only its own scripts, styles and connections; never framed; no
/// referrer (a login link's ticket never leaves in one).
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The session cookie's value, if the request carries one (bounded: a cookie header is read
/// up to 8 KiB).
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.len() <= 8192)
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
}

/// Lets in the operator (certificate), a browser with a session, or anyone on a control
/// without TLS (loopback only, as for every API there).
async fn require_viewer(State(c): State<Control>, req: Request, next: Next) -> Response {
    if c.scheme() == "http" {
        return next.run(req).await;
    }
    let operator = req
        .extensions()
        .get::<ConnectInfo<ferry_tls::Peer>>()
        .and_then(|p| p.0.identity.clone())
        == Some(ferry_tls::Identity::Operator);
    let session = session_cookie(req.headers()).is_some_and(|s| c.dashboard().session_valid(&s));
    if operator || session {
        return next.run(req).await;
    }
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>ferry: log in</title>\
         <p>This dashboard needs a login link. Ask control for one as the operator:\
         <pre>ferry control dashboard --control URL --tls-dir DIR</pre>\
         and open the link it prints within {} s (it works once).",
        TICKET_LIFETIME.as_secs()
    );
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginQuery {
    ticket: Option<String>,
}

/// `GET /ferry/dashboard/login?ticket=T`: a valid ticket becomes a session cookie and the page.
async fn login(State(c): State<Control>, Query(q): Query<LoginQuery>) -> Response {
    let ticket = q.ticket.filter(|t| t.len() <= 128).unwrap_or_default();
    let Some(session) = c.dashboard().exchange(&ticket) else {
        let page = "<!doctype html><meta charset=utf-8><title>ferry: link expired</title>\
            <p>This login link was used already or has expired. Ask for a new one:\
            <pre>ferry control dashboard --control URL --tls-dir DIR</pre>";
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page,
        )
            .into_response();
    };
    let secure = if c.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={session}; Path={BASE}; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_LIFETIME.as_secs()
    );
    let mut resp = redirect(&format!("{BASE}/"));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /ferry/dashboard/logout`: ends the browser's session.
async fn logout(State(c): State<Control>, headers: HeaderMap) -> Response {
    if let Some(s) = session_cookie(&headers) {
        c.dashboard().end_session(&s);
    }
    let mut resp = redirect(LOGIN_PATH);
    let clear = format!("{COOKIE}=; Path={BASE}; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /ferry/control/v1/dashboard/links` (the operator): a one-time login link.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginLink {
    /// The link's path on control (prefix it with control's URL).
    pub path: String,
    pub expires_in_s: u64,
}

#[utoipa::path(post, path = "/ferry/control/v1/dashboard/links", tag = "dashboard", description = "A one-time login link to the operator's dashboard (the operator only): open its path on control within expiresInS.", responses((status = 201, body = LoginLink), (status = "4XX", description = "refused", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "failed", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json")))]
pub(crate) async fn new_link(State(c): State<Control>) -> Response {
    match c.dashboard().new_ticket() {
        Some(t) => crate::http::json(
            StatusCode::CREATED,
            &LoginLink {
                path: format!("{LOGIN_PATH}?ticket={t}"),
                expires_in_s: TICKET_LIFETIME.as_secs(),
            },
        ),
        None => mec_http::http::ApiError::internal("the OS random source failed").into_response(),
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn index() -> Response {
    asset(
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    )
}

async fn app_js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("dashboard/app.js"),
    )
}

async fn style_css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("dashboard/style.css"),
    )
}

async fn state(State(c): State<Control>) -> Response {
    crate::http::json(StatusCode::OK, &snapshot(&c))
}

// ---- what the page is told ----

fn snapshot(c: &Control) -> Snapshot {
    let instances = c
        .store()
        .list::<AppInstanceInfo>(Table::Instances)
        .map(|v| v.iter().map(|(_, i)| InstanceView::from(i)).collect())
        .unwrap_or_default();
    let mut relocations: Vec<RelocationRecord> = c
        .store()
        .list::<RelocationRecord>(Table::Relocations)
        .map(|v| v.into_iter().map(|(_, r)| r).collect())
        .unwrap_or_default();
    // Ids sort in the order they were made: the last ones are the latest.
    let skip = relocations.len().saturating_sub(RECENT_RELOCATIONS);
    let relocations = relocations
        .drain(skip..)
        .map(|r| relocation_view(c, r))
        .collect();
    let d = c.dashboard();
    Snapshot {
        now_ms: now_ms(),
        topology: c.config().topology.clone(),
        hosts: c.config().hosts.clone(),
        instances,
        relocations,
        notifications: lock(&d.notifications).iter().cloned().collect(),
        ues: lock(&d.ues).clone(),
        bench: bench_files(c),
    }
}

fn relocation_view(c: &Control, record: RelocationRecord) -> RelocationView {
    let live = {
        let mut live = lock(&c.dashboard().live);
        if record.phase.is_final() {
            live.remove(&record.id);
            None
        } else {
            live.get(&record.id).cloned()
        }
    };
    RelocationView { record, live }
}

fn sse(name: &str, data: &impl Serialize) -> SseEvent {
    // Our own types always serialize; an empty event is the fallback.
    SseEvent::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| SseEvent::default().event(name))
}

fn relocation_event(c: &Control, id: &str) -> Option<SseEvent> {
    let r = c
        .store()
        .get::<RelocationRecord>(Table::Relocations, id)
        .ok()??;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Msg {
        now_ms: u64,
        relocation: RelocationView,
    }
    Some(sse(
        "relocation",
        &Msg {
            now_ms: now_ms(),
            relocation: relocation_view(c, r),
        },
    ))
}

fn instance_event(c: &Control, id: &str) -> SseEvent {
    match c.store().get::<AppInstanceInfo>(Table::Instances, id) {
        Ok(Some(i)) => sse("instance", &InstanceView::from(&i)),
        _ => sse("instance_removed", &serde_json::json!({ "id": id })),
    }
}

/// One viewer's stream: what it has not been told yet.
struct Viewer {
    c: Control,
    changes: tokio::sync::broadcast::Receiver<Change>,
    events: tokio::sync::broadcast::Receiver<Event>,
    first: bool,
}

impl Viewer {
    async fn next(&mut self) -> Option<SseEvent> {
        use tokio::sync::broadcast::error::RecvError;
        if std::mem::take(&mut self.first) {
            return Some(sse("snapshot", &snapshot(&self.c)));
        }
        loop {
            tokio::select! {
                ch = self.changes.recv() => match ch {
                    Ok(Change { table: Table::Relocations, key }) => {
                        if let Some(e) = relocation_event(&self.c, &key) {
                            return Some(e);
                        }
                    }
                    Ok(Change { table: Table::Instances, key }) => {
                        return Some(instance_event(&self.c, &key))
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return Some(sse("snapshot", &snapshot(&self.c))),
                    Err(RecvError::Closed) => return None,
                },
                ev = self.events.recv() => match ev {
                    Ok(Event::Notification(n)) => return Some(sse("notification", &n)),
                    Ok(Event::Ues) => {
                        let ues = lock(&self.c.dashboard().ues).clone();
                        return Some(sse("ues", &ues));
                    }
                    Ok(Event::Relocation(id)) => {
                        if let Some(e) = relocation_event(&self.c, &id) {
                            return Some(e);
                        }
                    }
                    Err(RecvError::Lagged(_)) => return Some(sse("snapshot", &snapshot(&self.c))),
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    }
}

/// `GET /ferry/dashboard/events`: the live stream (see the module docs).
async fn events(
    State(c): State<Control>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    // Subscribed before the snapshot is read: nothing written in between is missed.
    let viewer = Viewer {
        changes: c.store().changes(),
        events: c.dashboard().events.subscribe(),
        c: c.clone(),
        first: true,
    };
    c.dashboard().ue_wake.notify_one();
    let stream =
        futures_util::stream::unfold(
            viewer,
            |mut v| async move { v.next().await.map(|e| (Ok(e), v)) },
        );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

// ---- where the UEs are ----

/// Reads where the UEs are (MEC 013, every UE the RAN has) while someone watches: every
/// [`UE_EVERY`] and at once after a handover. A task of `serve`.
pub(crate) async fn watch_ues(c: Control) {
    let Some(ran) = c.config().ran.clone() else {
        return;
    };
    let d = c.dashboard();
    loop {
        if d.events.receiver_count() == 0 {
            d.ue_wake.notified().await;
            continue;
        }
        match crate::follow::users(&c, &ran, &[]).await {
            Ok(list) => {
                let ues: Vec<UeView> = list
                    .user_list
                    .user
                    .iter()
                    .map(|u| {
                        let point = u.location_info.as_ref();
                        UeView {
                            address: u
                                .address
                                .strip_prefix("acr:")
                                .unwrap_or(&u.address)
                                .to_string(),
                            cell: u.access_point_id.clone(),
                            host: u.zone_id.clone(),
                            latitude: point.and_then(|p| p.latitude.first().copied()),
                            longitude: point.and_then(|p| p.longitude.first().copied()),
                        }
                    })
                    .collect();
                let changed = {
                    let mut current = lock(&d.ues);
                    let changed = *current != ues;
                    *current = ues;
                    changed
                };
                if changed {
                    d.publish(Event::Ues);
                }
            }
            Err(e) => tracing::debug!("dashboard: where the UEs are: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(UE_EVERY) => {}
            _ = d.ue_wake.notified() => {}
        }
    }
}

// ---- the last benchmark results ----

/// Names a benchmark writes: letters, digits, `.`, `-`, `_`, with a plot or data extension.
fn bench_name_ok(name: &str) -> bool {
    name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        && [".svg", ".json", ".md", ".txt"]
            .iter()
            .any(|e| name.ends_with(e))
}

fn bench_dir(c: &Control) -> Option<&PathBuf> {
    c.config().bench_results.as_ref()
}

/// The files of the results directory, newest first (at most 50).
fn bench_files(c: &Control) -> Vec<BenchFile> {
    let Some(dir) = bench_dir(c) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<BenchFile> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let meta = e.metadata().ok()?;
            (meta.is_file() && bench_name_ok(&name)).then(|| BenchFile {
                href: format!("{BASE}/bench/{name}"),
                modified_ms: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                bytes: meta.len(),
                name,
            })
        })
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.modified_ms));
    files.truncate(50);
    files
}

async fn bench_file(State(c): State<Control>, Path(name): Path<String>) -> Response {
    let not_found = || {
        mec_http::http::ApiError::not_found(format!("no benchmark result '{name}'")).into_response()
    };
    let Some(dir) = bench_dir(&c).filter(|_| bench_name_ok(&name)) else {
        return not_found();
    };
    let path = dir.join(&name);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.len() <= MAX_BENCH_FILE => {}
        _ => return not_found(),
    }
    let Ok(body) = tokio::fs::read(&path).await else {
        return not_found();
    };
    let content_type = match name.rsplit('.').next() {
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    };
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    // An SVG opened on its own runs no script of ours or anyone's.
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_works_once_and_gives_a_session() {
        let d = Dashboard::default();
        let t = d.new_ticket().unwrap();
        assert_eq!(t.len(), 64);
        let s = d.exchange(&t).expect("an open ticket");
        assert!(d.session_valid(&s));
        assert!(d.exchange(&t).is_none(), "used once");
        assert!(d.exchange("").is_none());
        assert!(!d.session_valid(&t), "a ticket is no session");
        d.end_session(&s);
        assert!(!d.session_valid(&s));
    }

    #[test]
    fn an_expired_ticket_opens_nothing() {
        let d = Dashboard::default();
        let t = d.new_ticket().unwrap();
        lock(&d.tickets)
            .values_mut()
            .for_each(|u| *u = Instant::now());
        assert!(d.exchange(&t).is_none());
    }

    #[test]
    fn tickets_are_bounded() {
        let d = Dashboard::default();
        let first = d.new_ticket().unwrap();
        for _ in 0..MAX_TICKETS {
            d.new_ticket().unwrap();
        }
        assert!(lock(&d.tickets).len() <= MAX_TICKETS);
        assert!(d.exchange(&first).is_none(), "the oldest went first");
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ferry_dashboard=abc ; b=2"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("abc"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn only_result_files_are_served() {
        for ok in ["migrate.svg", "migrate.json", "floor.json", "notes.md"] {
            assert!(bench_name_ok(ok), "{ok}");
        }
        for bad in [
            "../x.json",
            ".hidden.json",
            "a/b.svg",
            "x.sh",
            "",
            "x.svg\0",
        ] {
            assert!(!bench_name_ok(bad), "{bad}");
        }
    }
}
