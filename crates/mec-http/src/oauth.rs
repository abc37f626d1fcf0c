//! OAuth 2.0 on ferry's MEC APIs (ETSI MEC 009: the client credentials grant, bearer
//! tokens), both sides of the token format in one place:
//!
//! - [`TokenIssuer`]: `ferry control`'s token endpoint signs access tokens as RFC 9068 JWTs
//!   (`typ: at+jwt`, ES256) with its own certificate's key and puts that certificate in the
//!   header (`x5c`). So any part that holds the operator's CA can verify a token (the RAN,
//!   another control) without a key to distribute or a call back to control, and rotating
//!   control's certificate rotates the signing key.
//! - [`TokenVerifier`]: checks the `x5c` certificate against the CA and that it names
//!   `control`, then the signature, issuer, audience and expiry.
//! - [`authenticate`]: the middleware every MEC producer runs. A caller is either one of
//!   ferry's own parts (a client certificate over TLS, admitted by the producer's
//!   [`PartPolicy`]) or a client with a bearer token whose scopes name the API of the path.
//!   Handlers read the [`Caller`] to keep an application to its own resources.
//!
//! Missing or bad token: 401 with `WWW-Authenticate: Bearer` (RFC 6750 section 3) and a
//! ProblemDetails; a token without the API's scope, or a path no token opens: 403.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ferry_tls::{CertVerifier, Identity, Peer, TlsFiles};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::http::ApiError;

/// The token endpoint's path on `ferry control`.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// The `aud` of every access token: ferry's MEC APIs.
pub const AUDIENCE: &str = "urn:ferry:mec";
/// How long an access token is good for. Short, so a removed client loses access soon
/// without a revocation list.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// The `typ` of an RFC 9068 access token.
const TYP: &str = "at+jwt";
/// Longest `Authorization` header read; a token is under 2 KiB (its certificate included).
const MAX_TOKEN: usize = 8192;
/// Clock skew allowed between the issuer and a verifier.
const LEEWAY_S: u64 = 5;

/// What a token may be used for: one scope per ETSI MEC API, named after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// MEC 010-2 application package management (`/app_pkgm`).
    AppPkgm,
    /// MEC 010-2 application lifecycle management (`/app_lcm`).
    AppLcm,
    /// MEC 011 application support (`/mec_app_support`).
    MecAppSupport,
    /// MEC 011 service management (`/mec_service_mgmt`).
    MecServiceMgmt,
    /// MEC 012 radio network information (`/rni`).
    Rni,
    /// MEC 013 location (`/location`).
    Location,
    /// MEC 021 application mobility (`/amsi`).
    Amsi,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::AppPkgm,
        Scope::AppLcm,
        Scope::MecAppSupport,
        Scope::MecServiceMgmt,
        Scope::Rni,
        Scope::Location,
        Scope::Amsi,
    ];

    /// What an application instance gets: the platform services it consumes, not the
    /// orchestrator's APIs (those are the operator's).
    pub const APP_INSTANCE: [Scope; 5] = [
        Scope::MecAppSupport,
        Scope::MecServiceMgmt,
        Scope::Rni,
        Scope::Location,
        Scope::Amsi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::AppPkgm => "app_pkgm",
            Scope::AppLcm => "app_lcm",
            Scope::MecAppSupport => "mec_app_support",
            Scope::MecServiceMgmt => "mec_service_mgmt",
            Scope::Rni => "rni",
            Scope::Location => "location",
            Scope::Amsi => "amsi",
        }
    }

    /// The API a request path belongs to (its first segment is the API's name); `None` for
    /// paths no token opens (ferry's own `/ferry/...` APIs).
    pub fn for_path(path: &str) -> Option<Scope> {
        let first = path.trim_start_matches('/').split('/').next()?;
        Scope::ALL.into_iter().find(|s| s.as_str() == first)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scope '{s}' (scopes: {})",
                    Scope::ALL.map(Scope::as_str).join(", ")
                )
            })
    }
}

