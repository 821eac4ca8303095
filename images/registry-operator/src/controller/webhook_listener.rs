//! The webhook port's accept loop. `axum::serve` has neither a header read timeout nor a
//! connection limit, and this port faces senders from anywhere: each connection needs a
//! permit (none left: it is closed at once, without a byte read), and hyper closes one whose
//! request headers do not arrive within the read timeout (an idle keep-alive one as well).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

/// Request headers (with the request line) larger than this are refused by hyper (431).
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// hyper's read buffer per connection.
const READ_BUFFER_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// For the request headers here; the receiver applies it to the body.
    pub read_timeout: Duration,
}

pub async fn spawn(
    addr: SocketAddr,
    app: Router,
    limits: Limits,
    refused: impl Fn() + Send + Sync + 'static,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    tracing::info!(%addr, max_connections = limits.max_connections, "serving webhooks");
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .max_buf_size(READ_BUFFER_BYTES)
        .max_header_size(MAX_HEADER_BYTES);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: let some connections end first.
                    tracing::warn!(error = %e, "accepting a webhook connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                refused();
                drop(stream);
                continue;
            };
            let conn = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "webhook connection ended");
                }
                drop(permit);
            });
        }
    });
    Ok(())
}
