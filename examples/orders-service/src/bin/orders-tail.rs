//! Prints what the orders stream holds: one line per message, with the
//! headers the relay set and the payload.
//!
//! ```text
//! NATS_URL=nats://127.0.0.1:4222 cargo run -p orders-service --bin orders-tail
//! ```
//!
//! Reads `NATS_URL` (default `nats://127.0.0.1:4222`) and `NATS_STREAM`
//! (default `ORDERS`), prints the stream's messages in stream order and exits.

use std::process::ExitCode;

use orders_service::config::DEFAULT_NATS_STREAM;
use outbox_relay::async_nats;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The headers printed for each message, in this order.
const HEADERS: [&str; 5] = [
    "Nats-Msg-Id",
    "Outbox-Partition",
    "Outbox-Seq",
    "Outbox-Payload-Type",
    "traceparent",
];

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "orders-tail: {}",
                orders_service::error::chain(err.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let name = std::env::var("NATS_STREAM").unwrap_or_else(|_| DEFAULT_NATS_STREAM.into());
    let client = async_nats::connect(url.as_str()).await?;
    let context = async_nats::jetstream::new(client);
    let mut stream = context.get_stream(name.as_str()).await?;
    let state = stream.info().await?.state.clone();
    println!(
        "stream {name}: {} messages (seq {}..={})",
        state.messages, state.first_sequence, state.last_sequence
    );
    if state.messages == 0 {
        return Ok(());
    }
    for seq in state.first_sequence..=state.last_sequence {
        let message = match stream.get_raw_message(seq).await {
            Ok(message) => message,
            // A deleted message leaves a hole in the sequence.
            Err(err) => {
                println!("#{seq} <{err}>");
                continue;
            }
        };
        let headers: Vec<String> = HEADERS
            .iter()
            .filter_map(|name| {
                let value = message.headers.get(*name)?;
                Some(format!("{name}={}", value.as_str()))
            })
            .collect();
        println!(
            "#{seq} {} {}\n    {}",
            message.subject,
            headers.join(" "),
            String::from_utf8_lossy(&message.payload)
        );
    }
    Ok(())
}
