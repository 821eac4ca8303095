//! Quay's tag API (Red Hat Quay API reference, "tag" → `listRepoTags`:
//! `GET /api/v1/repository/{repository}/tag/` with `limit` (at most 100), `page`,
//! `onlyActiveTags`; answers `tags[]` with `name`, `manifest_digest`, `start_ts` (when the
//! tag started pointing at that manifest, Unix seconds), and `has_additional`).
//! Quay's API takes OAuth tokens, not registry credentials, so it is asked anonymously:
//! public repositories list natively, private ones fall back to the distribution API.

use serde::Deserialize;

use super::detect::api_url;
use super::{Collector, pushed};
use crate::registry::session::Session;
use crate::registry::{ScanError, Timestamp};

const LIMIT: u32 = 100;

#[derive(Deserialize)]
struct Page {
    tags: Vec<Tag>,
    #[serde(default)]
    has_additional: bool,
}

#[derive(Deserialize)]
struct Tag {
    name: String,
    #[serde(default)]
    manifest_digest: Option<String>,
    #[serde(default, deserialize_with = "pushed::unix_seconds")]
    start_ts: Option<Timestamp>,
}

pub(super) async fn list(
    session: &Session<'_>,
    out: &mut Collector<'_, '_>,
) -> Result<(), ScanError> {
    let target = session.target;
    let api = session.sibling(target, None, "quay");
    for page in 1.. {
        let mut url = api_url(
            target,
            &format!("api/v1/repository/{}/tag/", target.repository()),
        );
        url.query_pairs_mut()
            .append_pair("limit", &LIMIT.to_string())
            .append_pair("page", &page.to_string())
            .append_pair("onlyActiveTags", "true");
        let reply = out.page(&api, &url).await?;
        let p: Page = out.parse(&api, &url, &reply).await?;
        for t in &p.tags {
            out.add(&t.name, t.manifest_digest.as_deref(), t.start_ts)
                .await?;
        }
        if !p.has_additional {
            break;
        }
    }
    Ok(())
}
