//! The check that keeps a native listing exact: every tag whose digest is not the one the
//! previous scan saw (changed or new), plus a random sample of the unchanged ones, is HEADed
//! through the distribution API, the registry's own answer. One disagreement and the scan
//! falls back; the caller turns the native API off for that repository of the registry.

use std::collections::HashMap;

use futures::{StreamExt, stream};
use rand::seq::IndexedRandom;

use crate::registry::ScanError;
use crate::registry::protocol::{HeadOutcome, head};
use crate::registry::session::Session;

/// Unchanged tags HEADed per scan: cheap, and over many scans a lying API cannot hide.
pub(crate) const SAMPLE: usize = 3;

pub(super) enum Verdict {
    /// The registry says otherwise: what it said.
    Disagrees(String),
    /// A check could not be made (the registry failed); nothing is known either way.
    Failed(ScanError),
}

/// The tags checked, with their (agreed) digests.
pub(super) async fn check(
    session: &Session<'_>,
    entries: &[(String, Option<String>)],
    known_tags: &HashMap<String, String>,
    concurrency: usize,
) -> Result<HashMap<String, String>, Verdict> {
    let (changed, unchanged): (Vec<_>, Vec<_>) = entries
        .iter()
        .filter_map(|(t, d)| d.as_ref().map(|d| (t, d)))
        .partition(|(t, d)| known_tags.get(*t) != Some(*d));
    let sample: Vec<_> = unchanged
        .choose_multiple(&mut rand::rng(), SAMPLE)
        .copied()
        .collect();
    let to_check: Vec<(String, String)> = changed
        .into_iter()
        .chain(sample)
        .map(|(t, d)| (t.clone(), d.clone()))
        .collect();
    let results: Vec<_> = stream::iter(to_check)
        .map(|(tag, said)| async move {
            let outcome = head(session, &tag).await;
            (tag, said, outcome)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut checked = HashMap::new();
    for (tag, said, outcome) in results {
        let actual = match outcome {
            Ok(HeadOutcome::Digest(d) | HeadOutcome::Fetched(d, _)) => d,
            Ok(HeadOutcome::Gone) => {
                return Err(Verdict::Disagrees(format!(
                    "it lists tag {tag}, which the registry does not have"
                )));
            }
            Err(e) => return Err(Verdict::Failed(e)),
        };
        if actual != said {
            return Err(Verdict::Disagrees(format!(
                "tag {tag} points at {actual}, the API said {said}"
            )));
        }
        checked.insert(tag, actual);
    }
    Ok(checked)
}
