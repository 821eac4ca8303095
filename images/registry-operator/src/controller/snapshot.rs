//! The last good scan of one Registry as the operator keeps it between scans: every tag and
//! the facts of every distinct manifest, packed (tag names in one string, sha256 digests as
//! bytes, each manifest's facts once however many tags point at it). It feeds the next scan
//! (no GET for known digests, failed tags keep their digest) and the change events, so the
//! watch cache does not have to hold `status.images`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::registry::cache::BoundedCache;
use crate::registry::{
    CreatedSource, Image, ManifestFacts, Platform, Referrer, Timestamp, artifact,
};

/// All objects' snapshots, and one namespace's part of them.
const SNAPSHOTS_BYTES: usize = 128 << 20;
const SNAPSHOTS_SHARE: usize = 32 << 20;

/// Every object's last good scan, by object key (`namespace/name`) with the object's UID,
/// bounded in bytes with a share per namespace: one namespace's huge repositories evict only
/// its own snapshots (or, when the whole cache is full, the biggest namespace's). An evicted
/// snapshot is read back from the status, as after a restart.
pub struct Snapshots {
    cache: BoundedCache<String, (String, Arc<Snapshot>)>,
}

impl Default for Snapshots {
    fn default() -> Self {
        Self::new(SNAPSHOTS_BYTES, SNAPSHOTS_SHARE)
    }
}

impl Snapshots {
    fn new(bytes: usize, share: usize) -> Self {
        Self {
            cache: BoundedCache::new(bytes, share),
        }
    }

    pub fn get(&self, key: &str, uid: &str) -> Option<Arc<Snapshot>> {
        self.cache
            .with(&key.to_string(), |(u, s)| (u == uid).then(|| s.clone()))
            .flatten()
    }

    /// Keeps `snapshot` for `key`; one over the namespace's share on its own is not kept
    /// (and the one before it is gone: the next scan reads the status back).
    pub fn keep(&self, key: &str, uid: &str, snapshot: Snapshot) {
        let namespace = key.split_once('/').map_or("", |(ns, _)| ns);
        let bytes = snapshot.bytes().saturating_add(key.len() + uid.len());
        let value = (uid.to_string(), Arc::new(snapshot));
        self.cache.put(namespace, key.to_string(), value, bytes);
    }

    pub fn forget(&self, key: &str) {
        self.cache.remove(&key.to_string());
    }

    pub fn bytes(&self) -> usize {
        self.cache.bytes()
    }
}

pub struct Snapshot {
    /// Tag names back to back, in version order.
    names: Box<str>,
    tags: Box<[Tag]>,
    manifests: Box<[Manifest]>,
    /// The few tags that carry a note, by index.
    notes: Box<[(u32, Box<str>)]>,
    /// Push times the registry's listing API gave, by tag index, and which lister gave them
    /// (one per scan).
    pushed: Box<[(u32, Timestamp)]>,
    pushed_by: Option<Box<str>>,
    /// Every tag of the repository is here (a snapshot read back from a capped status is not).
    pub complete: bool,
}

struct Tag {
    /// Where the name ends in `names`.
    end: u32,
    manifest: u32,
}

struct Manifest {
    digest: Digest,
    size: Option<i64>,
    media_type: Option<MediaType>,
    platforms: Box<[Platform]>,
    /// What few manifests have: an artifact type, a creation time, referrers.
    extra: Option<Box<Extra>>,
    /// The facts are complete: the next scan may trust them instead of a GET.
    trusted: bool,
}

#[derive(Default, PartialEq)]
struct Extra {
    artifact_type: Option<Box<str>>,
    /// A source without a time is an answer too: the config was read and gave none.
    created: (Option<Timestamp>, Option<CreatedSource>),
    referrers: Box<[Referrer]>,
    listed: Box<[Referrer]>,
}

