//! `spec.policy` on a real kube-apiserver + registry: a newer push moves `status.latest` with a
//! `NewerVersion` event and the `latest_info` series; `minAge` holds a fresh push back until
//! the operator's test clock (a file, `fault-injection` builds only) says it is old enough;
//! CEL refuses what it can check, the operator what it cannot (`InvalidSpec`, latest kept).

mod common;

use chrono::{Duration as Days, SecondsFormat, Utc};
use common::operator::{self, Operator, reason, status, wait_for};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use testenv::controlplane;
use testenv::push::Pusher;
use testenv::registry::{RegistryOptions, RegistryServer};

const REPO: &str = "team/app";

fn scanned(r: &Registry, generation: i64) -> bool {
    status(r).observed_generation == Some(generation)
        && status(r).last_scan_status.is_some()
        && r.metadata.generation == Some(generation)
}

fn latest_tag(r: &Registry) -> Option<String> {
    status(r).latest.map(|l| l.tag)
}

fn ago(days: i64) -> String {
    (Utc::now() - Days::days(days)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Bumps the generation so the operator scans again now.
async fn rescan(api: &Api<Registry>, name: &str, interval: i64) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"scanInterval": interval}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_versions_move_latest_and_min_age_waits_for_the_clock() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("policy").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pusher = Pusher::new(&reg, None).unwrap();
    common::push_created(&pusher, REPO, "1.0.0", 1, &ago(10)).await;
    let d110 = common::push_created(&pusher, REPO, "1.1.0", 2, &ago(5)).await;
    common::push_created(&pusher, REPO, "2.0.0-rc.1", 3, &ago(4)).await;
    common::push_created(&pusher, REPO, "latest", 4, &ago(4)).await;

    let clock_dir = tempfile::tempdir().unwrap();
    let clock = clock_dir.path().join("now");
    std::fs::write(&clock, ago(0)).unwrap();
    let op = Operator::start_env(
        cp,
        &ns,
        &[],
        &[("REGISTRY_OPERATOR_TEST_NOW_FILE", clock.to_str().unwrap())],
    )
    .await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);

    // CEL refuses what it can check, with its message (sent untyped: the Rust types would
    // not even hold some of these).
    let raw: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<Registry>(&()));
    for (bad, says) in [
        (
            serde_json::json!({"semver": {"range": "^1"}, "numerical": {}}),
            "exactly one of semver, numerical, alphabetical or newestBuild",
        ),
        (serde_json::json!({}), "exactly one of"),
        (
            serde_json::json!({"semver": {"range": "^1"}, "minAge": "1 day"}),
            "minAge must be a duration",
        ),
        (
            serde_json::json!({"numerical": {"order": "up"}}),
            "Unsupported value",
        ),
    ] {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "registry.kubecontroller.io/v1alpha1",
            "kind": "Registry",
            "metadata": {"name": "bad"},
            "spec": {"url": reg.url, "repository": REPO, "policy": bad},
        }))
        .unwrap();
        let e = raw.create(&PostParams::default(), &obj).await.unwrap_err();
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }

    for (name, policy) in [
        ("app", serde_json::json!({"semver": {"range": "^1.0"}})),
        (
            "aged",
            serde_json::json!({"semver": {"range": "^1.0"}, "minAge": "24h"}),
        ),
    ] {
        api.create(
            &PostParams::default(),
            &operator::registry(name, &reg.url, REPO, serde_json::json!({"policy": policy})),
        )
        .await
        .unwrap();
    }
    for name in ["app", "aged"] {
        let r = wait_for(&api, name, &op, "first scan", |r| scanned(r, 1)).await;
        let s = status(&r);
        let latest = s.latest.clone().unwrap();
        assert_eq!(
            (latest.tag.as_str(), latest.digest.as_str()),
            ("1.1.0", d110.as_str())
        );
        assert!(latest.created_at.is_some(), "createdAt from the annotation");
        assert_eq!(s.previous_latest, None);
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == "LatestFound")
            .unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "LatestFound")
        );
        let tags: Vec<&str> = s.images.iter().flatten().map(|i| i.tag.as_str()).collect();
        assert_eq!(
            tags,
            ["2.0.0-rc.1", "latest", "1.0.0", "1.1.0"],
            "policy order"
        );
    }

    // kubectl -o wide shows LATEST; the default columns stay the seed's.
    let wide = std::process::Command::new(cp.kubectl())
        .args(["--kubeconfig", cp.kubeconfig_path().to_str().unwrap()])
        .args(["get", "registries", "app", "-n", &ns, "-o", "wide"])
        .output()
        .unwrap();
    let wide = String::from_utf8_lossy(&wide.stdout);
    let mut lines = wide.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert!(header.contains(&"LATEST"), "{wide}");
    assert!(lines.next().unwrap_or_default().contains("1.1.0"), "{wide}");

    // A fresh push: `app` moves at its next scan, `aged` holds it back (created an hour ago).
    let d120 = common::push_created(&pusher, REPO, "1.2.0", 5, &ago(0)).await;
    rescan(&api, "app", 301).await;
    rescan(&api, "aged", 301).await;
    let r = wait_for(&api, "app", &op, "app moves to 1.2.0", |r| scanned(r, 2)).await;
    assert_eq!(latest_tag(&r).as_deref(), Some("1.2.0"));
    assert_eq!(
        status(&r).previous_latest.map(|l| l.tag).as_deref(),
        Some("1.1.0")
    );
    let r = wait_for(&api, "aged", &op, "aged rescanned", |r| scanned(r, 2)).await;
    assert_eq!(
        latest_tag(&r).as_deref(),
        Some("1.1.0"),
        "1.2.0 is younger than 24h"
    );
    assert_eq!(status(&r).previous_latest, None);
    assert!(
        status(&r).images.iter().flatten().any(|i| i.tag == "1.2.0"),
        "listed, just not eligible"
    );

    // The clock moves two days on: the same push is now old enough.
    std::fs::write(
        &clock,
        (Utc::now() + Days::days(2)).to_rfc3339_opts(SecondsFormat::Secs, true),
    )
    .unwrap();
    rescan(&api, "aged", 302).await;
    let r = wait_for(&api, "aged", &op, "aged moves once old enough", |r| {
        scanned(r, 3)
    })
    .await;
    let latest = status(&r).latest.unwrap();
    assert_eq!(
        (latest.tag.as_str(), latest.digest.as_str()),
        ("1.2.0", d120.as_str())
    );
    assert_eq!(
        status(&r).previous_latest.map(|l| l.tag).as_deref(),
        Some("1.1.0")
    );

    // One NewerVersion event per move, none for the first latest.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let notes = loop {
        let notes: Vec<(String, String)> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("NewerVersion"))
            .map(|e| {
                (
                    e.regarding.and_then(|o| o.name).unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect();
        if notes.len() >= 2 || std::time::Instant::now() > deadline {
            break notes;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let mut notes = notes;
    notes.sort();
    assert_eq!(
        notes,
        [
            ("aged".to_string(), "1.1.0 → 1.2.0".to_string()),
            ("app".to_string(), "1.1.0 → 1.2.0".to_string())
        ]
    );

    // One latest_info series per object, at its current latest.
    let metrics = op.metrics().await;
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("registry_operator_latest_info{"))
        .collect();
    assert_eq!(series.len(), 2, "{series:?}");
    assert!(
        series
            .iter()
            .all(|l| l.contains(r#"tag="1.2.0""#) && l.contains(&d120)),
        "{series:?}"
    );

    // A range CEL cannot check: the scan fails with InvalidSpec, latest stays.
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"policy": {"semver": {"range": ">=1.0 <<2"}}}})),
    )
    .await
    .unwrap();
    let r = wait_for(&api, "app", &op, "InvalidSpec", |r| scanned(r, 3)).await;
    assert_eq!(status(&r).last_scan_status, Some(ScanStatus::Failed));
    assert_eq!(reason(&r), "InvalidSpec");
    assert!(
        status(&r)
            .message
            .unwrap_or_default()
            .contains("not a valid range"),
        "{:?}",
        status(&r).message
    );
    assert_eq!(
        latest_tag(&r).as_deref(),
        Some("1.2.0"),
        "the last good latest stays"
    );

    // No eligible tag: the scan succeeds, latest goes, LatestFound says why.
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"policy": {"semver": {"range": "^3"}}}})),
    )
    .await
    .unwrap();
    let r = wait_for(&api, "app", &op, "no eligible tag", |r| scanned(r, 4)).await;
    let s = status(&r);
    assert_eq!(s.last_scan_status, Some(ScanStatus::Success));
    assert_eq!(s.latest, None);
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == "LatestFound")
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "NoEligibleTag")
    );
    assert!(
        c.message.contains("outside the range \"^3\""),
        "{}",
        c.message
    );
}
