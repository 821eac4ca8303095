//! Just enough HTTP/1.1 on a raw socket to lie in ways a real server library refuses to:
//! a `Content-Length` that is not a number or not the length sent, a body that never comes or
//! comes a byte at a time, headers of any size. Connections are kept alive as clients expect.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Request heads larger than this end the connection (a 1 MiB bearer token fits).
const MAX_HEAD: usize = 4 << 20;

/// The parts of a request the hostile modes look at.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The bearer token sent, if any.
    pub fn bearer(&self) -> Option<&str> {
        let (scheme, token) = self.header("authorization")?.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

/// How a response's body is (not) delivered.
#[derive(Clone, Debug)]
pub enum Body {
    /// These bytes, with their true `Content-Length` unless the headers name one already.
    Full(Vec<u8>),
    /// Headers as given (a lying `Content-Length` among them), these bytes, then silence until
    /// the client hangs up.
    Stall(Vec<u8>),
    /// `declared` bytes announced, then one byte every `every`, for as long as the client reads.
    Trickle { declared: u64, every: Duration },
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Full(Vec::new()),
        }
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply::new(status)
            .header("Content-Type", "application/json")
            .body(body)
    }

    /// A registry-style error body.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
        Reply::json(status, body.to_string())
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Full(body.into());
        self
    }

    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    fn has(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }
}

/// Reads one request head (and drops any body it announces). `None` when the client is gone
/// or sent something that is not HTTP.
pub async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Option<Request> {
    let end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 64 << 10];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let request = Request {
        method,
        target,
        headers,
    };
    // Request bodies (none of the scan's requests has one) are read and dropped.
    let mut left: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while left > 0 {
        if buf.is_empty() {
            let mut chunk = [0u8; 64 << 10];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let take = left.min(buf.len());
        buf.drain(..take);
        left -= take;
    }
    Some(request)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// Writes `reply`; `Ok(false)` when the connection must not be reused (a stalled or lying body).
pub async fn write_reply<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    reply: &Reply,
    head_only: bool,
) -> std::io::Result<bool> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match &reply.body {
        Body::Full(b) if !reply.has("content-length") => {
            head.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        Body::Trickle { declared, .. } if !reply.has("content-length") => {
            head.push_str(&format!("Content-Length: {declared}\r\n"));
        }
        _ => {}
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if head_only {
        stream.flush().await?;
        return Ok(!matches!(reply.body, Body::Stall(_)));
    }
    match &reply.body {
        Body::Full(b) => {
            stream.write_all(b).await?;
            stream.flush().await?;
            Ok(!lies(reply))
        }
        Body::Stall(b) => {
            stream.write_all(b).await?;
            stream.flush().await?;
            // Silence until the client hangs up (what it sends meanwhile is dropped).
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            Ok(false)
        }
        Body::Trickle { declared, every } => {
            for _ in 0..*declared {
                tokio::time::sleep(*every).await;
                stream.write_all(b" ").await?;
                stream.flush().await?;
            }
            Ok(true)
        }
    }
}

/// Whether the reply names a `Content-Length` other than its body's.
fn lies(reply: &Reply) -> bool {
    let Body::Full(b) = &reply.body else {
        return false;
    };
    reply
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .is_some_and(|(_, v)| v.trim() != b.len().to_string())
}
