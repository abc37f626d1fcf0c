//! The one client of a `ferry host` API (`/ferry/v1`): what the control plane, the CLI, the
//! bench, the demo and a migrating source host (the channel) ask of a host. Async, with a
//! blocking face ([`Blocking`]) for synchronous callers.
//!
//! Every call has a deadline. Errors are a [`HostError`]: unreachable, timed out, or answered
//! with a status and a ProblemDetails whose `type` names a [`ProblemType`]; callers decide on
//! those, never on the text.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use mec_api::ProblemDetails;
use serde::de::DeserializeOwned;
use serde::Serialize;

use ferry_wire::channel::{
    ChannelState, ImagesReply, Offer, OfferReply, RestoreOrder, RoundReply, RoundRequest,
    CONTROL_TIMEOUT, PAGE_SERVER_WAIT,
};
use ferry_wire::container::{
    CheckpointReport, CheckpointRequest, Container, ContainerRequest, Health, RestoreReport,
    RestoreRequest,
};
use ferry_wire::migration::{MigrateRequest, MigrationId, MigrationView, SettleRequest};
pub use ferry_wire::ProblemType;

/// Path prefix of the host API.
pub const API_BASE: &str = "/ferry/v1";

/// Deadline of a container lifecycle call (create, start, stop, delete).
pub const LIFECYCLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of a checkpoint or a local restore (CRIU on a large state).
pub const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(600);
/// Deadline of a read (`GET`) of a record.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JSON answer read from a host: records and reports are a few KiB.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("'{0}' is not a ferry host URL: {1}")]
    BadUrl(String, String),
    #[error("ferry host at {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// No connection could be made: the request never reached the host.
    #[error("ferry host at {url} unreachable (no connection): {reason}")]
    NotConnected { url: String, reason: String },
    #[error("ferry host at {url} did not answer within {} s", after.as_secs_f64())]
    TimedOut { url: String, after: Duration },
    #[error("{url} answered {status}: {}", problem.detail.as_deref().unwrap_or(""))]
    Answered {
        url: String,
        status: u16,
        problem: Box<ProblemDetails>,
    },
    #[error("{url}: unexpected answer: {reason}")]
    Protocol { url: String, reason: String },
}

