//! HTTP plumbing of a MEC API producer: errors as ETSI `ProblemDetails`, JSON bodies read by
//! the tolerant-reader rule (unknown attributes ignored; a malformed body, a missing required
//! attribute or a wrong type or value is a 400 naming the field, never a panic or a silent
//! default), query parsing, the `Accept` check (406) and absolute self links.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mec_api::problem::{ProblemDetails, PROBLEM_JSON};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// An error answer: a status and its ProblemDetails body.
#[derive(Debug)]
pub struct ApiError(pub ProblemDetails);

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError(ProblemDetails::new(
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            detail,
        ))
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, detail)
    }
    pub fn unprocessable(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
    pub fn precondition_failed(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PRECONDITION_FAILED, detail)
    }
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
    /// A MEC host or the data plane (a system behind this one) failed.
    pub fn bad_gateway(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_GATEWAY, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self
            .0
            .status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], body).into_response()
    }
}

/// A JSON answer with a status.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode answer: {e}"),
        )
        .into_response(),
    }
}

/// Parses a JSON request body by the tolerant-reader rule: attributes the type does not know
/// (a newer version of the ETSI file, an extension) are ignored; the answer is a 400 only for
/// malformed JSON, a missing required attribute or a wrong type or value, and a 415 when the
/// body is not declared `application/json`. The detail says what to send.
pub fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ctype.is_empty() && body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "this operation needs a JSON request body ('Content-Type: application/json')",
        ));
    }
    require_json_body(headers)?;
    check_depth(body)?;
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed request body: {e}")))
}

/// Deepest nesting of arrays and objects a request body may have. The ETSI types nest at
/// most about 6 deep; serde_json's own limit (128) only guards the stack.
pub const MAX_JSON_DEPTH: usize = 32;

/// 400 if `body` nests arrays/objects deeper than [`MAX_JSON_DEPTH`] (checked before parsing,
/// in one pass over the bytes).
pub fn check_depth(body: &[u8]) -> Result<(), ApiError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ApiError::bad_request(format!(
                        "the request body nests deeper than {MAX_JSON_DEPTH} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// 415 unless the body is declared JSON (`application/json`, with or without parameters).
pub fn require_json_body(headers: &HeaderMap) -> Result<(), ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ctype.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "request body must be JSON with 'Content-Type: application/json' (got '{ctype}')"
            ),
        ))
    }
}

/// Query parameters as (name, value) pairs, comma-separated lists split (the ETSI files allow
/// both `a=x,y` and `a=x&a=y`). A name outside `allowed` is a 400 listing the allowed ones.
pub fn query_pairs(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
    let mut out = Vec::new();
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter '{k}' (allowed: {})",
                allowed.join(", ")
            )));
        }
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            out.push((k.clone(), part.to_string()));
        }
    }
    Ok(out)
}

