//! CPU work on large bodies (parsing a 4 MiB manifest or tag page, hashing it) off the async
//! runtime's workers: a worker busy for a second stalls every task it runs — other scans,
//! Lease renewals, `/healthz`. Work on a body above [`OFFLOAD_BYTES`] runs on tokio's blocking
//! pool, at most one job per core at once, shared fairly by tenants (see [`super::share`]), so
//! that no tenant fills the blocking pool or keeps the others' parses waiting.

use std::sync::LazyLock;

use super::share::FairShare;

/// Below this a body is parsed where it arrived: a few milliseconds at most, even unoptimised.
pub(crate) const OFFLOAD_BYTES: usize = 64 << 10;

static POOL: LazyLock<FairShare> = LazyLock::new(|| FairShare::new(pool_size()));

/// Two at least, so that one tenant's job (its share is half) never stops every other's.
fn pool_size() -> u64 {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    cores.max(2) as u64
}

/// Runs `work` (on a body of `bytes`) inline when small, else on the blocking pool within
/// `tenant`'s share. A panic in `work` resumes here, as if it had run inline.
pub(crate) async fn offload<T, F>(tenant: &str, bytes: usize, work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if bytes < OFFLOAD_BYTES {
        return work();
    }
    let permit = POOL.acquire(tenant, 1).await;
    // The permit travels with the job: a caller that gives up does not free the thread.
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    });
    match job.await {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels a blocking job; nothing waits for it then.
            Err(_) => std::future::pending().await,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn large_work_leaves_the_worker_and_small_work_stays() {
        let here = std::thread::current().id();
        let small = offload("t", OFFLOAD_BYTES - 1, || std::thread::current().id()).await;
        assert_eq!(small, here);
        let large = offload("t", OFFLOAD_BYTES, || std::thread::current().id()).await;
        assert_ne!(large, here);
    }

    #[tokio::test]
    async fn a_panic_in_the_work_resumes_in_the_caller_and_frees_the_pool() {
        let caught = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(offload(
            "t",
            OFFLOAD_BYTES,
            || -> u8 { panic!("hostile input") },
        )))
        .await;
        assert!(caught.is_err());
        assert_eq!(offload("t", OFFLOAD_BYTES, || 7).await, 7);
        // Other tests use the pool too: wait until it is all free again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while POOL.available() < pool_size() {
            assert!(std::time::Instant::now() < deadline, "a permit was lost");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
