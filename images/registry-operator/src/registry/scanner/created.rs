//! `spec.timestamps: Created`: a creation time from the image config for every digest this
//! scan resolved whose manifest carried no `org.opencontainers.image.created` annotation —
//! one blob GET per distinct config, once per digest ever: the answer (a time, or that there
//! is none) is kept in the digest's facts as `createdSource: Config`, so a rescan or a
//! restarted operator, which trusts those facts, asks nothing again. A config that cannot be
//! read now leaves the facts partial (a note on the image, not a failed tag): the next scan
//! reads the manifest and the config again.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, stream};

use super::ScanOptions;
use super::resolve::Resolution;
use crate::registry::protocol::{ConfigRef, Created, manifest, read_created};
use crate::registry::session::Session;
use crate::registry::{CreatedSource, ManifestFacts, Timestamp};

/// An earlier scan's facts of `digest`, when this scan may trust them instead of a GET: with
/// `Created` asked for, only facts that already say where their creation time came from
/// (facts from before `Created` was set get their config read once).
pub(super) fn known<'o>(options: &'o ScanOptions, digest: &str) -> Option<&'o ManifestFacts> {
    options
        .known
        .get(digest)
        .filter(|f| !options.created_from_config || f.created_source.is_some())
}

/// Where a digest's creation time comes from.
enum Source {
    Config(ConfigRef),
    /// An index: what its representative platform already says.
    Platform(Option<Timestamp>, CreatedSource),
    /// No image config to read (schema 1, an artifact, an index of those).
    Nothing,
}

pub(super) async fn read(
    session: &Session<'_>,
    options: &ScanOptions,
    concurrency: usize,
    configs: &HashMap<String, ConfigRef>,
    resolutions: &mut HashMap<String, Resolution>,
) {
    let settled = |f: &ManifestFacts| f.created_source.map(|s| (f.created_at, s));
    let mut wanted: Vec<(String, Source)> = Vec::new();
    for (digest, r) in resolutions.iter() {
        let Resolution::Complete(f) = r else { continue };
        if f.created_source.is_some() {
            continue;
        }
        let source = match configs.get(digest) {
            Some(c) => Source::Config(c.clone()),
            None => match manifest::representative(&f.platforms) {
                None => Source::Nothing,
                Some(p) => {
                    let child = match resolutions.get(&p.digest) {
                        Some(Resolution::Complete(cf)) => settled(cf),
                        _ => None,
                    };
                    match (child, configs.get(&p.digest)) {
                        (Some((at, s)), _) => Source::Platform(at, s),
                        (None, Some(c)) => Source::Config(c.clone()),
                        (None, None) => match known(options, &p.digest).and_then(settled) {
                            Some((at, s)) => Source::Platform(at, s),
                            None => Source::Nothing,
                        },
                    }
                }
            },
        };
        wanted.push((digest.clone(), source));
    }

    let to_read: HashSet<ConfigRef> = wanted
        .iter()
        .filter_map(|(_, s)| match s {
            Source::Config(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    // By the reference, not the digest alone: two manifests may declare one config's size
    // differently, and the declared size decides whether it is read at all.
    let read: HashMap<ConfigRef, Result<Created, String>> = stream::iter(to_read)
        .map(|config| async move {
            let r = read_created(session, &config).await;
            if let Err(e) = &r {
                tracing::info!(registry = %session.target.registry(), repository = session.target.repository(), config = %config.digest, error = %e, "image config not read; trying again on the next scan");
            }
            (config, r.map_err(|e| e.to_string()))
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;

    for (digest, source) in wanted {
        let Some(Resolution::Complete(f)) = resolutions.remove(&digest) else {
            continue;
        };
        let (at, from) = match source {
            Source::Config(c) => match read.get(&c) {
                Some(Ok(at)) => (*at, CreatedSource::Config),
                Some(Err(why)) => {
                    let note =
                        format!("image config could not be read for its creation time: {why}");
                    resolutions.insert(digest, Resolution::Partial(f, note));
                    continue;
                }
                None => (None, CreatedSource::Config),
            },
            Source::Platform(at, from) => (at, from),
            Source::Nothing => (None, CreatedSource::Config),
        };
        let f = ManifestFacts {
            created_at: at,
            created_source: Some(from),
            ..f
        };
        resolutions.insert(digest, Resolution::Complete(f));
    }
}
