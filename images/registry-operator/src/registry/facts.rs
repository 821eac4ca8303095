//! Everything a scan learned about a repository, beyond what fits in a status: every tag's
//! digest and every digest's facts. The controller keeps it in memory and the CLI in its
//! `--previous` file, so a rescan of a large unchanged repository makes no manifest GET.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{Image, ManifestFacts};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryFacts {
    /// Tag → manifest digest.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Manifest digest → what it resolves to (complete facts only).
    #[serde(default)]
    pub manifests: BTreeMap<String, ManifestFacts>,
}

impl RepositoryFacts {
    /// From a scan's full image list and the facts it vouches for.
    pub fn new(images: &[Image], facts: &HashMap<String, ManifestFacts>) -> Self {
        Self {
            tags: images
                .iter()
                .map(|i| (i.tag.clone(), i.digest.clone()))
                .collect(),
            manifests: facts.iter().map(|(d, f)| (d.clone(), f.clone())).collect(),
        }
    }

    /// Adds to `known` (by digest) and `known_tags` what they do not have yet.
    pub fn merge_into(
        &self,
        known: &mut HashMap<String, ManifestFacts>,
        known_tags: &mut HashMap<String, String>,
    ) {
        for (d, f) in &self.manifests {
            known.entry(d.clone()).or_insert_with(|| f.clone());
        }
        for (t, d) in &self.tags {
            known_tags.entry(t.clone()).or_insert_with(|| d.clone());
        }
    }
}
