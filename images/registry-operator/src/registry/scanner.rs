//! One repository scan: tag list, one HEAD per tag, and one GET per digest it has not seen.
//!
//! Request budget: tag pages + one HEAD per tag + one GET per new digest (+ one per new index
//! child, + one HEAD per distinct layer of a new schema 1 manifest). Digests an earlier scan
//! resolved (`ScanOptions::known`) cost no GET at all.
//!
//! One bad tag never fails the scan: a tag whose manifest cannot be read keeps its last known
//! digest, carries a note, and is counted in `failed_tags`. Only the tag list, auth, a
//! registry-wide problem (TLS, rate limit, deadline) or too many failing tags fail the scan.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::client::{RegistryClient, RequestKind};
use super::listing::{self, Lister, ListingMode, NativeOutcome};
use super::manifest::{self, ACCEPT_MANIFESTS, Kind, MANIFEST_BODY_LIMIT};
use super::order::compare_tags;
use super::schema1;
use super::session::{Reply, Session};
use super::tags::TagFilter;
use super::{
    Credentials, Image, ManifestFacts, RequestCounts, ScanError, ScanLimits, TagFailure, Target,
};

/// A scan fails when more than this share of its tags cannot be read (and always when all of
/// them fail): past that, the repository's picture is more wrong than right.
pub const FAILED_TAGS_LIMIT_PERCENT: usize = 50;

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
    /// Tag → digest as an earlier scan found them: a tag that cannot be read now keeps it.
    /// A native listing's guard HEADs every tag whose digest is not the one found here.
    pub known_tags: HashMap<String, String>,
    /// Whether a registry's native listing API may give the digests.
    pub listing: ListingMode,
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
            known_tags: HashMap::new(),
            listing: ListingMode::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScanReport {
    /// Every tag with its digest, in version order.
    pub images: Vec<Image>,
    /// Complete facts for the digests in `images`: feed them to the next scan as `known`.
    /// Incomplete ones (an index child not found yet, a refused blob HEAD) are left out so the
    /// next scan tries again.
    pub facts: HashMap<String, ManifestFacts>,
    pub requests: RequestCounts,
    /// Tags listed but gone before their manifest could be read.
    pub vanished_tags: Vec<String>,
    /// Tags whose manifest could not be read, in version order.
    pub failed_tags: Vec<TagFailure>,
    pub duration: Duration,
    /// What became of a native listing API, when the registry has one.
    pub native: Option<NativeOutcome>,
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
        options.timeout.saturating_add(Duration::from_secs(5)),
        run(&session, options),
    );
    let found = run.await.map_err(|_| ScanError::Timeout {
        what: format!("scan of {}/{}", target.registry(), target.repository()),
        after: options.timeout,
    })??;
    Ok(ScanReport {
        images: found.images,
        facts: found.facts,
        requests: RequestCounts {
            lister: Some(found.lister.as_str().to_string()),
            ..session.counters.counts()
        },
        vanished_tags: found.vanished,
        failed_tags: found.failed,
        duration: started.elapsed(),
        native: found.native,
    })
}

/// What [`refresh`] learned about the tags it was given.
#[derive(Debug, Clone)]
pub struct RefreshReport {
    /// The given tags that exist, with their digest and facts, in version order.
    pub images: Vec<Image>,
    /// Complete facts of the digests in `images` (as [`ScanReport::facts`]).
    pub facts: HashMap<String, ManifestFacts>,
    /// Given tags the registry no longer has (404).
    pub gone: Vec<String>,
    /// Given tags that could not be read; they keep whatever the caller knew.
    pub failed: Vec<TagFailure>,
    pub requests: RequestCounts,
    pub duration: Duration,
}

/// Re-reads only `tags` (a webhook said they changed): one HEAD each, and one GET per digest
/// `options.known` does not have yet — no tag list. Tags outside `options.filter` are skipped.
pub async fn refresh(
    client: &RegistryClient,
    target: &Target,
    credentials: Option<&Credentials>,
    tags: &[String],
    options: &ScanOptions,
) -> Result<RefreshReport, ScanError> {
    let started = Instant::now();
    let session = Session::new(client, target, credentials, options.timeout);
    let tags: Vec<String> = tags
        .iter()
        .filter(|t| options.filter.admits(t))
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let run = tokio::time::timeout(
        options.timeout.saturating_add(Duration::from_secs(5)),
        resolve(&session, options, tags, Vec::new()),
    );
    let (found, failures) = run.await.map_err(|_| ScanError::Timeout {
        what: format!("refresh of {}/{}", target.registry(), target.repository()),
        after: options.timeout,
    })??;
    let failed_tags: HashSet<&str> = failures.iter().map(|(t, _)| t.as_str()).collect();
    Ok(RefreshReport {
        // A tag whose HEAD failed is listed with the caller's old digest: leave it to them.
        images: found
            .images
            .into_iter()
            .filter(|i| !failed_tags.contains(i.tag.as_str()))
            .collect(),
        facts: found.facts,
        gone: found.vanished,
        failed: failures
            .into_iter()
            .map(|(tag, e)| TagFailure {
                tag,
                message: e.to_string(),
                reason: e.reason().as_str(),
            })
            .collect(),
        requests: session.counters.counts(),
        duration: started.elapsed(),
    })
}

