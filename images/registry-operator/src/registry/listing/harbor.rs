//! Harbor's artifacts API (goharbor/harbor `api/v2.0/swagger.yaml`, operation
//! `listArtifacts`: `GET /api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts`
//! with `with_tag=true`, `page`, `page_size`; an `Artifact` has `digest`, `tags[]` of `Tag`
//! with `name`, `push_time`, `references[]`; `push_time` is RFC 3339 text on the `Tag` and on
//! the `Artifact`). A repository name holding `/` is URL-encoded twice, as the swagger says. Harbor's API takes Basic credentials; robot accounts work too.

use serde::Deserialize;

use super::detect::api_url;
use super::{Collector, pushed};
use crate::registry::session::Session;
use crate::registry::{ScanError, Timestamp};

const PAGE_SIZE: usize = 100;

#[derive(Deserialize)]
struct Artifact {
    digest: String,
    #[serde(default)]
    tags: Option<Vec<Tag>>,
    #[serde(default, deserialize_with = "pushed::rfc3339")]
    push_time: Option<Timestamp>,
}

#[derive(Deserialize)]
struct Tag {
    name: String,
    /// When this tag was pushed (the artifact's own is its first push under any tag).
    #[serde(default, deserialize_with = "pushed::rfc3339")]
    push_time: Option<Timestamp>,
}

pub(super) async fn list(
    session: &Session<'_>,
    out: &mut Collector<'_, '_>,
) -> Result<(), ScanError> {
    let target = session.target;
    let repository = target.repository();
    let (project, name) = repository
        .split_once('/')
        .ok_or_else(|| ScanError::InvalidConfig(format!("{repository} names no Harbor project")))?;
    let api = session.sibling(target, session.credentials(), "harbor");
    api.assume_basic();
    let encoded = name.replace('/', "%252F");
    for page in 1.. {
        let mut url = api_url(
            target,
            &format!("api/v2.0/projects/{project}/repositories/{encoded}/artifacts"),
        );
        url.query_pairs_mut()
            .append_pair("with_tag", "true")
            .append_pair("page", &page.to_string())
            .append_pair("page_size", &PAGE_SIZE.to_string());
        let reply = out.page(&api, &url).await?;
        let artifacts: Vec<Artifact> = out.parse(&api, &url, &reply).await?;
        for a in &artifacts {
            for t in a.tags.iter().flatten() {
                out.add(&t.name, Some(&a.digest), t.push_time.or(a.push_time))
                    .await?;
            }
        }
        if artifacts.len() < PAGE_SIZE {
            break;
        }
    }
    Ok(())
}
