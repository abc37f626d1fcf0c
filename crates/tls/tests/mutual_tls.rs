//! Real TLS handshakes over loopback with certificates from `Pki`: who may connect, and the
//! identity the server reads from the caller's certificate.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;

use ferry_tls::{client_config, peer_identity, server_config, Identity, Pki, San, TlsFiles};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Serves one connection: answers with the caller's identity. Returns what the client read,
/// or the client's handshake error.
async fn handshake(server: &TlsFiles, client: &TlsFiles, name: IpAddr) -> Result<String, String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(server).unwrap());
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let who = {
            let (_, conn) = tls.get_ref();
            let certs = conn.peer_certificates().ok_or("no client certificate")?;
            peer_identity(&certs[0]).map_err(|e| e.to_string())?
        };
        tls.write_all(who.to_string().as_bytes()).await.unwrap();
        tls.shutdown().await.unwrap();
        Ok::<_, String>(())
    });
    let connector = tokio_rustls::TlsConnector::from(client_config(client).unwrap());
    let tcp = TcpStream::connect((LOCAL, port)).await.unwrap();
    let result = async {
        let mut tls = connector
            .connect(ServerName::IpAddress(name.into()), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        tls.read_to_string(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
    .await;
    let _ = served.await;
    result
}

fn pki(dir: &std::path::Path) -> Pki {
    Pki::init(dir, "test", ferry_tls::Validity::days(1)).unwrap()
}

fn issue(pki: &Pki, id: &str) -> TlsFiles {
    let id: Identity = id.parse().unwrap();
    pki.issue(&id, &[San::Ip(LOCAL)], ferry_tls::Validity::days(1))
        .unwrap();
    TlsFiles::in_dir(pki.dir(), &id)
}

#[tokio::test]
async fn the_server_learns_the_callers_identity() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let host = issue(&pki, "host:mec1");
    for caller in ["control", "operator", "host:mec2"] {
        let client = issue(&pki, caller);
        assert_eq!(handshake(&host, &client, LOCAL).await.unwrap(), caller);
    }
    assert_eq!(host.identity().unwrap(), Identity::Host("mec1".into()));
}

#[tokio::test]
async fn keys_are_private_and_the_ca_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    issue(&pki, "ran");
    for key in ["ca.key", "ran.key"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let again = Pki::init(dir.path(), "test", ferry_tls::Validity::days(1));
    assert!(matches!(again, Err(ferry_tls::TlsError::CaExists(_))));
    // Reopened from its files, the CA issues certificates that chain to the same ca.crt.
    let reopened = Pki::open(dir.path()).unwrap();
    let host = issue(&pki, "host:mec1");
    let client = issue(&reopened, "control");
    assert_eq!(handshake(&host, &client, LOCAL).await.unwrap(), "control");
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused_both_ways() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ours, theirs) = (pki(a.path()), pki(b.path()));
    let host = issue(&ours, "host:mec1");
    let intruder = issue(&theirs, "control");
    assert!(handshake(&host, &intruder, LOCAL).await.is_err());
    // And a client of ours does not trust a server of theirs.
    let fake_host = issue(&theirs, "host:mec1");
    let control = issue(&ours, "control");
    assert!(handshake(&fake_host, &control, LOCAL).await.is_err());
}

#[tokio::test]
async fn expired_certificates_and_wrong_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let host = issue(&pki, "host:mec1");
    let now = time::OffsetDateTime::now_utc();
    let expired = ferry_tls::Validity {
        not_before: now - time::Duration::days(10),
        not_after: now - time::Duration::days(1),
    };
    pki.issue(&Identity::Control, &[], expired).unwrap();
    let control = TlsFiles::in_dir(dir.path(), &Identity::Control);
    let err = handshake(&host, &control, LOCAL).await.unwrap_err();
    eprintln!("expired client: {err}");
    // The server's certificate names 127.0.0.1 only: a client dialling it as another
    // address refuses it.
    let operator = issue(&pki, "operator");
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    assert!(handshake(&host, &operator, other).await.is_err());
}
