//! Google Artifact Registry and Container Registry: their `/v2/{repo}/tags/list` adds a
//! `manifest` map (digest → `tag[]`, `mediaType`, `imageSizeBytes`, `timeCreatedMs`,
//! `timeUploadedMs`; cloud.google.com/artifact-registry/docs/reference/docker-api) to the
//! distribution answer, so the tag list names every tag's digest. Same host, same auth.
//! `timeUploadedMs` is Unix milliseconds, as text on GCR and a number on Artifact Registry
//! (go-containerregistry's `pkg/v1/google` reads both).

use std::collections::HashMap;

use reqwest::Method;
use serde::Deserialize;

use super::{Collector, pushed};
use crate::registry::protocol::next_page;
use crate::registry::session::Session;
use crate::registry::{ScanError, Timestamp};

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    tags: Option<Vec<String>>,
    /// Required: without it this is a plain tag list, and not the shape documented.
    manifest: HashMap<String, Manifest>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    tag: Vec<String>,
    #[serde(
        rename = "timeUploadedMs",
        default,
        deserialize_with = "pushed::unix_millis"
    )]
    uploaded: Option<Timestamp>,
}

pub(super) async fn list(
    session: &Session<'_>,
    out: &mut Collector<'_, '_>,
    page_size: u32,
) -> Result<(), ScanError> {
    let target = session.target;
    let mut url = target.tags_url(Some(page_size));
    loop {
        let reply = out.page(session, &url).await?;
        let listed = out
            .parse_then(session, &url, &reply, |page: Page| {
                let by_tag: HashMap<&str, (&str, Option<Timestamp>)> = page
                    .manifest
                    .iter()
                    .flat_map(|(d, m)| {
                        m.tag
                            .iter()
                            .map(move |t| (t.as_str(), (d.as_str(), m.uploaded)))
                    })
                    .collect();
                page.tags
                    .iter()
                    .flatten()
                    .map(|t| match by_tag.get(t.as_str()) {
                        Some((d, at)) => (t.clone(), Some(d.to_string()), *at),
                        None => (t.clone(), None, None),
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        for (t, digest, at) in &listed {
            out.add(t, digest.as_deref(), *at).await?;
        }
        let next = next_page(&reply.headers);
        match next {
            Some(next) => {
                url = target
                    .resolve_link(&next, &url)
                    .map_err(|e| session.invalid(&Method::GET, &url, e))?
            }
            None => return Ok(()),
        }
    }
}
