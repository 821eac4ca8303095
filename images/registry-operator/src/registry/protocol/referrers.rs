//! `GET /v2/<name>/referrers/<digest>` (OCI distribution spec v1.1, "Listing Referrers"): an
//! OCI image index whose `manifests[]` are descriptors of the manifests whose `subject` is
//! `<digest>`, each with the referrer's `artifactType`; paged with `Link: <…>; rel="next"`
//! like the tag list. The spec forbids a registry that serves the API to answer 404 ("the
//! registry MUST NOT return a 404 Not Found"), so a 404 means it does not serve it: measured,
//! distribution v3 and 2.8 answer `404 page not found` and `crane registry serve` a 404
//! `METHOD_UNKNOWN`. That is remembered per registry and tenant, so rescans ask no more.
//!
//! No `artifactType` filter is sent: one request gives every kind, and a filtered answer
//! would need one request per kind (the `OCI-Filters-Applied` header only says which
//! filters a registry honoured).

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::digest::valid_digest;
use super::tags::next_page;
use crate::registry::artifact::kind_of;
use crate::registry::cache::BoundedCache;
use crate::registry::error::ScanError;
use crate::registry::session::Session;
use crate::registry::transport::{RequestKind, offload};
use crate::registry::{Referrer, ReferrerKind};

/// One page of the answer: bytes read at most (a larger one is refused as it streams in).
pub(crate) const REFERRERS_PAGE_BYTES: usize = 1 << 20;
/// Pages followed for one digest.
pub(crate) const REFERRERS_MAX_PAGES: usize = 8;
/// Referrers kept per digest (a signature per build, an SBOM, a few attestations fit many
/// times over); past that the rest are left out and a debug line says so.
pub(crate) const MAX_REFERRERS_PER_DIGEST: usize = 64;
/// Characters of an `artifactType` kept (RFC 6838 §4.2: at most 127 + 1 + 127).
const MAX_ARTIFACT_TYPE: usize = 255;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// What a registry says about one digest's referrers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Listing {
    Referrers(Vec<Referrer>),
    /// The registry does not serve the referrers API.
    Unsupported,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    #[serde(default)]
    media_type: Option<String>,
    /// `null` is read as none, like a missing list.
    #[serde(default)]
    manifests: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    digest: String,
    #[serde(default)]
    artifact_type: Option<String>,
}