struct Found {
    images: Vec<Image>,
    facts: HashMap<String, ManifestFacts>,
    vanished: Vec<String>,
    failed: Vec<TagFailure>,
    lister: Lister,
    native: Option<NativeOutcome>,
}

/// Splits a per-tag error from one that ends the scan: registry-wide problems, and anything
/// once the deadline has passed.
fn per_tag<T>(
    session: &Session<'_>,
    r: Result<T, ScanError>,
) -> Result<Result<T, ScanError>, ScanError> {
    match r {
        Err(e) if e.is_scan_wide() => Err(e),
        Err(e) if session.remaining().is_err() => Err(e),
        r => Ok(r),
    }
}

/// What is known about a digest after the GET phase.
enum Resolution {
    Complete(ManifestFacts),
    /// Usable for the image, but not to be remembered: `note` says what is missing.
    Partial(ManifestFacts, String),
    Unreadable(ScanError),
    Gone,
}

async fn run(session: &Session<'_>, options: &ScanOptions) -> Result<Found, ScanError> {
    let concurrency = options.concurrency.max(1);
    let listed = listing::list(session, options, concurrency).await?;
    let total = listed.tags.len();
    tracing::debug!(registry = %session.target.registry(), repository = session.target.repository(), tags = total, lister = listed.lister.as_str(), "listed tags");

    // A native listing already gave (and the guard checked) these digests: no HEAD for them.
    let mut resolved: Vec<(String, String)> = Vec::new();
    let mut to_head = Vec::new();
    for tag in listed.tags {
        match listed.digests.get(&tag) {
            Some(d) => resolved.push((tag, d.clone())),
            None => to_head.push(tag),
        }
    }
    let (mut found, mut failures) = resolve(session, options, to_head, resolved).await?;
    if !failures.is_empty()
        && (failures.len() == total || failures.len() * 100 > total * FAILED_TAGS_LIMIT_PERCENT)
    {
        let failed = failures.len();
        let (tag, first) = failures.swap_remove(0);
        return Err(ScanError::TooManyTagFailures {
            failed,
            total,
            tag,
            first: Box::new(first),
        });
    }
    found.failed = failures
        .into_iter()
        .map(|(tag, e)| TagFailure {
            tag,
            message: e.to_string(),
            reason: e.reason().as_str(),
        })
        .collect();
    found.lister = listed.lister;
    found.native = listed.native;
    Ok(found)
}

