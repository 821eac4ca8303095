//! Native listing APIs, through fixture servers that answer each vendor's documented shapes in
//! front of a real distribution registry: the digests they give are used only after the
//! guard's HEADs agree, and any lie, refusal or changed shape leaves the result exact.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use registry_operator::registry::{
    ClientOptions, Credentials, Lister, ListingMode, NativeOutcome, RegistryClient, RegistryState,
    ScanOptions, ScanReport, Target, scan,
};
use testenv::certs::TestCa;
use testenv::push::{Format, ImageSpec, Pusher};
use testenv::registry::{RegistryOptions, RegistryServer};
use testenv::vendor::{Behaviour, HUB_TOKEN, Vendor, VendorFixture, pushed_unix};

const REPO: &str = "team/app";
const VENDORS: [Vendor; 5] = [
    Vendor::DockerHub,
    Vendor::Harbor,
    Vendor::Quay,
    Vendor::Gar,
    Vendor::Acr,
];

struct Setup {
    _reg: RegistryServer,
    fixture: VendorFixture,
    client: RegistryClient,
    target: Target,
    pushed: common::Pushed,
}

async fn setup(vendor: Vendor) -> Setup {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let mut pushed = common::seed_small(&reg, None, REPO).await;
    let pusher = Pusher::new(&reg, None).unwrap();
    for i in 0..6u64 {
        let tag = format!("3.{i}");
        let p = pusher
            .push_image(
                REPO,
                Some(&tag),
                &ImageSpec::new(Format::Oci, 40 + i, &[100]),
            )
            .await
            .unwrap();
        pushed.tags.push((tag, p));
    }
    pushed
        .tags
        .sort_by(|a, b| registry_operator::registry::order::compare_tags(&a.0, &b.0));
    let ca = TestCa::new();
    let fixture = VendorFixture::start(vendor, &reg.url, Some(&ca))
        .await
        .unwrap();
    let client = RegistryClient::new(ClientOptions {
        ca_pem: Some(ca.ca_pem.clone().into_bytes()),
        resolve: fixture.resolve(),
        ..ClientOptions::default()
    })
    .unwrap()
    .with_state(Arc::new(RegistryState::default()));
    let target = Target::new(&fixture.url, REPO).unwrap();
    Setup {
        _reg: reg,
        fixture,
        client,
        target,
        pushed,
    }
}

async fn rescan(s: &Setup, previous: Option<&ScanReport>) -> ScanReport {
    let mut options = ScanOptions::default();
    if let Some(p) = previous {
        options.known = p.facts.clone();
        options.known_tags = p
            .images
            .iter()
            .map(|i| (i.tag.clone(), i.digest.clone()))
            .collect::<HashMap<_, _>>();
    }
    scan(&s.client, &s.target, None, &options).await.unwrap()
}