impl HostError {
    /// The ferry problem kind of an answered error.
    pub fn kind(&self) -> Option<ProblemType> {
        match self {
            HostError::Answered { problem, .. } => {
                problem.type_.as_deref().and_then(ProblemType::from_uri)
            }
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            HostError::Answered { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// No answer came: the host may or may not have acted on the request.
    pub fn no_answer(&self) -> bool {
        matches!(
            self,
            HostError::Unreachable { .. }
                | HostError::NotConnected { .. }
                | HostError::TimedOut { .. }
        )
    }

    /// The request never reached the host (no connection was made): it cannot have acted.
    pub fn never_reached(&self) -> bool {
        matches!(self, HostError::NotConnected { .. })
    }

    /// The ProblemDetails' detail (or the error itself), for messages.
    pub fn detail(&self) -> String {
        match self {
            HostError::Answered { problem, .. } => problem.detail.clone().unwrap_or_default(),
            other => other.to_string(),
        }
    }
}

/// The innermost cause of an error (reqwest nests the useful part).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut e = err;
    while let Some(next) = e.source() {
        e = next;
    }
    e.to_string()
}

/// A host's API at `base` (`http://ADDR:PORT`).
#[derive(Clone, Debug)]
pub struct HostClient {
    base: String,
    http: reqwest::Client,
}

/// One request: where, with which deadline.
struct Call {
    url: String,
    deadline: Duration,
}

impl HostClient {
    /// `url` as a user types it: `http://IP:7100`, with or without `/ferry/v1`, with or
    /// without the scheme.
    pub fn new(url: &str) -> Result<HostClient, HostError> {
        Self::with_http(url, http_client(None)?)
    }

    /// [`HostClient::new`] over mutual TLS (`https://HOST:PORT`): `tls` holds the caller's
    /// certificate and the operator's CA.
    pub fn with_tls(url: &str, tls: Arc<rustls::ClientConfig>) -> Result<HostClient, HostError> {
        Self::with_http(url, http_client(Some(tls))?)
    }

    /// [`HostClient::new`] sharing an HTTP client (its connection pool) with other hosts'.
    pub fn with_http(url: &str, http: reqwest::Client) -> Result<HostClient, HostError> {
        let base = normalize(url);
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| HostError::BadUrl(url.to_string(), e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(HostError::BadUrl(
                url.to_string(),
                "use https://HOST:PORT (http:// only for hosts run with --insecure)".into(),
            ));
        }
        Ok(HostClient { base, http })
    }

    /// The base URL (`http://ADDR:PORT`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The host part of the base URL (where the host's page servers listen too).
    pub fn host(&self) -> String {
        reqwest::Url::parse(&self.base)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn call(&self, path: &str, deadline: Duration) -> Call {
        Call {
            url: format!("{}{API_BASE}{path}", self.base),
            deadline,
        }
    }

    async fn send(
        &self,
        c: &Call,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, HostError> {
        let resp = req.timeout(c.deadline).send().await.map_err(|e| {
            // First: a connect that timed out is also a request that never left.
            if e.is_connect() {
                HostError::NotConnected {
                    url: c.url.clone(),
                    reason: root_cause(&e),
                }
            } else if e.is_timeout() {
                HostError::TimedOut {
                    url: c.url.clone(),
                    after: c.deadline,
                }
            } else {
                HostError::Unreachable {
                    url: c.url.clone(),
                    reason: root_cause(&e),
                }
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = read_bounded(&c.url, resp).await?;
        let problem = serde_json::from_slice::<ProblemDetails>(&body).unwrap_or_else(|_| {
            let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            ProblemDetails::new(status, "", text)
        });
        Err(HostError::Answered {
            url: c.url.clone(),
            status,
            problem: Box::new(problem),
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        c: Call,
        req: reqwest::RequestBuilder,
    ) -> Result<T, HostError> {
        let resp = self.send(&c, req).await?;
        let body = read_bounded(&c.url, resp).await?;
        serde_json::from_slice(&body).map_err(|e| HostError::Protocol {
            url: c.url.clone(),
            reason: format!("not the expected JSON: {e}"),
        })
    }

    async fn empty(&self, c: Call, req: reqwest::RequestBuilder) -> Result<(), HostError> {
        self.send(&c, req).await.map(|_| ())
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, HostError> {
        let c = self.call(path, READ_TIMEOUT);
        let req = self.http.get(&c.url);
        self.json(c, req).await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        deadline: Duration,
        body: &B,
    ) -> Result<T, HostError> {
        let c = self.call(path, deadline);
        let req = self.http.post(&c.url).json(body);
        self.json(c, req).await
    }

    // ---- the host ----

    pub async fn health(&self) -> Result<Health, HostError> {
        self.get("/health").await
    }

    /// `GET /info`: host name, runtime, CRIU version and features (free-form for display).
    pub async fn info(&self) -> Result<serde_json::Value, HostError> {
        self.get("/info").await
    }

    /// Imports an image archive (tar or tar.gz) under `name`; `replace` an older one. The
    /// deadline grows with the archive (at least 1 MB/s plus a minute).
    pub async fn upload_image(
        &self,
        name: &str,
        archive: Bytes,
        replace: bool,
    ) -> Result<serde_json::Value, HostError> {
        let deadline = Duration::from_secs(60 + archive.len() as u64 / 1_000_000);
        let c = self.call("/images", deadline);
        let req = self
            .http
            .post(&c.url)
            .query(&[
                ("name", name),
                ("replace", if replace { "true" } else { "false" }),
            ])
            .header("content-type", "application/x-tar")
            .body(archive);
        self.json(c, req).await
    }

    // ---- containers ----

    pub async fn create(&self, req: &ContainerRequest) -> Result<Container, HostError> {
        self.post("/containers", LIFECYCLE_TIMEOUT, req).await
    }

    pub async fn containers(&self) -> Result<Vec<Container>, HostError> {
        self.get("/containers").await
    }

    pub async fn container(&self, name: &str) -> Result<Container, HostError> {
        self.get(&format!("/containers/{name}")).await
    }

    /// The container's record, or `None` when the host answers that it has none.
    pub async fn find_container(&self, name: &str) -> Result<Option<Container>, HostError> {
        match self.container(name).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind() == Some(ProblemType::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn start(&self, name: &str) -> Result<Container, HostError> {
        self.post(
            &format!("/containers/{name}/start"),
            LIFECYCLE_TIMEOUT,
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn stop(&self, name: &str) -> Result<Container, HostError> {
        self.post(
            &format!("/containers/{name}/stop"),
            LIFECYCLE_TIMEOUT,
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn delete(&self, name: &str) -> Result<(), HostError> {
        let c = self.call(&format!("/containers/{name}"), LIFECYCLE_TIMEOUT);
        let req = self.http.delete(&c.url);
        self.empty(c, req).await
    }

    pub async fn checkpoint(
        &self,
        name: &str,
        req: &CheckpointRequest,
    ) -> Result<CheckpointReport, HostError> {
        self.post(
            &format!("/containers/{name}/checkpoint"),
            CHECKPOINT_TIMEOUT,
            req,
        )
        .await
    }

    pub async fn restore(
        &self,
        name: &str,
        req: &RestoreRequest,
    ) -> Result<RestoreReport, HostError> {
        self.post(
            &format!("/containers/{name}/restore"),
            CHECKPOINT_TIMEOUT,
            req,
        )
        .await
    }

    // ---- migrations (the operation resource on the source) ----

    /// Starts a migration of `name` (202 Accepted): the view as it began. Follow it with
    /// [`HostClient::migration`] or [`HostClient::wait_migration`].
    pub async fn migrate(
        &self,
        name: &str,
        req: &MigrateRequest,
    ) -> Result<MigrationView, HostError> {
        self.post(&format!("/containers/{name}/migrate"), CONTROL_TIMEOUT, req)
            .await
    }

    pub async fn migration(&self, id: &MigrationId) -> Result<MigrationView, HostError> {
        self.get(&format!("/migrations/{id}")).await
    }

    /// The migration's record, or `None` when the host has none of this id.
    pub async fn find_migration(
        &self,
        id: &MigrationId,
    ) -> Result<Option<MigrationView>, HostError> {
        match self.migration(id).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == Some(ProblemType::UnknownMigration) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn migrations(&self) -> Result<Vec<MigrationView>, HostError> {
        self.get("/migrations").await
    }

    /// Operator: settle a migration the parties could not (see the commit rule in
    /// `ferry_wire::migration`).
    pub async fn settle(
        &self,
        id: &MigrationId,
        req: &SettleRequest,
    ) -> Result<MigrationView, HostError> {
        // Settling may wait for the target's answer, itself bounded by CONTROL_TIMEOUT.
        self.post(
            &format!("/migrations/{id}/settle"),
            CONTROL_TIMEOUT * 3,
            req,
        )
        .await
    }

    // ---- the migration channel (source -> target, with the migration's token) ----

    fn channel_call(&self, id: Option<&MigrationId>, verb: &str, deadline: Duration) -> Call {
        let path = match id {
            None => "/channel".to_string(),
            Some(id) if verb.is_empty() => format!("/channel/{id}"),
            Some(id) => format!("/channel/{id}/{verb}"),
        };
        self.call(&path, deadline)
    }

    pub async fn offer(&self, token: &str, offer: &Offer) -> Result<OfferReply, HostError> {
        let c = self.channel_call(None, "", CONTROL_TIMEOUT);
        let req = self.http.post(&c.url).bearer_auth(token).json(offer);
        self.json(c, req).await
    }

    /// Announces a pre-copy round. The target may first wait for the previous round's page
    /// server to finish, hence the page-server deadline.
    pub async fn round(
        &self,
        id: &MigrationId,
        token: &str,
        r: &RoundRequest,
    ) -> Result<RoundReply, HostError> {
        let c = self.channel_call(Some(id), "rounds", PAGE_SERVER_WAIT + CONTROL_TIMEOUT);
        let req = self.http.post(&c.url).bearer_auth(token).json(r);
        self.json(c, req).await
    }

    /// Streams the images and writable layer (a tar, see `ferry_migration::stream`); the
    /// target then restores as `order` says and answers how that went.
    pub async fn send_images(
        &self,
        id: &MigrationId,
        token: &str,
        body: reqwest::Body,
        order: &RestoreOrder,
        deadline: Duration,
    ) -> Result<ImagesReply, HostError> {
        // Past the stream: the target waits for the page server to finish (the dump has
        // ended: seconds), then CRIU's restore (seconds even for GiBs read from its disk).
        let c = self.channel_call(Some(id), "images", deadline + PAGE_SERVER_WAIT * 2);
        let req = self
            .http
            .put(&c.url)
            .bearer_auth(token)
            .query(order)
            .body(body);
        self.json(c, req).await
    }

    pub async fn commit(&self, id: &MigrationId, token: &str) -> Result<ChannelState, HostError> {
        let c = self.channel_call(Some(id), "commit", CONTROL_TIMEOUT);
        let req = self.http.post(&c.url).bearer_auth(token);
        self.json(c, req).await
    }

    pub async fn abort(&self, id: &MigrationId, token: &str) -> Result<ChannelState, HostError> {
        let c = self.channel_call(Some(id), "abort", CONTROL_TIMEOUT);
        let req = self.http.post(&c.url).bearer_auth(token);
        self.json(c, req).await
    }

    /// The target's durable answer about the migration.
    pub async fn channel_state(
        &self,
        id: &MigrationId,
        token: &str,
    ) -> Result<ChannelState, HostError> {
        let c = self.channel_call(Some(id), "", CONTROL_TIMEOUT);
        let req = self.http.get(&c.url).bearer_auth(token);
        self.json(c, req).await
    }
}

/// `http://IP:7100` from what a user types.
/// The HTTP client for ferry hosts (one connection pool for all of them): a connect deadline
/// and, with `tls`, mutual TLS with that configuration (its own certificate, the CA).
pub fn http_client(tls: Option<Arc<rustls::ClientConfig>>) -> Result<reqwest::Client, HostError> {
    let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        builder = builder.use_preconfigured_tls((*tls).clone());
    }
    builder
        .build()
        .map_err(|e| HostError::BadUrl("(client)".into(), root_cause(&e)))
}

fn normalize(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix(API_BASE).unwrap_or(url);
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// Reads an answer body, at most [`MAX_ANSWER_BYTES`].
async fn read_bounded(url: &str, resp: reqwest::Response) -> Result<Vec<u8>, HostError> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| HostError::Unreachable {
            url: url.to_string(),
            reason: format!("answer broke off: {}", root_cause(&e)),
        })?;
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(HostError::Protocol {
                url: url.to_string(),
                reason: format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A request body written by synchronous code (`std::io::Write`) while it is sent: the
/// writer blocks while the body is not read fast enough, and fails once the request is gone.
pub fn body_writer() -> (BodyWriter, reqwest::Body) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (BodyWriter { tx }, reqwest::Body::wrap_stream(stream))
}

pub struct BodyWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl std::io::Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "request ended"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BodyWriter {
    /// Ends the body with an error: the request fails instead of sending a short stream.
    pub fn fail(self, e: std::io::Error) {
        let _ = self.tx.blocking_send(Err(e));
    }
}

/// The blocking face: runs a [`HostClient`] call to its end on the calling thread. From a
/// thread of tokio's blocking pool it uses that runtime; elsewhere (the CLI) its own.
pub struct Blocking {
    client: HostClient,
    rt: Driver,
}

enum Driver {
    Own(tokio::runtime::Runtime),
    Borrowed(tokio::runtime::Handle),
}

impl Blocking {
    /// Must not be called from async code (it would block a runtime's worker).
    pub fn new(client: HostClient) -> Result<Blocking, HostError> {
        let rt = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                Driver::Borrowed(h)
            }
            _ => Driver::Own(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| HostError::BadUrl(client.base.clone(), e.to_string()))?,
            ),
        };
        Ok(Blocking { client, rt })
    }

    /// Runs calls on `handle`'s runtime (a multi-threaded one, whose workers drive the
    /// I/O), from any thread that is not one of its workers.
    pub fn on(client: HostClient, handle: tokio::runtime::Handle) -> Blocking {
        Blocking {
            client,
            rt: Driver::Borrowed(handle),
        }
    }

    pub fn client(&self) -> &HostClient {
        &self.client
    }

    /// Runs `f` (a call of [`Blocking::client`]) to its end.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        match &self.rt {
            Driver::Own(rt) => rt.block_on(f),
            Driver::Borrowed(h) => h.block_on(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;

    #[test]
    fn urls_as_users_type_them() {
        for (typed, base) in [
            ("10.0.0.1:7100", "http://10.0.0.1:7100"),
            ("http://10.0.0.1:7100/", "http://10.0.0.1:7100"),
            ("http://10.0.0.1:7100/ferry/v1", "http://10.0.0.1:7100"),
        ] {
            assert_eq!(HostClient::new(typed).unwrap().base(), base);
        }
        assert!(matches!(
            HostClient::new("ftp://x"),
            Err(HostError::BadUrl(..))
        ));
    }

    async fn serve(router: axum::Router) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, router).await });
        url
    }

    /// The kind comes from the problem's type, whatever the detail says (here a detail
    /// that names another status and kind).
    #[tokio::test]
    async fn errors_are_classified_by_problem_type_not_text() {
        let router = axum::Router::new().route(
            "/ferry/v1/migrations/{id}",
            get(|| async {
                let p = serde_json::json!({"type": ProblemType::UnknownMigration.uri(),
                    "status": 404, "detail": "409 wrong-state 500"});
                (StatusCode::NOT_FOUND, axum::Json(p))
            }),
        );
        let c = HostClient::new(&serve(router).await).unwrap();
        let id: MigrationId = "m-404".parse().unwrap();
        let e = c.migration(&id).await.unwrap_err();
        assert_eq!(e.kind(), Some(ProblemType::UnknownMigration));
        assert_eq!(e.status(), Some(404));
        assert!(c.find_migration(&id).await.unwrap().is_none());
        // A plain 404 (not ferry's) is not an unknown migration.
        let other = HostClient::new(&serve(axum::Router::new()).await).unwrap();
        let e = other.find_migration(&id).await.unwrap_err();
        assert_eq!((e.kind(), e.status()), (None, Some(404)));
    }

    #[tokio::test]
    async fn a_silent_host_times_out_and_a_closed_port_is_unreachable() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        // Accepts, never answers.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let c = HostClient::new(&url).unwrap();
        let started = std::time::Instant::now();
        let e = c.health().await.unwrap_err();
        assert!(matches!(e, HostError::TimedOut { .. }), "{e}");
        assert!(e.no_answer());
        assert!(started.elapsed() < READ_TIMEOUT * 3);
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = HostClient::new(&format!("http://{closed}"))
            .unwrap()
            .health()
            .await
            .unwrap_err();
        assert!(matches!(e, HostError::NotConnected { .. }), "{e}");
        assert!(e.never_reached() && e.no_answer());
    }

    #[tokio::test]
    async fn oversized_answers_are_refused() {
        let router = axum::Router::new().route(
            "/ferry/v1/health",
            get(|| async { "x".repeat(MAX_ANSWER_BYTES + 1) }),
        );
        let c = HostClient::new(&serve(router).await).unwrap();
        assert!(matches!(
            c.health().await.unwrap_err(),
            HostError::Protocol { .. }
        ));
    }
}