/// A space-separated scope list (RFC 6749 section 3.3); unknown names are an error.
pub fn parse_scopes(s: &str) -> Result<BTreeSet<Scope>, String> {
    s.split_whitespace().map(str::parse).collect()
}

pub fn format_scopes(scopes: &BTreeSet<Scope>) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The claims of an access token (RFC 9068 section 2.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    /// The app instance the client is (set for the credentials an instance gets at
    /// instantiation): it may act only for that instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_instance_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Setup(String),
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's signing certificate is refused: {0}")]
    Signer(String),
    #[error("the token is invalid: {0}")]
    Invalid(String),
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs access tokens with control's certificate key.
pub struct TokenIssuer {
    key: EncodingKey,
    cert_b64: String,
}

impl TokenIssuer {
    /// From control's certificate and key (`ferry pki issue control`).
    pub fn new(files: &TlsFiles) -> Result<TokenIssuer, TokenError> {
        if files
            .identity()
            .map_err(|e| TokenError::Setup(e.to_string()))?
            != Identity::Control
        {
            return Err(TokenError::Setup(format!(
                "{} does not name the identity control: tokens are signed by control only",
                files.cert.display()
            )));
        }
        use rustls_pki_types::pem::PemObject;
        let key_der = rustls_pki_types::PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| TokenError::Setup(format!("{}: {e}", files.key.display())))?;
        let rustls_pki_types::PrivateKeyDer::Pkcs8(pkcs8) = key_der else {
            return Err(TokenError::Setup(format!(
                "{}: not a PKCS#8 key (as `ferry pki issue` writes)",
                files.key.display()
            )));
        };
        let key = EncodingKey::from_ec_der(pkcs8.secret_pkcs8_der());
        let cert = first_cert_der(&files.cert)?;
        let issuer = TokenIssuer {
            key,
            cert_b64: base64::engine::general_purpose::STANDARD.encode(cert),
        };
        // A key that cannot sign fails here, at start, not at the first client's request.
        issuer.issue("probe", &BTreeSet::new(), None)?;
        Ok(issuer)
    }

    /// A signed access token for a client; returns it with its lifetime in seconds.
    pub fn issue(
        &self,
        client_id: &str,
        scopes: &BTreeSet<Scope>,
        app_instance_id: Option<&str>,
    ) -> Result<(String, u64), TokenError> {
        self.issue_at(client_id, scopes, app_instance_id, now_s())
    }

    /// [`TokenIssuer::issue`] as if issued at Unix time `iat` (tests of expiry).
    pub fn issue_at(
        &self,
        client_id: &str,
        scopes: &BTreeSet<Scope>,
        app_instance_id: Option<&str>,
        iat: u64,
    ) -> Result<(String, u64), TokenError> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|e| TokenError::Setup(format!("random: {e}")))?;
        let claims = Claims {
            iss: Identity::Control.uri(),
            sub: client_id.to_string(),
            aud: AUDIENCE.to_string(),
            exp: iat + TOKEN_LIFETIME.as_secs(),
            iat,
            jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
            client_id: client_id.to_string(),
            scope: format_scopes(scopes),
            app_instance_id: app_instance_id.map(str::to_string),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(TYP.to_string());
        header.x5c = Some(vec![self.cert_b64.clone()]);
        let token = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| TokenError::Setup(format!("cannot sign: {e}")))?;
        Ok((token, TOKEN_LIFETIME.as_secs()))
    }
}

fn first_cert_der(path: &Path) -> Result<Vec<u8>, TokenError> {
    use rustls_pki_types::pem::PemObject;
    let cert = rustls_pki_types::CertificateDer::from_pem_file(path)
        .map_err(|e| TokenError::Setup(format!("{}: {e}", path.display())))?;
    Ok(cert.to_vec())
}

/// Verifies access tokens against the operator's CA.
pub struct TokenVerifier {
    certs: CertVerifier,
}

