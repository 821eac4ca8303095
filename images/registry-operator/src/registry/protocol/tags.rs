//! Listing a repository's tags: paged by `n` and `Link: <…>; rel="next"`, filtered.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use regex::Regex;
use reqwest::{Method, StatusCode};

use crate::registry::session::Session;
use crate::registry::target::valid_tag;
use crate::registry::transport::{RequestKind, offload};
use crate::registry::{ScanError, ScanLimits};

/// Include/exclude patterns over tag names.
#[derive(Debug, Clone, Default)]
pub struct TagFilter {
    pub include: Option<Regex>,
    pub exclude: Option<Regex>,
    /// Further filters, any of which admitting a tag admits it: a shared scan lists what any
    /// of the objects sharing it keeps.
    any_of: Vec<TagFilter>,
}

impl TagFilter {
    pub fn new(include: Option<&str>, exclude: Option<&str>) -> Result<Self, ScanError> {
        let compile = |what: &str, p: Option<&str>| {
            p.filter(|p| !p.is_empty())
                .map(|p| {
                    regex::RegexBuilder::new(p)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| {
                            ScanError::InvalidConfig(format!(
                                "tagFilter.{what} is not a valid regular expression: {e}"
                            ))
                        })
                })
                .transpose()
        };
        Ok(Self {
            include: compile("include", include)?,
            exclude: compile("exclude", exclude)?,
            any_of: Vec::new(),
        })
    }

    /// Admits a tag when any of `filters` does (none: every tag).
    pub fn union(filters: Vec<TagFilter>) -> Self {
        let mut filters = filters;
        match filters.len() {
            0 => Self::default(),
            1 => filters.swap_remove(0),
            _ if filters.iter().any(TagFilter::admits_all) => Self::default(),
            _ => {
                let first = filters.swap_remove(0);
                Self {
                    any_of: filters,
                    ..first
                }
            }
        }
    }

    fn admits_all(&self) -> bool {
        self.include.is_none() && self.exclude.is_none() && self.any_of.is_empty()
    }

    pub fn admits(&self, tag: &str) -> bool {
        (self.include.as_ref().is_none_or(|r| r.is_match(tag))
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(tag)))
            || self.any_of.iter().any(|f| f.admits(tag))
    }
}

#[derive(serde::Deserialize)]
struct TagPage {
    /// `null` (some registries, for an empty repository) means no tags.
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Names checked between two yields to the runtime: about a millisecond of work.
const YIELD_EVERY: usize = 1024;

/// Names the filter leaves out that a listing remembers (by hash) to tell a repeated page:
/// past this, repeats are judged on the names remembered.
const MAX_REMEMBERED_OTHERS: usize = 100_000;

/// Every name a listing has given so far: the admitted tags in listing order, exactly, and
/// the others by a keyed hash, bounded.
struct Names<'f> {
    filter: &'f TagFilter,
    max_tags: usize,
    tags: Vec<String>,
    admitted: HashSet<String>,
    others: HashSet<u64>,
    keys: RandomState,
}

impl<'f> Names<'f> {
    fn new(filter: &'f TagFilter, max_tags: usize) -> Self {
        Self {
            filter,
            max_tags,
            tags: Vec::new(),
            admitted: HashSet::new(),
            others: HashSet::new(),
            keys: RandomState::new(),
        }
    }

    /// Whether the name is new to this listing; `None` past `max_tags`.
    fn add(&mut self, tag: String) -> Option<bool> {
        if !self.filter.admits(&tag) {
            let hash = self.keys.hash_one(&tag);
            if self.others.contains(&hash) {
                return Some(false);
            }
            if self.others.len() < MAX_REMEMBERED_OTHERS {
                self.others.insert(hash);
            }
            return Some(true);
        }
        if self.admitted.contains(&tag) {
            return Some(false);
        }
        if self.tags.len() >= self.max_tags {
            return None;
        }
        self.admitted.insert(tag.clone());
        self.tags.push(tag);
        Some(true)
    }
}

