//! Manifest media types, digest checks, and what a manifest says about size and platforms.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use sha2::{Sha256, Sha512};

use super::digest::valid_digest;
use super::schema1::{self, SCHEMA1_MANIFEST, SCHEMA1_SIGNED, Signing};
use crate::registry::{Platform, Referrer, ReferrerKind, artifact};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Every manifest type we understand; sent as `Accept` so registries neither convert nor refuse
/// (without the schema 1 types some registries answer 404 for a schema 1 tag).
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws, \
application/vnd.docker.distribution.manifest.v1+json";

/// Manifests are small; distribution itself refuses ones over 4 MiB.
pub const MANIFEST_BODY_LIMIT: usize = 4 << 20;

/// Longest media type kept: RFC 6838 §4.2 caps type and subtype names at 127 characters each,
/// so `type/subtype` fits in 255 (what the OCI image spec's media types follow).
pub const MAX_MEDIA_TYPE: usize = 255;
/// Longest platform fields of an index kept. The OCI image spec takes `os` and `architecture`
/// from Go's GOOS/GOARCH (the longest today: `dragonfly`, `loong64`, ~10 characters) and
/// `variant` from a short list (`v8`, `v7`, `v6`); these leave room for any new ones.
pub const MAX_PLATFORM_OS: usize = 64;
pub const MAX_PLATFORM_ARCHITECTURE: usize = 64;
pub const MAX_PLATFORM_VARIANT: usize = 32;
/// A digest's text: `sha512:` and 128 hex digits is the longest registered algorithm's.
pub const MAX_DIGEST: usize = 256;

/// `text` as a media type worth keeping: at most [`MAX_MEDIA_TYPE`] printable ASCII characters
/// without spaces; anything else is no media type at all (the manifest is then of an unknown
/// kind, and nothing a registry made up is kept whole).
fn bounded_media_type(text: &str) -> Option<&str> {
    (text.len() <= MAX_MEDIA_TYPE && text.bytes().all(|b| b.is_ascii_graphic())).then_some(text)
}

/// What kind of manifest a body is, by its own `mediaType` or else the `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
    /// Legacy schema 1: no sizes in the manifest, digest over the unsigned payload.
    Schema1,
    Unknown,
}

pub fn kind_of(media_type: &str) -> Kind {
    match media_type {
        DOCKER_MANIFEST | OCI_MANIFEST => Kind::Image,
        DOCKER_MANIFEST_LIST | OCI_INDEX => Kind::Index,
        SCHEMA1_MANIFEST | SCHEMA1_SIGNED => Kind::Schema1,
        _ => Kind::Unknown,
    }
}

/// The media type a manifest body declares, falling back to the response's `Content-Type`;
/// an OCI manifest may omit `mediaType`, so its shape decides then.
pub fn media_type_of(body: &[u8], content_type: Option<&str>) -> String {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
        layers: Option<serde::de::IgnoredAny>,
        #[serde(rename = "fsLayers")]
        fs_layers: Option<serde::de::IgnoredAny>,
        signatures: Option<serde::de::IgnoredAny>,
    }
    let probe: Option<Probe> = serde_json::from_slice(body).ok();
    if let Some(mt) = probe.as_ref().and_then(|p| p.media_type.as_deref()) {
        return bounded_media_type(mt).unwrap_or_default().to_string();
    }
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| kind_of(c) != Kind::Unknown);
    if let Some(h) = header {
        return h;
    }
    match probe {
        Some(p) if p.manifests.is_some() => OCI_INDEX.into(),
        Some(p) if p.layers.is_some() => OCI_MANIFEST.into(),
        Some(p) if p.fs_layers.is_some() && p.signatures.is_some() => SCHEMA1_SIGNED.into(),
        Some(p) if p.fs_layers.is_some() => SCHEMA1_MANIFEST.into(),
        _ => bounded_media_type(
            content_type
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
        )
        .unwrap_or_default()
        .to_string(),
    }
}

/// `sha256:<hex>` (or sha512) of the bytes, in the algorithm `expected` names.
pub fn digest_of(body: &[u8], algorithm: &str) -> Option<String> {
    digest_of_parts(&[body], algorithm)
}

