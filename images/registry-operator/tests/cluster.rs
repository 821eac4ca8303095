//! The operator as a cluster runs it: leader election that steps down when the apiserver is
//! cut off, shards over several replicas, Secret reads denied by RBAC.

mod common;

use std::time::{Duration, Instant};

use common::operator::{self, Operator, reason, status, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use registry_operator::api::{Registry, ScanStatus};
use registry_operator::controller::shards::placement::{self, BUCKET_LABEL, shard_of};
use testenv::controlplane::{self, ControlPlane};
use testenv::fault::{CutProxy, Fault, FaultAction, FaultProxy};
use testenv::registry::{RegistryOptions, RegistryServer};

/// The operator's defaults (seconds).
const LEASE_DURATION: u64 = 15;
const RENEW_DEADLINE: u64 = 10;

fn ok(r: &Registry) -> bool {
    status(r).last_scan_status == Some(ScanStatus::Success)
        && status(r).observed_generation == r.metadata.generation
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    leases
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A kubeconfig like the control plane's, edited by `edit` (server address, identity).
fn kubeconfig(
    cp: &ControlPlane,
    dir: &std::path::Path,
    edit: impl FnOnce(&mut serde_yaml::Value),
) -> std::path::PathBuf {
    let mut config: serde_yaml::Value = serde_yaml::from_str(cp.kubeconfig_yaml()).unwrap();
    edit(&mut config);
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// One repository name per shard of `count` for a registry at `url` (its port varies).
fn repos_per_shard(url: &str, count: u32) -> Vec<String> {
    let mut repos: Vec<Option<String>> = vec![None; count as usize];
    for i in 0.. {
        let repo = format!("sh/app-{i}");
        let slot = &mut repos[shard_of(url, &repo, count) as usize];
        if slot.is_none() {
            *slot = Some(repo);
        }
        if repos.iter().all(Option::is_some) {
            break;
        }
    }
    repos.into_iter().flatten().collect()
}

fn scanned_by(op: &Operator, key: &str) -> bool {
    strip_ansi(&op.logs())
        .lines()
        .any(|l| l.contains("scan succeeded") && l.contains(&format!("registry={key} ")))
}

/// The text log's colour codes out.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_apiserver_steps_down_and_never_writes_again() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("cut").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    common::seed_small(&reg, None, "ha/app").await;
    let slow_registry = FaultProxy::start(&reg.url).await.unwrap();

    // Replica A reaches the apiserver through a proxy the test can cut; B directly.
    let upstream = cp.server_url().trim_start_matches("https://").to_string();
    let cut = CutProxy::start(&upstream).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let via_proxy = kubeconfig(cp, dir.path(), |c| {
        c["clusters"][0]["cluster"]["server"] = format!("https://{}", cut.addr).into();
    });
    let a = Operator::start_with_kubeconfig(&via_proxy, &ns, &["--identity", "replica-a"]).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    eventually("A to lead", Duration::from_secs(60), || async {
        holder(&leases, "registry-operator").await.as_deref() == Some("replica-a")
    })
    .await;
    let b = Operator::start_admin(cp, &ns, &["--identity", "replica-b"]).await;

    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("steady", &reg.url, "ha/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    wait_for(&api, "steady", &a, "a scan by the leader", ok).await;

    // A scan by A is in flight (its tag list answers only after 25 s) when A is cut off.
    slow_registry.inject(Fault::new(
        "/tags/list",
        1,
        FaultAction::Delay(Duration::from_secs(25)),
    ));
    api.create(
        &PostParams::default(),
        &operator::registry("slow", &slow_registry.url, "ha/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    eventually(
        "A's slow scan to start",
        Duration::from_secs(60),
        || async { slow_registry.arrived("GET", "/tags/list") > 0 },
    )
    .await;
    let writes_before = a
        .metric(
            "registry_operator_status_writes_total",
            &[r#"result="success""#],
        )
        .await;
    assert!(writes_before >= 1.0, "{}", a.metrics().await);
    let cut_at = Instant::now();
    cut.cut();

    eventually(
        "A to step down",
        Duration::from_secs(RENEW_DEADLINE + 20),
        || async { a.logs().contains("stepping down") },
    )
    .await;
    let stepped_down = cut_at.elapsed();
    // Its last renewal was at most one retry period before the cut; the watchdog ticks every
    // 100 ms. A little slack for a loaded machine.
    assert!(
        stepped_down <= Duration::from_secs(RENEW_DEADLINE + 3),
        "stepped down {stepped_down:?} after the cut"
    );

    eventually("B to take over", Duration::from_secs(60), || async {
        holder(&leases, "registry-operator").await.as_deref() == Some("replica-b")
    })
    .await;
    let took_over = cut_at.elapsed();
    assert!(
        took_over >= Duration::from_secs(LEASE_DURATION) && took_over > stepped_down,
        "B took over {took_over:?} after the cut, A stepped down after {stepped_down:?}"
    );
    // A's connection comes back while its cancelled scan would still be running.
    cut.restore();
    let r = wait_for(&api, "slow", &b, "the new leader's scan", ok).await;
    assert!(
        scanned_by(&b, &format!("{ns}/slow")),
        "status {:?}\nA:\n{}\nB:\n{}",
        r.status,
        operator::tail(&strip_ansi(&a.logs()), 30),
        operator::tail(&strip_ansi(&b.logs()), 30)
    );

    // Past the moment A's old scan would have finished and written.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let writes_after = a
        .metric(
            "registry_operator_status_writes_total",
            &[r#"result="success""#],
        )
        .await;
    assert_eq!(
        writes_after,
        writes_before,
        "the old leader wrote status after losing the lease:\n{}",
        operator::tail(&a.logs(), 40)
    );
    assert!(!scanned_by(&a, &format!("{ns}/slow")));
    assert_eq!(
        a.metric("registry_operator_shards_held", &[]).await,
        0.0,
        "A is back in touch with the apiserver and stays standby"
    );
    assert_eq!(
        holder(&leases, "registry-operator").await.as_deref(),
        Some("replica-b")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_shards_and_a_dead_one_hands_its_objects_over() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("shards").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    // Objects are sharded by repository: one repository per shard spreads them.
    let repos = repos_per_shard(&reg.url, 3);
    for repo in &repos {
        common::seed_small(&reg, None, repo).await;
    }
    let ids = ["replica-0", "replica-1", "replica-2"];
    let mut replicas = Vec::new();
    for id in ids {
        replicas.push(
            Operator::start_admin(
                cp,
                &ns,
                &[
                    "--identity",
                    id,
                    "--shards",
                    "3",
                    "--max-concurrent-scans",
                    "4",
                ],
            )
            .await,
        );
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let lease = |shard: u32| format!("registry-operator-{shard}-of-3");
    let holders = || async {
        let mut h = Vec::new();
        for s in 0..3 {
            h.push(holder(&leases, &lease(s)).await);
        }
        h
    };
    eventually("one shard per replica", Duration::from_secs(90), || async {
        let h = holders().await;
        let distinct: std::collections::HashSet<_> = h.iter().flatten().collect();
        distinct.len() == 3
    })
    .await;
    let owner_of_shard = holders().await;

    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    let names: Vec<String> = (0..30).map(|i| format!("obj-{i}")).collect();
    let repo_of = |n: &str| -> &str {
        let i: usize = n.trim_start_matches("obj-").parse().unwrap();
        &repos[i % repos.len()]
    };
    for n in &names {
        api.create(
            &PostParams::default(),
            &operator::registry(n, &reg.url, repo_of(n), serde_json::json!({})),
        )
        .await
        .unwrap();
    }
    for n in &names {
        wait_for(&api, n, &replicas[0], "every object scanned", ok).await;
    }
    let mut per_replica = [0usize; 3];
    for n in &names {
        let key = format!("{ns}/{n}");
        let by: Vec<usize> = (0..3).filter(|i| scanned_by(&replicas[*i], &key)).collect();
        assert_eq!(by.len(), 1, "{key} scanned by replicas {by:?}");
        let owner = owner_of_shard[shard_of(&reg.url, repo_of(n), 3) as usize]
            .clone()
            .unwrap();
        assert_eq!(ids[by[0]], owner, "{key} scanned outside its shard");
        per_replica[by[0]] += 1;
    }

    // Kill (no goodbye) the replica with the most objects; its shard must move.
    let victim = (0..3).max_by_key(|i| per_replica[*i]).unwrap();
    let shard = owner_of_shard
        .iter()
        .position(|h| h.as_deref() == Some(ids[victim]))
        .unwrap() as u32;
    replicas[victim].child.kill().await.unwrap();
    let killed_at = Instant::now();
    let moved: Vec<&String> = names
        .iter()
        .filter(|n| shard_of(&reg.url, repo_of(n), 3) == shard)
        .collect();
    // Ask for a rescan of the orphaned objects: only a new owner can do it.
    for n in &moved {
        api.patch(
            n,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"scanInterval": 301}})),
        )
        .await
        .unwrap();
    }
    eventually("the shard to move", Duration::from_secs(60), || async {
        holder(&leases, &lease(shard))
            .await
            .is_some_and(|h| h != ids[victim])
    })
    .await;
    let moved_after = killed_at.elapsed();
    // Within a lease period (seen unchanged for a whole duration, seen up to one retry period
    // late, taken at the next retry), plus slack for a loaded machine.
    assert!(
        moved_after <= Duration::from_secs(LEASE_DURATION + 2 * 2 + 6),
        "the shard moved {moved_after:?} after the kill"
    );
    let heir = holder(&leases, &lease(shard)).await.unwrap();
    let heir = ids.iter().position(|i| *i == heir).unwrap();
    for n in &moved {
        let r = wait_for(&api, n, &replicas[heir], "rescan by the heir", |r| {
            ok(r) && r.metadata.generation == Some(2)
        })
        .await;
        assert_eq!(status(&r).observed_generation, Some(2));
    }
}

/// Each replica watches only its shard's objects (label-selected), relabels what a tenant
/// mislabelled, and when a replica dies the heir's new watch brings its objects over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_selected_watches_follow_shard_moves_and_undo_a_tenants_label() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("watches").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let repos = repos_per_shard(&reg.url, 2);
    for repo in &repos {
        common::seed_small(&reg, None, repo).await;
    }
    let ids = ["replica-a", "replica-b"];
    let mut replicas = Vec::new();
    for id in ids {
        replicas.push(Operator::start_admin(cp, &ns, &["--identity", id, "--shards", "2"]).await);
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let lease = |shard: u32| format!("registry-operator-{shard}-of-2");
    eventually("one shard per replica", Duration::from_secs(90), || async {
        let a = holder(&leases, &lease(0)).await;
        let b = holder(&leases, &lease(1)).await;
        a.is_some() && b.is_some() && a != b
    })
    .await;
    let owner = |h: Option<String>| ids.iter().position(|i| Some(*i) == h.as_deref()).unwrap();
    let owner_of_shard = [
        owner(holder(&leases, &lease(0)).await),
        owner(holder(&leases, &lease(1)).await),
    ];

    // Four plain objects per shard; one of shard 0's repository that a tenant labelled for
    // shard 1, and one of shard 1's with a label value that names no bucket.
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    let bucket = |repo: &str| placement::bucket_of(&reg.url, repo);
    let other_bucket = (0..placement::BUCKETS)
        .find(|b| placement::shard_of_bucket(*b, 2) == 1)
        .unwrap();
    let mut objects: Vec<(String, usize, Option<String>)> = Vec::new();
    for shard in 0..2 {
        for i in 0..4 {
            objects.push((format!("obj-{shard}-{i}"), shard, None));
        }
    }
    objects.push(("stray".into(), 0, Some(other_bucket.to_string())));
    objects.push(("bogus".into(), 1, Some("not-a-bucket".into())));
    for (n, shard, label) in &objects {
        let mut r = operator::registry(n, &reg.url, &repos[*shard], serde_json::json!({}));
        if let Some(l) = label {
            r.metadata.labels = Some([(BUCKET_LABEL.to_string(), l.clone())].into());
        }
        api.create(&PostParams::default(), &r).await.unwrap();
    }
    for (n, shard, _) in &objects {
        let r = wait_for(&api, n, &replicas[0], "every object scanned", ok).await;
        let key = format!("{ns}/{n}");
        let by: Vec<usize> = (0..2).filter(|i| scanned_by(&replicas[*i], &key)).collect();
        assert_eq!(by, [owner_of_shard[*shard]], "{key} scanned by {by:?}");
        let _ = r;
    }
    // The labels now name each object's own bucket, whatever the tenant wrote.
    eventually("every label corrected", Duration::from_secs(30), || async {
        let mut right = true;
        for (n, shard, _) in &objects {
            let r = api.get(n).await.unwrap();
            let label = r
                .metadata
                .labels
                .unwrap_or_default()
                .get(BUCKET_LABEL)
                .cloned();
            right &= label == Some(bucket(&repos[*shard]).to_string());
        }
        right
    })
    .await;
    // Each replica's watches hold its shard's five objects, not all ten.
    for shard in 0..2 {
        let op = &replicas[owner_of_shard[shard]];
        eventually(
            "a shard's objects in its watch",
            Duration::from_secs(30),
            || async { op.metric("registry_operator_watched_objects", &[]).await == 5.0 },
        )
        .await;
    }

    // Kill shard 0's holder: the other takes the shard, watches its objects and rescans them.
    let victim = owner_of_shard[0];
    let heir = 1 - victim;
    replicas[victim].child.kill().await.unwrap();
    eventually("the shard to move", Duration::from_secs(60), || async {
        holder(&leases, &lease(0)).await.as_deref() == Some(ids[heir])
    })
    .await;
    eventually(
        "the moved objects in the heir's watch",
        Duration::from_secs(30),
        || async {
            replicas[heir]
                .metric("registry_operator_watched_objects", &[])
                .await
                == 10.0
        },
    )
    .await;
    for (n, shard, _) in objects.iter().filter(|(_, s, _)| *s == 0) {
        let _ = shard;
        api.patch(
            n,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"scanInterval": 301}})),
        )
        .await
        .unwrap();
        wait_for(&api, n, &replicas[heir], "rescan by the heir", |r| {
            ok(r) && r.metadata.generation == Some(2)
        })
        .await;
        assert!(scanned_by(&replicas[heir], &format!("{ns}/{n}")), "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_secret_read_is_retried_and_never_reported_as_not_found() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("forbidden").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::htpasswd("deployer", "Good-Pass-4711"))
        .await
        .unwrap();
    common::seed_small(&reg, Some(("deployer", "Good-Pass-4711")), "private/app").await;
    operator::create_secret(&client, &ns, "creds", "deployer", "Good-Pass-4711").await;

    // The operator runs as a ServiceAccount with the rights it needs in this namespace; reading
    // Secrets comes from a separate binding the test takes away.
    let sa = format!("system:serviceaccount:{ns}:registry-operator");
    cp.apply_yaml_in(&ns, &rbac(&sa, ("secret-reader", "", "secrets", "get")))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let restricted = impersonating(cp, dir.path(), &sa);
    let op = Operator::start_with_kubeconfig(&restricted, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry(
            "private",
            &reg.url,
            "private/app",
            serde_json::json!({"credentialsSecret": {"name": "creds"}}),
        ),
    )
    .await
    .unwrap();
    let first = wait_for(&api, "private", &op, "a scan with the Secret", ok).await;

    // Take the read away (RBAC removed mid-run), then change the Secret: the operator is asked
    // to rescan and its GET is refused with 403.
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(client.clone(), &ns);
    bindings
        .delete("secret-reader", &DeleteParams::default())
        .await
        .unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"touched": "1"}}})),
        )
        .await
        .unwrap();
    eventually(
        "the operator to be refused twice",
        Duration::from_secs(90),
        || async { op.logs().matches("reconcile failed; retrying").count() >= 2 },
    )
    .await;
    let logs = op.logs();
    assert!(
        logs.contains("forbidden") || logs.contains("403"),
        "{}",
        operator::tail(&logs, 20)
    );
    let r = api.get("private").await.unwrap();
    assert_eq!(
        reason(&r),
        "ScanSucceeded",
        "status left alone: {:?}",
        r.status
    );
    assert_eq!(status(&r).last_scan_time, status(&first).last_scan_time);
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        !reasons.iter().any(|r| r == "SecretNotFound"),
        "{reasons:?}"
    );

    // Access back: the retry goes through and the rescan happens.
    cp.apply_yaml_in(&ns, &binding(&sa, "secret-reader"))
        .await
        .unwrap();
    let r = wait_for(&api, "private", &op, "the rescan after the retry", |r| {
        ok(r) && status(r).last_scan_time != status(&first).last_scan_time
    })
    .await;
    assert_eq!(reason(&r), "ScanSucceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_a_deleted_object_never_lands_on_its_recreated_namesake() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("recreate").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    common::seed_small(&reg, None, "old/app").await;
    let other = common::seed_small(&reg, None, "new/app").await;
    let slow = FaultProxy::start(&reg.url).await.unwrap();
    slow.inject(Fault::new(
        "/old/app/tags/list",
        1,
        FaultAction::Delay(Duration::from_secs(4)),
    ));
    let op = Operator::start_admin(cp, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry("app", &slow.url, "old/app", serde_json::json!({})),
    )
    .await
    .unwrap();
    eventually("the scan to start", Duration::from_secs(60), || async {
        slow.arrived("GET", "/old/app/tags/list") > 0
    })
    .await;
    // Recreated under the same name, suspended so that only the old scan could write to it.
    api.delete("app", &DeleteParams::default()).await.unwrap();
    api.create(
        &PostParams::default(),
        &operator::registry(
            "app",
            &reg.url,
            "new/app",
            serde_json::json!({"suspend": true}),
        ),
    )
    .await
    .unwrap();
    eventually(
        "the old scan to finish",
        Duration::from_secs(60),
        || async { slow.count("GET", "/old/app/tags/list") > 0 },
    )
    .await;
    eventually(
        "its write to be refused",
        Duration::from_secs(30),
        || async {
            op.metric(
                "registry_operator_status_writes_total",
                &[r#"result="failure""#],
            )
            .await
                >= 1.0
        },
    )
    .await;
    let r = api.get("app").await.unwrap();
    assert!(
        status(&r).images.is_none(),
        "the old object's images landed on the new one: {:?}",
        r.status
    );
    // The new object is worked on as itself.
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let r = wait_for(&api, "app", &op, "a scan of the new object", ok).await;
    let digests: Vec<String> = status(&r)
        .images
        .iter()
        .flatten()
        .map(|i| i.digest.clone())
        .collect();
    let want: Vec<String> = other.tags.iter().map(|(_, p)| p.digest.clone()).collect();
    assert_eq!(digests, want);
}

/// What the operator needs in its namespace: (API group, resource, verbs).
const OPERATOR_RULES: &[(&str, &str, &[&str])] = &[
    (
        "registry.kubecontroller.io",
        "registries",
        &["get", "list", "watch"],
    ),
    (
        "registry.kubecontroller.io",
        "registries/status",
        &["patch"],
    ),
    ("", "secrets", &["get", "list", "watch"]),
    ("events.k8s.io", "events", &["create", "patch"]),
    (
        "coordination.k8s.io",
        "leases",
        &["get", "list", "create", "update", "delete"],
    ),
];

/// RBAC for the operator's identity `user` in `ns`: everything it needs but `held_back`,
/// which comes from a binding of its own (named after it) that a test can take away.
fn rbac(user: &str, held_back: (&str, &str, &str, &str)) -> String {
    let (name, group, resource, verb) = held_back;
    let rules: String = OPERATOR_RULES
        .iter()
        .filter_map(|(g, r, verbs)| {
            let verbs: Vec<&str> = verbs
                .iter()
                .copied()
                .filter(|v| !(*g == group && *r == resource && *v == verb))
                .collect();
            (!verbs.is_empty()).then(|| {
                format!(
                    "  - apiGroups: [\"{g}\"]\n    resources: [{r}]\n    verbs: [{}]\n",
                    verbs.join(", ")
                )
            })
        })
        .collect();
    format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: operator}}
