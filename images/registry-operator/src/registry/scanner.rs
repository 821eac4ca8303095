//! One repository scan: tag list, one HEAD per tag, and one GET per digest it has not seen.
//!
//! Request budget: tag pages + one HEAD per tag + one GET per new digest (+ one per new index
//! child). Digests an earlier scan resolved (`ScanOptions::known`) cost no GET at all.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};

use super::client::{RegistryClient, RequestKind};
use super::manifest::{self, ACCEPT_MANIFESTS, Kind, MANIFEST_BODY_LIMIT};
use super::order::compare_tags;
use super::session::{Reply, Session};
use super::tags::{TagFilter, list_tags};
use super::{Credentials, Image, ManifestFacts, RequestCounts, ScanError, ScanLimits, Target};

#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Registry requests in flight at once.
    pub concurrency: usize,
    /// `n` asked for per tag list page.
    pub page_size: u32,
    /// Deadline for the whole scan.
    pub timeout: Duration,
    pub filter: TagFilter,
    /// Facts an earlier scan learned, by manifest digest.
    pub known: HashMap<String, ManifestFacts>,
    pub limits: ScanLimits,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            page_size: 1000,
            timeout: Duration::from_secs(300),
            filter: TagFilter::default(),
            known: HashMap::new(),
            limits: ScanLimits::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScanReport {
    /// Every tag with its digest, in version order.
    pub images: Vec<Image>,
    /// Facts for every digest in `images`: feed them to the next scan as `known`.
    pub facts: HashMap<String, ManifestFacts>,
    pub requests: RequestCounts,
    /// Tags listed but gone before their manifest could be read.
    pub vanished_tags: Vec<String>,
    pub duration: Duration,
}

/// A tag and what its HEAD said.
struct Resolved {
    tag: String,
    digest: String,
}

pub async fn scan(
    client: &RegistryClient,
    target: &Target,
    credentials: Option<&Credentials>,
    options: &ScanOptions,
) -> Result<ScanReport, ScanError> {
    let started = Instant::now();
    let session = Session::new(client, target, credentials, options.timeout);
    // Belt and braces: every request and wait already respects the deadline.
    let run = tokio::time::timeout(
        options.timeout + Duration::from_secs(5),
        run(&session, options),
    );
    let (images, facts, vanished_tags) = run.await.map_err(|_| ScanError::Timeout {
        what: format!("scan of {}/{}", target.registry(), target.repository()),
        after: options.timeout,
    })??;
    let c = &session.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as i64;
    Ok(ScanReport {
        images,
        facts,
        requests: RequestCounts {
            tag_pages: load(&c.tag_pages),
            manifest_heads: load(&c.manifest_heads),
            manifest_gets: load(&c.manifest_gets),
            token_requests: load(&c.token_requests),
            retries: load(&c.retries),
        },
        vanished_tags,
        duration: started.elapsed(),
    })
}

type Found = (Vec<Image>, HashMap<String, ManifestFacts>, Vec<String>);

