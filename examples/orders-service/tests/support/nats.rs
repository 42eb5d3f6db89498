//! NATS for the tests: the shared server (`OUTBOX_TEST_NATS_URL`), a private
//! `nats-server` a test may kill and restart, and reading a stream back.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outbox_relay::async_nats;
use outbox_relay::async_nats::jetstream::{self, Context};
use outbox_test_support::{Server, available};

/// Where the private servers' binary is.
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// The shared server's URL.
pub fn shared_url() -> String {
    Server::Nats.url()
}

/// A JetStream context on `url`, or `None` if no server with JetStream
/// answers within 5 s.
pub async fn try_connect(url: &str) -> Result<Context, String> {
    let client = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(url))
        .await
        .map_err(|_| format!("no NATS server at {url} within 5 s"))?
        .map_err(|e| format!("cannot connect to NATS at {url}: {e}"))?;
    // Ask for the account info raw: async-nats 0.51 cannot parse what
    // nats-server 2.9 answers for an account with no streams yet.
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request("$JS.API.INFO", Vec::new().into()),
    )
    .await
    .map_err(|_| format!("JetStream at {url} did not answer within 5 s"))?
    .map_err(|e| format!("no JetStream at {url} (start nats-server with -js): {e}"))?;
    let info: serde_json::Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| format!("JetStream at {url} answered no JSON: {e}"))?;
    if let Some(error) = info.get("error") {
        return Err(format!("JetStream at {url} is not ready: {error}"));
    }
    let context = jetstream::new(client);
    Ok(context)
}

/// The shared server, or `None` after a loud skip.
pub async fn shared_or_skip(test: &str) -> Option<Context> {
    let url = shared_url();
    if !available(Server::Nats, &url) {
        return None;
    }
    match try_connect(&url).await {
        Ok(context) => Some(context),
        Err(why) => {
            super::skip(test, &why);
            None
        }
    }
}

/// A stream name and subject prefix no other test uses.
#[derive(Debug, Clone)]
pub struct StreamNames {
    /// `ORDERS_T<random>`.
    pub stream: String,
    /// `orders_t<random>`: the stream takes `<prefix>.>`.
    pub prefix: String,
}

impl StreamNames {
    /// Fresh names.
    pub fn random() -> Self {
        let suffix = super::suffix();
        Self {
            stream: format!("ORDERS_T{}", suffix.to_uppercase()),
            prefix: format!("orders_t{suffix}"),
        }
    }
}

/// How many messages `stream` holds (0 if it does not exist yet, or the
/// server does not answer).
pub async fn count(context: &Context, stream: &str) -> u64 {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_secs(2), context.get_stream(stream)).await
    else {
        return 0;
    };
    match tokio::time::timeout(Duration::from_secs(2), stream.info()).await {
        Ok(Ok(info)) => info.state.messages,
        _ => 0,
    }
}

/// One message of the stream.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    /// Its stream sequence.
    pub stream_seq: u64,
    /// Its subject.
    pub subject: String,
    /// `Nats-Msg-Id`.
    pub msg_id: Option<String>,
    /// `Outbox-Partition`.
    pub partition: Option<u32>,
    /// `Outbox-Seq`.
    pub seq: Option<i64>,
    /// `content-type`.
    pub content_type: Option<String>,
    /// `traceparent`: the W3C trace context of the request that placed it.
    pub traceparent: Option<String>,
    /// The payload as JSON.
    pub payload: serde_json::Value,
}

/// Every message of `stream`, in stream order.
pub async fn read_all(context: &Context, name: &str) -> Vec<StreamMessage> {
    let mut stream = context.get_stream(name).await.expect("get stream");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut messages = Vec::new();
    if state.messages == 0 {
        return messages;
    }
    for stream_seq in state.first_sequence..=state.last_sequence {
        let message = stream
            .get_raw_message(stream_seq)
            .await
            .unwrap_or_else(|e| panic!("message {stream_seq} of {name}: {e}"));
        let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
        messages.push(StreamMessage {
            stream_seq,
            subject: message.subject.to_string(),
            msg_id: header("Nats-Msg-Id"),
            partition: header("Outbox-Partition").and_then(|v| v.parse().ok()),
            seq: header("Outbox-Seq").and_then(|v| v.parse().ok()),
            content_type: header("content-type"),
            traceparent: header("traceparent"),
            payload: serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
                panic!(
                    "payload of message {stream_seq} is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&message.payload)
                )
            }),
        });
    }
    messages
}

/// Deletes `stream`, reporting (not failing on) an error.
pub async fn delete_stream(context: &Context, stream: &str) {
    if let Err(err) = context.delete_stream(stream).await {
        eprintln!("could not delete stream {stream}: {err}");
    }
}

/// A `nats-server` of the test's own, with JetStream, on a free port and a
/// store directory that outlives restarts.
pub struct PrivateServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    store: PathBuf,
}

impl PrivateServer {
    /// Starts a server, or `None` after a loud skip when the binary is missing.
    pub async fn start_or_skip(test: &str) -> Option<PrivateServer> {
        if !std::path::Path::new(NATS_SERVER).exists() {
            super::skip(test, &format!("{NATS_SERVER} is not installed"));
            return None;
        }
        let store = std::env::temp_dir().join(format!("orders-service-nats-{}", super::suffix()));
        std::fs::create_dir_all(&store).expect("store dir");
        let mut server = PrivateServer {
            child: None,
            port: super::free_port(),
            store,
        };
        server.restart().await;
        Some(server)
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's log file (kept across restarts, in the store directory).
    pub fn log_file(&self) -> PathBuf {
        self.store.join("nats-server.log")
    }

    /// SIGKILL: the server dies without a word to its clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL nats-server");
            child.wait().expect("reap nats-server");
        }
    }

    /// Starts the server (again) on the same port and store, and waits (at
    /// most 30 s) until JetStream answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new(NATS_SERVER)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let url = self.url();
        let mut last = String::new();
        for _ in 0..300 {
            match try_connect(&url).await {
                Ok(_) => return,
                Err(why) => last = why,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        panic!("private nats-server on {url} did not come up: {last}\n--- its log ---\n{log}");
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