/// Every tag, in the order the registry lists them, without duplicates.
///
/// Pages follow `Link: <…>; rel="next"`; a full page without one is followed by asking what
/// comes after its last tag (`last`). Registries that ignore paging answer that with the same
/// tags again (distribution 2.x sends every tag, unsorted, whatever `n` and `last` say), or
/// start over past the end (go-containerregistry): a page asked for with `last` that repeats
/// any name, or any later page that repeats only names already listed, means the registry
/// has nothing more, and ends the listing.
pub(crate) async fn list_tags(
    session: &Session<'_>,
    page_size: u32,
    filter: &TagFilter,
    limits: &ScanLimits,
) -> Result<Vec<String>, ScanError> {
    let target = session.target;
    let too_many = || ScanError::TooManyTags {
        registry: target.registry(),
        repository: target.repository().to_string(),
        limit: limits.max_tags,
    };
    let mut url = target.tags_url(Some(page_size));
    let mut names = Names::new(filter, limits.max_tags);
    let mut visited = HashSet::new();
    let mut first = true;
    let mut may_drop_page_size = true;
    let mut probed = false;
    for _ in 0..limits.max_pages {
        visited.insert(url.to_string());
        let reply = session
            .send(
                RequestKind::TagList,
                Method::GET,
                url.clone(),
                Some("application/json"),
                limits.max_page_bytes,
            )
            .await?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(ScanError::RepositoryNotFound {
                    registry: target.registry(),
                    repository: target.repository().to_string(),
                });
            }
            // Some registries refuse a page size they do not like: take their default instead.
            StatusCode::BAD_REQUEST if first && may_drop_page_size => {
                may_drop_page_size = false;
                url = target.tags_url(None);
                continue;
            }
            _ => return Err(session.status_error(&Method::GET, &url, &reply)),
        }
        let later = !first;
        first = false;
        // Up to 4 MiB of JSON: parsed off the runtime's workers.
        let body = reply.body.clone();
        let page: TagPage = offload(session.tenant, body.len(), move || {
            serde_json::from_slice(&body).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| {
            session.invalid(
                &Method::GET,
                &url,
                format!("tag list is not valid JSON: {e}"),
            )
        })?;
        let page_tags = page.tags.unwrap_or_default();
        let page_len = page_tags.len();
        let last_listed = page_tags.last().cloned();
        let (mut new, mut repeated) = (0usize, 0usize);
        for (i, tag) in page_tags.into_iter().enumerate() {
            // A page may hold a million names: let the worker's other tasks run in between.
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
            // A name that is not a tag must never become part of a request path.
            if !valid_tag(&tag) {
                tracing::warn!(registry = %target.registry(), repository = target.repository(), tag = %tag.escape_debug().to_string().chars().take(80).collect::<String>(), "registry listed an invalid tag name; skipped");
                continue;
            }
            match names.add(tag) {
                Some(true) => new = new.saturating_add(1),
                Some(false) => repeated = repeated.saturating_add(1),
                None => return Err(too_many()),
            }
        }
        if repeated > 0 && (probed || (later && new == 0)) {
            tracing::debug!(registry = %target.registry(), repository = target.repository(), new, repeated, "tag list page repeats earlier names: the registry ignores paging; listing complete");
            return Ok(names.tags);
        }
        let next = next_page(&reply.headers);
        url = match next {
            Some(next) => {
                probed = false;
                target
                    .resolve_link(&next, &url)
                    .map_err(|e| session.invalid(&Method::GET, &url, e))?
            }
            // A full page without a Link (go-containerregistry's registry pages by `n` and
            // `last` but sends none): ask what follows the last tag; an empty page ends it.
            None => match last_listed {
                Some(last) if may_drop_page_size && page_len == page_size as usize => {
                    let mut u = target.tags_url(Some(page_size));
                    u.query_pairs_mut().append_pair("last", &last);
                    probed = true;
                    u
                }
                _ => return Ok(names.tags),
            },
        };
        // Asked for again, a page already read could only repeat it.
        if visited.contains(url.as_str()) {
            tracing::debug!(registry = %target.registry(), repository = target.repository(), "tag list pages link back to an earlier page; listing complete");
            return Ok(names.tags);
        }
    }
    Err(ScanError::TooManyTagPages {
        registry: target.registry(),
        repository: target.repository().to_string(),
        limit: limits.max_pages,
    })
}

/// The `rel="next"` link among a response's `Link` headers.
pub fn next_page(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(next_link)
}

/// The target of the `rel="next"` link in a `Link` header value (which may hold several links).
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(start) = rest.find('<') {
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        let params_end = rest[end..].find('<').map_or(rest.len(), |i| end + i);
        let params = &rest[end + 1..params_end];
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return Some(target.to_string());
        }
        rest = &rest[params_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_next_among_links() {
        assert_eq!(
            next_link(r#"</v2/app/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/app/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_link(r#"<https://r/v2/a/tags/list?last=x>; rel="prev", <https://r/v2/a/tags/list?last=y>; rel=next"#).as_deref(),
            Some("https://r/v2/a/tags/list?last=y")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn names_tell_repeats_of_admitted_and_filtered_tags() {
        let filter = TagFilter::new(Some("^v"), None).unwrap();
        let mut names = Names::new(&filter, 2);
        assert_eq!(names.add("v1".into()), Some(true));
        assert_eq!(names.add("latest".into()), Some(true));
        assert_eq!(names.add("v1".into()), Some(false));
        assert_eq!(
            names.add("latest".into()),
            Some(false),
            "filtered, still known"
        );
        assert_eq!(names.add("v2".into()), Some(true));
        assert_eq!(names.add("v3".into()), None, "past max_tags");
        assert_eq!(names.add("v2".into()), Some(false));
        assert_eq!(names.tags, ["v1", "v2"]);
    }

    #[test]
    fn filter_includes_then_excludes() {
        let f = TagFilter::new(Some(r"^v?\d+\.\d+"), Some("-rc")).unwrap();
        assert!(f.admits("1.2"));
        assert!(f.admits("v1.25.3-alpine"));
        assert!(!f.admits("1.3-rc1"));
        assert!(!f.admits("latest"));
        assert!(TagFilter::new(Some("("), None).is_err());
        assert!(TagFilter::default().admits("anything"));
    }
}
