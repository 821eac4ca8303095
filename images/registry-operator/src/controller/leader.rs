//! Leader election on a coordination.k8s.io Lease, so that two replicas never scan twice.

use tokio::sync::watch;

use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};

pub struct Lease {
    state: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

/// Waits until this replica holds the lease; `None` if shutdown came first.
pub async fn acquire(
    client: kube::Client,
    namespace: &str,
    name: &str,
    identity: &str,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<Lease>> {
    let manager = LeaseManagerBuilder::new(client, name)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(15)
        .with_grace(5)
        .with_field_manager(super::FIELD_MANAGER)
        .build()
        .await?;
    let (mut state, task) = manager.watch().await;
    tracing::info!(lease = %format!("{namespace}/{name}"), identity, "waiting for the leader lease");
    loop {
        if *state.borrow_and_update() {
            tracing::info!(identity, "acquired the leader lease");
            return Ok(Some(Lease { state, task }));
        }
        tokio::select! {
            changed = state.changed() => changed?,
            _ = shutdown.changed() => {
                drop(state);
                let _ = task.await;
                return Ok(None);
            }
        }
    }
}

impl Lease {
    /// Resolves when the lease is lost (another replica took over, or the API is unreachable
    /// for longer than the lease lasts).
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut state = self.state.clone();
        async move {
            let _ = state.wait_for(|held| !*held).await;
        }
    }

    /// Hands the lease back so that a standby replica takes over at once.
    pub async fn release(self) {
        drop(self.state);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the leader lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the leader lease"),
            Err(e) => tracing::warn!(error = %e, "lease task"),
        }
    }
}
