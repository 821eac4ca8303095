//! What a scan learns about a repository: plain data, shared by the CLI's JSON and the CR status.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One tag and the manifest it points at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
}

impl ManifestFacts {
    pub fn of(image: &Image) -> Self {
        Self {
            size: image.size,
            media_type: image.media_type.clone(),
            platforms: image.platforms.clone(),
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
    /// Requests repeated after a 429, a 5xx or a connection error.
    pub retries: i64,
    /// Requests to a registry's own listing API (detection probes and its token included).
    #[serde(default)]
    pub native_requests: i64,
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