/// Query parameters as (name, value) pairs, values kept whole (for MEC 009 `filter`
/// expressions, which contain commas). A name outside `allowed` is a 400.
pub fn query_pairs_raw(
    raw: Option<&str>,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
    for (k, _) in &pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter '{k}' (allowed: {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(pairs)
}

/// All values of one query parameter.
pub fn values<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The header `serve::serve_on` sets on every request to the scheme of its connection
/// (`https` over TLS), replacing whatever a client sent.
pub const SCHEME_HEADER: &str = "x-forwarded-proto";

/// `SCHEME://<Host header>`: the root of absolute self links (`_links.self`,
/// `resourceURL`), so the links work from wherever the client reached the API.
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ']))
        .unwrap_or("localhost");
    let scheme = match headers.get(SCHEME_HEADER).and_then(|v| v.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// Checks an http(s) callback URL; the reason says what is wrong.
pub fn check_callback(url: &str, field: &str) -> Result<(), ApiError> {
    match reqwest::Url::parse(url) {
        // https: ferry's own parts (control's CellChange callback), verified against the
        // operator's CA with the producer's client certificate.
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        // A value this server does not accept: 400, the status every ETSI file documents.
        Ok(_) => Err(ApiError::bad_request(format!(
            "{field} '{url}' is not an http(s) URL"
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "{field} '{url}' is not a URL: {e}"
        ))),
    }
}

/// 406 unless the client accepts JSON (or sent no Accept header). Answers are JSON or
/// problem+json only.
pub async fn require_json_accept(req: Request, next: Next) -> Response {
    let accepts = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect::<Vec<_>>();
    let ok = accepts.is_empty()
        || accepts.iter().any(|m| {
            matches!(
                m.as_str(),
                "" | "*/*" | "application/*" | "application/json" | "application/problem+json"
            )
        });
    if !ok {
        return ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "this API only answers application/json (Accept was '{}')",
                accepts.join(", ")
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Turns every error answer that is not a ProblemDetails yet into one with the same status
/// and headers (`Allow` of a 405 included): axum's own rejections (a JSON syntax error, a
/// wrong content type, a body over the limit, a path parameter of the wrong type, a method
/// the resource does not allow) are plain text or empty otherwise. Apply it last, over the
/// whole router and its fallbacks.
pub async fn problem_details(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // axum's rejection texts are one line; anything longer is cut, not buffered whole.
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let detail = if status == StatusCode::METHOD_NOT_ALLOWED {
        // axum adds Allow after this layer has run.
        format!("{method} is not allowed on {path}: the Allow header lists the methods that are")
    } else if text.is_empty() {
        format!(
            "{method} {path}: {}",
            status.canonical_reason().unwrap_or("error")
        )
    } else {
        text
    };
    let mut out = ApiError::new(status, detail).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

/// The ProblemDetails `type` of a path no route serves (a wrong URL, not a missing
/// resource): what tells the two apart when checking an API's routes.
pub const NO_ROUTE: &str = "urn:ferry:problem:no-route";

/// Fallback for unknown paths.
pub async fn not_found(req: Request) -> ApiError {
    let mut e = ApiError::not_found(format!("no resource at {}", req.uri().path()));
    e.0.type_ = Some(NO_ROUTE.to_string());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_bodies_are_refused_before_parsing() {
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(check_depth(ok.as_bytes()).is_ok());
        let deep = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert_eq!(
            check_depth(deep.as_bytes()).unwrap_err().0.status,
            Some(400)
        );
        // Brackets inside strings (escaped quotes too) do not count.
        let s = format!("{{\"a\":\"\\\"{}\"}}", "[".repeat(100));
        assert!(check_depth(s.as_bytes()).is_ok());
    }

    #[test]
    fn query_lists_split_and_unknown_names_fail() {
        let p = query_pairs(Some("cell_id=a,b&cell_id=c"), &["cell_id"]).unwrap();
        assert_eq!(values(&p, "cell_id"), vec!["a", "b", "c"]);
        let e = query_pairs(Some("cel_id=a"), &["cell_id"]).unwrap_err();
        assert_eq!(e.0.status, Some(400));
        assert!(e.0.detail.unwrap().contains("cel_id"));
        assert!(query_pairs(None, &[]).unwrap().is_empty());
    }

    #[test]
    fn body_needs_json_content_type_and_valid_json_and_ignores_unknown_attributes() {
        let mut h = HeaderMap::new();
        let e = parse_body::<serde_json::Value>(&h, &Bytes::from_static(b"")).unwrap_err();
        assert_eq!(e.0.status, Some(400));
        let e = parse_body::<serde_json::Value>(&h, &Bytes::from_static(b"{}")).unwrap_err();
        assert_eq!(e.0.status, Some(415));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        let e = parse_body::<serde_json::Value>(&h, &Bytes::from_static(b"{}")).unwrap_err();
        assert_eq!(e.0.status, Some(415));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(parse_body::<serde_json::Value>(&h, &Bytes::from_static(b"{}")).is_ok());
        let e = parse_body::<serde_json::Value>(&h, &Bytes::from_static(b"{")).unwrap_err();
        assert!(e.0.detail.unwrap().starts_with("malformed request body"));

        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Known {
            a: u32,
        }
        let k: Known = parse_body(
            &h,
            &Bytes::from_static(br#"{"a":1,"addedLater":{"x":[1]}}"#),
        )
        .unwrap();
        assert_eq!(k.a, 1);
        let e = parse_body::<Known>(&h, &Bytes::from_static(br#"{"b":1}"#)).unwrap_err();
        assert!(e.0.detail.unwrap().contains("missing field `a`"));
        let e = parse_body::<Known>(&h, &Bytes::from_static(br#"{"a":"x"}"#)).unwrap_err();
        assert_eq!(e.0.status, Some(400));
    }

    #[test]
    fn callbacks_must_be_http_urls() {
        assert!(check_callback("http://127.0.0.1:9/cb", "callbackReference").is_ok());
        assert_eq!(check_callback("nope", "x").unwrap_err().0.status, Some(400));
        assert_eq!(
            check_callback("ftp://h/x", "x").unwrap_err().0.status,
            Some(400)
        );
    }
}
