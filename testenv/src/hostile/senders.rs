//! Hostile webhook senders: clients that open many connections to the operator's webhook
//! port and hold them without ever proving they know the secret, either by trickling the
//! request head or body a byte at a time, or by sending a large body before the (missing)
//! proof can be checked. Each connection counts as held until the server closes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderAttack {
    /// The request line, then one byte of headers every [`TRICKLE_EVERY`], never finished.
    TrickleHeaders,
    /// Complete headers announcing a 1 MiB body, no secret, then a byte every
    /// [`TRICKLE_EVERY`].
    TrickleBody,
    /// Complete headers, no secret, and all but the last byte of a `bytes` body at full speed;
    /// then silence. What the server buffers before it can refuse is what it holds.
    UnauthenticatedBodies { bytes: usize },
}

impl SenderAttack {
    pub fn name(self) -> String {
        match self {
            SenderAttack::TrickleHeaders => "trickled webhook headers".into(),
            SenderAttack::TrickleBody => "trickled webhook bodies".into(),
            SenderAttack::UnauthenticatedBodies { bytes } => {
                format!("unauthenticated webhook bodies of {bytes} bytes")
            }
        }
    }
}

pub const TRICKLE_EVERY: Duration = Duration::from_millis(500);

#[derive(Default, Debug)]
pub struct SenderCounters {
    /// Connections the server accepted.
    pub opened: AtomicUsize,
    /// Connections the server has closed (or refused to open).
    pub closed: AtomicUsize,
    /// Request bytes written.
    pub sent: AtomicU64,
}

impl SenderCounters {
    /// Connections open right now.
    pub fn held(&self) -> usize {
        self.opened
            .load(Ordering::Relaxed)
            .saturating_sub(self.closed.load(Ordering::Relaxed))
    }
}

/// Running senders; every connection is dropped with this.
pub struct HostileSenders {
    pub counters: Arc<SenderCounters>,
    shutdown: watch::Sender<bool>,
}

impl Drop for HostileSenders {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl HostileSenders {
    /// Opens `connections` connections to `addr`, each posting to `path` the `attack` way.
    pub async fn start(
        addr: SocketAddr,
        path: &str,
        attack: SenderAttack,
        connections: usize,
    ) -> Self {
        let counters = Arc::new(SenderCounters::default());
        let (shutdown, rx) = watch::channel(false);
        for _ in 0..connections {
            let (counters, mut rx, path) = (counters.clone(), rx.clone(), path.to_string());
            let Ok(stream) = TcpStream::connect(addr).await else {
                counters.opened.fetch_add(1, Ordering::Relaxed);
                counters.closed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            counters.opened.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                tokio::select! {
                    _ = hold(stream, &path, attack, &counters) => {}
                    _ = rx.wait_for(|stop| *stop) => {}
                }
                counters.closed.fetch_add(1, Ordering::Relaxed);
            });
        }
        Self { counters, shutdown }
    }
}

/// Sends the attack on one connection; returns when the server closes it.
async fn hold(stream: TcpStream, path: &str, attack: SenderAttack, counters: &SenderCounters) {
    let (mut read, mut write) = stream.into_split();
    let send = async {
        let head = |len: usize| {
            format!(
                "POST {path} HTTP/1.1\r\nHost: operator\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
            )
        };
        match attack {
            SenderAttack::TrickleHeaders => {
                let start = format!("POST {path} HTTP/1.1\r\nHost: operator\r\nX-Slow: ");
                write.write_all(start.as_bytes()).await?;
                counters
                    .sent
                    .fetch_add(start.len() as u64, Ordering::Relaxed);
                loop {
                    tokio::time::sleep(TRICKLE_EVERY).await;
                    write.write_all(b"a").await?;
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            SenderAttack::TrickleBody => {
                let h = head(1 << 20);
                write.write_all(h.as_bytes()).await?;
                counters.sent.fetch_add(h.len() as u64, Ordering::Relaxed);
                loop {
                    tokio::time::sleep(TRICKLE_EVERY).await;
                    write.write_all(b" ").await?;
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            SenderAttack::UnauthenticatedBodies { bytes } => {
                let h = head(bytes);
                write.write_all(h.as_bytes()).await?;
                let chunk = vec![b' '; 64 << 10];
                let mut left = bytes.saturating_sub(1);
                while left > 0 {
                    let n = left.min(chunk.len());
                    write.write_all(&chunk[..n]).await?;
                    counters.sent.fetch_add(n as u64, Ordering::Relaxed);
                    left -= n;
                }
                std::future::pending::<()>().await;
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    };
    // Whatever the server answers is read and dropped; the end of its side ends the hold.
    let drain = async {
        let mut sink = [0u8; 4096];
        while read.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    };
    tokio::select! {
        _ = send => {}
        _ = drain => {}
    }
}
