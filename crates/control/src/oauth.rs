//! OAuth 2.0 clients and the token endpoint (RFC 6749 section 4.4, the client credentials
//! grant ETSI MEC 009 names for MEC APIs).
//!
//! - `POST /oauth2/token`: a registered client (HTTP Basic, or `client_id`/`client_secret`
//!   in the form) gets a short-lived access token for the scopes it asks, out of those it was
//!   registered with (`mec_http::oauth`: RFC 9068 JWT signed with control's certificate).
//! - `/ferry/control/v1/clients`: the operator registers, lists and removes clients (parts
//!   only, by certificate). The secret is shown once; the store keeps its SHA-256 only.
//!   Secrets are 256 random bits, so a plain digest is as strong as a slow password hash.
//! - Each app instance gets its own client (`app-<appInstanceId>`, the app-instance scopes)
//!   when its container is made; the secret goes into the container's environment. A new
//!   container of the same instance (an application-driven relocation) gets another secret
//!   of the same client; the client goes with the instance.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use mec_http::oauth::{format_scopes, parse_scopes, Caller, Scope, TOKEN_PATH};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::http::{self, ApiError};
use crate::store::Table;
use crate::Control;

/// Longest token request body read (a form of four short fields).
pub const MAX_TOKEN_REQUEST: usize = 8 * 1024;
/// Secrets kept per client: the containers of one instance that may still run.
const SECRETS_PER_CLIENT: usize = 4;

/// A registered client, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OauthClient {
    pub client_id: String,
    /// Hex SHA-256 digests of its valid secrets, newest last.
    pub secret_digests: Vec<String>,
    pub scopes: BTreeSet<Scope>,
    /// Set for an app instance's own client: its tokens act only for that instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_instance_id: Option<String>,
}

/// What the operator sees of a client (never a secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct ClientView<'a> {
    client_id: &'a str,
    #[schema(value_type = Vec<String>)]
    scopes: &'a BTreeSet<Scope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_instance_id: Option<&'a str>,
}

impl OauthClient {
    fn view(&self) -> ClientView<'_> {
        ClientView {
            client_id: &self.client_id,
            scopes: &self.scopes,
            app_instance_id: self.app_instance_id.as_deref(),
        }
    }
}

/// The token endpoint (RFC 6749, not one of ferry's own APIs).
pub fn routes() -> Router<Control> {
    Router::new()
        .route(TOKEN_PATH, post(token))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_TOKEN_REQUEST))
}

