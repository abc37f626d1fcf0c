//! `ferry pki`: the CLI makes a CA and certificates, and refuses bad input with one line.

use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn init_issue_and_the_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("pki");
    let d = d.to_str().unwrap();
    let o = ferry(&["pki", "init", "--dir", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = ferry(&[
        "pki",
        "issue",
        "--dir",
        d,
        "--identity",
        "host:mec1",
        "--san",
        "10.0.0.11",
        "--san",
        "mec1.edge.example",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let files = ferry_tls::TlsFiles::in_dir(std::path::Path::new(d), &"host:mec1".parse().unwrap());
    assert_eq!(files.identity().unwrap().to_string(), "host:mec1");
    ferry_tls::server_config(&files).expect("a usable server certificate");

    for (args, needle) in [
        (vec!["pki", "init", "--dir", d], "already holds a CA"),
        (
            vec!["pki", "issue", "--dir", d, "--identity", "root"],
            "invalid identity 'root'",
        ),
        (
            vec![
                "pki",
                "issue",
                "--dir",
                d,
                "--identity",
                "ran",
                "--san",
                "not a name",
            ],
            "neither an IP address nor a DNS name",
        ),
    ] {
        let o = ferry(&args);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    let empty = dir.path().join("empty");
    let o = ferry(&[
        "pki",
        "issue",
        "--dir",
        empty.to_str().unwrap(),
        "--identity",
        "ran",
    ]);
    assert!(stderr(&o).contains("ferry pki init"), "{}", stderr(&o));
}
