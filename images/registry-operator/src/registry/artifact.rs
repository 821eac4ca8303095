//! What an artifact is, from its media types alone, and which tags name referrers rather than
//! versions. Plain knowledge, no I/O: the scanner, the policies and the status all use it.

use super::ReferrerKind;

/// Config media types of container images: a manifest with any other config holds an
/// artifact (a Helm chart, a WASM module, an SBOM…).
const IMAGE_CONFIGS: &[&str] = &[
    // OCI image spec, media-types.md.
    "application/vnd.oci.image.config.v1+json",
    // Docker image manifest v2 schema 2.
    "application/vnd.docker.container.image.v1+json",
];

/// The OCI image spec's empty descriptor (manifest.md, "Guidance for an Empty Descriptor"):
/// artifacts that carry their type in `artifactType` use it as their config.
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

/// Media types by kind. Matched case-insensitively on the type without its parameters
/// (RFC 6838 §4.2: names are case-insensitive; `;version=…` varies).
const SIGNATURES: &[&str] = &[
    // cosign: the simple-signing payload (legacy `.sig` tags) and its OCI 1.1 artifact type.
    "application/vnd.dev.cosign.simplesigning.v1+json",
    "application/vnd.dev.cosign.artifact.sig.v1+json",
    // Sigstore bundles (sigstore/protobuf-specs, media types v0.1 to v0.3).
    "application/vnd.dev.sigstore.bundle+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    // Notary Project signatures (notaryproject/specification, signature-specification.md).
    "application/vnd.cncf.notary.signature",
];
const SBOMS: &[&str] = &[
    // SPDX (spdx.dev media types) and CycloneDX (IANA registrations).
    "application/spdx+json",
    "text/spdx",
    "text/spdx+json",
    "application/vnd.cyclonedx",
    "application/vnd.cyclonedx+json",
    "application/vnd.cyclonedx+xml",
    "application/vnd.syft+json",
    // cosign attach sbom's OCI 1.1 artifact type.
    "application/vnd.dev.cosign.artifact.sbom.v1+json",
    // SBOMs Harbor generates (goharbor/harbor src/server/middleware/subject/subject.go,
    // `mediaTypeHarborSBOM`).
    "application/vnd.goharbor.harbor.sbom.v1",
];
const ATTESTATIONS: &[&str] = &[
    // in-toto statements and DSSE envelopes (cosign attest, buildkit's attestation layers).
    "application/vnd.in-toto+json",
    "application/vnd.dsse.envelope.v1+json",
    "application/vnd.dev.cosign.artifact.att.v1+json",
];

fn essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether `media_type` is a container image's config.
pub fn is_image_config(media_type: &str) -> bool {
    IMAGE_CONFIGS.contains(&essence(media_type).as_str())
}

/// The kind of an artifact whose type (its `artifactType`, config or layer media type) is
/// `media_type`; in-toto predicates (`application/vnd.in-toto.<predicate>+json`) are
/// attestations too.
pub fn kind_of(media_type: &str) -> ReferrerKind {
    let t = essence(media_type);
    if SIGNATURES.contains(&t.as_str()) {
        ReferrerKind::Signature
    } else if SBOMS.contains(&t.as_str()) {
        ReferrerKind::Sbom
    } else if ATTESTATIONS.contains(&t.as_str()) || t.starts_with("application/vnd.in-toto.") {
        ReferrerKind::Attestation
    } else {
        ReferrerKind::Other
    }
}

/// What an image manifest holds when it is not a container image: its `artifactType` (image
/// spec 1.1, manifest.md), else its config's media type when that is neither an image config
/// nor the empty descriptor (Helm charts, WASM modules, `regctl artifact put` without
/// `artifactType`), else its first layer's media type when that names a signature, SBOM or
/// attestation (cosign's legacy `.sig`, `.att` and `.sbom` manifests keep an image config and
/// say what they hold only in their layers). `None` for a container image.
pub fn artifact_type<'a>(
    declared: Option<&'a str>,
    config: &'a str,
    mut layers: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    if let Some(t) = declared.filter(|t| !t.is_empty()) {
        return Some(t);
    }
    let config_essence = essence(config);
    if !config.is_empty() && !is_image_config(config) && config_essence != EMPTY_CONFIG {
        return Some(config);
    }
    layers
        .next()
        .filter(|layer| kind_of(layer) != ReferrerKind::Other)
}

