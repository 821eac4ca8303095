//! What a registry sends cannot make the operator hold unbounded memory: the token cache stays
//! within a tenant's share however many scopes and big tokens a registry hands out, tokens
//! over 64 KiB are refused, and a manifest's 4 MB `mediaType` is not kept.

mod common;

use std::sync::Arc;

use common::bloat::{Bloat, HUGE_MEDIA_TYPE};
use registry_operator::registry::{
    ClientOptions, RegistryClient, RegistryState, ScanOptions, Target, scan,
};

fn token_bytes(state: &RegistryState) -> usize {
    state
        .cache_bytes()
        .iter()
        .find(|(cache, _)| *cache == "tokens")
        .map(|(_, b)| *b)
        .unwrap_or_default()
}

/// Scans `flood` `scans` times as `tenant`; every one fails (the registry never accepts a
/// token), and every one leaves the tokens it was granted in the cache.
async fn flood(state: &Arc<RegistryState>, bloat: &Bloat, tenant: &str, scans: usize) {
    let client = RegistryClient::new(ClientOptions::default())
        .unwrap()
        .with_state(state.clone());
    let target = Target::new(&bloat.url, "flood").unwrap();
    let options = ScanOptions {
        tenant: tenant.into(),
        ..ScanOptions::default()
    };
    for _ in 0..scans {
        assert!(scan(&client, &target, None, &options).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_scopes_with_big_tokens_stay_within_a_tenants_share() {
    // 60 KiB tokens (just under the cap) for a fresh scope every request.
    let bloat = Bloat::start(60 << 10).await;
    let state = Arc::new(RegistryState::default());
    flood(&state, &bloat, "attacker", 150).await;
    assert!(bloat.scopes() >= 150, "{} scopes", bloat.scopes());
    let held = token_bytes(&state);
    // 150 scans were granted ≥ 150 × 60 KiB ≈ 9 MiB of tokens; a tenant keeps at most 4 MiB.
    assert!(held > 0, "tokens are cached at all");
    assert!(
        held <= (4 << 20) + (64 << 10),
        "the token cache holds {held} bytes"
    );

    // A ~1 MiB token (under the old 1 MiB body limit) is refused outright: nothing is kept.
    let huge = Bloat::start(1_000_000).await;
    let state = Arc::new(RegistryState::default());
    flood(&state, &huge, "attacker", 5).await;
    assert_eq!(token_bytes(&state), 0, "a 1 MiB token was cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4mb_media_type_is_not_kept() {
    let bloat = Bloat::start(1).await;
    let report = common::scan_plain(&bloat.url, "bloat").await.unwrap();
    assert_eq!(report.images.len(), 1, "{:?}", report.failed_tags);
    let kept = serde_json::to_string(&report.images).unwrap();
    assert!(
        kept.len() < 4096,
        "the scan result holds {} bytes (mediaType of {HUGE_MEDIA_TYPE})",
        kept.len()
    );
    let facts = serde_json::to_string(&format!("{:?}", report.facts)).unwrap();
    assert!(facts.len() < 4096, "the facts hold {} bytes", facts.len());
}