impl Extra {
    fn of(f: &ManifestFacts) -> Option<Box<Self>> {
        let extra = Self {
            artifact_type: f.artifact_type.as_deref().map(Into::into),
            created: (f.created_at, f.created_source),
            referrers: f.referrers.clone().into_boxed_slice(),
            listed: f.listed.clone().into_boxed_slice(),
        };
        (extra != Self::default()).then(|| Box::new(extra))
    }

    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.artifact_type.as_deref().map_or(0, str::len)
            + self.referrers.iter().map(referrer_bytes).sum::<usize>()
            + self.listed.iter().map(referrer_bytes).sum::<usize>()
    }
}

fn referrer_bytes(r: &Referrer) -> usize {
    std::mem::size_of::<Referrer>()
        + r.digest.len()
        + r.artifact_type.as_deref().map_or(0, str::len)
}

#[derive(PartialEq, Eq, Hash, Clone)]
enum Digest {
    Sha256([u8; 32]),
    Other(Box<str>),
}

enum MediaType {
    Known(&'static str),
    Other(Box<str>),
}

const KNOWN_MEDIA_TYPES: [&str; 6] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

impl Digest {
    fn new(s: &str) -> Self {
        let mut bytes = [0u8; 32];
        match s.strip_prefix("sha256:") {
            Some(h) if h.len() == 64 && hex::decode_to_slice(h, &mut bytes).is_ok() => {
                // Upper-case hex would not round-trip; such digests stay text.
                if h.bytes().all(|b| !b.is_ascii_uppercase()) {
                    return Digest::Sha256(bytes);
                }
                Digest::Other(s.into())
            }
            _ => Digest::Other(s.into()),
        }
    }

    fn text(&self) -> String {
        match self {
            Digest::Sha256(b) => format!("sha256:{}", hex::encode(b)),
            Digest::Other(s) => s.to_string(),
        }
    }
}

impl MediaType {
    fn new(s: &str) -> Self {
        match KNOWN_MEDIA_TYPES.iter().find(|k| **k == s) {
            Some(k) => MediaType::Known(k),
            None => MediaType::Other(s.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            MediaType::Known(s) => s,
            MediaType::Other(s) => s,
        }
    }
}

impl Manifest {
    fn facts(&self) -> ManifestFacts {
        let extra = self.extra.as_deref();
        ManifestFacts {
            size: self.size,
            media_type: self.media_type.as_ref().map(|t| t.as_str().to_string()),
            platforms: self.platforms.to_vec(),
            artifact_type: extra.and_then(|e| e.artifact_type.as_deref().map(str::to_string)),
            created_at: extra.and_then(|e| e.created.0),
            created_source: extra.and_then(|e| e.created.1),
            referrers: extra.map(|e| e.referrers.to_vec()).unwrap_or_default(),
            listed: extra.map(|e| e.listed.to_vec()).unwrap_or_default(),
        }
    }
}

impl Snapshot {
    /// From a scan: its full image list and the facts it vouches for. A manifest keeps the
    /// facts as the registry gave them (without the referrers folded in from referrer tags,
    /// which the next list folds again, and with what a fallback tag's index lists).
    pub fn of_scan(images: &[Image], facts: &HashMap<String, ManifestFacts>) -> Self {
        Self::build(images, true, |i| match facts.get(&i.digest) {
            Some(f) if i.note.is_none() => (f.clone(), true),
            _ => (ManifestFacts::of(i), false),
        })
    }

    /// From a status written earlier (after a restart): images without a note have complete
    /// facts — but a fallback tag's index is read again (the status does not keep what it
    /// lists); `complete` says whether the status lists every tag.
    pub fn of_status(images: &[Image], complete: bool) -> Self {
        Self::build(images, complete, |i| {
            let trusted =
                i.note.is_none() && artifact::referrer_tag(&i.tag).is_none_or(|t| t.kind.is_some());
            (ManifestFacts::of(i), trusted)
        })
    }