async fn run(session: &Session<'_>, options: &ScanOptions) -> Result<Found, ScanError> {
    let concurrency = options.concurrency.max(1);
    let tags = list_tags(session, options.page_size, &options.filter, &options.limits).await?;
    tracing::debug!(registry = %session.target.registry(), repository = session.target.repository(), tags = tags.len(), "listed tags");

    let mut facts: HashMap<String, ManifestFacts> = HashMap::new();
    let heads: Vec<(String, HeadOutcome)> = stream::iter(tags)
        .map(|tag| async move {
            let outcome = head(session, &tag).await?;
            Ok::<_, ScanError>((tag, outcome))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;

    let mut resolved = Vec::new();
    let mut vanished = Vec::new();
    for (tag, outcome) in heads {
        match outcome {
            HeadOutcome::Digest(digest) => resolved.push(Resolved { tag, digest }),
            HeadOutcome::Fetched(digest, fetched) => {
                facts.insert(digest.clone(), fetched);
                resolved.push(Resolved { tag, digest });
            }
            HeadOutcome::Gone => vanished.push(tag),
        }
    }

    // One GET per digest nobody has resolved yet, however many tags share it.
    let wanted: HashSet<String> = resolved
        .iter()
        .map(|r| r.digest.clone())
        .filter(|d| !facts.contains_key(d) && !options.known.contains_key(d))
        .collect();
    let fetched = fetch_all(session, wanted, concurrency).await?;
    let mut pending_indexes = Vec::new();
    let mut gone = HashSet::new();
    for (digest, f) in fetched {
        match f {
            Some(Fetched::Facts(f)) => {
                facts.insert(digest, f);
            }
            Some(Fetched::Index(media_type, entries)) => {
                pending_indexes.push((digest, media_type, entries))
            }
            None => {
                gone.insert(digest);
            }
        }
    }

    // Platform manifests of new indexes, again one GET per digest.
    let children: HashSet<String> = pending_indexes
        .iter()
        .flat_map(|(_, _, entries)| entries.iter().map(|e| e.platform.digest.clone()))
        .filter(|d| !facts.contains_key(d) && !options.known.contains_key(d))
        .collect();
    let child_facts = fetch_all(session, children, concurrency).await?;
    for (digest, media_type, entries) in pending_indexes {
        let platforms: Vec<_> = entries
            .into_iter()
            .map(|mut e| {
                let d = &e.platform.digest;
                e.platform.size = facts
                    .get(d)
                    .or_else(|| options.known.get(d))
                    .and_then(|f| f.size)
                    .or_else(|| match child_facts.get(d) {
                        Some(Some(Fetched::Facts(f))) => f.size,
                        _ => None,
                    });
                e.platform
            })
            .collect();
        facts.insert(
            digest,
            ManifestFacts {
                size: manifest::representative_size(&platforms),
                media_type: Some(media_type),
                platforms,
            },
        );
    }

    let mut images = Vec::with_capacity(resolved.len());
    for r in resolved {
        if gone.contains(&r.digest) {
            vanished.push(r.tag);
            continue;
        }
        let f = facts
            .get(&r.digest)
            .or_else(|| options.known.get(&r.digest))
            .cloned()
            .unwrap_or_default();
        facts.entry(r.digest.clone()).or_insert_with(|| f.clone());
        images.push(Image {
            tag: r.tag,
            digest: r.digest,
            size: f.size,
            media_type: f.media_type,
            platforms: f.platforms,
        });
    }
    images.sort_by(|a, b| compare_tags(&a.tag, &b.tag));
    let used: HashSet<&str> = images.iter().map(|i| i.digest.as_str()).collect();
    facts.retain(|d, _| used.contains(d.as_str()));
    vanished.sort_by(|a, b| compare_tags(a, b));
    Ok((images, facts, vanished))
}

enum HeadOutcome {
    Digest(String),
    /// The registry sent no digest on HEAD, so the manifest was fetched by tag instead.
    Fetched(String, ManifestFacts),
    /// Deleted between listing and HEAD.
    Gone,
}

async fn head(session: &Session<'_>, tag: &str) -> Result<HeadOutcome, ScanError> {
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
            let digest = match reply
                .header("docker-content-digest")
                .filter(|d| valid_digest(d))
            {
                Some(d) if manifest::verify(&reply.body, d) => d.to_string(),
                Some(d) => {
                    return Err(session.invalid(
                        &Method::GET,
                        &url,
                        format!("manifest does not match its digest {d}"),
                    ));
                }
                None => manifest::digest_of(&reply.body, "sha256").expect("sha256 is supported"),
            };
            let media_type =
                manifest::media_type_of(&reply.body, reply.header(CONTENT_TYPE.as_str()));
            match describe(&reply.body, media_type) {
                Fetched::Facts(f) => Ok(HeadOutcome::Fetched(digest, f)),
                // Rare (HEAD without digest *and* an index): resolve it through the digest path.
                Fetched::Index(..) => Ok(HeadOutcome::Digest(digest)),
            }
        }
        _ => Err(session.status_error(&Method::GET, &url, &reply)),
    }
}

async fn get_manifest(session: &Session<'_>, url: &url::Url) -> Result<Reply, ScanError> {
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

enum Fetched {
    Facts(ManifestFacts),
    Index(String, Vec<manifest::IndexEntry>),
}

/// GETs each digest once; `None` for digests the registry no longer has.
async fn fetch_all(
    session: &Session<'_>,
    digests: HashSet<String>,
    concurrency: usize,
) -> Result<HashMap<String, Option<Fetched>>, ScanError> {
    stream::iter(digests)
        .map(|digest| async move {
            let f = fetch(session, &digest).await?;
            Ok::<_, ScanError>((digest, f))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await
}

async fn fetch(session: &Session<'_>, digest: &str) -> Result<Option<Fetched>, ScanError> {
    let url = session.target.manifest_url(digest);
    let reply = get_manifest(session, &url).await?;
    match reply.status {
        StatusCode::NOT_FOUND => Ok(None),
        s if s.is_success() => {
            if !manifest::verify(&reply.body, digest) {
                return Err(session.invalid(
                    &Method::GET,
                    &url,
                    format!("manifest does not match its digest {digest}"),
                ));
            }
            let media_type =
                manifest::media_type_of(&reply.body, reply.header(CONTENT_TYPE.as_str()));
            Ok(Some(describe(&reply.body, media_type)))
        }
        _ => Err(session.status_error(&Method::GET, &url, &reply)),
    }
}

/// What a verified manifest body says. A body that does not parse as its declared type keeps
/// its digest without a size rather than failing the scan.
fn describe(body: &[u8], media_type: String) -> Fetched {
    match manifest::kind_of(&media_type) {
        Kind::Image => {
            let size = manifest::image_size(body)
                .inspect_err(
                    |e| tracing::warn!(%media_type, error = %e, "manifest has no usable size"),
                )
                .ok();
            Fetched::Facts(ManifestFacts {
                size,
                media_type: Some(media_type),
                platforms: Vec::new(),
            })
        }
        Kind::Index => match manifest::index_entries(body) {
            Ok(entries) => Fetched::Index(media_type, entries),
            Err(e) => {
                tracing::warn!(%media_type, error = %e, "index has no usable platforms");
                Fetched::Facts(ManifestFacts {
                    size: None,
                    media_type: Some(media_type),
                    platforms: Vec::new(),
                })
            }
        },
        Kind::Unknown => Fetched::Facts(ManifestFacts {
            size: None,
            media_type: Some(media_type).filter(|m| !m.is_empty()),
            platforms: Vec::new(),
        }),
    }
}

fn valid_digest(d: &str) -> bool {
    d.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty()
            && alg
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
            && hex.len() >= 32
            && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}