/// Annotations that say what a referrer is when its type alone does not: cosign's Sigstore
/// bundles (cosign specs/BUNDLE_SPEC.md) are signatures only for cosign's own signing
/// predicate, attestations for any other; buildkit marks its attestation manifests (docker
/// docs, "Attestation storage").
const BUNDLE_PREDICATE: &str = "dev.sigstore.bundle.predicateType";
const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// The kind of a referrer descriptor (an entry of a referrers index), from its `artifactType`
/// and its annotations (`annotation(key)`): without either, `other`.
pub fn descriptor_kind<'a>(
    artifact_type: Option<&str>,
    annotation: impl Fn(&str) -> Option<&'a str>,
) -> ReferrerKind {
    match annotation(BUNDLE_PREDICATE) {
        Some(COSIGN_SIGN_PREDICATE) => return ReferrerKind::Signature,
        Some(_) => return ReferrerKind::Attestation,
        None => {}
    }
    if annotation(REFERENCE_TYPE) == Some("attestation-manifest") {
        return ReferrerKind::Attestation;
    }
    artifact_type.map_or(ReferrerKind::Other, kind_of)
}

/// A tag that names referrers of a manifest rather than a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerTag {
    /// `None` for the distribution spec's fallback tag (an index of referrers); cosign's
    /// legacy tags say their kind in the suffix.
    pub kind: Option<ReferrerKind>,
    stem: String,
}

impl ReferrerTag {
    /// Whether the tag names referrers of `digest`: cosign's tags carry the whole digest,
    /// the fallback tag its truncated form.
    pub fn refers_to(&self, digest: &str) -> bool {
        match self.kind {
            Some(_) => digest.split_once(':').is_some_and(|(alg, hex)| {
                self.stem.len() == alg.len() + 1 + hex.len()
                    && self.stem.starts_with(alg)
                    && self.stem.ends_with(hex)
                    && self.stem.as_bytes().get(alg.len()) == Some(&b'-')
            }),
            None => fallback_tag(digest).is_some_and(|t| t == self.stem),
        }
    }
}

/// The distribution spec's referrers fallback tag of `digest` (spec.md, "Referrers Tag
/// Schema": `<alg>-<ref>`, the algorithm truncated to 32 characters and the encoded digest
/// to 64); `None` for text that is not a digest.
pub fn fallback_tag(digest: &str) -> Option<String> {
    let (alg, hex) = digest.split_once(':')?;
    if alg.is_empty() || hex.is_empty() || !alg.is_ascii() || !hex.is_ascii() {
        return None;
    }
    Some(format!(
        "{}-{}",
        &alg[..alg.len().min(32)],
        &hex[..hex.len().min(64)]
    ))
}