/// The digest of the pieces one after the other, without joining them.
fn digest_of_parts(parts: &[&[u8]], algorithm: &str) -> Option<String> {
    fn hash<D: sha2::Digest>(parts: &[&[u8]]) -> String {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        hex::encode(d.finalize())
    }
    match algorithm {
        "sha256" => Some(format!("sha256:{}", hash::<Sha256>(parts))),
        "sha512" => Some(format!("sha512:{}", hash::<Sha512>(parts))),
        _ => None,
    }
}

/// `Ok` when `body` hashes to `digest`, else why not. Unknown algorithms cannot be checked and
/// fail. A signed schema 1 manifest also matches the digest of its payload without signatures
/// (what distribution reports), besides that of its bytes (what simpler registries report).
pub fn check(body: &[u8], digest: &str) -> Result<(), String> {
    let mismatch = || format!("manifest does not match its digest {digest}");
    let alg = digest
        .split_once(':')
        .map(|(alg, _)| alg)
        .ok_or_else(mismatch)?;
    if digest_of(body, alg).is_some_and(|actual| actual == digest) {
        return Ok(());
    }
    match schema1::signing(body) {
        s @ Signing::Signed { .. } => {
            if digest_of_parts(&schema1::digested_parts(body, &s), alg)
                .is_some_and(|actual| actual == digest)
            {
                Ok(())
            } else {
                Err(mismatch())
            }
        }
        Signing::Unverifiable(why) => Err(format!(
            "{} (its schema 1 signatures were not checked: {why})",
            mismatch()
        )),
        Signing::Unsigned => Err(mismatch()),
    }
}

/// True when `body` hashes to `digest` (see [`check`]).
pub fn verify(body: &[u8], digest: &str) -> bool {
    check(body, digest).is_ok()
}

/// The digest a registry reports for `body` (schema 1: of the payload without signatures).
pub fn registry_digest(body: &[u8]) -> String {
    let signing = schema1::signing(body);
    digest_of_parts(&schema1::digested_parts(body, &signing), "sha256").unwrap_or_default()
}

/// Config plus layers: the compressed bytes a pull downloads.
pub fn image_size(body: &[u8]) -> Result<i64, String> {
    image_summary(body).map(|(size, _)| size)
}

/// An image manifest's size (config plus layers) and, when it holds an artifact rather than
/// a container image, its type (see [`artifact::artifact_type`]).
pub fn image_summary(body: &[u8]) -> Result<(i64, Option<String>), String> {
    let m: ImageManifest =
        serde_json::from_slice(body).map_err(|e| format!("image manifest does not parse: {e}"))?;
    let total = m
        .layers()
        .iter()
        .map(Descriptor::size)
        .try_fold(m.config().size(), u64::checked_add)
        .ok_or("manifest sizes overflow")?;
    let size = i64::try_from(total).map_err(|_| "manifest sizes overflow".to_string())?;
    let declared = m.artifact_type().as_ref().map(ToString::to_string);
    let layers: Vec<String> = m
        .layers()
        .iter()
        .take(MAX_LAYER_TYPES)
        .map(|l| l.media_type().to_string())
        .collect();
    let kind = artifact::artifact_type(
        declared.as_deref(),
        m.config().media_type().as_ref(),
        layers.iter().map(String::as_str),
    )
    .and_then(bounded_media_type)
    .map(str::to_string);
    Ok((size, kind))
}

/// Layers whose media types may name an artifact: the first few say it (cosign's legacy tags
/// carry one layer per signature, all of one type).
const MAX_LAYER_TYPES: usize = 8;

/// Referrers kept from one referrers index (a fallback tag): the status lists every image's,
/// so a registry (or a pusher) cannot grow it without bound.
pub const MAX_LISTED_REFERRERS: usize = 64;

/// What an index says besides its platforms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexExtra {
    /// The index's own `artifactType`.
    pub artifact_type: Option<String>,
    /// Descriptors without a platform that are not buildkit's attestation manifests: what a referrers index lists. At most
    /// [`MAX_LISTED_REFERRERS`], each with a valid digest.
    pub listed: Vec<Referrer>,
}