/// The operator's registry of clients (`/ferry/control/v1/clients`).
pub(crate) fn client_routes() -> utoipa_axum::router::OpenApiRouter<Control> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_clients, register))
        .routes(utoipa_axum::routes!(read, remove))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_TOKEN_REQUEST))
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret() -> Result<String, ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)
        .map_err(|e| ApiError::internal(format!("the OS random source failed: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// Client ids as the operator picks them: they appear in URLs and logs.
fn valid_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The client id of app instance `id`.
pub fn instance_client_id(id: &str) -> String {
    format!("app-{id}")
}

/// A new secret for app instance `id`'s client (made on first use); returns (id, secret).
pub(crate) fn instance_credentials(c: &Control, id: &str) -> Result<(String, String), ApiError> {
    let client_id = instance_client_id(id);
    let secret = new_secret()?;
    let d = digest(&secret);
    let updated = c
        .store()
        .update(Table::Clients, &client_id, |cl: &mut OauthClient| {
            cl.secret_digests.push(d.clone());
            let extra = cl.secret_digests.len().saturating_sub(SECRETS_PER_CLIENT);
            cl.secret_digests.drain(..extra);
            Ok::<_, ApiError>(())
        })?;
    if updated.is_none() {
        let client = OauthClient {
            client_id: client_id.clone(),
            secret_digests: vec![d],
            scopes: Scope::APP_INSTANCE.into_iter().collect(),
            app_instance_id: Some(id.to_string()),
        };
        c.store().put(Table::Clients, &client_id, &client)?;
    }
    Ok((client_id, secret))
}

/// The instance is gone: so is its client (tokens already issued expire on their own).
pub(crate) fn remove_instance_client(c: &Control, id: &str) {
    if let Err(e) = c.store().delete(Table::Clients, &instance_client_id(id)) {
        tracing::warn!(instance = %id, "cannot remove the instance's OAuth client: {e}");
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RegisterRequest {
    client_id: String,
    scopes: Vec<String>,
}

#[utoipa::path(post, path = "/ferry/control/v1/clients", tag = "clients", description = "Registers an OAuth 2.0 client; the answer carries its secret, shown once.", request_body = RegisterRequest, responses((status = 201, description = "clientId, clientSecret, scopes", body = serde_json::Value), (status = "4XX", description = "refused", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "failed", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json")))]
async fn register(
    State(c): State<Control>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: RegisterRequest = http::parse_body(&headers, &body)?;
    if !valid_client_id(&req.client_id) || req.client_id.starts_with("app-") {
        return Err(ApiError::bad_request(format!(
            "clientId '{}': use 1-64 letters, digits, '-', '_' or '.', not starting with 'app-' (the instances' own)",
            req.client_id
        )));
    }
    let scopes = parse_scopes(&req.scopes.join(" ")).map_err(ApiError::bad_request)?;
    if scopes.is_empty() {
        return Err(ApiError::bad_request("scopes: name at least one"));
    }
    let secret = new_secret()?;
    let client = OauthClient {
        client_id: req.client_id.clone(),
        secret_digests: vec![digest(&secret)],
        scopes,
        app_instance_id: None,
    };
    if c.store()
        .get::<OauthClient>(Table::Clients, &client.client_id)?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "client '{}' exists: remove it first to issue a new secret",
            client.client_id
        )));
    }
    c.store().put(Table::Clients, &client.client_id, &client)?;
    tracing::info!(client = %client.client_id, scopes = %format_scopes(&client.scopes), "OAuth client registered");
    let body = serde_json::json!({
        "clientId": client.client_id,
        "clientSecret": secret,
        "scopes": client.scopes,
    });
    let mut resp = http::json(StatusCode::CREATED, &body);
    let href = format!(
        "{}/ferry/control/v1/clients/{}",
        http::base_url(&headers),
        client.client_id
    );
    if let Ok(v) = href.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[utoipa::path(get, path = "/ferry/control/v1/clients", tag = "clients", responses((status = 200, body = Vec<ClientView>), (status = "4XX", description = "refused", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "failed", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json")))]
async fn list_clients(State(c): State<Control>) -> Result<Response, ApiError> {
    let all = c.store().list::<OauthClient>(Table::Clients)?;
    let views: Vec<_> = all.iter().map(|(_, cl)| cl.view()).collect();
    Ok(http::json(StatusCode::OK, &views))
}

#[utoipa::path(get, path = "/ferry/control/v1/clients/{id}", tag = "clients", params(("id" = String, Path, description = "the client id")), responses((status = 200, body = ClientView), (status = "4XX", description = "refused", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "failed", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json")))]
async fn read(State(c): State<Control>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let cl: OauthClient = c
        .store()
        .get(Table::Clients, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no client '{id}'")))?;
    Ok(http::json(StatusCode::OK, &cl.view()))
}

#[utoipa::path(delete, path = "/ferry/control/v1/clients/{id}", tag = "clients", params(("id" = String, Path, description = "the client id")), responses((status = 204, description = "removed"), (status = "4XX", description = "refused", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json"), (status = "5XX", description = "failed", body = mec_api::problem::ProblemDetails, content_type = "application/problem+json")))]
async fn remove(State(c): State<Control>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if !c.store().delete(Table::Clients, &id)? {
        return Err(ApiError::not_found(format!("no client '{id}'")));
    }
    tracing::info!(client = %id, "OAuth client removed");
    Ok(StatusCode::NO_CONTENT)
}

/// RFC 6749 section 5.2 error answer (OAuth's own format, not ProblemDetails: OAuth client
/// libraries read `error`).
fn oauth_error(status: StatusCode, error: &str, description: String) -> Response {
    let mut r = (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        serde_json::json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"ferry\""),
        );
    }
    r
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `client_id:client_secret` of an HTTP Basic header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn token(State(c): State<Control>, headers: HeaderMap, body: Bytes) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send the token request as application/x-www-form-urlencoded".into(),
        );
    }
    let req: TokenRequest = match serde_urlencoded::from_bytes(&body) {
        Ok(r) => r,
        Err(e) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("malformed form: {e}"),
            )
        }
    };
    if req.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is served".into(),
        );
    }
    let creds = basic_credentials(&headers).or(match (req.client_id, req.client_secret) {
        (Some(id), Some(s)) => Some((id, s)),
        _ => None,
    });
    let Some((id, secret)) = creds else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "authenticate the client (HTTP Basic, or client_id and client_secret)".into(),
        );
    };
    let stored = match c.store().get::<OauthClient>(Table::Clients, &id) {
        Ok(cl) => cl,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let d = digest(&secret);
    // Unknown client and wrong secret answer alike.
    let client = match stored {
        Some(cl) if cl.secret_digests.contains(&d) => cl,
        _ => {
            tracing::warn!(client = %id, "token refused: unknown client or wrong secret");
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client or wrong secret".into(),
            );
        }
    };
    let scopes = match req.scope.as_deref().map(parse_scopes) {
        None => client.scopes.clone(),
        Some(Ok(asked)) if asked.is_subset(&client.scopes) && !asked.is_empty() => asked,
        Some(Ok(asked)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!(
                    "asked '{}', registered for '{}'",
                    format_scopes(&asked),
                    format_scopes(&client.scopes)
                ),
            )
        }
        Some(Err(e)) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", e),
    };
    let Some(issuer) = c.token_issuer() else {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "this control plane runs without --tls-dir and issues no tokens".into(),
        );
    };
    match issuer.issue(
        &client.client_id,
        &scopes,
        client.app_instance_id.as_deref(),
    ) {
        Ok((token, expires_in)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            serde_json::json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": expires_in,
                "scope": format_scopes(&scopes),
            })
            .to_string(),
        )
            .into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// Who created a client-made resource.
