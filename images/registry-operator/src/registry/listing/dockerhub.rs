//! Docker Hub's tags API, the one case on another host than the registry: `hub.docker.com`
//! (Docker Hub API reference, docs.docker.com/reference/api/hub/latest, "List repository
//! tags": `GET /v2/namespaces/{namespace}/repositories/{repository}/tags?page_size=100`,
//! answering `count`, `next`, `previous`, `results[]` with `name`, `digest`, `images[]`, and
//! `tag_last_pushed`, the tag's last push as RFC 3339 text).
//! With credentials, a token from the same host's `POST /v2/auth/token` (`identifier`,
//! `secret` → `access_token`) goes with each request; the credentials go to hub.docker.com
//! and nowhere else, as Docker documents for them.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::detect::api_url;
use super::{Collector, pushed};
use crate::registry::auth::TokenKey;
use crate::registry::session::Session;
use crate::registry::target::Target;
use crate::registry::transport::RequestKind;
use crate::registry::{Credentials, ScanError, Timestamp};

pub(crate) const HUB_API: &str = "https://hub.docker.com";
const PAGE_SIZE: u32 = 100;
/// Docker Hub does not say how long its tokens last; they are asked for again well before
/// the documented minimum.
const TOKEN_LIFETIME: Duration = Duration::from_secs(240);
const TOKEN_BODY_LIMIT: usize = 64 << 10;

#[derive(Deserialize)]
struct Page {
    next: Option<String>,
    results: Vec<Tag>,
}

#[derive(Deserialize)]
struct Tag {
    name: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default, deserialize_with = "pushed::rfc3339")]
    tag_last_pushed: Option<Timestamp>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
}

pub(super) async fn list(
    session: &Session<'_>,
    out: &mut Collector<'_, '_>,
) -> Result<(), ScanError> {
    let repository = session.target.repository();
    let (namespace, name) = repository
        .split_once('/')
        .ok_or_else(|| ScanError::InvalidConfig(format!("{repository} has no namespace")))?;
    let hub = Target::new(HUB_API, repository)?;
    let api = session.sibling(&hub, session.credentials(), "hub");
    if let Some(c) = session.credentials() {
        authenticate(&api, &hub, c).await?;
    }
    let mut url = api_url(
        &hub,
        &format!("v2/namespaces/{namespace}/repositories/{name}/tags"),
    );
    url.query_pairs_mut()
        .append_pair("page_size", &PAGE_SIZE.to_string());
    loop {
        let reply = out.page(&api, &url).await?;
        let page: Page = out.parse(&api, &url, &reply).await?;
        for t in &page.results {
            out.add(&t.name, t.digest.as_deref(), t.tag_last_pushed)
                .await?;
        }
        match page.next.filter(|n| !n.is_empty()) {
            // `next` is absolute; it may never lead off hub.docker.com.
            Some(next) => {
                url = hub
                    .resolve_link(&next, &url)
                    .map_err(|e| api.invalid(&Method::GET, &url, e))?
            }
            None => return Ok(()),
        }
    }
}

async fn authenticate(api: &Session<'_>, hub: &Target, c: &Credentials) -> Result<(), ScanError> {
    let url = api_url(hub, "v2/auth/token");
    let key = TokenKey {
        realm: url.to_string(),
        service: "hub.docker.com".into(),
        scope: String::new(),
        credential: c.fingerprint(),
    };
    if api.cached_bearer(&key) {
        return Ok(());
    }
    let body = serde_json::json!({ "identifier": c.username(), "secret": c.password() });
    let reply = api
        .send_body(
            RequestKind::NativeList,
            Method::POST,
            url.clone(),
            Some("application/json"),
            TOKEN_BODY_LIMIT,
            Some(body.to_string().into()),
        )
        .await?;
    if reply.status != StatusCode::OK {
        return Err(api.status_error(&Method::POST, &url, &reply));
    }
    let token: TokenReply = serde_json::from_slice(&reply.body).map_err(|_| {
        api.invalid(
            &Method::POST,
            &url,
            "the token response has no access_token".into(),
        )
    })?;
    api.use_bearer(key, token.access_token, TOKEN_LIFETIME);
    Ok(())
}
