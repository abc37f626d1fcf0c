//! A request whose body the server answers without reading (a 405, a rejection before the
//! body is parsed) must not cost the client its connection: the server reads the rest of the
//! body before the answer goes and keeps the connection, as a real client over mutual TLS sees.
//! Without that, hyper answered and then closed the kept-alive connection without saying so,
//! and a client still writing that body, or the next request on the connection, met a reset
//! (Python's ssl reports it as "EOF occurred in violation of protocol").

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use ferry_tls::{Identity, Pki, San, TlsFiles, Validity};
use mec_http::serve::{serve_on, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Reads one response off `tls`: its status and its `Connection` header (lower case).
async fn response(tls: &mut TlsStream<tokio::net::TcpStream>) -> (u16, Option<String>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tls.read(&mut byte).await.expect("read the response head");
        assert_eq!(
            n,
            1,
            "connection closed after {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(|v| v.trim().to_string())
    };
    let len: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0u8; len];
    tls.read_exact(&mut body)
        .await
        .expect("read the response body");
    (status, header("connection"))
}

/// A server over mutual TLS whose `/x` serves GET only (a POST gets its 405 from the
/// router, its body unread), and a client connection to it.
async fn connect() -> (
    TlsStream<tokio::net::TcpStream>,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(dir.path(), "t", Validity::days(1)).unwrap();
    let [server, client] = [Identity::Control, Identity::Operator].map(|id| {
        pki.issue(&id, &[San::Ip(LOCAL)], Validity::days(1))
            .unwrap();
        TlsFiles::in_dir(pki.dir(), &id)
    });
    let router = Router::new().route("/x", get(|| async { "x" }));
    let listener = tokio::net::TcpListener::bind((LOCAL, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ferry_tls::server_config(&server).unwrap();
    tokio::spawn(serve_on(
        Transport::MutualTls(listener, config),
        router,
        async {
            let _ = stopped.await;
        },
    ));
    let connector = TlsConnector::from(Arc::clone(&ferry_tls::client_config(&client).unwrap()));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(LOCAL.into());
    (connector.connect(name, tcp).await.unwrap(), stop, dir)
}

fn post_head(len: usize) -> String {
    format!(
        "POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n"
    )
}

#[tokio::test]
async fn an_unread_request_body_is_read_out_and_the_connection_kept() {
    let (mut tls, _stop, _dir) = connect().await;
    // The head first and the body later, as urllib3 sends them: the server has answered
    // before the body comes (what a loaded machine does to a client at random).
    let body = vec![b'x'; 64 * 1024];
    tls.write_all(post_head(body.len()).as_bytes())
        .await
        .unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for part in body.chunks(8 * 1024) {
        tls.write_all(part)
            .await
            .expect("the server takes the whole body");
        tls.flush().await.expect("the server takes the whole body");
    }
    assert_eq!(response(&mut tls).await, (405, None));

    // The same connection serves the next request.
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("the connection was kept");
    assert_eq!(response(&mut tls).await, (200, None));
}

#[tokio::test]
async fn an_unread_body_too_long_to_read_out_ends_the_connection_and_says_so() {
    let (tls, _stop, _dir) = connect().await;
    let (mut rx, mut tx) = tokio::io::split(tls);
    let len = 4 << 20;
    // The writer may meet the close: what matters is what the response says.
    tokio::spawn(async move {
        tx.write_all(post_head(len).as_bytes()).await?;
        for _ in 0..len / (64 * 1024) {
            tx.write_all(&[b'x'; 64 * 1024]).await?;
        }
        tx.flush().await
    });
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(rx.read(&mut byte).await.unwrap(), 1, "no response");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 405"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
}
