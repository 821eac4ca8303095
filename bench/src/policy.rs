//! Version policy evaluation (issue #17): `spec.policy` over 20,000 tags, each kind, in
//! process — what one scan adds on top of its requests. The median of several runs counts.

use std::time::Instant;

use registry_operator::registry::policy::{Kind, Order, Policy};
use registry_operator::registry::{Image, Timestamp};

/// Tags of the measured repository (the issue's figure).
pub const TAGS: usize = 20_000;
const RUNS: usize = 7;
/// What one evaluation of 20,000 tags may take (a fraction of one scan's HEADs).
pub const TARGET_MS: f64 = 100.0;

#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyRun {
    pub policy: String,
    pub tags: usize,
    pub median_ms: f64,
    pub latest: Option<String>,
}

/// Semver-looking tags with prereleases, build tags and junk mixed in, with creation times.
fn images() -> Vec<Image> {
    (0..TAGS)
        .map(|i| {
            let tag = match i % 10 {
                0 => format!("main-{i:07x}-{}", 1_700_000_000 + i),
                1 => format!("{}.{}.{}-rc.{}", i / 1000, (i / 10) % 100, i % 10, i % 3),
                2 => format!("v{}.{}.{}", i / 1000, (i / 10) % 100, i % 10),
                3 => format!("sha-{i:040x}"),
                _ => format!("{}.{}.{}", i / 1000, (i / 10) % 100, i % 10 + i % 7),
            };
            Image {
                digest: format!("sha256:{i:064x}"),
                created_at: Timestamp::from_unix(1_700_000_000 + i as i64),
                tag,
                ..Image::default()
            }
        })
        .collect()
}

/// Name, kind, filterTags pattern and extract, minAge.
type Case = (
    &'static str,
    Kind,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

pub fn measure() -> anyhow::Result<Vec<PolicyRun>> {
    let list = images();
    let now = Timestamp::from_unix(1_800_000_000).unwrap_or_else(Timestamp::now);
    let cases: Vec<Case> = vec![
        (
            "semver ^3.0",
            Kind::Semver {
                range: "^3.0".into(),
            },
            None,
            None,
            None,
        ),
        (
            "semver >=1.0.0-0 <15 || ~19.2, minAge 24h",
            Kind::Semver {
                range: ">=1.0.0-0 <15 || ~19.2".into(),
            },
            None,
            None,
            Some("24h"),
        ),
        (
            "numerical asc, filterTags ^main-[a-f0-9]+-(?P<ts>\\d+)$ → $ts",
            Kind::Numerical(Order::Asc),
            Some(r"^main-[a-f0-9]+-(?P<ts>\d+)$"),
            Some("$ts"),
            None,
        ),
        (
            "alphabetical desc",
            Kind::Alphabetical(Order::Desc),
            None,
            None,
            None,
        ),
        ("newestBuild", Kind::NewestBuild, None, None, None),
    ];
    let mut out = Vec::new();
    for (name, kind, pattern, extract, min_age) in cases {
        let mut times = Vec::with_capacity(RUNS);
        let mut latest = None;
        for _ in 0..RUNS {
            let t = Instant::now();
            // Compiling is part of each scan's cost: the operator builds the policy per scan.
            let policy = Policy::new(&kind, pattern, extract, min_age)?;
            let e = policy.evaluate(&list, now);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            latest = e.latest.map(|l| l.tag);
        }
        times.sort_by(f64::total_cmp);
        out.push(PolicyRun {
            policy: name.to_string(),
            tags: list.len(),
            median_ms: times[times.len() / 2],
            latest,
        });
    }
    Ok(out)
}
