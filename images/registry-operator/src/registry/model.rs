//! What a scan learns about a repository: plain data, shared by the CLI's JSON and the CR status.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Timestamp;

/// One tag and the manifest it points at.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The tag name.
    pub tag: String,
    /// Digest of the manifest the tag points at (for a multi-arch image: the index digest).
    pub digest: String,
    /// Bytes to pull: config plus compressed layers. For a multi-arch image, the linux/amd64
    /// image's size (else the first platform's). Absent when the manifest type is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Media type of the manifest (Docker v2, OCI manifest, OCI index, Docker manifest list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The platforms of a multi-arch image (attestation manifests are left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
    /// Why this tag's facts are incomplete: its manifest could not be read in the latest scan
    /// (the digest is then the last one known), or its size could not be worked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What the manifest holds when it is not a container image: its `artifactType`, else its
    /// config's media type (a Helm chart: `application/vnd.cncf.helm.config.v1+json`), else
    /// its first layer's when that is a signature, SBOM or attestation (cosign's legacy tags).
    /// Absent for container images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// When the registry says the tag was last pushed (from its own listing API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_at: Option<Timestamp>,
    /// When the publisher says the image was built: the manifest's
    /// `org.opencontainers.image.created` annotation, else (with `spec.timestamps: Created`)
    /// the image config's `created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Where `pushedAt` and `createdAt` came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_source: Option<TimestampSource>,
    /// Signatures, SBOMs, attestations and other artifacts whose subject is this manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Referrer>,
}

impl Image {
    /// The image a tag gives when it points at `digest`, whose facts are `facts`: the one place
    /// a digest's facts become a tag's, so every per-digest field reaches every tag.
    pub fn of(tag: &str, digest: &str, facts: &ManifestFacts, note: Option<String>) -> Self {
        Self {
            tag: tag.to_string(),
            digest: digest.to_string(),
            size: facts.size,
            media_type: facts.media_type.clone(),
            platforms: facts.platforms.clone(),
            note,
            artifact_type: facts.artifact_type.clone(),
            pushed_at: None,
            created_at: facts.created_at,
            timestamp_source: facts.created_source.map(|created| TimestampSource {
                pushed_at: None,
                created_at: Some(created),
            }),
            referrers: facts.referrers.clone(),
        }
    }

    /// Records the registry's push time of this tag, and which listing API said it.
    pub fn set_pushed_at(&mut self, at: Timestamp, lister: &str) {
        self.pushed_at = Some(at);
        self.timestamp_source
            .get_or_insert_with(TimestampSource::default)
            .pushed_at = Some(lister.to_string());
    }
}

/// Where an image's timestamps came from: a registry sets the push time, a publisher the
/// creation time, and the two answer different questions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimestampSource {
    /// The listing API that gave `pushedAt` (`dockerhub`, `harbor`, `quay`, `gar`, `acr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_at: Option<String>,
    /// Where `createdAt` was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<CreatedSource>,
}

/// Where a creation time was read (CamelCase values, as Kubernetes API enums are).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CreatedSource {
    /// The manifest's or index's `org.opencontainers.image.created` annotation.
    Annotation,
    /// The image config's `created` field (one blob read per new digest).
    Config,
}

/// An artifact whose manifest names an image as its `subject` (OCI 1.1 referrers), or that
/// the fallback tag schema or cosign's tags attach to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    /// Digest of the referrer's own manifest.
    pub digest: String,
    /// The referrer's `artifactType` (else its config media type), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub kind: ReferrerKind,
}

/// What a referrer is, as far as a platform engineer cares (CamelCase values, as Kubernetes
/// API enums are).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum ReferrerKind {
    /// cosign, Sigstore bundle or Notary v2 signature.
    Signature,
    /// SPDX or CycloneDX software bill of materials.
    Sbom,
    /// in-toto statement, DSSE envelope, buildkit attestation manifest.
    Attestation,
    Other,
}

/// The newest version a policy allows (`status.latest`, the CLI's `latest`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Latest {
    /// The tag name.
    pub tag: String,
    /// Digest of this version's manifest.
    pub digest: String,
    /// The value the policy compared (the tag, or what `filterTags.extract` made of it).
    pub version: String,
    /// When the tag was pushed to the registry (see `images[].pushedAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_at: Option<Timestamp>,
    /// When the publisher says the image was built (see `images[].createdAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
}

/// One platform-specific image of a multi-arch index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Digest of the platform's own manifest.
    pub digest: String,
    /// Bytes to pull for this platform: config plus compressed layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Attestations an index carries for this platform (buildkit's attestation manifests,
    /// which name the platform manifest they describe).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Referrer>,
}

/// What a manifest digest resolves to; the same for every tag that points at it, so an earlier
/// scan's facts let a rescan skip the manifest GET.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_source: Option<CreatedSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Referrer>,
    /// For an index that lists referrers rather than platforms (the distribution spec's
    /// fallback tag `sha256-<hex>`): its descriptors. They belong to the digest the tag
    /// names, never to this manifest's own tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listed: Vec<Referrer>,
}

impl ManifestFacts {
    pub fn of(image: &Image) -> Self {
        Self {
            size: image.size,
            media_type: image.media_type.clone(),
            platforms: image.platforms.clone(),
            artifact_type: image.artifact_type.clone(),
            created_at: image.created_at,
            created_source: image.timestamp_source.as_ref().and_then(|s| s.created_at),
            referrers: image.referrers.clone(),
            listed: Vec::new(),
        }
    }
}

/// Registry requests of one scan, by kind.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestCounts {
    /// Tag list pages fetched.
    pub tag_pages: i64,
    /// Manifest HEAD requests.
    pub manifest_heads: i64,
    /// Manifest GET requests.
    pub manifest_gets: i64,
    /// Token endpoint requests.
    pub token_requests: i64,
    /// Blob HEAD requests (sizes of schema 1 manifests, which list none).
    #[serde(default)]
    pub blob_heads: i64,
    /// Image config GETs (`spec.timestamps: Created`: one per new digest).
    #[serde(default)]
    pub blob_gets: i64,
    /// Requests repeated after a 429, a 5xx or a connection error.
    pub retries: i64,
    /// Requests to a registry's own listing API (detection probes and its token included).
    #[serde(default)]
    pub native_requests: i64,
    /// Requests to the OCI 1.1 referrers API (one per new digest, and one per digest each
    /// `referrersInterval`).
    #[serde(default)]
    pub referrer_requests: i64,
    /// Which lister gave the tags and their digests: `distribution` (the registry API: tag
    /// list plus one HEAD per tag) or a native one (`dockerhub`, `harbor`, `quay`, `gar`,
    /// `acr`), whose digests a sample of HEADs checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lister: Option<String>,
}

/// A tag whose manifest could not be read; the scan goes on without it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagFailure {
    pub tag: String,
    /// What went wrong, in the words of [`super::ScanError`].
    pub message: String,
    /// The failure's reason (a [`super::FailureReason`] string).
    pub reason: &'static str,
}
