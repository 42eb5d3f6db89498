//! What every test suite of the workspace shares: where the servers are,
//! one quick probe of each, and skips that cannot go unseen.
//!
//! A suite asks [`available`] before it connects. The first test of a test
//! binary that asks probes the server (a TCP connect, at most
//! [`PROBE_TIMEOUT`]); every later one gets the remembered answer at once.
//! An unreachable server is announced by one line on the process's stderr,
//! which the test harness cannot capture, and its tests return at once, so
//! `cargo test --workspace` with every server down finishes in about the
//! time the tests that need no server take. Under
//! `OUTBOX_REQUIRE_ALL_BACKENDS=1` each of those tests fails instead.
//!
//! ```no_run
//! use outbox_test_support::{Server, available};
//!
//! let url = Server::Postgres.url();
//! if !available(Server::Postgres, &url) {
//!     return; // already announced, once for the whole binary
//! }
//! ```

pub mod wait;

pub use wait::{PATIENCE, eventually, poll_until, wait_for, wait_until};

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// How long the probe waits for a server to accept a connection.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a missing server fails the tests that need it
/// (`OUTBOX_REQUIRE_ALL_BACKENDS=1`, as CI sets) instead of skipping them.
pub fn required() -> bool {
    std::env::var("OUTBOX_REQUIRE_ALL_BACKENDS")
        .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Writes one line to the process's stderr directly: the test harness
/// captures `eprintln!` of passing tests, and a skip must be seen.
pub fn loud(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Skips one test loudly, or fails it under `OUTBOX_REQUIRE_ALL_BACKENDS=1`.
/// For what the probe cannot see (a server that answers but refuses us).
pub fn skip(test: &str, why: &str) {
    let line = format!("!!! SKIPPING {test}: {why}");
    assert!(!required(), "{line} (OUTBOX_REQUIRE_ALL_BACKENDS=1)");
    loud(&line);
}

/// A server some tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL, at `OUTBOX_TEST_POSTGRES_URL`.
    Postgres,
    /// MySQL or MariaDB, at `OUTBOX_TEST_MYSQL_URL`.
    MySql,
    /// NATS with JetStream, at `OUTBOX_TEST_NATS_URL`.
    Nats,
    /// RabbitMQ, at `OUTBOX_TEST_RABBITMQ_URL`.
    RabbitMq,
}

impl Server {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL",
            Self::MySql => "MySQL/MariaDB",
            Self::Nats => "NATS",
            Self::RabbitMq => "RabbitMQ",
        }
    }

    /// The variable that overrides its URL.
    pub fn env_var(self) -> &'static str {
        match self {
            Self::Postgres => "OUTBOX_TEST_POSTGRES_URL",
            Self::MySql => "OUTBOX_TEST_MYSQL_URL",
            Self::Nats => "OUTBOX_TEST_NATS_URL",
            Self::RabbitMq => "OUTBOX_TEST_RABBITMQ_URL",
        }
    }

    /// The URL the tests use: the variable's value, else the local server.
    pub fn url(self) -> String {
        std::env::var(self.env_var()).unwrap_or_else(|_| self.default_url().to_owned())
    }

    fn default_url(self) -> &'static str {
        match self {
            Self::Postgres => "postgres://postgres@127.0.0.1:5432/test",
            Self::MySql => "mysql://root@127.0.0.1:3306/test",
            Self::Nats => "nats://127.0.0.1:4222",
            Self::RabbitMq => "amqp://guest:guest@127.0.0.1:5672/%2f",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Postgres => 5432,
            Self::MySql => 3306,
            Self::Nats => 4222,
            Self::RabbitMq => 5672,
        }
    }

    fn start_hint(self) -> &'static str {
        match self {
            Self::Postgres => "pg_ctlcluster <version> main start",
            Self::MySql => {
                "start-stop-daemon --start --background --exec /usr/sbin/mariadbd -- --user=mysql"
            }
            Self::Nats => "nats-server -js",
            Self::RabbitMq => "rabbitmq-server -detached",
        }
    }
}

