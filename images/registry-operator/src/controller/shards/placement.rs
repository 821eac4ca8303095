//! Where an object belongs: a stable hash of the registry origin and repository it scans, so
//! that every object that could share a scan of one repository lands in one shard (one
//! replica). The hash picks one of [`BUCKETS`] buckets, written on the object as a label; a
//! shard is a set of buckets (`bucket % count`), so the label does not depend on the shard
//! count and never has to be rewritten when the count changes, and a replica watches its
//! shards with a label selector listing their buckets.
//!
//! FNV-1a with its standard offset: identical in every replica and every release, unlike std's
//! randomly seeded hasher.

use std::fmt::Write as _;

use crate::api::RegistrySpec;
use crate::registry::Target;

/// The label that says which bucket an object's spec hashes to. A hint for the watches only:
/// ownership is always decided from the spec itself, so writing it steers nothing.
pub const BUCKET_LABEL: &str = "registry.kubecontroller.io/shard-bucket";

/// Buckets the objects hash into. Shards take `bucket % count`: with at most 256 shards each
/// holds 4 or more buckets, which keeps the buckets' own unevenness small (for 3 shards:
/// 342, 341 and 341 buckets), and the largest selector (every bucket, the labeller's) stays a
/// few KiB.
pub const BUCKETS: u32 = 1024;

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a (64 bit) of `parts` joined by `\n` (which neither a host nor a repository holds).
pub fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut hash = OFFSET;
    for (i, part) in parts.into_iter().enumerate() {
        let sep = (i > 0).then_some(b'\n');
        for b in sep.into_iter().chain(part.bytes()) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

/// What a shard is keyed by: the normalised registry (host, port, path prefix; `docker.io` and
/// its aliases are one registry) and the repository (`nginx` on Docker Hub is
/// `library/nginx`). A spec that forms no target still gets a fixed place, from its raw url
/// and repository.
pub fn placement_key(url: &str, repository: &str) -> (String, String) {
    match Target::new(url, repository) {
        Ok(t) => {
            let base = t.base_url();
            let origin = format!("{}{}", t.registry(), base.path().trim_end_matches('/'));
            (origin, t.repository().to_string())
        }
        Err(_) => (format!("raw:{}", url.trim()), repository.trim().to_string()),
    }
}

/// The bucket of an object that scans `repository` at `url`.
pub fn bucket_of(url: &str, repository: &str) -> u32 {
    let (origin, repository) = placement_key(url, repository);
    // ok: the remainder is below BUCKETS, which fits a u32.
    (fnv1a([origin.as_str(), repository.as_str()]) % u64::from(BUCKETS)) as u32
}

pub fn bucket_of_spec(spec: &RegistrySpec) -> u32 {
    bucket_of(&spec.url, &spec.repository)
}

/// The shard a bucket belongs to when the objects are split into `count` shards.
pub fn shard_of_bucket(bucket: u32, count: u32) -> u32 {
    bucket % count.max(1)
}

/// The shard of an object that scans `repository` at `url`, of `count` shards.
pub fn shard_of(url: &str, repository: &str, count: u32) -> u32 {
    shard_of_bucket(bucket_of(url, repository), count)
}

/// The label value of a bucket.
pub fn bucket_label(bucket: u32) -> String {
    bucket.to_string()
}

/// The bucket a label value names, if it names one.
pub fn parse_bucket(value: &str) -> Option<u32> {
    // Only the canonical spelling: "007" is no bucket, so that the selectors (which list the
    // canonical values) and this agree.
    let b: u32 = value.parse().ok()?;
    (b < BUCKETS && bucket_label(b) == value).then_some(b)
}

fn bucket_list(buckets: impl Iterator<Item = u32>) -> String {
    let mut s = String::new();
    for b in buckets {
        if !s.is_empty() {
            s.push(',');
        }
        let _ = write!(s, "{b}");
    }
    s
}

/// The label selector of the objects labelled for `shard` of `count`.
pub fn shard_selector(shard: u32, count: u32) -> String {
    let count = count.max(1);
    format!(
        "{BUCKET_LABEL} in ({})",
        bucket_list((0..BUCKETS).filter(|b| shard_of_bucket(*b, count) == shard))
    )
}

/// The label selector of the objects no shard watch sees: no label, or a value that names no
/// bucket (`notin` also matches objects without the label).
pub fn unlabelled_selector() -> String {
    format!("{BUCKET_LABEL} notin ({})", bucket_list(0..BUCKETS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_and_pinned() {
        // Published FNV-1a 64 test vector: "a" → af63dc4c8601ec8c.
        assert_eq!(fnv1a(["a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(["a", "b"]), fnv1a(["a\nb"]));
        // Pinned: replicas of different releases must agree on every object's bucket.
        // (FNV-1a 64 of "r.example.com\nteam/app" is 0x6769d986753b4ee9.)
        assert_eq!(bucket_of("https://r.example.com", "team/app"), 745);
        assert_eq!(shard_of("https://r.example.com", "team/app", 3), 1);
    }

    #[test]
    fn one_registry_and_repository_is_one_place_however_it_is_spelled() {
        let hub = bucket_of("docker.io", "nginx");
        for (url, repo) in [
            ("https://registry-1.docker.io", "library/nginx"),
            ("index.docker.io", "/library/nginx/"),
            ("https://docker.io/v2/", "nginx"),
            ("registry.hub.docker.com", "library/nginx"),
        ] {
            assert_eq!(bucket_of(url, repo), hub, "{url} {repo}");
        }
        assert_eq!(
            bucket_of("https://R.example.com:443/", "a/b"),
            bucket_of("r.example.com", "a/b")
        );
        assert_ne!(
            placement_key("r.example.com:5000", "a/b"),
            placement_key("r.example.com", "a/b")
        );
        assert_ne!(
            placement_key("r.example.com/mirror", "a/b"),
            placement_key("r.example.com", "a/b")
        );
        // No target: still one fixed place.
        assert_eq!(placement_key("ftp://x", "a").0, "raw:ftp://x");
        assert_eq!(bucket_of("ftp://x", "a"), bucket_of(" ftp://x", "a "));
    }

    #[test]
    fn repositories_spread_evenly_and_objects_follow_them() {
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            counts[shard_of("r.example.com", &format!("team/app-{i}"), 3) as usize] += 1;
        }
        for c in counts {
            assert!((850..=1150).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn the_selectors_partition_the_buckets() {
        for count in [1, 2, 3, 7, 256] {
            let mut seen = 0;
            for s in 0..count {
                let sel = shard_selector(s, count);
                let inner = sel
                    .strip_prefix(&format!("{BUCKET_LABEL} in ("))
                    .and_then(|r| r.strip_suffix(')'))
                    .unwrap();
                for v in inner.split(',') {
                    let b = parse_bucket(v).unwrap();
                    assert_eq!(shard_of_bucket(b, count), s);
                    seen += 1;
                }
            }
            assert_eq!(seen, BUCKETS);
        }
        assert!(unlabelled_selector().len() < 8 * 1024);
        assert_eq!(parse_bucket("007"), None);
        assert_eq!(parse_bucket("1024"), None);
        assert_eq!(parse_bucket("-1"), None);
        assert_eq!(parse_bucket("12"), Some(12));
    }
}
