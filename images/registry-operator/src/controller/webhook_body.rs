//! Reading a webhook request's body: only after the sender is known (or, for senders whose
//! proof is an HMAC of the body, a small share of a small budget), capped in bytes and in
//! time, so that neither a slow nor an unauthenticated sender holds the receiver's memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use futures::StreamExt;

/// Why a body was not read to its end.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    /// It did not arrive within the body read timeout.
    Timeout,
    /// The connection broke or the framing was invalid.
    Broken,
}

/// Reads `body` whole: at most `cap` bytes, within `timeout`.
pub async fn read(body: Body, cap: usize, timeout: Duration) -> Result<Vec<u8>, BodyError> {
    let collect = async {
        let mut stream = body.into_data_stream();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| BodyError::Broken)?;
            if chunk.len() > cap.saturating_sub(out.len()) {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, collect)
        .await
        .unwrap_or(Err(BodyError::Timeout))
}

/// Bytes that requests not yet authenticated may hold at once, across every connection.
pub struct Budget {
    left: AtomicUsize,
}

/// Bytes taken from a [`Budget`], given back on drop.
pub struct Reserved<'a> {
    budget: &'a Budget,
    bytes: usize,
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        Self {
            left: AtomicUsize::new(bytes),
        }
    }

    /// `bytes` of the budget, or `None` when fewer are left: the request is refused, not
    /// queued, so that waiting costs nothing either.
    pub fn reserve(&self, bytes: usize) -> Option<Reserved<'_>> {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(bytes)
            })
            .ok()?;
        Some(Reserved {
            budget: self,
            bytes,
        })
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = Budget::new(100);
        let a = budget.reserve(60).unwrap();
        assert!(budget.reserve(50).is_none(), "over what is left");
        let b = budget.reserve(40).unwrap();
        assert!(budget.reserve(1).is_none());
        drop(a);
        assert!(budget.reserve(60).is_some());
        drop(b);
        assert!(budget.reserve(100).is_some());
        assert!(budget.reserve(101).is_none());
    }

    #[tokio::test]
    async fn bodies_are_capped_in_bytes_and_time() {
        assert_eq!(
            read(Body::from("0123456789"), 10, Duration::from_secs(5)).await,
            Ok(b"0123456789".to_vec())
        );
        assert_eq!(
            read(Body::from("0123456789"), 9, Duration::from_secs(5)).await,
            Err(BodyError::TooLarge)
        );
        let never =
            Body::from_stream(futures::stream::pending::<Result<Vec<u8>, std::io::Error>>());
        assert_eq!(
            read(never, 10, Duration::from_millis(10)).await,
            Err(BodyError::Timeout)
        );
    }
}
