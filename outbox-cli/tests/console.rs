//! `outbox console` serves the web console on loopback, from a SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn outbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_outbox"))
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn console_serves_the_pages_on_loopback_by_default() {
    let help = outbox().args(["console", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("[default: 127.0.0.1:8089]"), "{help}");

    let path = std::env::temp_dir().join(format!("outbox-console-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    let migrated = outbox()
        .args(["--database-url", &url, "migrate"])
        .output()
        .unwrap();
    assert!(migrated.status.success());
    let mut child = outbox()
        .args(["--database-url", &url, "console", "--bind", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(line.contains("read-only"), "{line}");
    let queues = http_get(&addr, "/");
    let instances = http_get(&addr, "/instances");
    let script = http_get(&addr, "/assets/console.js");
    child.kill().unwrap();
    let _ = child.wait();
    let _ = std::fs::remove_file(&path);
    assert!(queues.starts_with("HTTP/1.1 200"), "{queues}");
    assert!(queues.contains("<h1>Queues</h1>"), "{queues}");
    assert!(instances.contains("<h1>Instances</h1>"), "{instances}");
    assert!(script.contains("data-confirm"), "{script}");
}