/// HEADs `tags` and resolves every digest not known yet (of those and of the tags already
/// `resolved`): what a scan does after listing, and all a refresh does. Per-tag failures are
/// returned in version order (`Found::failed` empty).
async fn resolve(
    session: &Session<'_>,
    options: &ScanOptions,
    tags: Vec<String>,
    mut resolved: Vec<(String, String)>,
) -> Result<(Found, Vec<(String, ScanError)>), ScanError> {
    let concurrency = options.concurrency.max(1);
    let heads: Vec<(String, Result<HeadOutcome, ScanError>)> = stream::iter(tags)
        .map(|tag| async move {
            let outcome = per_tag(session, head(session, &tag).await)?;
            Ok::<_, ScanError>((tag, outcome))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;

    let mut vanished = Vec::new();
    let mut head_failures: Vec<(String, ScanError)> = Vec::new();
    let mut fetched: HashMap<String, Option<Fetched>> = HashMap::new();
    let mut unreadable: HashMap<String, ScanError> = HashMap::new();
    for (tag, outcome) in heads {
        match outcome {
            Ok(HeadOutcome::Digest(digest)) => resolved.push((tag, digest)),
            Ok(HeadOutcome::Fetched(digest, f)) => {
                fetched.insert(digest.clone(), Some(f));
                resolved.push((tag, digest));
            }
            Ok(HeadOutcome::Gone) => vanished.push(tag),
            Err(e) => head_failures.push((tag, e)),
        }
    }

    // One GET per digest nobody has resolved yet, however many tags share it.
    let wanted: HashSet<String> = resolved
        .iter()
        .map(|(_, d)| d.clone())
        .filter(|d| !fetched.contains_key(d) && !options.known.contains_key(d))
        .collect();
    for (digest, r) in fetch_all(session, wanted, concurrency).await? {
        match r {
            Ok(f) => {
                fetched.insert(digest, f);
            }
            Err(e) => {
                unreadable.insert(digest, e);
            }
        }
    }

    let mut resolutions: HashMap<String, Resolution> = HashMap::new();
    let mut indexes = Vec::new();
    let mut schema1s = Vec::new();
    for (digest, f) in fetched {
        match f {
            Some(Fetched::Facts(f)) => {
                resolutions.insert(digest, Resolution::Complete(f));
            }
            Some(Fetched::Index(media_type, entries)) => {
                indexes.push((digest, media_type, entries))
            }
            Some(Fetched::Schema1(media_type, blobs)) => schema1s.push((digest, media_type, blobs)),
            None => {
                resolutions.insert(digest, Resolution::Gone);
            }
        }
    }
    for (digest, e) in unreadable {
        resolutions.insert(digest, Resolution::Unreadable(e));
    }

    resolve_indexes(session, options, concurrency, indexes, &mut resolutions).await?;
    resolve_schema1(session, concurrency, schema1s, &mut resolutions).await?;

    let mut images = Vec::with_capacity(resolved.len());
    let mut facts = HashMap::new();
    let mut failures: Vec<(String, ScanError)> = Vec::new();
    for (tag, digest) in resolved {
        let image = |f: &ManifestFacts, note: Option<String>| Image {
            tag: tag.clone(),
            digest: digest.clone(),
            size: f.size,
            media_type: f.media_type.clone(),
            platforms: f.platforms.clone(),
            note,
        };
        match resolutions.get(&digest) {
            Some(Resolution::Gone) => vanished.push(tag),
            Some(Resolution::Complete(f)) => {
                images.push(image(f, None));
                facts.insert(digest.clone(), f.clone());
            }
            Some(Resolution::Partial(f, note)) => images.push(image(f, Some(note.clone()))),
            Some(Resolution::Unreadable(e)) => {
                images.push(image(
                    &ManifestFacts::default(),
                    Some(format!("manifest could not be read: {e}")),
                ));
                failures.push((tag, e.clone()));
            }
            None => {
                let f = options.known.get(&digest).cloned().unwrap_or_default();
                images.push(image(&f, None));
                facts.insert(digest.clone(), f);
            }
        }
    }
    // A tag whose HEAD failed keeps the digest (and facts) an earlier scan found.
    for (tag, e) in head_failures {
        if let Some(digest) = options.known_tags.get(&tag) {
            let f = options.known.get(digest).cloned().unwrap_or_default();
            images.push(Image {
                tag: tag.clone(),
                digest: digest.clone(),
                size: f.size,
                media_type: f.media_type.clone(),
                platforms: f.platforms.clone(),
                note: Some(format!(
                    "manifest could not be read ({e}); digest from the previous scan"
                )),
            });
            if options.known.contains_key(digest) {
                facts.insert(digest.clone(), f);
            }
        }
        failures.push((tag, e));
    }

    failures.sort_by(|a, b| compare_tags(&a.0, &b.0));
    images.sort_by(|a, b| compare_tags(&a.tag, &b.tag));
    vanished.sort_by(|a, b| compare_tags(a, b));
    let found = Found {
        images,
        facts,
        vanished,
        failed: Vec::new(),
        lister: Lister::Distribution,
        native: None,
    };
    Ok((found, failures))
}

/// Platform sizes of new indexes: one GET per child digest nobody has resolved yet. A child
/// that cannot be read leaves the index's facts partial, so the next scan tries again.
async fn resolve_indexes(
    session: &Session<'_>,
    options: &ScanOptions,
    concurrency: usize,
    indexes: Vec<(String, String, Vec<manifest::IndexEntry>)>,
    resolutions: &mut HashMap<String, Resolution>,
) -> Result<(), ScanError> {
    let size_of = |resolutions: &HashMap<String, Resolution>, d: &str| match resolutions.get(d) {
        Some(Resolution::Complete(f)) => Some(f.size),
        _ => options.known.get(d).map(|f| f.size),
    };
    let children: HashSet<String> = indexes
        .iter()
        .flat_map(|(_, _, entries)| entries.iter().map(|e| e.platform.digest.clone()))
        .filter(|d| size_of(resolutions, d).is_none())
        .collect();
    let mut child_results: HashMap<String, Result<Option<i64>, String>> = HashMap::new();
    for (digest, r) in fetch_all(session, children, concurrency).await? {
        let size = match r {
            Ok(Some(Fetched::Facts(f))) => Ok(f.size),
            // A nested index has no single size of its own.
            Ok(Some(Fetched::Index(..))) => Ok(None),
            Ok(Some(Fetched::Schema1(..))) => Ok(None),
            Ok(None) => Err(format!("platform manifest {digest} not found")),
            Err(e) => Err(format!("platform manifest {digest} could not be read: {e}")),
        };
        child_results.insert(digest, size);
    }
    for (digest, media_type, entries) in indexes {
        let mut missing = Vec::new();
        let platforms: Vec<_> = entries
            .into_iter()
            .map(|mut e| {
                let d = e.platform.digest.clone();
                e.platform.size = match size_of(resolutions, &d) {
                    Some(size) => size,
                    None => match child_results.get(&d) {
                        Some(Ok(size)) => *size,
                        Some(Err(why)) => {
                            missing.push(why.clone());
                            None
                        }
                        None => None,
                    },
                };
                e.platform
            })
            .collect();
        let f = ManifestFacts {
            size: manifest::representative_size(&platforms),
            media_type: Some(media_type),
            platforms,
        };
        let r = match missing.first() {
            None => Resolution::Complete(f),
            Some(first) => Resolution::Partial(
                f,
                format!(
                    "{first}{}",
                    match missing.len() {
                        1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    }
                ),
            ),
        };
        resolutions.insert(digest, r);
    }
    Ok(())
}

/// Schema 1 manifests list no sizes: the size is the sum of the distinct layer blobs, one
/// HEAD each (shared by every manifest of the scan), or absent with a note.
async fn resolve_schema1(
    session: &Session<'_>,
    concurrency: usize,
    manifests: Vec<(String, String, Vec<String>)>,
    resolutions: &mut HashMap<String, Resolution>,
) -> Result<(), ScanError> {
    let blobs: HashSet<String> = manifests
        .iter()
        .flat_map(|(_, _, b)| b.iter().cloned())
        .collect();
    let sizes: HashMap<String, Result<i64, String>> = stream::iter(blobs)
        .map(|digest| async move {
            let size = per_tag(session, blob_size(session, &digest).await)?;
            Ok::<_, ScanError>((digest, size.map_err(|e| e.to_string())))
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    for (digest, media_type, blobs) in manifests {
        let total: Result<i64, String> = blobs.iter().try_fold(0i64, |sum, b| match sizes.get(b) {
            Some(Ok(n)) => sum.checked_add(*n).ok_or_else(|| "sizes overflow".into()),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("no size for {b}")),
        });
        let r = match total {
            Ok(size) => Resolution::Complete(ManifestFacts {
                size: Some(size),
                media_type: Some(media_type),
                platforms: Vec::new(),
            }),
            Err(e) => Resolution::Partial(
                ManifestFacts {
                    size: None,
                    media_type: Some(media_type),
                    platforms: Vec::new(),
                },
                format!("schema 1 manifest lists no sizes and a layer's size is unknown: {e}"),
            ),
        };
        resolutions.insert(digest, r);
    }
    Ok(())
}

async fn blob_size(session: &Session<'_>, digest: &str) -> Result<i64, ScanError> {
    if !valid_digest(digest) {
        return Err(ScanError::InvalidResponse {
            registry: session.target.registry(),
            what: "schema 1 manifest".into(),
            detail: "a blobSum is not a digest".into(),
        });
    }
    let url = session.target.blob_url(digest);
    let reply = session
        .send(RequestKind::BlobHead, Method::HEAD, url.clone(), None, 0)
        .await?;
    if !reply.status.is_success() {
        return Err(session.status_error(&Method::HEAD, &url, &reply));
    }
    reply
        .header(CONTENT_LENGTH.as_str())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| session.invalid(&Method::HEAD, &url, "no Content-Length".into()))
}

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
                None => manifest::registry_digest(&reply.body),
            };
            let media_type =
                manifest::media_type_of(&reply.body, reply.header(CONTENT_TYPE.as_str()));
            // Whatever it is (an index too), it is described now: no second GET by digest.
            Ok(HeadOutcome::Fetched(
                digest,
                describe(&reply.body, media_type),
            ))
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

pub(crate) enum Fetched {
    Facts(ManifestFacts),
    Index(String, Vec<manifest::IndexEntry>),
    /// Media type and distinct layer blobs.
    Schema1(String, Vec<String>),
}

/// GETs each digest once: `Ok(None)` for digests the registry no longer has, `Err` for one
/// that cannot be read (the scan goes on); the outer `Err` ends the scan.
async fn fetch_all(
    session: &Session<'_>,
    digests: HashSet<String>,
    concurrency: usize,
) -> Result<HashMap<String, Result<Option<Fetched>, ScanError>>, ScanError> {
    stream::iter(digests)
        .map(|digest| async move {
            let f = per_tag(session, fetch(session, &digest).await)?;
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
    let sizeless = |media_type: String| {
        Fetched::Facts(ManifestFacts {
            size: None,
            media_type: Some(media_type).filter(|m| !m.is_empty()),
            platforms: Vec::new(),
        })
    };
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

pub(crate) fn valid_digest(d: &str) -> bool {
    d.len() <= 256
        && d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && alg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        })
}
