//! Azure Container Registry's tags API (Azure REST API reference, Container Registry data
//! plane, "Get Tags": `GET /acr/v1/{name}/_tags` with `n` and `last`; answers `registry`,
//! `imageName`, `tags[]` with `name`, `digest`, `createdTime`, `lastUpdateTime`,
//! `changeableAttributes`; the next page in a `Link` header). Same host; its bearer token
//! (scope `metadata_read`) comes from the challenge, kept apart from the pull token.

use reqwest::Method;
use serde::Deserialize;

use super::detect::api_url;
use super::{Collector, pushed};
use crate::registry::protocol::next_page;
use crate::registry::session::Session;
use crate::registry::{ScanError, Timestamp};

const PAGE_SIZE: u32 = 100;

#[derive(Deserialize)]
struct Page {
    tags: Vec<Tag>,
}

#[derive(Deserialize)]
struct Tag {
    name: String,
    #[serde(default)]
    digest: Option<String>,
    /// When the tag last changed (RFC 3339 text, 100 ns digits): its last push.
    #[serde(
        rename = "lastUpdateTime",
        default,
        deserialize_with = "pushed::rfc3339"
    )]
    last_update: Option<Timestamp>,
}

pub(super) async fn list(
    session: &Session<'_>,
    out: &mut Collector<'_, '_>,
) -> Result<(), ScanError> {
    let target = session.target;
    let api = session.sibling(target, session.credentials(), "acr");
    let mut url = api_url(target, &format!("acr/v1/{}/_tags", target.repository()));
    url.query_pairs_mut()
        .append_pair("n", &PAGE_SIZE.to_string());
    loop {
        let reply = out.page(&api, &url).await?;
        let page: Page = out.parse(&api, &url, &reply).await?;
        for t in &page.tags {
            out.add(&t.name, t.digest.as_deref(), t.last_update).await?;
        }
        let next = next_page(&reply.headers);
        match next {
            Some(next) => {
                url = target
                    .resolve_link(&next, &url)
                    .map_err(|e| api.invalid(&Method::GET, &url, e))?
            }
            None => return Ok(()),
        }
    }
}