    fn build(
        images: &[Image],
        complete: bool,
        facts_of: impl Fn(&Image) -> (ManifestFacts, bool),
    ) -> Self {
        let mut names = String::new();
        let mut tags = Vec::with_capacity(images.len());
        let mut manifests: Vec<Manifest> = Vec::new();
        let mut index: HashMap<(Digest, ManifestFacts), u32> = HashMap::new();
        let mut notes = Vec::new();
        let mut pushed = Vec::new();
        let mut pushed_by = None;
        // Offsets are u32: names past 4 GiB (a repository no limit stopped) would wrap them,
        // so such a snapshot ends there and is not `complete` (the status stands in).
        let mut complete = complete;
        for (i, image) in images.iter().enumerate() {
            let (Ok(end), Ok(at)) = (
                u32::try_from(names.len().saturating_add(image.tag.len())),
                u32::try_from(i),
            ) else {
                complete = false;
                break;
            };
            names.push_str(&image.tag);
            let (facts, trusted) = facts_of(image);
            let digest = Digest::new(&image.digest);
            let slot = *index
                .entry((digest.clone(), facts.clone()))
                .or_insert_with(|| {
                    manifests.push(Manifest {
                        digest,
                        size: facts.size,
                        media_type: facts.media_type.as_deref().map(MediaType::new),
                        platforms: facts.platforms.clone().into_boxed_slice(),
                        extra: Extra::of(&facts),
                        trusted: false,
                    });
                    (manifests.len() - 1) as u32
                });
            manifests[slot as usize].trusted |= trusted;
            tags.push(Tag {
                end,
                manifest: slot,
            });
            if let Some(note) = &image.note {
                notes.push((at, note.as_str().into()));
            }
            if let Some(when) = image.pushed_at {
                pushed.push((at, when));
                let by = image
                    .timestamp_source
                    .as_ref()
                    .and_then(|s| s.pushed_at.as_deref());
                if pushed_by.is_none() {
                    pushed_by = by.map(Into::into);
                }
            }
        }
        Self {
            names: names.into_boxed_str(),
            tags: tags.into_boxed_slice(),
            manifests: manifests.into_boxed_slice(),
            notes: notes.into_boxed_slice(),
            pushed: pushed.into_boxed_slice(),
            pushed_by,
            complete,
        }
    }

    /// About what the snapshot holds in memory (its share of the snapshot cache).
    pub fn bytes(&self) -> usize {
        let text = |s: &str| s.len();
        let manifests: usize = self
            .manifests
            .iter()
            .map(|m| {
                std::mem::size_of::<Manifest>()
                    + match &m.digest {
                        Digest::Other(d) => text(d),
                        Digest::Sha256(_) => 0,
                    }
                    + match &m.media_type {
                        Some(MediaType::Other(t)) => text(t),
                        _ => 0,
                    }
                    + m.platforms
                        .iter()
                        .map(|p| {
                            std::mem::size_of::<Platform>()
                                + p.os.len()
                                + p.architecture.len()
                                + p.variant.as_deref().map_or(0, text)
                                + p.digest.len()
                                + p.referrers.iter().map(referrer_bytes).sum::<usize>()
                        })
                        .sum::<usize>()
                    + m.extra.as_ref().map_or(0, |e| e.bytes())
            })
            .sum();
        std::mem::size_of::<Self>()
            + self.names.len()
            + self.tags.len() * std::mem::size_of::<Tag>()
            + manifests
            + self.notes.iter().map(|(_, n)| 24 + n.len()).sum::<usize>()
            + self.pushed.len() * std::mem::size_of::<(u32, Timestamp)>()
            + self.pushed_by.as_deref().map_or(0, str::len)
    }

    fn tag(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.tags[i - 1].end } as usize;
        &self.names[start..self.tags[i].end as usize]
    }

    /// The image list as the scan found it.
    pub fn images(&self) -> Vec<Image> {
        (0..self.tags.len())
            .map(|i| {
                let m = &self.manifests[self.tags[i].manifest as usize];
                let note = self
                    .notes
                    .iter()
                    .find(|(n, _)| *n as usize == i)
                    .map(|(_, note)| note.to_string());
                let mut image = Image::of(self.tag(i), &m.digest.text(), &m.facts(), note);
                // In tag order: a binary search, not a scan per tag.
                if let Ok(at) = self.pushed.binary_search_by_key(&i, |(n, _)| *n as usize) {
                    let when = self.pushed[at].1;
                    image.set_pushed_at(when, self.pushed_by.as_deref().unwrap_or_default());
                }
                image
            })
            .collect()
    }