/// Probes of this process, by URL: `None` when the server answered, else
/// why not.
static PROBES: Mutex<BTreeMap<String, Option<String>>> = Mutex::new(BTreeMap::new());

/// Whether `server` answers at `url`. Probed once per process and URL; the
/// first failure prints one loud line for the whole test binary. Under
/// `OUTBOX_REQUIRE_ALL_BACKENDS=1` an unreachable server panics (the
/// calling test fails) instead of returning `false`.
pub fn available(server: Server, url: &str) -> bool {
    // Held across the probe, so concurrent tests wait for the one probe
    // (at most PROBE_TIMEOUT) instead of probing in parallel.
    let mut probes = PROBES.lock().unwrap_or_else(PoisonError::into_inner);
    let failure = match probes.get(url) {
        Some(known) => known.clone(),
        None => {
            let failure = probe(server, url).err();
            if let Some(why) = &failure {
                loud(&skip_line(server, url, why));
            }
            probes.insert(url.to_owned(), failure.clone());
            failure
        }
    };
    drop(probes);
    match failure {
        None => true,
        Some(why) => {
            assert!(
                !required(),
                "{} (OUTBOX_REQUIRE_ALL_BACKENDS=1)",
                skip_line(server, url, &why)
            );
            false
        }
    }
}

fn skip_line(server: Server, url: &str, why: &str) -> String {
    format!(
        "!!! SKIPPING every {} test of this binary: {} ({why}). Start it ({}) or point {} at one.",
        server.name(),
        outbox_core::redact_url(url),
        server.start_hint(),
        server.env_var(),
    )
}

/// One TCP connect to the URL's host and port, within `PROBE_TIMEOUT`.
fn probe(server: Server, url: &str) -> Result<(), String> {
    let Some(authority) = host_and_port(url, server.default_port()) else {
        // A socket path or a form we do not parse: let the connection itself
        // report what is wrong.
        return Ok(());
    };
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve {authority}: {err}"))?
        .collect();
    let mut last = format!("{authority} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(err) => {
                last = format!(
                    "nothing answers at {addr} within {} s: {err}",
                    PROBE_TIMEOUT.as_secs()
                );
            }
        }
    }
    Err(last)
}

/// `host:port` of `scheme://[user[:password]@]host[:port][/...][?...]`, the
/// port defaulted; `None` without a host.
fn host_and_port(url: &str, default_port: u16) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() {
        return None;
    }
    let has_port = match host_port.rsplit_once(':') {
        // An IPv6 literal's colons are inside its brackets.
        Some((host, port)) => !port.contains(']') && !host.is_empty(),
        None => false,
    };
    Some(if has_port {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_of_each_url_form() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/test",
                Some("127.0.0.1:5432"),
            ),
            (
                "mysql://root:secret@db.local/test?ssl=0",
                Some("db.local:3306"),
            ),
            ("nats://127.0.0.1:4222", Some("127.0.0.1:4222")),
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                Some("127.0.0.1:5672"),
            ),
            ("postgres://[::1]:6432/x", Some("[::1]:6432")),
            ("postgres://[::1]/x", Some("[::1]:3306")),
            ("postgres:///test?host=/run/postgresql", None),
        ];
        for (url, want) in cases {
            assert_eq!(host_and_port(url, 3306).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn a_closed_port_is_reported_with_its_address_and_the_password_hidden() {
        // Port 1 on loopback: nothing listens there, the connect is refused
        // at once.
        let url = "postgres://user:hunter2@127.0.0.1:1/test";
        let why = probe(Server::Postgres, url).expect_err("port 1 refuses");
        assert!(why.contains("127.0.0.1:1"), "{why}");
        let line = skip_line(Server::Postgres, url, &why);
        assert!(!line.contains("hunter2"), "{line}");
        assert!(line.contains("OUTBOX_TEST_POSTGRES_URL"), "{line}");
    }
}
