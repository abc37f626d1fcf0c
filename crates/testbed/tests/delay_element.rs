//! The delay element between real namespaces: ping across it takes twice the configured
//! delay (within 10%), full-size frames pass, and a TCP transfer arrives intact.

use std::process::Command;

use ferry_testbed::delay::{self, DelaySpec};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three namespaces `<p>a` <-> `<p>g` (delay element) <-> `<p>b`, removed on drop.
struct Pair {
    prefix: String,
}

impl Pair {
    fn new(prefix: &str) -> Pair {
        let p = Pair {
            prefix: prefix.to_string(),
        };
        p.remove();
        let (a, g, b) = (p.ns("a"), p.ns("g"), p.ns("b"));
        for n in [&a, &g, &b] {
            ip(&["netns", "add", n]);
        }
        ip(&[
            "-n", &a, "link", "add", "name", "x", "type", "veth", "peer", "name", "ga", "netns", &g,
        ]);
        ip(&[
            "-n", &b, "link", "add", "name", "x", "type", "veth", "peer", "name", "gb", "netns", &g,
        ]);
        for (n, dev) in [(&a, "x"), (&b, "x"), (&g, "ga"), (&g, "gb")] {
            let ok = Command::new("ip")
                .args([
                    "netns", "exec", n, "ethtool", "-K", dev, "tx", "off", "sg", "off", "tso",
                    "off", "gso", "off", "gro", "off",
                ])
                .output()
                .expect("ethtool")
                .status
                .success();
            assert!(ok, "ethtool in {n}");
            ip(&["-n", n, "link", "set", "dev", dev, "up"]);
        }
        ip(&["-n", &a, "addr", "add", "10.97.0.1/24", "dev", "x"]);
        ip(&["-n", &b, "addr", "add", "10.97.0.2/24", "dev", "x"]);
        for n in [&a, &b] {
            ip(&["-n", n, "link", "set", "dev", "lo", "up"]);
        }
        p
    }

    fn ns(&self, x: &str) -> String {
        format!("{}{x}", self.prefix)
    }

    fn remove(&self) {
        for x in ["a", "g", "b"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(x)])
                .output();
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Moves this thread into namespace `ns`.
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
    // SAFETY: setns with a valid namespace fd; it changes only the calling thread.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}");
}

fn ping_median(ns: &str, size: &str) -> Option<f64> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ping",
            "-c",
            "20",
            "-i",
            "0.05",
            "-s",
            size,
            "-W",
            "2",
            "10.97.0.2",
        ])
        .output()
        .ok()?;
    let mut v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split(' ').next())
        .filter_map(|t| t.parse().ok())
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied()
}

#[test]
fn holds_frames_for_the_configured_delay() {
    let pair = Pair::new("dlyt-");
    delay::start(&DelaySpec {
        netns: pair.ns("g"),
        a: "ga".into(),
        b: "gb".into(),
        delay: std::time::Duration::from_millis(3),
    })
    .expect("start the delay element");
    // Warm-up (ARP), then small and full-size (1472 + 28 = 1500 bytes) frames.
    let _ = ping_median(&pair.ns("a"), "56");
    for size in ["56", "1472"] {
        let rtt =
            ping_median(&pair.ns("a"), size).unwrap_or_else(|| panic!("no replies with -s {size}"));
        assert!(
            (5.7..=6.6).contains(&rtt),
            "RTT {rtt} ms with -s {size}, configured 6 ms"
        );
    }
    // A bulk TCP transfer arrives complete (no frame lost to size or checksum).
    let (b, a) = (pair.ns("b"), pair.ns("a"));
    let server = std::thread::spawn(move || {
        enter(&b);
        let l = std::net::TcpListener::bind("10.97.0.2:5999").expect("bind");
        let (mut s, _) = l.accept().expect("accept");
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut sink).expect("read");
        sink.len()
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let client = std::thread::spawn(move || {
        enter(&a);
        let mut s = std::net::TcpStream::connect("10.97.0.2:5999").expect("connect");
        std::io::Write::write_all(&mut s, &vec![7u8; 20_000_000]).expect("write");
    });
    client.join().expect("client");
    assert_eq!(
        server.join().expect("server"),
        20_000_000,
        "bytes received across the delay element"
    );
    drop(pair);
}