fn lister_of(r: &ScanReport) -> &str {
    r.requests.lister.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn native_rescans_are_exact_and_cost_a_sample_of_heads() {
    for vendor in VENDORS {
        let s = setup(vendor).await;
        let tags = s.pushed.tags.len() as i64;
        let first = rescan(&s, None).await;
        common::assert_matches(&first, &s.pushed);
        assert_eq!(lister_of(&first), vendor.lister(), "{vendor:?}");
        assert!(
            matches!(first.native, Some(NativeOutcome::Used(_))),
            "{vendor:?}"
        );
        // Every tag is new to the guard on a first scan.
        assert_eq!(first.requests.manifest_heads, tags, "{vendor:?}");

        s.fixture.reset();
        let again = rescan(&s, Some(&first)).await;
        common::assert_matches(&again, &s.pushed);
        assert_eq!(lister_of(&again), vendor.lister(), "{vendor:?}");
        assert_eq!(
            again.requests.manifest_heads, 3,
            "{vendor:?}: the sample only"
        );
        assert_eq!(again.requests.manifest_gets, 0, "{vendor:?}");
        assert_eq!(again.requests.tag_pages, 0, "{vendor:?}");
        assert!(again.requests.native_requests >= 1, "{vendor:?}");
        assert_eq!(
            again.requests.native_requests as usize,
            s.fixture.native_requests(),
            "{vendor:?}: counted as the fixture saw them"
        );
    }
}

#[tokio::test]
async fn a_lying_api_falls_back_and_stays_off() {
    for vendor in VENDORS {
        let s = setup(vendor).await;
        let first = rescan(&s, None).await;
        s.fixture
            .set_behaviour(Behaviour::Lie { tag: "2.0".into() });
        let lied = rescan(&s, Some(&first)).await;
        common::assert_matches(&lied, &s.pushed);
        assert_eq!(lister_of(&lied), "distribution", "{vendor:?}");
        match &lied.native {
            Some(NativeOutcome::FellBack { reason, .. }) => {
                assert!(reason.contains("tag 2.0 points at"), "{vendor:?}: {reason}")
            }
            other => panic!("{vendor:?}: {other:?}"),
        }
        // Honest again, but the registry lied once: off until restart.
        s.fixture.set_behaviour(Behaviour::Honest);
        let after = rescan(&s, Some(&lied)).await;
        common::assert_matches(&after, &s.pushed);
        assert_eq!(lister_of(&after), "distribution", "{vendor:?}");
        assert!(
            matches!(after.native, Some(NativeOutcome::Off { .. })),
            "{vendor:?}: {:?}",
            after.native
        );
    }
}

#[tokio::test]
async fn refusals_and_changed_shapes_fall_back_for_one_scan() {
    for vendor in VENDORS {
        let s = setup(vendor).await;
        let first = rescan(&s, None).await;
        let behaviours = match vendor {
            // GAR's native answer is the registry's own tag list: a refusal of it refuses the
            // registry API too, so only a changed shape is a native failure there.
            Vendor::Gar => vec![Behaviour::ChangedShape],
            _ => vec![
                Behaviour::Status(401),
                Behaviour::Status(403),
                Behaviour::Status(404),
                Behaviour::Status(429),
                Behaviour::ChangedShape,
            ],
        };
        for b in behaviours {
            s.fixture.set_behaviour(b.clone());
            let r = rescan(&s, Some(&first)).await;
            common::assert_matches(&r, &s.pushed);
            assert_eq!(lister_of(&r), "distribution", "{vendor:?} {b:?}");
            assert!(
                matches!(r.native, Some(NativeOutcome::FellBack { .. })),
                "{vendor:?} {b:?}: {:?}",
                r.native
            );
        }
        s.fixture.set_behaviour(Behaviour::Honest);
        let back = rescan(&s, Some(&first)).await;
        assert_eq!(
            lister_of(&back),
            vendor.lister(),
            "{vendor:?}: not turned off"
        );
    }
}

#[tokio::test]
async fn distribution_mode_and_plain_registries_never_use_a_native_api() {
    let s = setup(Vendor::Gar).await;
    let r = scan(
        &s.client,
        &s.target,
        None,
        &ScanOptions {
            listing: ListingMode::Distribution,
            ..ScanOptions::default()
        },
    )
    .await
    .unwrap();
    common::assert_matches(&r, &s.pushed);
    assert_eq!(lister_of(&r), "distribution");
    assert_eq!(r.native, None);
    assert_eq!(r.requests.native_requests, 0);

    // A plain registry: two anonymous probes once, then none.
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, REPO).await;
    let client = RegistryClient::new(ClientOptions::default()).unwrap();
    let target = Target::new(&reg.url, REPO).unwrap();
    let first = scan(&client, &target, None, &ScanOptions::default())
        .await
        .unwrap();
    common::assert_matches(&first, &pushed);
    assert_eq!(first.native, None);
    assert_eq!(first.requests.native_requests, 2);
    let again = scan(&client, &target, None, &ScanOptions::default())
        .await
        .unwrap();
    assert_eq!(again.requests.native_requests, 0, "detection is remembered");
    assert_eq!(Lister::Distribution.as_str(), lister_of(&again));
}

