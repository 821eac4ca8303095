//! A byte-counting TCP proxy between one operator and the kube-apiserver. The operator talks
//! TLS through it (its kubeconfig points here; the certificate names 127.0.0.1, so TLS still
//! verifies), so the counts are bytes on the wire: HTTP headers and TLS framing included,
//! every request included (reads, watches, Lease renewals), nothing decrypted or guessed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
struct Counts {
    /// Operator → apiserver.
    up: AtomicU64,
    /// Apiserver → operator.
    down: AtomicU64,
}

/// Bytes sent each way so far.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Bytes {
    pub to_apiserver: u64,
    pub from_apiserver: u64,
}

impl std::ops::Sub for Bytes {
    type Output = Bytes;
    fn sub(self, o: Bytes) -> Bytes {
        Bytes {
            to_apiserver: self.to_apiserver - o.to_apiserver,
            from_apiserver: self.from_apiserver - o.from_apiserver,
        }
    }
}

pub struct Meter {
    pub addr: std::net::SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Meter {
    /// Forwards connections on a free loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the byte meter")?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let upstream = upstream.to_string();
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (upstream, counts) = (upstream.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    let c = counts.clone();
                    tokio::join!(
                        pump(ri, wo, move |n| c.up.fetch_add(n, Ordering::Relaxed)),
                        pump(ro, wi, move |n| counts.down.fetch_add(n, Ordering::Relaxed)),
                    );
                });
            }
        });
        Ok(Self { addr, counts, task })
    }

    pub fn bytes(&self) -> Bytes {
        Bytes {
            to_apiserver: self.counts.up.load(Ordering::Relaxed),
            from_apiserver: self.counts.down.load(Ordering::Relaxed),
        }
    }
}

/// Copies until either side closes, counting what was forwarded.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    count: impl Fn(u64) -> u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        count(n as u64);
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_both_directions() {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"pong!pong!").await.unwrap();
        });
        let meter = Meter::start(&upstream).await.unwrap();
        let mut c = tokio::net::TcpStream::connect(meter.addr).await.unwrap();
        c.write_all(b"ping!").await.unwrap();
        let mut back = [0u8; 10];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"pong!pong!");
        // The count follows the forwarding write: wait for it.
        for _ in 0..100 {
            let b = meter.bytes();
            if (b.to_apiserver, b.from_apiserver) == (5, 10) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("counted {:?}", meter.bytes());
    }
}