#[derive(Debug, Serialize, Deserialize)]
struct Owner {
    owner: String,
    table: String,
}

fn owner_key(table: Table, id: &str) -> String {
    format!("{}/{id}", table.name())
}

/// Before a caller creates a resource in `table`: a client may hold at most
/// `Config::max_subscriptions_per_client` of them (ferry's parts are not capped).
pub(crate) fn admit(c: &Control, caller: &Caller, table: Table) -> Result<(), ApiError> {
    let Some(me) = caller.owner() else {
        return Ok(());
    };
    let held = c
        .store()
        .list::<Owner>(Table::Owners)?
        .into_iter()
        .filter(|(_, o)| o.owner == me && o.table == table.name())
        .count();
    let cap = c.config().max_subscriptions_per_client;
    if held >= cap {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{me} holds {held} {} already, the most a client may (ask the operator to raise --max-subscriptions-per-client, or delete some)",
                table.name()
            ),
        ));
    }
    Ok(())
}

/// Records that `caller` created `id` in `table`. Nothing for ferry's parts: what they make
/// no client may touch.
pub(crate) fn record_owner(
    c: &Control,
    caller: &Caller,
    table: Table,
    id: &str,
) -> Result<(), ApiError> {
    if let Some(me) = caller.owner() {
        let o = Owner {
            owner: me.to_string(),
            table: table.name().to_string(),
        };
        c.store().put(Table::Owners, &owner_key(table, id), &o)?;
    }
    Ok(())
}

/// Whether `caller` may see resource `id` of `table` (a client: only its own).
pub(crate) fn visible(
    c: &Control,
    caller: &Caller,
    table: Table,
    id: &str,
) -> Result<bool, ApiError> {
    if caller.owner().is_none() {
        return Ok(true);
    }
    let o: Option<Owner> = c.store().get(Table::Owners, &owner_key(table, id))?;
    Ok(caller.may_access(o.as_ref().map(|o| o.owner.as_str())))
}

/// 403 unless `caller` may see resource `id` of `table`.
pub(crate) fn check_visible(
    c: &Control,
    caller: &Caller,
    table: Table,
    id: &str,
) -> Result<(), ApiError> {
    if visible(c, caller, table, id)? {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!("{id} belongs to another client"),
    ))
}

/// The resource is gone: so is its owner record.
pub(crate) fn forget_owner(c: &Control, table: Table, id: &str) {
    if let Err(e) = c.store().delete(Table::Owners, &owner_key(table, id)) {
        tracing::warn!(resource = %id, "cannot remove the owner record: {e}");
    }
}

/// Middleware: on MEC 011's `/applications/{appInstanceId}/...` paths a client acts only for
/// its own instance (its token's `app_instance_id`).
pub(crate) async fn own_application_paths(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let mut seg = path.trim_start_matches('/').split('/');
    let api = seg.next().unwrap_or("");
    let _version = seg.next();
    if matches!(api, "mec_app_support" | "mec_service_mgmt") && seg.next() == Some("applications") {
        if let (Some(id), Some(caller)) = (seg.next(), req.extensions().get::<Caller>()) {
            if let Err(e) = caller.may_act_for(id) {
                return e.into_response();
            }
        }
    }
    next.run(req).await
}