/// The OCI annotation a publisher sets to the image's build time.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// Earliest creation time taken at its word: anything before is a zeroed or made-up value
/// (reproducible builds write 1970-01-01), not a build time to order by.
const EARLIEST_CREATED: i64 = 315_532_800; // 1980-01-01T00:00:00Z
/// A creation time further ahead of the clock than this is a wrong clock, not a build.
const CREATED_FUTURE_SLACK: i64 = 86_400;

/// The manifest's or index's own `org.opencontainers.image.created` annotation (never an
/// index entry's): `None` when absent, not RFC 3339, or absurd.
pub fn created_annotation(body: &[u8]) -> Option<crate::registry::Timestamp> {
    #[derive(serde::Deserialize)]
    struct Annotated {
        #[serde(default)]
        annotations: Option<std::collections::HashMap<String, serde_json::Value>>,
    }
    let annotated: Annotated = serde_json::from_slice(body).ok()?;
    let text = annotated.annotations?.remove(CREATED_ANNOTATION)?;
    let at = crate::registry::Timestamp::parse(text.as_str()?)?;
    let latest = crate::registry::Timestamp::now()
        .unix()
        .saturating_add(CREATED_FUTURE_SLACK);
    (EARLIEST_CREATED..=latest)
        .contains(&at.unix())
        .then_some(at)
}

/// One platform entry of an index, before its size is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub platform: Platform,
    pub media_type: String,
}

/// The real platforms of an index: buildkit attestation manifests (platform unknown/unknown or
/// annotated `vnd.docker.reference.type: attestation-manifest`) are not platforms. An index
/// whose fields are longer than the spec's (see [`MAX_PLATFORM_OS`] and the rest) is refused.
pub fn index_entries(body: &[u8]) -> Result<Vec<IndexEntry>, String> {
    index_contents(body).map(|(entries, _)| entries)
}

/// buildkit's annotations on an attestation manifest in an index (docker docs,
/// "Attestation storage"): its type, and the digest of the platform manifest it describes.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// An index's platforms (see [`index_entries`]), each with the buildkit attestation manifests
/// that name it as `platforms[].referrers` (never as platforms, never fetched, not in any
/// size), and what else it says.
pub fn index_contents(body: &[u8]) -> Result<(Vec<IndexEntry>, IndexExtra), String> {
    let index: ImageIndex =
        serde_json::from_slice(body).map_err(|e| format!("image index does not parse: {e}"))?;
    let mut out: Vec<IndexEntry> = Vec::new();
    let mut attestations: Vec<(String, String)> = Vec::new();
    let mut listed = Vec::new();
    for d in index.manifests() {
        let annotation = |key: &str| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(key))
                .map(String::as_str)
        };
        let is_attestation = annotation(REFERENCE_TYPE) == Some(ATTESTATION_MANIFEST);
        let (os, architecture, variant) = match d.platform() {
            Some(p) => (
                p.os().to_string(),
                p.architecture().to_string(),
                p.variant().clone(),
            ),
            None => ("unknown".to_string(), "unknown".to_string(), None),
        };
        let digest = d.digest().to_string();
        if is_attestation {
            if let Some(subject) = annotation(REFERENCE_DIGEST)
                && attestations.len() < MAX_LISTED_REFERRERS
                && valid_digest(&digest)
                && valid_digest(subject)
            {
                attestations.push((subject.to_string(), digest));
            }
            continue;
        }
        // A descriptor without a platform is no platform: in a referrers index (a fallback
        // tag) none has one. Real platforms stay platforms whatever else they declare.
        if os == "unknown" && architecture == "unknown" {
            let artifact_type = d.artifact_type().as_ref().map(ToString::to_string);
            if listed.len() < MAX_LISTED_REFERRERS && valid_digest(&digest) {
                let artifact_type = artifact_type
                    .as_deref()
                    .and_then(bounded_media_type)
                    .map(str::to_string);
                let kind =
                    artifact::descriptor_kind(artifact_type.as_deref(), |key| annotation(key));
                listed.push(Referrer {
                    digest,
                    artifact_type,
                    kind,
                });
            }
            continue;
        }
        let media_type = d.media_type().to_string();
        if os.len() > MAX_PLATFORM_OS
            || architecture.len() > MAX_PLATFORM_ARCHITECTURE
            || variant
                .as_ref()
                .is_some_and(|v| v.len() > MAX_PLATFORM_VARIANT)
            || digest.len() > MAX_DIGEST
            || bounded_media_type(&media_type).is_none()
        {
            return Err(format!(
                "image index has a platform entry with fields longer than the image spec allows (os ≤ {MAX_PLATFORM_OS}, architecture ≤ {MAX_PLATFORM_ARCHITECTURE}, variant ≤ {MAX_PLATFORM_VARIANT}, mediaType ≤ {MAX_MEDIA_TYPE}, digest ≤ {MAX_DIGEST} characters)"
            ));
        }
        out.push(IndexEntry {
            platform: Platform {
                os,
                architecture,
                variant: variant.filter(|v| !v.is_empty()),
                digest,
                size: None,
                referrers: Vec::new(),
            },
            media_type,
        });
    }
    // Exact: an attestation is attached only to the platform whose digest it names.
    for (subject, digest) in attestations {
        for e in out.iter_mut().filter(|e| e.platform.digest == subject) {
            if !e.platform.referrers.iter().any(|r| r.digest == digest) {
                e.platform.referrers.push(Referrer {
                    digest: digest.clone(),
                    artifact_type: None,
                    kind: ReferrerKind::Attestation,
                });
            }
        }
    }
    let extra = IndexExtra {
        artifact_type: index
            .artifact_type()
            .as_ref()
            .map(ToString::to_string)
            .as_deref()
            .and_then(bounded_media_type)
            .map(str::to_string),
        listed,
    };
    Ok((out, extra))
}