/// The referrers a page names: descriptors with a valid digest, each once, at most
/// `room`; a malformed descriptor is skipped, a body that is not an index is an error.
pub(crate) fn parse_page(body: &[u8], room: usize) -> Result<Vec<Referrer>, String> {
    let index: Index =
        serde_json::from_slice(body).map_err(|e| format!("not an OCI image index: {e}"))?;
    if let Some(t) = index.media_type.as_deref()
        && t != INDEX
    {
        return Err(format!(
            "media type {:?} is not an OCI image index",
            t.chars().take(80).collect::<String>()
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for entry in index.manifests.unwrap_or_default() {
        if out.len() >= room {
            break;
        }
        let Ok(d) = serde_json::from_value::<Descriptor>(entry) else {
            continue;
        };
        if !valid_digest(&d.digest) || !seen.insert(d.digest.clone()) {
            continue;
        }
        let artifact_type = d
            .artifact_type
            .filter(|t| !t.is_empty() && t.len() <= MAX_ARTIFACT_TYPE && t.is_ascii());
        let kind = artifact_type
            .as_deref()
            .map_or(ReferrerKind::Other, kind_of);
        out.push(Referrer {
            digest: d.digest,
            artifact_type,
            kind,
        });
    }
    Ok(out)
}

/// Every referrer the registry lists for `digest`, bounded in pages, bytes and count.
pub(crate) async fn list_referrers(
    session: &Session<'_>,
    digest: &str,
) -> Result<Listing, ScanError> {
    let target = session.target;
    let mut url = target.referrers_url(digest);
    let mut visited = HashSet::new();
    let mut all: Vec<Referrer> = Vec::new();
    for page in 0..REFERRERS_MAX_PAGES {
        visited.insert(url.to_string());
        let reply = session
            .send(
                RequestKind::Referrers,
                Method::GET,
                url.clone(),
                Some(INDEX),
                REFERRERS_PAGE_BYTES,
            )
            .await?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::NOT_IMPLEMENTED
                if page == 0 =>
            {
                return Ok(Listing::Unsupported);
            }
            _ => return Err(session.status_error(&Method::GET, &url, &reply)),
        }
        let room = MAX_REFERRERS_PER_DIGEST.saturating_sub(all.len());
        let body = reply.body.clone();
        let found = offload(session.tenant, body.len(), move || parse_page(&body, room))
            .await
            .map_err(|why| session.invalid(&Method::GET, &url, why))?;
        for r in found {
            if !all.iter().any(|a| a.digest == r.digest) {
                all.push(r);
            }
        }
        if all.len() >= MAX_REFERRERS_PER_DIGEST {
            tracing::debug!(registry = %target.registry(), repository = target.repository(), %digest, limit = MAX_REFERRERS_PER_DIGEST, "referrers past the limit left out");
            break;
        }
        let Some(next) = next_page(&reply.headers) else {
            break;
        };
        url = target
            .resolve_link(&next, &url)
            .map_err(|e| session.invalid(&Method::GET, &url, e))?;
        if visited.contains(url.as_str()) {
            break;
        }
    }
    Ok(Listing::Referrers(all))
}

/// Registries that do not serve the referrers API, per tenant (whose own scans learned it:
/// another tenant's answer, for a repository it may not even see, decides nothing for it).
/// Past the bound the least recently used is forgotten: one request learns it again.
pub(crate) struct ReferrersMemory {
    unsupported: BoundedCache<(String, String), ()>,
}

const UNSUPPORTED_BYTES: usize = 1 << 20;
const UNSUPPORTED_SHARE: usize = 128 << 10;

impl Default for ReferrersMemory {
    fn default() -> Self {
        Self {
            unsupported: BoundedCache::new(UNSUPPORTED_BYTES, UNSUPPORTED_SHARE),
        }
    }
}

impl ReferrersMemory {
    pub fn is_unsupported(&self, tenant: &str, base: &str) -> bool {
        self.unsupported
            .with(&(tenant.to_string(), base.to_string()), |()| ())
            .is_some()
    }

    pub fn unsupported(&self, tenant: &str, base: &str) {
        self.unsupported.put(
            tenant,
            (tenant.to_string(), base.to_string()),
            (),
            tenant.len() + base.len(),
        );
    }

    pub fn bytes(&self) -> usize {
        self.unsupported.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";
    const B: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn the_spec_example_gives_kinds_and_types() {
        // distribution-spec spec.md, "Listing Referrers": the response example's shape.
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1234,"digest":"{A}",
                "artifactType":"application/vnd.cncf.notary.signature","annotations":{{"org.opencontainers.image.created":"2022-01-01T14:42:55Z"}}}},
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1234,"digest":"{B}",
                "artifactType":"application/spdx+json"}}]}}"#
        );
        let r = parse_page(body.as_bytes(), 10).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].kind, ReferrerKind::Signature);
        assert_eq!(r[0].digest, A);
        assert_eq!(r[1].kind, ReferrerKind::Sbom);
        assert_eq!(r[1].artifact_type.as_deref(), Some("application/spdx+json"));
    }

    #[test]
    fn malformed_entries_are_skipped_and_repeats_kept_once() {
        let body = format!(
            r#"{{"manifests":[{{"digest":"not-a-digest"}},{{"size":3}},7,{{"digest":"{A}"}},
              {{"digest":"{A}","artifactType":"x/y"}},{{"digest":"{B}","artifactType":""}}]}}"#
        );
        let r = parse_page(body.as_bytes(), 10).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].kind, r[0].artifact_type.as_deref()),
            (ReferrerKind::Other, None)
        );
        assert_eq!(r[1].artifact_type, None, "an empty type is none");
        assert_eq!(parse_page(br#"{"manifests":null}"#, 10).unwrap(), vec![]);
    }

    #[test]
    fn bodies_that_are_not_an_index_are_refused() {
        assert!(parse_page(b"<html>", 10).is_err());
        assert!(
            parse_page(
                br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}"#,
                10
            )
            .is_err()
        );
    }

    #[test]
    fn a_page_gives_no_more_than_the_room_left() {
        let entries: Vec<String> = (0..500)
            .map(|i| format!(r#"{{"digest":"sha256:{i:064x}"}}"#))
            .collect();
        let body = format!(r#"{{"manifests":[{}]}}"#, entries.join(","));
        assert_eq!(
            parse_page(body.as_bytes(), MAX_REFERRERS_PER_DIGEST)
                .unwrap()
                .len(),
            MAX_REFERRERS_PER_DIGEST
        );
        assert_eq!(parse_page(body.as_bytes(), 0).unwrap().len(), 0);
    }

    #[test]
    fn unsupported_registries_are_remembered_per_tenant_and_bounded() {
        let m = ReferrersMemory::default();
        m.unsupported("a", "http://r/");
        assert!(m.is_unsupported("a", "http://r/"));
        assert!(
            !m.is_unsupported("b", "http://r/"),
            "another tenant learns for itself"
        );
        for i in 0..20_000 {
            m.unsupported("flood", &format!("http://r{i}/"));
        }
        assert!(m.bytes() <= UNSUPPORTED_SHARE + (64 << 10));
        assert!(m.is_unsupported("a", "http://r/"));
    }
}
