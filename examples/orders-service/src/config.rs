//! The service's configuration, read from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use crate::backend::Backend;

/// Default `LISTEN_ADDR`.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:3000";
/// Default `DATABASE_URL`: a SQLite file in the current directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://orders.db?mode=rwc";
/// Default `NATS_STREAM`.
pub const DEFAULT_NATS_STREAM: &str = "ORDERS";
/// Default `NATS_SUBJECT_PREFIX`: messages go to `orders.<partition>`.
pub const DEFAULT_NATS_SUBJECT_PREFIX: &str = "orders";
/// Default `OUTBOX_PARTITIONS`.
pub const DEFAULT_PARTITIONS: u32 = 4;
/// Default `OUTBOX_LEASE_MS`: how long a crashed instance keeps its partitions.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// Everything the service reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `LISTEN_ADDR`: where the HTTP server listens (port 0 picks a free one).
    pub listen_addr: SocketAddr,
    /// `DATABASE_URL`: `sqlite://...`, `postgres://...` or `mysql://...`.
    pub database_url: String,
    /// The backend, from the scheme of `database_url`.
    pub backend: Backend,
    /// Relay to NATS JetStream when `NATS_URL` is set; log messages otherwise.
    pub nats: Option<NatsConfig>,
    /// `OUTBOX_PARTITIONS`: partitions of the `orders` queue (1 to 4096).
    pub partitions: u32,
    /// `OUTBOX_LEASE_MS`: the partition lease (at least 100 ms).
    pub lease: Duration,
}

/// Where and how messages are relayed to NATS JetStream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// `NATS_URL`, for example `nats://127.0.0.1:4222`.
    pub url: String,
    /// `NATS_STREAM`: the stream created (or updated) at startup.
    pub stream: String,
    /// `NATS_SUBJECT_PREFIX`: the stream takes `<prefix>.>`, each message
    /// goes to `<prefix>.<partition>`.
    pub subject_prefix: String,
}

/// A variable that is set but cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What to change.
    pub reason: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] for a variable that is set to something unusable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the configuration through `lookup` (a variable's value, `None`
    /// when unset).
    ///
    /// # Errors
    /// [`ConfigError`] for a variable that is set to something unusable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str, default: &str| lookup(name).unwrap_or_else(|| default.to_owned());

        let listen = get("LISTEN_ADDR", DEFAULT_LISTEN_ADDR);
        let listen_addr = listen.parse().map_err(|e| ConfigError {
            name: "LISTEN_ADDR",
            value: listen.clone(),
            reason: format!("{e}: use host:port, for example {DEFAULT_LISTEN_ADDR}"),
        })?;

        let database_url = get("DATABASE_URL", DEFAULT_DATABASE_URL);
        let backend = Backend::from_url(&database_url).ok_or_else(|| ConfigError {
            name: "DATABASE_URL",
            value: outbox_core::redact_url(&database_url),
            reason: "use a sqlite://, postgres:// or mysql:// URL".into(),
        })?;

        let nats = lookup("NATS_URL").map(|url| NatsConfig {
            url,
            stream: get("NATS_STREAM", DEFAULT_NATS_STREAM),
            subject_prefix: get("NATS_SUBJECT_PREFIX", DEFAULT_NATS_SUBJECT_PREFIX),
        });
        if let Some(nats) = &nats {
            check_token("NATS_STREAM", &nats.stream, &['.', '*', '>'])?;
            check_token("NATS_SUBJECT_PREFIX", &nats.subject_prefix, &['*', '>'])?;
        }

        let partitions = number(&lookup, "OUTBOX_PARTITIONS", DEFAULT_PARTITIONS.into())?;
        let partitions = u32::try_from(partitions)
            .ok()
            .filter(|p| (1..=outbox_core::MAX_PARTITIONS).contains(p))
            .ok_or_else(|| ConfigError {
                name: "OUTBOX_PARTITIONS",
                value: partitions.to_string(),
                reason: format!("use 1 to {}", outbox_core::MAX_PARTITIONS),
            })?;

        let default_lease = u64::try_from(DEFAULT_LEASE.as_millis()).unwrap_or(60_000);
        let lease_ms = number(&lookup, "OUTBOX_LEASE_MS", default_lease)?;
        if !(100..=86_400_000).contains(&lease_ms) {
            return Err(ConfigError {
                name: "OUTBOX_LEASE_MS",
                value: lease_ms.to_string(),
                reason: "use 100 ms to 24 h (86400000)".into(),
            });
        }

        Ok(Self {
            listen_addr,
            database_url,
            backend,
            nats,
            partitions,
            lease: Duration::from_millis(lease_ms),
        })
    }
}

fn number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match lookup(name) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|_| ConfigError {
            name,
            value,
            reason: "use a whole number".into(),
        }),
    }
}

fn check_token(name: &'static str, value: &str, forbidden: &[char]) -> Result<(), ConfigError> {
    let bad = value.is_empty()
        || value.starts_with('.')
        || value.ends_with('.')
        || value
            .chars()
            .any(|c| c.is_whitespace() || forbidden.contains(&c));
    if bad {
        return Err(ConfigError {
            name,
            value: value.to_owned(),
            reason: format!(
                "use a non-empty NATS name without whitespace, leading or trailing dots, or any of {forbidden:?}"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_run_on_sqlite_without_nats() {
        let config = config(&[]).unwrap();
        assert_eq!(config.listen_addr.to_string(), DEFAULT_LISTEN_ADDR);
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.backend, Backend::Sqlite);
        assert_eq!(config.nats, None);
        assert_eq!(config.partitions, 4);
        assert_eq!(config.lease, DEFAULT_LEASE);
    }

    #[test]
    fn nats_url_turns_the_relay_on_with_default_names() {
        let config = config(&[("NATS_URL", "nats://127.0.0.1:4222")]).unwrap();
        let nats = config.nats.unwrap();
        assert_eq!(nats.stream, "ORDERS");
        assert_eq!(nats.subject_prefix, "orders");
    }

    #[test]
    fn backend_follows_the_url_scheme() {
        let pg = config(&[("DATABASE_URL", "postgres://u@h/db")]).unwrap();
        assert_eq!(pg.backend, Backend::Postgres);
        let my = config(&[("DATABASE_URL", "mysql://u@h/db")]).unwrap();
        assert_eq!(my.backend, Backend::MySql);
        let err = config(&[("DATABASE_URL", "redis://h")]).unwrap_err();
        assert_eq!(err.name, "DATABASE_URL");
        let err = config(&[("DATABASE_URL", "redis://u:secret@h/0?password=secret")]).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("LISTEN_ADDR", "localhost"),
            ("OUTBOX_PARTITIONS", "0"),
            ("OUTBOX_PARTITIONS", "5000"),
            ("OUTBOX_PARTITIONS", "four"),
            ("OUTBOX_LEASE_MS", "10"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name, "{value}");
        }
        let err = config(&[
            ("NATS_URL", "nats://h"),
            ("NATS_SUBJECT_PREFIX", "orders.>"),
        ])
        .unwrap_err();
        assert_eq!(err.name, "NATS_SUBJECT_PREFIX");
        let err = config(&[("NATS_URL", "nats://h"), ("NATS_STREAM", "a.b")]).unwrap_err();
        assert_eq!(err.name, "NATS_STREAM");
    }
}
