//! Access tokens and the `authenticate` middleware over real TLS on loopback, with
//! certificates of a real `Pki`: what gets in as a part, as a client, and what is refused
//! with which status and challenge.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use axum::http::Method;
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine as _;
use ferry_tls::{Identity, Pki, San, TlsFiles, Validity};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mec_http::oauth::{
    authenticate, Auth, Caller, Claims, Scope, TokenIssuer, TokenVerifier, AUDIENCE,
};
use mec_http::serve::{serve_on, Transport};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn issue(pki: &Pki, id: Identity) -> TlsFiles {
    pki.issue(&id, &[San::Ip(LOCAL)], Validity::days(1))
        .unwrap();
    TlsFiles::in_dir(pki.dir(), &id)
}

fn key_of(files: &TlsFiles) -> EncodingKey {
    use rustls_pki_types::pem::PemObject;
    let rustls_pki_types::PrivateKeyDer::Pkcs8(k) =
        rustls_pki_types::PrivateKeyDer::from_pem_file(&files.key).unwrap()
    else {
        panic!("not pkcs8")
    };
    EncodingKey::from_ec_der(k.secret_pkcs8_der())
}

fn cert_b64(files: &TlsFiles) -> String {
    use rustls_pki_types::pem::PemObject;
    let c = rustls_pki_types::CertificateDer::from_pem_file(&files.cert).unwrap();
    base64::engine::general_purpose::STANDARD.encode(c.as_ref())
}

fn claims(exp_offset: i64, scope: &str) -> Claims {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Claims {
        iss: Identity::Control.uri(),
        sub: "c1".into(),
        aud: AUDIENCE.into(),
        exp: (now + exp_offset) as u64,
        iat: now as u64,
        jti: "j".into(),
        client_id: "c1".into(),
        scope: scope.into(),
        app_instance_id: None,
    }
}

/// Signs `claims` with `key` and puts `cert` in x5c: how a forger would try.
fn sign(claims: &Claims, key: &EncodingKey, cert: &str) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.typ = Some("at+jwt".into());
    h.x5c = Some(vec![cert.to_string()]);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

#[test]
fn tokens_verify_only_when_control_of_this_ca_signed_them_and_they_are_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(dir.path(), "t", Validity::days(1)).unwrap();
    let control = issue(&pki, Identity::Control);
    let ran = issue(&pki, Identity::Ran);
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::init(other_dir.path(), "other", Validity::days(1)).unwrap();
    let other_control = issue(&other, Identity::Control);
    let verifier = TokenVerifier::new(&control.ca).unwrap();

    let issuer = TokenIssuer::new(&control).unwrap();
    let scopes = BTreeSet::from([Scope::Rni, Scope::Amsi]);
    let (token, lifetime) = issuer.issue("c1", &scopes, Some("inst-1")).unwrap();
    assert!(lifetime > 0 && lifetime <= 3600);
    let c = verifier.verify(&token).unwrap();
    assert_eq!((c.client_id.as_str(), c.scope.as_str()), ("c1", "rni amsi"));
    assert_eq!(c.app_instance_id.as_deref(), Some("inst-1"));

    // Only control's certificate may issue.
    assert!(TokenIssuer::new(&ran).is_err());
    let by_ran = sign(&claims(300, "rni"), &key_of(&ran), &cert_b64(&ran));
    assert!(verifier
        .verify(&by_ran)
        .unwrap_err()
        .to_string()
        .contains("only control"));
    // control's certificate in the header, another key's signature.
    let forged = sign(&claims(300, "rni"), &key_of(&ran), &cert_b64(&control));
    assert!(verifier.verify(&forged).is_err());
    // control of another CA.
    let foreign = sign(
        &claims(300, "rni"),
        &key_of(&other_control),
        &cert_b64(&other_control),
    );
    assert!(verifier.verify(&foreign).is_err());
    // Expired (beyond the leeway).
    let old = sign(&claims(-60, "rni"), &key_of(&control), &cert_b64(&control));
    assert!(verifier
        .verify(&old)
        .unwrap_err()
        .to_string()
        .contains("xpired"));
    // The right signer with a changed payload.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut c2 = claims(300, "rni amsi app_lcm");
    c2.client_id = "c1".into();
    parts[1] =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c2).unwrap());
    assert!(verifier.verify(&parts.join(".")).is_err());
    assert!(verifier.verify("not.a.token").is_err());
}