    /// Facts the next scan may use instead of a manifest GET.
    pub fn known(&self) -> HashMap<String, ManifestFacts> {
        self.manifests
            .iter()
            .filter(|m| m.trusted)
            .map(|m| (m.digest.text(), m.facts()))
            .collect()
    }

    /// Tag → digest: a tag the next scan cannot read keeps its digest.
    pub fn known_tags(&self) -> HashMap<String, String> {
        (0..self.tags.len())
            .map(|i| {
                let m = &self.manifests[self.tags[i].manifest as usize];
                (self.tag(i).to_string(), m.digest.text())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ReferrerKind;

    fn image(tag: &str, n: u8, note: Option<&str>) -> Image {
        Image {
            tag: tag.into(),
            digest: format!("sha256:{}", hex::encode([n; 32])),
            size: Some(100 + i64::from(n)),
            media_type: Some(KNOWN_MEDIA_TYPES[0].into()),
            platforms: vec![],
            note: note.map(Into::into),
            ..Image::default()
        }
    }

    #[test]
    fn round_trips_images_and_shares_manifests() {
        let mut images = vec![
            image("1.0", 1, None),
            image("1.1", 1, None),
            image("2.0", 2, Some("manifest could not be read")),
        ];
        images.push(Image {
            tag: "odd".into(),
            digest: "sha512:abc".into(),
            size: None,
            media_type: Some("application/x-custom".into()),
            platforms: vec![Platform {
                os: "linux".into(),
                architecture: "arm64".into(),
                variant: Some("v8".into()),
                digest: "sha256:ff".into(),
                size: Some(3),
                referrers: vec![Referrer {
                    digest: "sha256:aa".into(),
                    artifact_type: Some("application/vnd.in-toto+json".into()),
                    kind: ReferrerKind::Attestation,
                }],
            }],
            note: None,
            ..Image::default()
        });
        // Every field #17 and #18 added survives the packing.
        let mut artifact = Image::of(
            "chart-1.0",
            &format!("sha256:{}", hex::encode([7; 32])),
            &ManifestFacts {
                size: Some(9),
                media_type: Some(KNOWN_MEDIA_TYPES[0].into()),
                artifact_type: Some("application/vnd.cncf.helm.config.v1+json".into()),
                created_at: Timestamp::from_unix(1_700_000_000),
                created_source: Some(CreatedSource::Config),
                referrers: vec![Referrer {
                    digest: "sha256:bb".into(),
                    artifact_type: Some("application/vnd.cncf.notary.signature".into()),
                    kind: ReferrerKind::Signature,
                }],
                ..ManifestFacts::default()
            },
            None,
        );
        artifact.set_pushed_at(Timestamp::from_unix(1_700_000_100).unwrap(), "harbor");
        images.push(artifact);
        // A config read that found no creation time is remembered as such.
        images.push(Image::of(
            "no-created",
            &format!("sha256:{}", hex::encode([8; 32])),
            &ManifestFacts {
                size: Some(10),
                created_source: Some(CreatedSource::Config),
                ..ManifestFacts::default()
            },
            None,
        ));
        images.push(Image {
            digest: format!("sha256:{}", "AB".repeat(32)),
            tag: "upper".into(),
            ..image("x", 0, None)
        });
        let facts: HashMap<String, ManifestFacts> = images
            .iter()
            .filter(|i| i.note.is_none())
            .map(|i| (i.digest.clone(), ManifestFacts::of(i)))
            .collect();
        let s = Snapshot::of_scan(&images, &facts);
        assert_eq!(s.images(), images);
        assert_eq!(s.manifests.len(), 6, "1.0 and 1.1 share one manifest");
        assert_eq!(s.tags.len(), 7);
        let known = s.known();
        assert_eq!(known.len(), 5, "the noted tag's manifest is not trusted");
        let marker = &known[&format!("sha256:{}", hex::encode([8; 32]))];
        assert_eq!(
            (marker.created_at, marker.created_source),
            (None, Some(CreatedSource::Config))
        );
        assert!(!known.contains_key(&images[2].digest));
        assert_eq!(s.known_tags()["2.0"], images[2].digest);
    }

    #[test]
    fn keeps_the_registry_facts_not_the_folded_referrers() {
        let signature = Referrer {
            digest: format!("sha256:{}", hex::encode([9; 32])),
            artifact_type: None,
            kind: ReferrerKind::Signature,
        };
        let app = image("1.0", 1, None);
        let fallback = Image {
            tag: format!("sha256-{}", hex::encode([1; 32])),
            ..image("", 3, None)
        };
        let listed = ManifestFacts {
            listed: vec![signature.clone()],
            ..ManifestFacts::of(&fallback)
        };
        let facts = HashMap::from([
            (app.digest.clone(), ManifestFacts::of(&app)),
            (fallback.digest.clone(), listed.clone()),
        ]);
        // What the scan's fold made of the image: its referrers gained the tag's.
        let folded = Image {
            referrers: vec![signature],
            ..app.clone()
        };
        let s = Snapshot::of_scan(&[folded, fallback.clone()], &facts);
        let known = s.known();
        assert_eq!(known.len(), 2, "both trusted: no GET next time");
        assert_eq!(
            known[&app.digest],
            ManifestFacts::of(&app),
            "no folded referrer"
        );
        assert_eq!(
            known[&fallback.digest], listed,
            "what the index lists is kept"
        );
        assert_eq!(s.images(), [app, fallback.clone()]);
        let after_restart = Snapshot::of_status(&[fallback], true);
        assert!(
            after_restart.known().is_empty(),
            "a status does not keep what a fallback index lists: read it again"
        );
    }

    #[test]
    fn a_status_snapshot_trusts_images_without_notes() {
        let images = vec![image("a", 1, None), image("b", 2, Some("size unknown"))];
        let s = Snapshot::of_status(&images, false);
        assert!(!s.complete);
        assert_eq!(s.known().len(), 1);
        assert_eq!(s.images(), images);
    }
}

#[cfg(test)]
mod bounded {
    use super::*;

    fn snapshot(tags: usize, tag_bytes: usize) -> Snapshot {
        let images: Vec<Image> = (0..tags)
            .map(|i| Image {
                tag: format!("{i:0tag_bytes$}"),
                digest: format!("sha256:{}", hex::encode([(i % 251) as u8; 32])),
                size: Some(1),
                media_type: None,
                platforms: vec![],
                note: None,
                ..Image::default()
            })
            .collect();
        Snapshot::of_scan(&images, &HashMap::new())
    }

    #[test]
    fn one_namespaces_huge_snapshots_cannot_evict_anothers() {
        let one = snapshot(100, 100);
        let size = one.bytes();
        assert!(size > 100 * 100, "counts its tag names: {size}");
        let snapshots = Snapshots::new(20 * size, 4 * size);
        snapshots.keep("victim/a", "u1", snapshot(100, 100));
        snapshots.keep("victim/b", "u2", snapshot(100, 100));
        for i in 0..200 {
            snapshots.keep(&format!("flood/o{i}"), "u", snapshot(100, 100));
            assert!(snapshots.bytes() <= 20 * size);
        }
        assert!(snapshots.get("victim/a", "u1").is_some());
        assert!(snapshots.get("victim/b", "u2").is_some());
        assert!(
            snapshots.get("victim/a", "other-uid").is_none(),
            "another object's"
        );
        assert!(
            snapshots.get("flood/o199", "u").is_some(),
            "the newest stays"
        );
        assert!(snapshots.get("flood/o0", "u").is_none(), "the oldest went");
        snapshots.keep("flood/huge", "u", snapshot(1000, 100));
        assert!(
            snapshots.get("flood/huge", "u").is_none(),
            "over the share: not kept"
        );
        snapshots.forget("victim/a");
        assert!(snapshots.get("victim/a", "u1").is_none());
    }
}
