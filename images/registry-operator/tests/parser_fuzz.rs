//! Arbitrary bytes, and JSON shaped like what each sender really sends, fed to every parser
//! of what comes from outside: `WWW-Authenticate`, `Link`, `Retry-After`, manifests (schema 2,
//! OCI, indexes, schema 1 with any protected headers), each webhook payload kind and the
//! webhook proofs, and each vendor's native listing JSON (those parsers are private, so they
//! are reached through a real scan: a fixture answers the listing request with the bytes, in
//! front of a real registry). The property is the same everywhere: no panic.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use registry_operator::registry::manifest::{
    digest_of, image_size, index_entries, kind_of, media_type_of, registry_digest, verify,
};
use registry_operator::registry::schema1::{blob_sums, digested_bytes, signed_payload};
use registry_operator::registry::{
    ClientOptions, RegistryClient, RegistryState, ScanLimits, ScanOptions, Target, next_link,
    parse_challenge, parse_retry_after, scan,
};
use registry_operator::webhook::{self, Kind, auth};
use testenv::certs::TestCa;
use testenv::hostile::{Attack, HostileRegistry};
use testenv::registry::{RegistryOptions, RegistryServer};
use testenv::vendor::{Behaviour, Vendor, VendorFixture};

/// Numbers a hostile sender writes: out of every integer range, not finite, negative.
fn absurd_number() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "1e300",
            "-1",
            "-0",
            "18446744073709551616",
            "18446744073709551615",
            "9223372036854775808",
            "9223372036854775807",
            "-9223372036854775809",
            "1.7976931348623157e308",
            "5e-324",
            "0",
            "4294967296",
            "1e19",
            "NaN",
            "inf",
        ])
        .prop_map(String::from),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
    ]
}

