//! After the listing: one HEAD per tag, one GET per digest nobody has resolved, index children
//! and schema 1 layer sizes — and which failures belong to a tag and which end the scan.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt, stream};

use super::{ScanOptions, created};
use crate::registry::listing::{Lister, NativeOutcome};
use crate::registry::order::compare_tags;
use crate::registry::protocol::manifest;
use crate::registry::protocol::{ConfigRef, Fetched, HeadOutcome, blob_size, fetch, head};
use crate::registry::session::Session;
use crate::registry::{CreatedSource, Image, ManifestFacts, ScanError, TagFailure, Timestamp};

pub(super) struct Found {
    pub images: Vec<Image>,
    pub facts: HashMap<String, ManifestFacts>,
    pub vanished: Vec<String>,
    pub failed: Vec<TagFailure>,
    pub lister: Lister,
    pub native: Option<NativeOutcome>,
}

/// Splits a per-tag error from one that ends the scan: registry-wide problems, and anything
/// once the deadline has passed.
pub(super) fn per_tag<T>(
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
pub(super) enum Resolution {
    Complete(ManifestFacts),
    /// Usable for the image, but not to be remembered: `note` says what is missing.
    Partial(ManifestFacts, String),
    Unreadable(ScanError),
    Gone,
}

/// HEADs `tags` and resolves every digest not known yet (of those and of the tags already
/// `resolved`): what a scan does after listing, and all a refresh does. Per-tag failures are
/// returned in version order (`Found::failed` empty).
pub(super) async fn resolve(
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
        .filter(|d| !fetched.contains_key(d) && created::known(options, d).is_none())
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
    let mut configs: HashMap<String, ConfigRef> = HashMap::new();
    let mut indexes = Vec::new();
    let mut schema1s = Vec::new();
    for (digest, f) in fetched {
        match f {
            Some(Fetched::Facts(f)) => {
                resolutions.insert(digest, Resolution::Complete(f));
            }
            Some(Fetched::Image(f, config)) => {
                configs.insert(digest.clone(), config);
                resolutions.insert(digest, Resolution::Complete(f));
            }
            Some(Fetched::Index(media_type, entries, extra, created)) => {
                indexes.push((digest, media_type, entries, extra, created))
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

    resolve_indexes(
        session,
        options,
        concurrency,
        indexes,
        &mut resolutions,
        &mut configs,
    )
    .await?;
    resolve_schema1(session, concurrency, schema1s, &mut resolutions).await?;
    if options.created_from_config {
        created::read(session, options, concurrency, &configs, &mut resolutions).await;
    }

    let mut images = Vec::with_capacity(resolved.len());
    let mut facts = HashMap::new();
    let mut failures: Vec<(String, ScanError)> = Vec::new();
    for (tag, digest) in resolved {
        let image = |f: &ManifestFacts, note: Option<String>| Image::of(&tag, &digest, f, note);
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
            images.push(Image::of(
                &tag,
                digest,
                &f,
                Some(format!(
                    "manifest could not be read ({e}); digest from the previous scan"
                )),
            ));
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

/// An index fetched this scan: its digest, media type, entries, what else it says, and its
/// own creation annotation.
type FetchedIndex = (
    String,
    String,
    Vec<manifest::IndexEntry>,
    manifest::IndexExtra,
    Option<Timestamp>,
);

/// Platform sizes of new indexes: one GET per child digest nobody has resolved yet. A child
/// that cannot be read leaves the index's facts partial, so the next scan tries again.
async fn resolve_indexes(
    session: &Session<'_>,
    options: &ScanOptions,
    concurrency: usize,
    indexes: Vec<FetchedIndex>,
    resolutions: &mut HashMap<String, Resolution>,
    configs: &mut HashMap<String, ConfigRef>,
) -> Result<(), ScanError> {
    let size_of = |resolutions: &HashMap<String, Resolution>, d: &str| match resolutions.get(d) {
        Some(Resolution::Complete(f)) => Some(f.size),
        _ => created::known(options, d).map(|f| f.size),
    };
    let children: HashSet<String> = indexes
        .iter()
        .flat_map(|(_, _, entries, _, _)| entries.iter().map(|e| e.platform.digest.clone()))
        .filter(|d| size_of(resolutions, d).is_none())
        .collect();
    let mut child_results: HashMap<String, Result<Option<i64>, String>> = HashMap::new();
    for (digest, r) in fetch_all(session, children, concurrency).await? {
        let size = match r {
            Ok(Some(Fetched::Facts(f))) => Ok(f.size),
            Ok(Some(Fetched::Image(f, config))) => {
                configs.insert(digest.clone(), config);
                Ok(f.size)
            }
            // A nested index has no single size of its own.
            Ok(Some(Fetched::Index(..))) => Ok(None),
            Ok(Some(Fetched::Schema1(..))) => Ok(None),
            Ok(None) => Err(format!("platform manifest {digest} not found")),
            Err(e) => Err(format!("platform manifest {digest} could not be read: {e}")),
        };
        child_results.insert(digest, size);
    }
    for (digest, media_type, entries, extra, created_at) in indexes {
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
            artifact_type: extra.artifact_type,
            listed: extra.listed,
            created_at,
            created_source: created_at.map(|_| CreatedSource::Annotation),
            ..ManifestFacts::default()
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
                ..ManifestFacts::default()
            }),
            Err(e) => Resolution::Partial(
                ManifestFacts {
                    size: None,
                    media_type: Some(media_type),
                    platforms: Vec::new(),
                    ..ManifestFacts::default()
                },
                format!("schema 1 manifest lists no sizes and a layer's size is unknown: {e}"),
            ),
        };
        resolutions.insert(digest, r);
    }
    Ok(())
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
