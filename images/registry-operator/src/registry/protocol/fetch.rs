//! `GET /v2/<name>/manifests/<reference>`: a manifest body, verified against its digest, and
//! what it says (size, platforms, layers).

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};

use super::manifest::{self, ACCEPT_MANIFESTS, Kind, MANIFEST_BODY_LIMIT};
use super::schema1;
use crate::registry::ManifestFacts;
use crate::registry::error::ScanError;
use crate::registry::session::{Reply, Session};
use crate::registry::transport::{RequestKind, offload};

pub(crate) async fn get_manifest(
    session: &Session<'_>,
    url: &url::Url,
) -> Result<Reply, ScanError> {
    session
        .send(
            RequestKind::ManifestGet,
            Method::GET,
            url.clone(),
            Some(ACCEPT_MANIFESTS),
            MANIFEST_BODY_LIMIT,
        )
        .await
}

pub(crate) enum Fetched {
    Facts(ManifestFacts),
    /// An image manifest, and the config it names (read for `created` only when asked).
    Image(ManifestFacts, super::config::ConfigRef),
    /// Media type, entries (platforms; a fallback index's referrers), what else the index
    /// says, and its own creation annotation.
    Index(
        String,
        Vec<manifest::IndexEntry>,
        manifest::IndexExtra,
        Option<crate::registry::Timestamp>,
    ),
    /// Media type and distinct layer blobs.
    Schema1(String, Vec<String>),
}

/// `Ok(None)` for a digest the registry no longer has.
pub(crate) async fn fetch(
    session: &Session<'_>,
    digest: &str,
) -> Result<Option<Fetched>, ScanError> {
    let url = session.target.manifest_url(digest);
    let reply = get_manifest(session, &url).await?;
    match reply.status {
        StatusCode::NOT_FOUND => Ok(None),
        s if s.is_success() => {
            let body = reply.body.clone();
            let content_type = reply.header(CONTENT_TYPE.as_str()).map(str::to_string);
            let digest = digest.to_string();
            // Hashing and parsing up to 4 MiB: not on a runtime worker.
            offload(session.tenant, body.len(), move || {
                manifest::check(&body, &digest)?;
                let media_type = manifest::media_type_of(&body, content_type.as_deref());
                Ok(super::config::attach(&body, describe(&body, media_type)))
            })
            .await
            .map(Some)
            .map_err(|why| session.invalid(&Method::GET, &url, why))
        }
        _ => Err(session.status_error(&Method::GET, &url, &reply)),
    }
}

/// What a verified manifest body says. A body that does not parse as its declared type keeps
/// its digest without a size rather than failing the scan.
pub(crate) fn describe(body: &[u8], media_type: String) -> Fetched {
    let sizeless = |media_type: String| {
        Fetched::Facts(ManifestFacts {
            size: None,
            media_type: Some(media_type).filter(|m| !m.is_empty()),
            platforms: Vec::new(),
            ..ManifestFacts::default()
        })
    };
    let created_at = manifest::created_annotation(body);
    let created_source = created_at.map(|_| crate::registry::CreatedSource::Annotation);
    match manifest::kind_of(&media_type) {
        Kind::Image => {
            let (size, artifact_type) = match manifest::image_summary(body) {
                Ok((size, artifact_type)) => (Some(size), artifact_type),
                Err(e) => {
                    tracing::warn!(%media_type, error = %e, "manifest has no usable size");
                    (None, None)
                }
            };
            Fetched::Facts(ManifestFacts {
                size,
                media_type: Some(media_type),
                platforms: Vec::new(),
                artifact_type,
                created_at,
                created_source,
                ..ManifestFacts::default()
            })
        }
        Kind::Index => match manifest::index_contents(body) {
            Ok((entries, extra)) => Fetched::Index(media_type, entries, extra, created_at),
            Err(e) => {
                tracing::warn!(%media_type, error = %e, "index has no usable platforms");
                sizeless(media_type)
            }
        },
        Kind::Schema1 => match schema1::blob_sums(body) {
            Ok(blobs) => Fetched::Schema1(media_type, blobs),
            Err(e) => {
                tracing::warn!(%media_type, error = %e, "schema 1 manifest has no usable layers");
                sizeless(media_type)
            }
        },
        Kind::Unknown => sizeless(media_type),
    }
}
