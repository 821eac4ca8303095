//! Synthetic repositories with known content: single-platform images (Docker and OCI), some
//! multi-arch indexes (some with buildkit attestations), and many tags per digest.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use testenv::push::{Format, ImageSpec, Pusher};

/// What was pushed to one repository, so that every tool's answer can be checked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fixture {
    pub repo: String,
    /// Tag → manifest digest (the index digest for a multi-arch tag).
    pub digests: BTreeMap<String, String>,
    pub images: usize,
    pub indexes: usize,
    /// Platform manifests behind the indexes (attestations not counted).
    pub index_children: usize,
    /// Attestation manifests behind the indexes.
    pub attestations: usize,
}

impl Fixture {
    pub fn tags(&self) -> usize {
        self.digests.len()
    }

    /// Distinct digests the tags point at.
    pub fn distinct(&self) -> usize {
        let mut d: Vec<&String> = self.digests.values().collect();
        d.sort();
        d.dedup();
        d.len()
    }

    /// What a first scan must GET: every distinct tagged digest once, plus each index's
    /// platform manifests once.
    pub fn expected_first_gets(&self) -> usize {
        self.distinct() + self.index_children
    }

    /// How many of `found` (tag → digest) agree with what was pushed; the rest are listed.
    pub fn check(&self, found: &HashMap<String, String>) -> Check {
        let mut ok = 0;
        let mut wrong = Vec::new();
        for (tag, digest) in &self.digests {
            match found.get(tag) {
                Some(d) if d == digest => ok += 1,
                Some(d) => wrong.push(format!("{tag}: {d} (pushed {digest})")),
                None => wrong.push(format!("{tag}: missing")),
            }
        }
        Check { ok, wrong }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub ok: usize,
    pub wrong: Vec<String>,
}

/// A version-like tag name, unique per `t`: `1.0.0`, `1.0.1`, … `1.99.9`, `2.0.0`, …
pub fn tag_name(t: usize) -> String {
    format!("{}.{}.{}", 1 + t / 1000, (t / 10) % 100, t % 10)
}

/// Pushes `images` single-platform images and `indexes` multi-arch indexes to `repo`, then
/// `tags` tags spread evenly over them (tag `t` points at digest `t mod (images + indexes)`).
pub async fn fill(
    pusher: &Pusher,
    repo: &str,
    tags: usize,
    images: usize,
    indexes: usize,
    seed: u64,
) -> anyhow::Result<Fixture> {
    anyhow::ensure!(tags >= images + indexes, "{repo}: fewer tags than digests");
    // Single-platform images: Docker and OCI alternating, 2–3 layers of a few KiB each.
    let specs: Vec<ImageSpec> = (0..images)
        .map(|i| {
            let format = if i % 2 == 0 {
                Format::Oci
            } else {
                Format::Docker
            };
            let mut layers = vec![4096 + (i * 131) % 8192, 1024 + (i * 17) % 2048];
            if i % 3 == 0 {
                layers.push(512 + i % 700);
            }
            ImageSpec::new(format, seed * 1_000_000 + i as u64, &layers)
        })
        .collect();
    let items: Vec<(Option<&str>, &ImageSpec)> = specs.iter().map(|s| (None, s)).collect();
    let pushed = pusher
        .push_many(repo, &items)
        .await
        .with_context(|| format!("pushing images to {repo}"))?;
    let mut digests: Vec<String> = pushed.iter().map(|p| p.digest.clone()).collect();

    // Multi-arch: amd64 + arm64 (+ arm/v7 every third), OCI with attestations or Docker lists.
    let mut index_children = 0;
    let mut attestations = 0;
    for k in 0..indexes {
        let format = if k % 2 == 0 {
            Format::Oci
        } else {
            Format::Docker
        };
        let mut platforms = vec![("amd64", None), ("arm64", None)];
        if k % 3 == 0 {
            platforms.push(("arm", Some("v7")));
        }
        let child_specs: Vec<ImageSpec> = platforms
            .iter()
            .enumerate()
            .map(|(p, (arch, variant))| {
                ImageSpec::new(
                    format,
                    seed * 1_000_000 + 500_000 + (k * 8 + p) as u64,
                    &[6000 + k * 10 + p, 1500],
                )
                .platform("linux", arch, *variant)
            })
            .collect();
        let items: Vec<(Option<&str>, &ImageSpec)> =
            child_specs.iter().map(|s| (None, s)).collect();
        let children = pusher.push_many(repo, &items).await?;
        let pairs: Vec<(&ImageSpec, &testenv::push::PushedImage)> =
            child_specs.iter().zip(children.iter()).collect();
        let with_attestation = format == Format::Oci;
        let index = pusher
            .push_index(repo, None, format, &pairs, with_attestation)
            .await
            .with_context(|| format!("pushing an index to {repo}"))?;
        index_children += index.children.len();
        attestations += index.attestations.len();
        digests.push(index.digest);
    }

    // Tags, grouped by digest so that each manifest is sent once per tag PUT batch.
    let mut by_digest: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut tag_map = BTreeMap::new();
    for t in 0..tags {
        let d = t % digests.len();
        by_digest.entry(d).or_default().push(tag_name(t));
        tag_map.insert(tag_name(t), digests[d].clone());
    }
    futures::stream::iter(by_digest.into_iter().map(|(d, names)| {
        let digest = digests[d].clone();
        async move { pusher.tag_many(repo, &names, &digest).await }
    }))
    .buffer_unordered(4)
    .try_collect::<Vec<()>>()
    .await
    .with_context(|| format!("tagging {repo}"))?;

    Ok(Fixture {
        repo: repo.to_string(),
        digests: tag_map,
        images,
        indexes,
        index_children,
        attestations,
    })
}