/// Parses the fallback tag (`sha256-<64 hex>`, also a truncated sha512) and cosign's legacy
/// tags (`sha256-<hex>.sig`, `.att`, `.sbom`); `None` for every other tag.
pub fn referrer_tag(tag: &str) -> Option<ReferrerTag> {
    let (stem, kind) = match tag.rsplit_once('.') {
        Some((stem, "sig")) => (stem, Some(ReferrerKind::Signature)),
        Some((stem, "att")) => (stem, Some(ReferrerKind::Attestation)),
        Some((stem, "sbom")) => (stem, Some(ReferrerKind::Sbom)),
        Some(_) => return None,
        None => (tag, None),
    };
    let (algorithm, hex) = stem.split_once('-')?;
    let fits = match (algorithm, kind) {
        ("sha256", _) | ("sha512", None) => hex.len() == 64,
        ("sha512", Some(_)) => hex.len() == 128,
        _ => false,
    };
    (fits && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then(|| ReferrerTag {
        kind,
        stem: stem.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_types_of_manifests() {
        const IMAGE: &str = "application/vnd.oci.image.config.v1+json";
        const TAR: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
        const HELM: &str = "application/vnd.cncf.helm.config.v1+json";
        const SIMPLE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
        let layers = |l: &'static [&'static str]| l.iter().copied();
        assert_eq!(artifact_type(None, IMAGE, layers(&[TAR])), None);
        assert_eq!(artifact_type(None, HELM, layers(&[TAR])), Some(HELM));
        assert_eq!(
            artifact_type(Some("application/spdx+json"), EMPTY_CONFIG, layers(&[])),
            Some("application/spdx+json")
        );
        assert_eq!(
            artifact_type(None, IMAGE, layers(&[SIMPLE, SIMPLE])),
            Some(SIMPLE)
        );
        assert_eq!(artifact_type(None, EMPTY_CONFIG, layers(&[TAR])), None);
    }

    const HEX: &str = "6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

    #[test]
    fn fallback_and_cosign_tags_name_their_subject() {
        let subject = format!("sha256:{HEX}");
        let other = format!("sha256:{}0", &HEX[1..]);
        let fallback = referrer_tag(&format!("sha256-{HEX}")).unwrap();
        assert_eq!(fallback.kind, None);
        assert!(fallback.refers_to(&subject) && !fallback.refers_to(&other));
        for (suffix, kind) in [
            ("sig", ReferrerKind::Signature),
            ("att", ReferrerKind::Attestation),
            ("sbom", ReferrerKind::Sbom),
        ] {
            let t = referrer_tag(&format!("sha256-{HEX}.{suffix}")).unwrap();
            assert_eq!(t.kind, Some(kind));
            assert!(t.refers_to(&subject) && !t.refers_to(&other));
        }
    }

    #[test]
    fn a_sha512_fallback_tag_is_truncated_to_64_characters() {
        let digest = format!("sha512:{HEX}{HEX}");
        let tag = fallback_tag(&digest).unwrap();
        assert_eq!(tag, format!("sha512-{HEX}"));
        assert!(referrer_tag(&tag).unwrap().refers_to(&digest));
        let cosign = referrer_tag(&format!("sha512-{HEX}{HEX}.sig")).unwrap();
        assert!(cosign.refers_to(&digest));
    }

    #[test]
    fn versions_are_not_referrer_tags() {
        for tag in [
            "1.0",
            "latest",
            "sha256",
            &format!("sha256-{}", &HEX[1..]),
            &format!("sha256-{}", HEX.to_uppercase()),
            &format!("sha256-{HEX}.tar"),
            &format!("md5-{HEX}"),
        ] {
            assert_eq!(referrer_tag(tag), None, "{tag}");
        }
    }

    #[test]
    fn kinds_by_media_type() {
        assert_eq!(
            kind_of("application/vnd.cncf.notary.signature"),
            ReferrerKind::Signature
        );
        assert_eq!(
            kind_of("application/vnd.dev.sigstore.bundle.v0.3+json"),
            ReferrerKind::Signature
        );
        assert_eq!(
            kind_of("application/vnd.dev.sigstore.bundle+json;version=0.2"),
            ReferrerKind::Signature
        );
        assert_eq!(kind_of("application/SPDX+json"), ReferrerKind::Sbom);
        assert_eq!(kind_of("application/vnd.cyclonedx+xml"), ReferrerKind::Sbom);
        assert_eq!(
            kind_of("application/vnd.in-toto+json"),
            ReferrerKind::Attestation
        );
        assert_eq!(
            kind_of("application/vnd.in-toto.provenance+dsse"),
            ReferrerKind::Attestation
        );
        assert_eq!(
            kind_of("application/vnd.example.thing"),
            ReferrerKind::Other
        );
        assert!(is_image_config("application/vnd.oci.image.config.v1+json"));
        assert_eq!(
            descriptor_kind(Some("application/vnd.dev.sigstore.bundle.v0.3+json"), |k| {
                (k == BUNDLE_PREDICATE).then_some("https://slsa.dev/provenance/v1")
            }),
            ReferrerKind::Attestation
        );
        assert_eq!(
            descriptor_kind(
                Some("application/vnd.dev.sigstore.bundle.v0.3+json"),
                |_| None
            ),
            ReferrerKind::Signature
        );
        assert_eq!(descriptor_kind(None, |_| None), ReferrerKind::Other);
        assert!(!is_image_config("application/vnd.cncf.helm.config.v1+json"));
    }
}
