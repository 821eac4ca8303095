//! `HEAD /v2/<name>/manifests/<tag>`: a tag's digest from `Docker-Content-Digest`, with a GET
//! by tag for registries that send none (or refuse HEAD).

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};

use super::digest::valid_digest;
use super::fetch::{Fetched, describe, get_manifest};
use super::manifest::{self, ACCEPT_MANIFESTS};
use crate::registry::error::ScanError;
use crate::registry::session::Session;
use crate::registry::transport::{RequestKind, offload};

pub(crate) enum HeadOutcome {
    Digest(String),
    /// The registry sent no digest on HEAD, so the manifest was fetched by tag instead.
    Fetched(String, Fetched),
    /// Deleted between listing and HEAD.
    Gone,
}

pub(crate) async fn head(session: &Session<'_>, tag: &str) -> Result<HeadOutcome, ScanError> {
    let url = session.target.manifest_url(tag);
    let reply = session
        .send(
            RequestKind::ManifestHead,
            Method::HEAD,
            url.clone(),
            Some(ACCEPT_MANIFESTS),
            0,
        )
        .await?;
    match reply.status {
        StatusCode::NOT_FOUND => return Ok(HeadOutcome::Gone),
        s if s.is_success() => {
            if let Some(d) = reply
                .header("docker-content-digest")
                .filter(|d| valid_digest(d))
            {
                return Ok(HeadOutcome::Digest(d.to_string()));
            }
        }
        // Registries without HEAD support answer 405; the GET below still works.
        StatusCode::METHOD_NOT_ALLOWED => {}
        _ => return Err(session.status_error(&Method::HEAD, &url, &reply)),
    }
    let reply = get_manifest(session, &url).await?;
    match reply.status {
        StatusCode::NOT_FOUND => Ok(HeadOutcome::Gone),
        s if s.is_success() => {
            let body = reply.body.clone();
            let content_type = reply.header(CONTENT_TYPE.as_str()).map(str::to_string);
            let announced = reply
                .header("docker-content-digest")
                .filter(|d| valid_digest(d))
                .map(str::to_string);
            // Hashing and parsing up to 4 MiB: not on a runtime worker.
            let (digest, described) = offload(session.tenant, body.len(), move || {
                let digest = match announced {
                    Some(d) => manifest::check(&body, &d).map(|()| d)?,
                    None => manifest::registry_digest(&body),
                };
                let media_type = manifest::media_type_of(&body, content_type.as_deref());
                let described = super::config::attach(&body, describe(&body, media_type));
                Ok::<_, String>((digest, described))
            })
            .await
            .map_err(|why| session.invalid(&Method::GET, &url, why))?;
            // Whatever it is (an index too), it is described now: no second GET by digest.
            Ok(HeadOutcome::Fetched(digest, described))
        }
        _ => Err(session.status_error(&Method::GET, &url, &reply)),
    }
}