impl TokenVerifier {
    pub fn new(ca: &Path) -> Result<TokenVerifier, TokenError> {
        Ok(TokenVerifier {
            certs: CertVerifier::new(ca).map_err(|e| TokenError::Setup(e.to_string()))?,
        })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(TYP) {
            return Err(TokenError::Malformed(format!(
                "not an ES256 {TYP} token (alg {:?}, typ {:?})",
                header.alg, header.typ
            )));
        }
        let cert_b64 = header
            .x5c
            .as_ref()
            .and_then(|c| c.first())
            .ok_or_else(|| TokenError::Malformed("no x5c certificate in the header".into()))?;
        let der = base64::engine::general_purpose::STANDARD
            .decode(cert_b64)
            .map_err(|e| TokenError::Malformed(format!("x5c: {e}")))?;
        let signer = self
            .certs
            .verify(&der)
            .map_err(|e| TokenError::Signer(e.to_string()))?;
        if signer != Identity::Control {
            return Err(TokenError::Signer(format!(
                "signed by {signer}; only control issues tokens"
            )));
        }
        let point = public_key_point(&der)?;
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[AUDIENCE]);
        v.set_issuer(&[Identity::Control.uri()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = LEEWAY_S;
        let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_ec_der(&point), &v)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(data.claims)
    }
}

/// The uncompressed EC point of a certificate's public key (what ring verifies with).
fn public_key_point(der: &[u8]) -> Result<Vec<u8>, TokenError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| TokenError::Signer(format!("unparsable certificate: {e}")))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// Who made a request, as the handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// One of ferry's parts, by its client certificate.
    Part(Identity),
    /// A registered OAuth client, by its access token.
    Client {
        client_id: String,
        scopes: BTreeSet<Scope>,
        app_instance_id: Option<String>,
    },
    /// Nothing to authenticate against: a daemon serving loopback without `--tls-dir` (a
    /// developer's machine). Only loopback callers reach it.
    Local,
}

impl Caller {
    /// Whose resources the caller may see and change: `None` for ferry's parts (all), the
    /// app instance for an instance's credentials (its copies share them), the client id
    /// for other clients.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Caller::Part(_) | Caller::Local => None,
            Caller::Client {
                client_id,
                app_instance_id,
                ..
            } => Some(app_instance_id.as_deref().unwrap_or(client_id)),
        }
    }

    /// Whether the caller may act for the app instance `id` (MEC 011's
    /// `/applications/{appInstanceId}` paths, an AMS registration's consumer): parts may,
    /// an instance's own credentials may, other clients may not.
    pub fn may_act_for(&self, id: &str) -> Result<(), ApiError> {
        match self {
            Caller::Part(_) | Caller::Local => Ok(()),
            Caller::Client {
                app_instance_id: Some(own),
                ..
            } if own == id => Ok(()),
            Caller::Client { client_id, .. } => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("client {client_id} may not act for app instance {id}"),
            )),
        }
    }

    /// A resource owned by `owner` (`None`: created by one of ferry's parts) may be read or
    /// changed by this caller.
    pub fn may_access(&self, owner: Option<&str>) -> bool {
        match self.owner() {
            None => true,
            Some(me) => owner == Some(me),
        }
    }
}

/// Which of ferry's parts may call which paths of one producer, by certificate.
pub type PartPolicy = fn(&Identity, &Method, &str) -> bool;

/// The authentication of one producer.
#[derive(Clone)]
pub struct Auth {
    inner: Option<Arc<AuthInner>>,
}

struct AuthInner {
    verifier: TokenVerifier,
    parts: PartPolicy,
}

impl Auth {
    /// Certificates by `parts`, tokens by the CA in `ca`.
    pub fn new(ca: &Path, parts: PartPolicy) -> Result<Auth, TokenError> {
        Ok(Auth {
            inner: Some(Arc::new(AuthInner {
                verifier: TokenVerifier::new(ca)?,
                parts,
            })),
        })
    }

    /// No authentication: for a daemon that serves loopback only, without TLS.
    pub fn local() -> Auth {
        Auth { inner: None }
    }
}