#[tokio::test]
async fn docker_hub_credentials_go_to_its_token_endpoint_only() {
    let s = setup(Vendor::DockerHub).await;
    s.fixture.require_hub_user("hubuser", "hub-password-123");
    let creds = Credentials::new("hubuser", "hub-password-123");
    let first = scan(&s.client, &s.target, Some(&creds), &ScanOptions::default())
        .await
        .unwrap();
    common::assert_matches(&first, &s.pushed);
    assert_eq!(lister_of(&first), "dockerhub", "{:?}", first.native);
    let seen = s.fixture.requests();
    let posts: Vec<_> = seen.iter().filter(|r| r.path == "/v2/auth/token").collect();
    assert_eq!(posts.len(), 1, "{seen:#?}");
    assert_eq!(posts[0].host, "hub.docker.com");
    assert_eq!(posts[0].method, "POST");
    assert!(posts[0].body.contains("\"secret\":\"hub-password-123\""));
    for r in &seen {
        let auth = r.authorization.as_deref().unwrap_or_default();
        if r.host == "hub.docker.com" && r.path != "/v2/auth/token" {
            assert_eq!(auth, format!("Bearer {HUB_TOKEN}"), "{r:?}");
        }
        if r.host != "hub.docker.com" {
            assert!(
                !auth.contains(HUB_TOKEN),
                "the hub token left its host: {r:?}"
            );
            assert!(!r.body.contains("hub-password-123"), "{r:?}");
        }
    }

    // The token is kept between scans.
    s.fixture.reset();
    let again = rescan_with(&s, &first, Some(&creds)).await;
    assert_eq!(lister_of(&again), "dockerhub");
    assert!(
        s.fixture
            .requests()
            .iter()
            .all(|r| r.path != "/v2/auth/token")
    );

    // A wrong password: the token endpoint refuses, the scan falls back, nothing leaks.
    let wrong = Credentials::new("hubuser", "wrong-password-456");
    let r = rescan_with(&s, &first, Some(&wrong)).await;
    common::assert_matches(&r, &s.pushed);
    assert_eq!(lister_of(&r), "distribution");
    match &r.native {
        Some(NativeOutcome::FellBack { reason, .. }) => {
            assert!(reason.contains("401"), "{reason}");
            assert!(!reason.contains("wrong-password-456"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

async fn rescan_with(s: &Setup, previous: &ScanReport, creds: Option<&Credentials>) -> ScanReport {
    let options = ScanOptions {
        known: previous.facts.clone(),
        known_tags: previous
            .images
            .iter()
            .map(|i| (i.tag.clone(), i.digest.clone()))
            .collect(),
        ..ScanOptions::default()
    };
    scan(&s.client, &s.target, creds, &options).await.unwrap()
}

/// A lie about one repository turns native listing off for that repository only: another
/// repository of the same registry keeps it, and what any later scan is told names no tag of
/// the lie (it may come from another tenant, who must not learn tag names it did not list).
#[tokio::test]
async fn a_lie_about_one_repository_leaves_the_others_native_and_names_no_tag_to_them() {
    const OTHER: &str = "team/other";
    for vendor in VENDORS {
        let s = setup(vendor).await;
        let pusher = Pusher::new(&s._reg, None).unwrap();
        let mut other = common::Pushed { tags: Vec::new() };
        for (i, tag) in ["5.0", "5.1"].into_iter().enumerate() {
            let p = pusher
                .push_image(
                    OTHER,
                    Some(tag),
                    &ImageSpec::new(Format::Oci, 60 + i as u64, &[100]),
                )
                .await
                .unwrap();
            other.tags.push((tag.into(), p));
        }
        let other_target = Target::new(&s.fixture.url, OTHER).unwrap();
        let scan_other = || async {
            scan(&s.client, &other_target, None, &ScanOptions::default())
                .await
                .unwrap()
        };

        let first = rescan(&s, None).await;
        s.fixture
            .set_behaviour(Behaviour::Lie { tag: "2.0".into() });
        let lied = rescan(&s, Some(&first)).await;
        common::assert_matches(&lied, &s.pushed);
        match &lied.native {
            // The scan that listed the tag may name it.
            Some(NativeOutcome::FellBack { reason, .. }) => {
                assert!(reason.contains("tag 2.0 points at"), "{vendor:?}: {reason}")
            }
            other => panic!("{vendor:?}: {other:?}"),
        }

        // The other repository of the same registry: still native, told nothing of the lie.
        let b = scan_other().await;
        common::assert_matches(&b, &other);
        assert_eq!(lister_of(&b), vendor.lister(), "{vendor:?}: {:?}", b.native);
        assert!(
            matches!(b.native, Some(NativeOutcome::Used(_))),
            "{vendor:?}: {:?}",
            b.native
        );

        // Another tenant of the lying repository (its own credentials, the operator's shared
        // state): off, with a reason that names no tag.
        let tenant = scan(
            &s.client,
            &s.target,
            Some(&Credentials::new("another-tenant", "its-password")),
            &ScanOptions::default(),
        )
        .await
        .unwrap();
        common::assert_matches(&tenant, &s.pushed);
        assert_eq!(lister_of(&tenant), "distribution", "{vendor:?}");
        match &tenant.native {
            Some(NativeOutcome::Off { reason, .. }) => {
                assert!(!reason.contains("2.0"), "{vendor:?}: {reason}");
                assert!(!reason.contains("sha256:"), "{vendor:?}: {reason}");
            }
            other => panic!("{vendor:?}: {other:?}"),
        }
    }
}

/// The push times each vendor's listing gives, as the fixture writes them in the vendor's
/// documented field and form: Docker Hub `tag_last_pushed`, Harbor `push_time`, Quay
/// `start_ts`, GCR/Artifact Registry `timeUploadedMs` (per digest: its tags' latest push),
/// ACR `lastUpdateTime`.
fn expected_push_times(vendor: Vendor, report: &ScanReport) -> Vec<(String, Option<i64>)> {
    report
        .images
        .iter()
        .map(|i| {
            let at = match vendor {
                Vendor::Gar => report
                    .images
                    .iter()
                    .filter(|o| o.digest == i.digest)
                    .map(|o| pushed_unix(&o.tag))
                    .max(),
                _ => Some(pushed_unix(&i.tag)),
            };
            (i.tag.clone(), at)
        })
        .collect()
}

fn push_times(report: &ScanReport) -> Vec<(String, Option<i64>)> {
    report
        .images
        .iter()
        .map(|i| (i.tag.clone(), i.pushed_at.map(|t| t.unix())))
        .collect()
}

fn push_sources(report: &ScanReport) -> Vec<Option<&str>> {
    report
        .images
        .iter()
        .map(|i| {
            i.timestamp_source
                .as_ref()
                .and_then(|s| s.pushed_at.as_deref())
        })
        .collect()
}

#[tokio::test]
async fn each_vendor_listing_gives_every_tag_its_push_time_and_says_which() {
    for vendor in VENDORS {
        let s = setup(vendor).await;
        let first = rescan(&s, None).await;
        assert_eq!(lister_of(&first), vendor.lister(), "{vendor:?}");
        assert_eq!(
            push_times(&first),
            expected_push_times(vendor, &first),
            "{vendor:?}"
        );
        assert!(
            push_sources(&first)
                .iter()
                .all(|s| *s == Some(vendor.lister())),
            "{vendor:?}: {:?}",
            push_sources(&first)
        );
        // A rescan takes its digests from the listing (no HEAD) and its times too.
        let again = rescan(&s, Some(&first)).await;
        assert_eq!(push_times(&again), push_times(&first), "{vendor:?}");

        // The distribution API says nothing of pushes: neither does the report.
        let plain = scan(
            &s.client,
            &s.target,
            None,
            &ScanOptions {
                listing: ListingMode::Distribution,
                ..ScanOptions::default()
            },
        )
        .await
        .unwrap();
        assert!(
            plain.images.iter().all(|i| i.pushed_at.is_none()),
            "{vendor:?}"
        );
        assert!(
            push_sources(&plain).iter().all(Option::is_none),
            "{vendor:?}"
        );

        // Nor does a listing that fell back.
        s.fixture
            .set_behaviour(Behaviour::Lie { tag: "2.0".into() });
        let lied = rescan(&s, Some(&first)).await;
        assert_eq!(lister_of(&lied), "distribution", "{vendor:?}");
        assert!(
            lied.images.iter().all(|i| i.pushed_at.is_none()),
            "{vendor:?}: a listing the guard refused gives no push time"
        );
    }
}

#[tokio::test]
async fn absurd_push_times_are_no_push_times_and_the_listing_still_serves() {
    for vendor in VENDORS {
        let s = setup(vendor).await;
        s.fixture.set_behaviour(Behaviour::AbsurdTimes);
        let r = rescan(&s, None).await;
        common::assert_matches(&r, &s.pushed);
        assert_eq!(lister_of(&r), vendor.lister(), "{vendor:?}: {:?}", r.native);
        assert!(
            r.images.iter().all(|i| i.pushed_at.is_none()),
            "{vendor:?}: {:?}",
            push_times(&r)
        );
    }
}