/// The platform that speaks for a multi-arch tag (its size, its config's creation time):
/// linux/amd64, else the first.
pub fn representative(platforms: &[Platform]) -> Option<&Platform> {
    platforms
        .iter()
        .find(|p| p.os == "linux" && p.architecture == "amd64")
        .or_else(|| platforms.first())
}

/// The size a multi-arch tag reports: linux/amd64's, else the first platform's.
pub fn representative_size(platforms: &[Platform]) -> Option<i64> {
    representative(platforms).and_then(|p| p.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_annotation_is_read_and_absurd_values_ignored() {
        let with = |v: &str| {
            format!(
                r#"{{"schemaVersion":2,"annotations":{{"{CREATED_ANNOTATION}":{v}}},"manifests":[]}}"#
            )
        };
        assert_eq!(
            created_annotation(with(r#""2024-03-01T12:30:45.5+02:00""#).as_bytes())
                .map(|t| t.to_string())
                .as_deref(),
            Some("2024-03-01T10:30:45Z")
        );
        for absurd in [
            r#""yesterday""#,
            r#""1970-01-01T00:00:00Z""#,
            r#""9999-12-31T23:59:59Z""#,
            "42",
            "null",
            r#""""#,
        ] {
            assert_eq!(
                created_annotation(with(absurd).as_bytes()),
                None,
                "{absurd}"
            );
        }
        assert_eq!(created_annotation(b"{}"), None);
        assert_eq!(created_annotation(b"not json"), None);
        // An entry's annotation is the child's, not this manifest's.
        let child_only = format!(
            r#"{{"manifests":[{{"annotations":{{"{CREATED_ANNOTATION}":"2024-01-01T00:00:00Z"}}}}]}}"#
        );
        assert_eq!(created_annotation(child_only.as_bytes()), None);
    }

    const CFG: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const L1: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn docker_manifest() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":1469,"digest":"{CFG}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":3000,"digest":"{L1}"}},
                      {{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":500,"digest":"{L1}"}}]}}"#
        )
    }

    #[test]
    fn strings_longer_than_the_spec_allows_are_not_kept() {
        let huge = "a".repeat(4 << 20);
        let body = format!(r#"{{"schemaVersion":2,"mediaType":"{huge}","layers":[]}}"#);
        let mt = media_type_of(body.as_bytes(), None);
        assert!(mt.len() <= MAX_MEDIA_TYPE, "kept {} bytes", mt.len());
        let mt = media_type_of(b"{}", Some(&format!("application/{huge}")));
        assert!(mt.len() <= MAX_MEDIA_TYPE, "kept {} bytes", mt.len());
        let long = "x".repeat(MAX_PLATFORM_OS + 1);
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","size":1,"digest":"{CFG}","platform":{{"os":"{long}","architecture":"amd64"}}}}]}}"#
        );
        assert!(index_entries(index.as_bytes()).is_err());
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{huge}","size":1,"digest":"{CFG}","platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        assert!(index_entries(index.as_bytes()).is_err());
        let fine = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","size":1,"digest":"{CFG}","platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        );
        assert_eq!(index_entries(fine.as_bytes()).map(|e| e.len()), Ok(1));
    }

    #[test]
    fn image_size_is_config_plus_layers() {
        assert_eq!(image_size(docker_manifest().as_bytes()), Ok(4969));
    }

    #[test]
    fn media_type_from_body_header_or_shape() {
        let m = docker_manifest();
        assert_eq!(
            media_type_of(m.as_bytes(), Some("text/plain")),
            DOCKER_MANIFEST
        );
        let bare = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","size":1,"digest":"{CFG}"}},"layers":[]}}"#
        );
        assert_eq!(
            media_type_of(bare.as_bytes(), Some(OCI_MANIFEST)),
            OCI_MANIFEST
        );
        assert_eq!(media_type_of(bare.as_bytes(), None), OCI_MANIFEST);
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"manifests":[]}"#, None),
            OCI_INDEX
        );
        assert_eq!(
            media_type_of(
                b"{}",
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws")
            ),
            "application/vnd.docker.distribution.manifest.v1+prettyjws"
        );
        assert_eq!(
            media_type_of(
                br#"{"schemaVersion":1,"fsLayers":[]}"#,
                Some("application/json")
            ),
            SCHEMA1_MANIFEST
        );
        assert_eq!(kind_of(SCHEMA1_SIGNED), Kind::Schema1);
        assert!(
            ACCEPT_MANIFESTS.contains(SCHEMA1_SIGNED)
                && ACCEPT_MANIFESTS.contains(SCHEMA1_MANIFEST)
        );
    }

    #[test]
    fn digests_verify() {
        let body = b"hello";
        let d = digest_of(body, "sha256").unwrap();
        assert_eq!(
            d,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(verify(body, &d));
        assert!(!verify(b"hellO", &d));
        assert!(!verify(body, "md5:abc"));
        assert!(verify(body, &digest_of(body, "sha512").unwrap()));
    }

    #[test]
    fn buildkit_attestations_are_referrers_of_the_platform_they_name() {
        const ATT: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
        const STRAY: &str =
            "sha256:4444444444444444444444444444444444444444444444444444444444444444";
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","size":10,"digest":"{CFG}","platform":{{"os":"linux","architecture":"amd64"}}}},
              {{"mediaType":"{OCI_MANIFEST}","size":10,"digest":"{L1}","platform":{{"os":"linux","architecture":"arm64"}}}},
              {{"mediaType":"{OCI_MANIFEST}","size":10,"digest":"{ATT}","platform":{{"os":"unknown","architecture":"unknown"}},
                "annotations":{{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"{L1}"}}}},
              {{"mediaType":"{OCI_MANIFEST}","size":10,"digest":"{STRAY}","platform":{{"os":"unknown","architecture":"unknown"}},
                "annotations":{{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"sha256:{}"}}}}
            ]}}"#,
            "5".repeat(64)
        );
        let (entries, extra) = index_contents(body.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2, "attestations are not platforms");
        assert!(entries[0].platform.referrers.is_empty());
        assert_eq!(
            entries[1].platform.referrers,
            [Referrer {
                digest: ATT.into(),
                artifact_type: None,
                kind: ReferrerKind::Attestation
            }]
        );
        assert_eq!(extra, IndexExtra::default(), "nothing listed, no stray");
    }

    #[test]
    fn a_referrers_index_lists_descriptors_not_platforms_within_bounds() {
        let entry = |n: usize, artifact_type: &str| {
            format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","size":10,"digest":"sha256:{n:064x}","artifactType":"{artifact_type}"}}"#
            )
        };
        let mut manifests = vec![
            entry(1, "application/spdx+json"),
            entry(2, "application/vnd.cncf.notary.signature"),
            entry(3, &"x".repeat(MAX_MEDIA_TYPE + 1)),
            format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","size":10,"digest":"sha256:{:064x}","annotations":{{"dev.sigstore.bundle.predicateType":"https://slsa.dev/provenance/v1"}}}}"#,
                4
            ),
            r#"{"mediaType":"x","size":10,"digest":"md5:zz"}"#.to_string(),
        ];
        manifests.extend((10..200).map(|n| entry(n, "application/vnd.example")));
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","artifactType":"application/vnd.example.index","manifests":[{}]}}"#,
            manifests.join(",")
        );
        let (entries, extra) = index_contents(body.as_bytes()).unwrap();
        assert!(entries.is_empty(), "a referrers index has no platforms");
        assert_eq!(
            extra.artifact_type.as_deref(),
            Some("application/vnd.example.index")
        );
        assert_eq!(extra.listed.len(), MAX_LISTED_REFERRERS);
        let kinds: Vec<_> = extra.listed[..4]
            .iter()
            .map(|r| (r.artifact_type.as_deref(), r.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (Some("application/spdx+json"), ReferrerKind::Sbom),
                (
                    Some("application/vnd.cncf.notary.signature"),
                    ReferrerKind::Signature
                ),
                (None, ReferrerKind::Other),
                (None, ReferrerKind::Attestation),
            ]
        );
        assert!(
            extra.listed.iter().all(|r| r.digest.starts_with("sha256:")),
            "a descriptor with an invalid digest is dropped"
        );
    }

    #[test]
    fn artifacts_are_named_by_type_config_or_cosign_layer() {
        let manifest = |extra: &str, config: &str, layer: &str| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"{extra},
                "config":{{"mediaType":"{config}","size":2,"digest":"{CFG}"}},
                "layers":[{{"mediaType":"{layer}","size":30,"digest":"{L1}"}}]}}"#
            )
        };
        let helm = manifest(
            "",
            "application/vnd.cncf.helm.config.v1+json",
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        );
        assert_eq!(
            image_summary(helm.as_bytes()),
            Ok((32, Some("application/vnd.cncf.helm.config.v1+json".into())))
        );
        let sig = manifest(
            "",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.dev.cosign.simplesigning.v1+json",
        );
        assert_eq!(
            image_summary(sig.as_bytes()).unwrap().1.as_deref(),
            Some("application/vnd.dev.cosign.simplesigning.v1+json")
        );
        let sbom = manifest(
            r#","artifactType":"application/vnd.cyclonedx+json""#,
            artifact::EMPTY_CONFIG,
            "application/vnd.cyclonedx+json",
        );
        assert_eq!(
            image_summary(sbom.as_bytes()).unwrap().1.as_deref(),
            Some("application/vnd.cyclonedx+json")
        );
        let image = manifest(
            "",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        );
        assert_eq!(image_summary(image.as_bytes()), Ok((32, None)));
        let long = manifest(
            &format!(r#","artifactType":"{}""#, "y".repeat(MAX_MEDIA_TYPE + 1)),
            artifact::EMPTY_CONFIG,
            "z",
        );
        assert_eq!(image_summary(long.as_bytes()), Ok((32, None)));
    }

    #[test]
    fn index_skips_attestations_and_picks_amd64() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","size":10,"digest":"{CFG}","platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
              {{"mediaType":"{OCI_MANIFEST}","size":10,"digest":"{L1}","platform":{{"os":"linux","architecture":"amd64"}}}},
              {{"mediaType":"{OCI_MANIFEST}","size":10,"digest":"{L1}","platform":{{"os":"unknown","architecture":"unknown"}},
                "annotations":{{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"{CFG}"}}}},
              {{"mediaType":"{OCI_MANIFEST}","size":10,"digest":"{L1}","platform":{{"os":"linux","architecture":"s390x"}},
                "annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}}
            ]}}"#
        );
        let entries = index_entries(body.as_bytes()).unwrap();
        let names: Vec<_> = entries
            .iter()
            .map(|e| {
                format!(
                    "{}/{}/{}",
                    e.platform.os,
                    e.platform.architecture,
                    e.platform.variant.clone().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(names, ["linux/arm64/v8", "linux/amd64/"]);
        let mut platforms: Vec<Platform> = entries.into_iter().map(|e| e.platform).collect();
        platforms[0].size = Some(1);
        platforms[1].size = Some(2);
        assert_eq!(representative_size(&platforms), Some(2));
        platforms.remove(1);
        assert_eq!(representative_size(&platforms), Some(1));
    }
}