/// A 401 that tells the client to send (another) bearer token.
fn unauthorized(error: Option<&str>, detail: String) -> Response {
    let challenge = match error {
        Some(e) => format!("Bearer realm=\"ferry\", error=\"{e}\""),
        None => "Bearer realm=\"ferry\"".to_string(),
    };
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, detail).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn forbidden(scope: Option<Scope>, detail: String) -> Response {
    let mut r = ApiError::new(StatusCode::FORBIDDEN, detail).into_response();
    if let Some(s) = scope {
        let challenge =
            format!("Bearer realm=\"ferry\", error=\"insufficient_scope\", scope=\"{s}\"");
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    r
}

/// Middleware (`axum::middleware::from_fn_with_state(auth, authenticate)`): admits the
/// request as a [`Caller`] extension or answers 401/403. The token endpoint is open: its
/// client authenticates with its secret there.
pub async fn authenticate(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let Some(inner) = auth.inner.as_ref() else {
        req.extensions_mut().insert(Caller::Local);
        return next.run(req).await;
    };
    let path = req.uri().path().to_string();
    if path == TOKEN_PATH {
        return next.run(req).await;
    }
    let identity = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .and_then(|p| p.0.identity.clone());
    if let Some(id) = identity {
        if !(inner.parts)(&id, req.method(), &path) {
            return forbidden(None, format!("{id} may not call {} {path}", req.method()));
        }
        req.extensions_mut().insert(Caller::Part(id));
        return next.run(req).await;
    }
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return unauthorized(
            None,
            format!(
                "{} {path} needs an access token (Authorization: Bearer; from {TOKEN_PATH} of ferry control)",
                req.method()
            ),
        );
    };
    let token = match value.to_str().ok().and_then(|v| {
        let (scheme, t) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| t.trim())
    }) {
        Some(t) if !t.is_empty() && t.len() <= MAX_TOKEN => t,
        _ => {
            return unauthorized(
                Some("invalid_request"),
                "the Authorization header is not 'Bearer TOKEN'".into(),
            )
        }
    };
    let claims = match inner.verifier.verify(token) {
        Ok(c) => c,
        Err(e) => return unauthorized(Some("invalid_token"), e.to_string()),
    };
    let Ok(scopes) = parse_scopes(&claims.scope) else {
        return unauthorized(Some("invalid_token"), "the token's scope is unknown".into());
    };
    let Some(needed) = Scope::for_path(&path) else {
        return forbidden(None, format!("{path} is not open to access tokens"));
    };
    if !scopes.contains(&needed) {
        return forbidden(
            Some(needed),
            format!(
                "client {} lacks the scope {needed} for {path}",
                claims.client_id
            ),
        );
    }
    req.extensions_mut().insert(Caller::Client {
        client_id: claims.client_id,
        scopes,
        app_instance_id: claims.app_instance_id,
    });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_first_path_segment() {
        assert_eq!(
            Scope::for_path("/rni/v2/queries/rab_info"),
            Some(Scope::Rni)
        );
        assert_eq!(Scope::for_path("/amsi/v1/subscriptions"), Some(Scope::Amsi));
        assert_eq!(Scope::for_path("/ferry/control/v1/hosts"), None);
        assert_eq!(Scope::for_path("/rnis/v2"), None);
        assert_eq!(
            parse_scopes("rni  location").unwrap(),
            BTreeSet::from([Scope::Rni, Scope::Location])
        );
        assert!(parse_scopes("rni admin").unwrap_err().contains("admin"));
    }

    #[test]
    fn owners() {
        let app = Caller::Client {
            client_id: "c1".into(),
            scopes: BTreeSet::new(),
            app_instance_id: Some("i1".into()),
        };
        assert_eq!(app.owner(), Some("i1"));
        assert!(app.may_act_for("i1").is_ok());
        assert_eq!(app.may_act_for("i2").unwrap_err().0.status, Some(403));
        assert!(app.may_access(Some("i1")));
        assert!(!app.may_access(Some("i2")));
        assert!(!app.may_access(None));
        let part = Caller::Part(Identity::Operator);
        assert!(part.may_access(Some("i2")) && part.may_act_for("i2").is_ok());
    }
}
