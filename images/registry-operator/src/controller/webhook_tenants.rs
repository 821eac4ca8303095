//! Tenants' own webhook secrets: the `token` of the Secret a Registry names in
//! `spec.webhook.secretRef`, read with the operator's Secret access and kept for a few seconds,
//! so that a flood of requests to a tenant's path costs the API server one GET per Secret per
//! few seconds, whoever sends it. A rotated token is picked up when its entry expires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::context::Context;
use super::credentials;

/// How long a token (or its absence) is believed.
const TTL: Duration = Duration::from_secs(10);
/// The GETs of one request's Secrets, together; past it a token counts as absent until its
/// entry expires.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Tokens remembered at once across all namespaces.
const MAX_ENTRIES: usize = 4096;
/// Secrets of one namespace a request is checked against; objects naming more share them.
pub const MAX_PER_NAMESPACE: usize = 16;

type Token = Option<Arc<Vec<u8>>>;

#[derive(Default)]
pub struct TenantSecrets {
    /// `namespace/name` → when read, and the token. One lock around reads of the API server
    /// too: concurrent requests wait for one GET instead of each sending theirs.
    cache: tokio::sync::Mutex<HashMap<String, (Instant, Token)>>,
}

impl TenantSecrets {
    /// The tokens of the Secrets `names` in `namespace` that exist and hold one.
    pub async fn tokens(
        &self,
        ctx: &Context,
        namespace: &str,
        names: &[String],
    ) -> Vec<(String, Arc<Vec<u8>>)> {
        let mut cache = self.cache.lock().await;
        let deadline = tokio::time::Instant::now() + FETCH_TIMEOUT;
        let mut out = Vec::new();
        for name in names.iter().take(MAX_PER_NAMESPACE) {
            let key = format!("{namespace}/{name}");
            let now = Instant::now();
            let token = match cache.get(&key) {
                Some((at, token)) if now.duration_since(*at) < TTL => token.clone(),
                _ => {
                    // A slow API server must not hold every tenant's requests behind the lock.
                    let token = tokio::time::timeout_at(deadline, fetch(ctx, namespace, name))
                        .await
                        .unwrap_or(None);
                    remember(&mut cache, key, now, token.clone());
                    token
                }
            };
            if let Some(t) = token {
                out.push((name.clone(), t));
            }
        }
        out
    }
}

async fn fetch(ctx: &Context, namespace: &str, name: &str) -> Token {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match credentials::fetch(&api, name, "webhook").await {
        Ok(Ok(secret)) => credentials::webhook_token(&secret).map(Arc::new),
        Ok(Err(_)) => None,
        Err(e) => {
            tracing::info!(secret = %format!("{namespace}/{name}"), error = %e, "reading a tenant's webhook Secret failed");
            None
        }
    }
}

/// Inserts, making room by dropping expired entries, else the oldest one.
fn remember(
    cache: &mut HashMap<String, (Instant, Token)>,
    key: String,
    now: Instant,
    token: Token,
) {
    if cache.len() >= MAX_ENTRIES && !cache.contains_key(&key) {
        cache.retain(|_, (at, _)| now.duration_since(*at) < TTL);
        if cache.len() >= MAX_ENTRIES
            && let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            cache.remove(&oldest);
        }
    }
    cache.insert(key, (now, token));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_drops_one_entry_at_a_time() {
        let mut cache = HashMap::new();
        let start = Instant::now();
        for i in 0..MAX_ENTRIES {
            remember(
                &mut cache,
                format!("ns/{i}"),
                start + Duration::from_millis(i as u64),
                None,
            );
        }
        remember(
            &mut cache,
            "ns/new".into(),
            start + Duration::from_secs(5),
            None,
        );
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert!(cache.contains_key("ns/new"));
        assert!(!cache.contains_key("ns/0"), "the oldest went");
        assert!(cache.contains_key("ns/1"));
    }
}
