//! What every native lister shares: the same tag checks, filter and limits as the
//! distribution tag list, and a page budget.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use url::Url;

use crate::registry::protocol::{TagFilter, valid_digest};
use crate::registry::session::{Reply, Session};
use crate::registry::target::valid_tag;
use crate::registry::transport::{RequestKind, offload};
use crate::registry::{Referrer, ScanError, ScanLimits, Timestamp};

pub(crate) struct Collector<'s, 'a> {
    session: &'s Session<'a>,
    filter: &'s TagFilter,
    limits: &'s ScanLimits,
    entries: Vec<(String, Option<String>)>,
    /// The push time the API gave each entry (same index).
    pushed: Vec<Option<Timestamp>>,
    index: HashMap<String, usize>,
    pages: usize,
    /// Tags offered so far, listed or not.
    added: usize,
    /// Referrers by digest, from APIs that give them with the listing (Harbor's accessories).
    referrers: Option<HashMap<String, Vec<Referrer>>>,
}

/// Every tag listed, in listing order, with the digest the API named (if it named one).
pub(crate) type Entries = Vec<(String, Option<String>)>;

/// What a listing gave: its entries, push times by tag, referrers by digest.
pub(crate) type Finished = (
    Entries,
    HashMap<String, Timestamp>,
    Option<HashMap<String, Vec<Referrer>>>,
);

/// Tags checked between two yields to the runtime: about a millisecond of work.
const YIELD_EVERY: usize = 1024;

impl<'s, 'a> Collector<'s, 'a> {
    pub fn new(session: &'s Session<'a>, filter: &'s TagFilter, limits: &'s ScanLimits) -> Self {
        Self {
            session,
            filter,
            limits,
            entries: Vec::new(),
            pushed: Vec::new(),
            index: HashMap::new(),
            pages: 0,
            added: 0,
            referrers: None,
        }
    }

    /// One tag, the digest the API names (`None`: the scan HEADs it) and when it says the tag
    /// was pushed. A tag listed twice with two digests keeps neither: the guard's HEAD settles
    /// it; and the later of its push times.
    pub async fn add(
        &mut self,
        tag: &str,
        digest: Option<&str>,
        pushed: Option<Timestamp>,
    ) -> Result<(), ScanError> {
        // A page may name a million tags: let the worker's other tasks run in between.
        self.added = self.added.wrapping_add(1);
        if self.added.is_multiple_of(YIELD_EVERY) {
            tokio::task::yield_now().await;
        }
        if !valid_tag(tag) || !self.filter.admits(tag) {
            return Ok(());
        }
        let digest = digest.filter(|d| valid_digest(d)).map(str::to_string);
        if let Some(&i) = self.index.get(tag) {
            if self.entries[i].1 != digest {
                self.entries[i].1 = None;
            }
            self.pushed[i] = self.pushed[i].max(pushed);
            return Ok(());
        }
        if self.entries.len() >= self.limits.max_tags {
            return Err(ScanError::TooManyTags {
                registry: self.session.target.registry(),
                repository: self.session.target.repository().to_string(),
                limit: self.limits.max_tags,
            });
        }
        self.index.insert(tag.to_string(), self.entries.len());
        self.entries.push((tag.to_string(), digest));
        self.pushed.push(pushed);
        Ok(())
    }

    /// GETs one page of a native API: JSON within the tag list's byte limit, within the page
    /// budget, any status but 200 an error.
    pub async fn page(&mut self, session: &Session<'_>, url: &Url) -> Result<Reply, ScanError> {
        self.pages += 1;
        if self.pages > self.limits.max_pages {
            return Err(ScanError::TooManyTagPages {
                registry: self.session.target.registry(),
                repository: self.session.target.repository().to_string(),
                limit: self.limits.max_pages,
            });
        }
        let reply = session
            .send(
                RequestKind::NativeList,
                Method::GET,
                url.clone(),
                Some("application/json"),
                self.limits.max_page_bytes,
            )
            .await?;
        if reply.status != StatusCode::OK {
            return Err(session.status_error(&Method::GET, url, &reply));
        }
        Ok(reply)
    }

    /// Parses a page as `T` (off the async workers when large); a body of another shape is
    /// an error that names the API.
    pub async fn parse<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        session: &Session<'_>,
        url: &Url,
        reply: &Reply,
    ) -> Result<T, ScanError> {
        self.parse_then(session, url, reply, |t| t).await
    }

    /// [`Collector::parse`], then `then` on the page, also off the async workers.
    pub async fn parse_then<T, R, F>(
        &self,
        session: &Session<'_>,
        url: &Url,
        reply: &Reply,
        then: F,
    ) -> Result<R, ScanError>
    where
        T: serde::de::DeserializeOwned,
        R: Send + 'static,
        F: FnOnce(T) -> R + Send + 'static,
    {
        let body = reply.body.clone();
        offload(session.tenant, body.len(), move || {
            serde_json::from_slice(&body)
                .map(then)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| {
            session.invalid(
                &Method::GET,
                url,
                format!("the response does not have the documented shape: {e}"),
            )
        })
    }

    /// The referrers of `digest` (bounded like the referrers API's answer, and in digests
    /// like the tags).
    pub fn add_referrers(&mut self, digest: &str, mut list: Vec<Referrer>) {
        let map = self.referrers.get_or_insert_with(HashMap::new);
        if !valid_digest(digest) || map.len() >= self.limits.max_tags {
            return;
        }
        list.truncate(crate::registry::protocol::MAX_REFERRERS_PER_DIGEST);
        map.insert(digest.to_string(), list);
    }

    /// The entries in listing order, the push times the API gave, and the referrers it gave
    /// (`None`: it gives none).
    pub fn finish(self) -> Finished {
        let pushed = self
            .entries
            .iter()
            .zip(self.pushed)
            .filter_map(|((tag, _), at)| at.map(|at| (tag.clone(), at)))
            .collect();
        (self.entries, pushed, self.referrers)
    }
}