rules:
{rules}---
{operator}---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {name}}}
rules:
  - apiGroups: ["{group}"]
    resources: [{resource}]
    verbs: [{verb}]
---
{held}"#,
        operator = binding(user, "operator"),
        held = binding(user, name)
    )
}

/// A kubeconfig of the admin's that impersonates `user` (so RBAC applies to it).
fn impersonating(cp: &ControlPlane, dir: &std::path::Path, user: &str) -> std::path::PathBuf {
    kubeconfig(cp, dir, |c| c["users"][0]["user"]["as"] = user.into())
}

fn binding(user: &str, name: &str) -> String {
    format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {name}}}
subjects: [{{kind: User, name: "{user}"}}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_status_write_is_retried_without_scanning_again_and_a_secret_outage_announces_no_tags()
 {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("rewrite").await;
    let client = cp.client().await;
    let (user, pass) = ("deployer", "Good-Pass-4711");
    let reg = RegistryServer::start(RegistryOptions::htpasswd(user, pass))
        .await
        .unwrap();
    common::seed_small(&reg, Some((user, pass)), "private/app").await;
    let counted = FaultProxy::start(&reg.url).await.unwrap();
    operator::create_secret(&client, &ns, "creds", user, pass).await;
    let sa = format!("system:serviceaccount:{ns}:registry-operator");
    // Status writes (and nothing else) come from a binding the test takes away.
    cp.apply_yaml_in(
        &ns,
        &rbac(
            &sa,
            (
                "status-writer",
                "registry.kubecontroller.io",
                "registries/status",
                "patch",
            ),
        ),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let restricted = impersonating(cp, dir.path(), &sa);
    let op = Operator::start_with_kubeconfig(&restricted, &ns, &[]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &operator::registry(
            "private",
            &counted.url,
            "private/app",
            serde_json::json!({"credentialsSecret": {"name": "creds"}}),
        ),
    )
    .await
    .unwrap();
    wait_for(&api, "private", &op, "the first scan", ok).await;

    // The Secret goes away for a while: SecretNotFound, the images stay.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .delete("creds", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&api, "private", &op, "SecretNotFound", |r| {
        reason(r) == "SecretNotFound"
    })
    .await;

    // It comes back while the operator may not write status: the scan succeeds, its write is
    // refused (403) and retried.
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(client.clone(), &ns);
    bindings
        .delete("status-writer", &DeleteParams::default())
        .await
        .unwrap();
    let failures_before = op
        .metric(
            "registry_operator_status_writes_total",
            &[r#"result="failure""#],
        )
        .await;
    operator::create_secret(&client, &ns, "creds", user, pass).await;
    eventually("two refused writes", Duration::from_secs(90), || async {
        op.metric(
            "registry_operator_status_writes_total",
            &[r#"result="failure""#],
        )
        .await
            >= failures_before + 2.0
    })
    .await;
    let scans = counted.count("GET", "/tags/list");
    cp.apply_yaml_in(&ns, &binding(&sa, "status-writer"))
        .await
        .unwrap();
    let r = wait_for(&api, "private", &op, "the retried write", ok).await;
    assert_eq!(reason(&r), "ScanSucceeded");
    assert_eq!(
        counted.count("GET", "/tags/list"),
        scans,
        "the write was retried by scanning again"
    );

    // The tags did not change: no event says they did.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "SecretNotFound"), "{reasons:?}");
    for spurious in ["TagsAdded", "TagsRemoved", "DigestsChanged"] {
        assert!(!reasons.iter().any(|r| r == spurious), "{reasons:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_shard_count_waits_until_the_old_replicas_are_gone() {
    let cp = controlplane::shared().await;
    operator::install_crd(cp).await;
    let ns = cp.create_namespace("reshard").await;
    let client = cp.client().await;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    common::seed_small(&reg, None, "rs/app").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    // The old Deployment: one shard. The new one, mid rolling update: three.
    let mut old = Operator::start_admin(cp, &ns, &["--identity", "old"]).await;
    eventually(
        "the old replica to lead",
        Duration::from_secs(60),
        || async { holder(&leases, "registry-operator").await.as_deref() == Some("old") },
    )
    .await;
    let new = Operator::start_admin(cp, &ns, &["--identity", "new", "--shards", "3"]).await;
    let api: Api<Registry> = Api::namespaced(client.clone(), &ns);
    let names: Vec<String> = (0..6).map(|i| format!("obj-{i}")).collect();
    for n in &names {
        api.create(
            &PostParams::default(),
            &operator::registry(n, &reg.url, "rs/app", serde_json::json!({})),
        )
        .await
        .unwrap();
    }
    for n in &names {
        wait_for(&api, n, &old, "scans by the old replica", ok).await;
    }
    // A few election rounds of the new replica.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(new.metric("registry_operator_shards_held", &[]).await, 0.0);
    for n in &names {
        assert!(!scanned_by(&new, &format!("{ns}/{n}")), "{n}");
    }

    // The old replica stops (and hands its Lease back): the new one takes every shard.
    old.terminate().await;
    eventually(
        "the new replica to hold all shards",
        Duration::from_secs(60),
        || async { new.metric("registry_operator_shards_held", &[]).await == 3.0 },
    )
    .await;
    for n in &names {
        api.patch(
            n,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"scanInterval": 301}})),
        )
        .await
        .unwrap();
    }
    for n in &names {
        wait_for(&api, n, &new, "rescans by the new replica", |r| {
            ok(r) && r.metadata.generation == Some(2)
        })
        .await;
        assert!(scanned_by(&new, &format!("{ns}/{n}")), "{n}");
    }
}