/// Parts: the operator anywhere, the RAN only on `/cb`.
fn policy(id: &Identity, _m: &Method, path: &str) -> bool {
    match id {
        Identity::Operator => true,
        Identity::Ran => path == "/cb",
        _ => false,
    }
}

async fn who(Extension(c): Extension<Caller>) -> String {
    format!("{c:?}")
}

struct Server {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(server: &TlsFiles) -> Server {
    let auth = Auth::new(&server.ca, policy).unwrap();
    let router = Router::new()
        .route("/rni/v2/x", get(who))
        .route("/amsi/v1/x", get(who))
        .route("/ferry/ran/v1/x", get(who))
        .route("/cb", get(who))
        .layer(axum::middleware::from_fn_with_state(auth, authenticate));
    let listener = tokio::net::TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = ferry_tls::server_config_optional_client(server).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(serve_on(
        Transport::MutualTls(listener, config),
        router,
        async {
            let _ = rx.await;
        },
    ));
    Server {
        port,
        stop: Some(tx),
    }
}

fn client(ca: &Path, cert: Option<&TlsFiles>) -> reqwest::Client {
    let tls = match cert {
        Some(f) => ferry_tls::client_config(f).unwrap(),
        None => ferry_tls::client_config_server_auth(ca).unwrap(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .build()
        .unwrap()
}

async fn call(
    c: &reqwest::Client,
    port: u16,
    path: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    let mut req = c.get(format!("https://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, challenge, r.text().await.unwrap())
}

#[tokio::test]
async fn the_middleware_admits_parts_by_certificate_and_clients_by_scope() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(dir.path(), "t", Validity::days(1)).unwrap();
    let ran = issue(&pki, Identity::Ran);
    let control = issue(&pki, Identity::Control);
    let operator = issue(&pki, Identity::Operator);
    let host = issue(&pki, Identity::Host("mec1".into()));
    let s = start(&ran).await;
    let issuer = TokenIssuer::new(&control).unwrap();
    let (rni_token, _) = issuer
        .issue("c1", &BTreeSet::from([Scope::Rni]), Some("inst-1"))
        .unwrap();

    // Parts by certificate, as the policy says.
    let op = client(&ran.ca, Some(&operator));
    let (st, _, body) = call(&op, s.port, "/ferry/ran/v1/x", None).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("Part(Operator)"), "{body}");
    let (st, _, body) = call(&client(&ran.ca, Some(&host)), s.port, "/rni/v2/x", None).await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("host:mec1"), "{body}");
    let as_ran = client(&ran.ca, Some(&ran));
    assert_eq!(call(&as_ran, s.port, "/cb", None).await.0, 200);
    assert_eq!(call(&as_ran, s.port, "/rni/v2/x", None).await.0, 403);

    // Clients by token.
    let app = client(&ran.ca, None);
    let (st, challenge, body) = call(&app, s.port, "/rni/v2/x", None).await;
    assert_eq!(st, 401);
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(body.contains("\"status\":401"), "{body}");
    let (st, challenge, _) = call(&app, s.port, "/rni/v2/x", Some("garbage")).await;
    assert_eq!(st, 401);
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let (st, _, body) = call(&app, s.port, "/rni/v2/x", Some(&rni_token)).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("inst-1"), "{body}");
    let (st, challenge, body) = call(&app, s.port, "/amsi/v1/x", Some(&rni_token)).await;
    assert_eq!(st, 403, "{body}");
    assert!(challenge.contains("insufficient_scope") && challenge.contains("amsi"));
    // No token opens ferry's own API.
    let all = issuer
        .issue("c1", &Scope::ALL.into_iter().collect(), None)
        .unwrap()
        .0;
    assert_eq!(
        call(&app, s.port, "/ferry/ran/v1/x", Some(&all)).await.0,
        403
    );

    // A certificate of another CA does not even get a TLS session.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::init(other_dir.path(), "o", Validity::days(1)).unwrap();
    let stranger = issue(&other, Identity::Operator);
    let tls = ferry_tls::client_config(&TlsFiles {
        ca: ran.ca.clone(),
        ..stranger
    })
    .unwrap();
    let c = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .build()
        .unwrap();
    assert!(c
        .get(format!("https://127.0.0.1:{}/rni/v2/x", s.port))
        .send()
        .await
        .is_err());
}
