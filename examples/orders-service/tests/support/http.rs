//! A minimal HTTP/1.1 client over a raw TCP connection: one request per
//! connection, `Connection: close`. It tells a request that never left
//! (connect failed: safe to send again) from one whose answer was lost (it
//! may have been handled).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `content-type` header, if any.
    pub content_type: Option<String>,
    /// The body, as text.
    pub body: String,
}

impl Response {
    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum HttpError {
    /// No connection: the request was not sent.
    Connect(std::io::Error),
    /// Connected, but no complete answer: the request may have been handled.
    Lost(String),
}

/// Sends one request and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Result<Response, HttpError> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| HttpError::Connect(std::io::ErrorKind::TimedOut.into()))?
        .map_err(HttpError::Connect)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((content_type, bytes)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    } else {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    let exchange = async {
        stream.write_all(head.as_bytes()).await?;
        if let Some((_, bytes)) = body {
            stream.write_all(bytes).await?;
        }
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| HttpError::Lost("no answer within 30 s".into()))?
        .map_err(|e| HttpError::Lost(e.to_string()))?;
    parse(&raw).ok_or_else(|| {
        HttpError::Lost(format!(
            "incomplete response: {:?}",
            String::from_utf8_lossy(&raw)
        ))
    })
}

fn parse(raw: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut content_type = None;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value.trim().to_owned()),
            "content-length" => length = value.trim().parse::<usize>().ok(),
            _ => {}
        }
    }
    if length.is_some_and(|n| n != body.len()) {
        return None;
    }
    Some(Response {
        status,
        content_type,
        body: body.to_owned(),
    })
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e:?}"))
}

/// `POST path` with a JSON body.
pub async fn post_json(addr: SocketAddr, path: &str, body: &str) -> Response {
    request(
        addr,
        "POST",
        path,
        Some(("application/json", body.as_bytes())),
    )
    .await
    .unwrap_or_else(|e| panic!("POST {path}: {e:?}"))
}