/// JSON values built from `keys`, with absurd numbers and odd strings at the leaves. Numbers
/// go in raw (so `NaN` and `inf` make invalid JSON, as a broken sender's would).
fn json_like(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        absurd_number(),
        "[a-zA-Z0-9:/._@+-]{0,40}".prop_map(|s| format!("\"{s}\"")),
        prop::sample::select(vec![
            "\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"",
            "\"sha256:\"",
            "\"sha512:zz\"",
            "\"latest\"",
            "\"1.0\"",
            "\"registry.example.com/team/app:1.0\"",
            "\"http://127.0.0.1:1/v2/x\"",
            "\"\\u0000\"",
            "\"\"",
        ])
        .prop_map(String::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((prop::sample::select(keys), inner), 0..6).prop_map(|kv| {
                let fields: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

const WEBHOOK_KEYS: &[&str] = &[
    "events",
    "event",
    "action",
    "target",
    "repository",
    "tag",
    "digest",
    "mediaType",
    "url",
    "request",
    "host",
    "type",
    "event_data",
    "resources",
    "resource_url",
    "name",
    "namespace",
    "repo_full_name",
    "repo_name",
    "push_data",
    "docker_url",
    "updated_tags",
    "registry_package",
    "package_version",
    "container_metadata",
    "package",
    "package_type",
    "package_url",
    "data",
    "specversion",
    "source",
    "id",
    "time",
    "timestamp",
    "owner",
    "login",
    "tags",
];

const LISTING_KEYS: &[&str] = &[
    "results",
    "count",
    "next",
    "previous",
    "name",
    "digest",
    "images",
    "tags",
    "artifacts",
    "references",
    "manifest",
    "tag",
    "mediaType",
    "imageSizeBytes",
    "timeUploadedMs",
    "has_additional",
    "page",
    "size",
    "manifest_digest",
    "is_manifest_list",
    "imageName",
    "registry",
    "createdTime",
    "lastUpdateTime",
    "changeableAttributes",
    "child_digest",
];

fn check_manifest(body: &[u8]) {
    for ct in [
        None,
        Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    ] {
        let mt = media_type_of(body, ct);
        let _ = kind_of(&mt);
    }
    let _ = image_size(body);
    let _ = index_entries(body);
    let _ = blob_sums(body);
    let _ = signed_payload(body);
    let _ = digested_bytes(body);
    let d = registry_digest(body);
    let _ = verify(body, &d);
    let _ = verify(body, "sha512:00");
    let _ = digest_of(body, "sha384");
}

/// A schema 1 body whose signatures' protected headers say anything.
fn schema1_like() -> impl Strategy<Value = Vec<u8>> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    (
        "[a-z ]{0,64}",
        prop::collection::vec(
            (absurd_number(), "[A-Za-z0-9_=-]{0,12}", prop::bool::ANY),
            0..6,
        ),
    )
        .prop_map(move |(payload, sigs)| {
            let head = format!(r#"{{"schemaVersion":1,"name":"{payload}","fsLayers":[]"#);
            let sigs: Vec<String> = sigs
                .into_iter()
                .map(|(len, tail, encode_tail)| {
                    let tail = if encode_tail { b64(&tail) } else { tail };
                    let protected = b64(&format!(
                        r#"{{"formatLength":{len},"formatTail":"{tail}"}}"#
                    ));
                    format!(r#"{{"protected":"{protected}","signature":"AA"}}"#)
                })
                .collect();
            format!("{head},\"signatures\":[{}]}}", sigs.join(",")).into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn challenges_take_any_bytes(b in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_challenge(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn links_take_any_bytes(b in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = next_link(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn retry_after_takes_any_bytes(b in prop::collection::vec(any::<u8>(), 0..128)) {
        let s = String::from_utf8_lossy(&b);
        for now in [SystemTime::UNIX_EPOCH, SystemTime::now()] {
            let _ = parse_retry_after(&s, now);
        }
    }

    #[test]
    fn retry_after_takes_absurd_numbers_and_dates(n in absurd_number(), day in 0u32..40, year in 0u32..100_000) {
        let now = SystemTime::now();
        let _ = parse_retry_after(&n, now);
        let _ = parse_retry_after(&format!("Fri, {day:02} Dec {year} 23:59:59 GMT"), now);
        if let Some(far) = now.checked_add(Duration::from_secs(u32::MAX.into())) {
            let _ = parse_retry_after(&n, far);
        }
    }

    #[test]
    fn manifests_take_any_bytes(b in prop::collection::vec(any::<u8>(), 0..4096)) {
        check_manifest(&b);
    }

    #[test]
    fn manifests_take_absurd_numbers(body in json_like(&["schemaVersion", "mediaType", "config", "layers", "manifests", "size", "digest", "platform", "os", "architecture", "variant", "annotations", "fsLayers", "blobSum", "signatures", "protected"])) {
        check_manifest(body.as_bytes());
    }

    #[test]
    fn schema1_takes_any_protected_header(body in schema1_like()) {
        check_manifest(&body);
    }

    #[test]
    fn webhook_payloads_take_any_bytes(b in prop::collection::vec(any::<u8>(), 0..2048)) {
        for kind in Kind::ALL {
            let _ = webhook::parse(kind, &b);
        }
    }

    #[test]
    fn webhook_payloads_take_sender_shaped_json(body in json_like(WEBHOOK_KEYS)) {
        for kind in Kind::ALL {
            let _ = webhook::parse(kind, body.as_bytes());
        }
    }

    #[test]
    fn webhook_proofs_take_any_bytes(
        secret in prop::collection::vec(any::<u8>(), 0..64),
        authorization in prop::option::of(prop::collection::vec(any::<u8>(), 0..256)),
        query in prop::option::of("\\PC{0,256}"),
        hub in prop::option::of(prop::collection::vec(any::<u8>(), 0..128)),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let proof = auth::Proof {
            authorization: authorization.as_deref(),
            query: query.as_deref(),
            hub_signature: hub.as_deref(),
            body: &body,
        };
        let _ = auth::authenticate(&secret, &proof);
        let _ = webhook::normalize_host(&String::from_utf8_lossy(&body));
    }
}

/// One runtime for the listing fixtures, which outlive each proptest case.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

struct Listing {
    _reg: RegistryServer,
    fixture: VendorFixture,
    ca_pem: String,
    /// One scan at a time per fixture: its behaviour is the case's bytes.
    turn: std::sync::Mutex<()>,
}

/// A path only the vendor's listing request has.
fn listing_path(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::DockerHub => "/tags",
        Vendor::Harbor => "/artifacts",
        Vendor::Quay => "/tag/",
        Vendor::Gar => "/tags/list",
        Vendor::Acr => "/_tags",
    }
}

/// A real registry with a small repository behind one fixture per vendor (made once).
fn listing(vendor: Vendor) -> &'static Listing {
    static ALL: OnceLock<Vec<(Vendor, Listing)>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        runtime().block_on(async {
            let mut out = Vec::new();
            for vendor in [
                Vendor::DockerHub,
                Vendor::Harbor,
                Vendor::Quay,
                Vendor::Gar,
                Vendor::Acr,
            ] {
                let reg = RegistryServer::start(RegistryOptions::plain())
                    .await
                    .expect("a registry");
                common::seed_small(&reg, None, "team/app").await;
                let ca = TestCa::new();
                let fixture = VendorFixture::start(vendor, &reg.url, Some(&ca))
                    .await
                    .expect("a vendor fixture");
                out.push((
                    vendor,
                    Listing {
                        _reg: reg,
                        fixture,
                        ca_pem: ca.ca_pem.clone(),
                        turn: std::sync::Mutex::new(()),
                    },
                ));
            }
            out
        })
    });
    &all.iter()
        .find(|(v, _)| *v == vendor)
        .expect("every vendor")
        .1
}

/// A scan whose native listing request gets `body`; must return, not panic.
fn scan_listing(vendor: Vendor, body: Vec<u8>) {
    let l = listing(vendor);
    let _turn = l.turn.lock().unwrap_or_else(|e| e.into_inner());
    l.fixture.reset();
    l.fixture.set_behaviour(Behaviour::Raw(body));
    runtime().block_on(async {
        // A fresh state each time: one disagreement must not turn the parser off for the rest.
        let client = RegistryClient::new(ClientOptions {
            ca_pem: Some(l.ca_pem.clone().into_bytes()),
            resolve: l.fixture.resolve(),
            ..ClientOptions::default()
        })
        .expect("a client")
        .with_state(Arc::new(RegistryState::default()));
        let target = Target::new(&l.fixture.url, "team/app").expect("a target");
        let options = ScanOptions {
            limits: ScanLimits {
                max_pages: 5,
                ..ScanLimits::default()
            },
            timeout: Duration::from_secs(30),
            ..ScanOptions::default()
        };
        let _ = scan(&client, &target, None, &options).await;
    });
    // The bytes reached the vendor's parser (not only the detection probes).
    let listed = l
        .fixture
        .requests()
        .iter()
        .any(|r| r.path.contains(listing_path(vendor)));
    assert!(listed, "{vendor:?}: no listing request was made");
}

macro_rules! listing_props {
    ($($bytes:ident, $json:ident: $vendor:expr;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
            $(
                #[test]
                fn $bytes(b in prop::collection::vec(any::<u8>(), 0..1024)) {
                    scan_listing($vendor, b);
                }

                #[test]
                fn $json(body in json_like(LISTING_KEYS)) {
                    scan_listing($vendor, body.into_bytes());
                }
            )*
        }
    };
}

listing_props! {
    docker_hub_listing_takes_any_bytes, docker_hub_listing_takes_shaped_json: Vendor::DockerHub;
    harbor_listing_takes_any_bytes, harbor_listing_takes_shaped_json: Vendor::Harbor;
    quay_listing_takes_any_bytes, quay_listing_takes_shaped_json: Vendor::Quay;
    gar_listing_takes_any_bytes, gar_listing_takes_shaped_json: Vendor::Gar;
    acr_listing_takes_any_bytes, acr_listing_takes_shaped_json: Vendor::Acr;
}

/// A scan of a registry whose every answer carries these headers; must return, not panic.
fn scan_with_headers(headers: Vec<(String, String)>) {
    runtime().block_on(async {
        let hostile = HostileRegistry::start(Attack::Headers(headers))
            .await
            .expect("a hostile registry");
        let client = RegistryClient::new(ClientOptions::default()).expect("a client");
        let target = Target::new(&hostile.url, "h").expect("a target");
        let options = ScanOptions {
            timeout: Duration::from_secs(5),
            ..ScanOptions::default()
        };
        // Spawned, as the CLI and the controller run scans: a panic comes back as an error.
        let outcome =
            tokio::spawn(async move { scan(&client, &target, None, &options).await.map(|_| ()) })
                .await;
        if let Err(e) = outcome {
            panic!("the scan panicked: {e}");
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The rate-limit headers (read by the session, not by a public parser).
    #[test]
    fn rate_limit_headers_take_absurd_numbers(
        remaining in prop_oneof![Just("0".to_string()), absurd_number()],
        reset in absurd_number(),
        limit in prop_oneof![absurd_number(), "[ -~]{0,20}"],
    ) {
        scan_with_headers(vec![
            ("X-RateLimit-Remaining".into(), remaining),
            ("X-RateLimit-Reset".into(), reset),
            ("X-RateLimit-Limit".into(), limit),
        ]);
    }
}
