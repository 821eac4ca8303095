//! What changed between two scans, summarised for one Kubernetes Event per kind of change.

use std::collections::BTreeMap;

use crate::registry::Image;
use crate::registry::order::compare_tags;

/// Tags named in one event at most; the rest are counted.
const LISTED: usize = 10;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Tags whose digest moved (`1.25` re-pushed, `latest` updated).
    pub changed: Vec<String>,
}

pub fn diff(before: &[Image], after: &[Image]) -> Changes {
    let old: BTreeMap<&str, &str> = before
        .iter()
        .map(|i| (i.tag.as_str(), i.digest.as_str()))
        .collect();
    let new: BTreeMap<&str, &str> = after
        .iter()
        .map(|i| (i.tag.as_str(), i.digest.as_str()))
        .collect();
    let mut c = Changes::default();
    for (tag, digest) in &new {
        match old.get(tag) {
            None => c.added.push(tag.to_string()),
            Some(d) if d != digest => c.changed.push(tag.to_string()),
            _ => {}
        }
    }
    c.removed = old
        .keys()
        .filter(|t| !new.contains_key(*t))
        .map(|t| t.to_string())
        .collect();
    for list in [&mut c.added, &mut c.removed, &mut c.changed] {
        list.sort_by(|a, b| compare_tags(a, b));
    }
    c
}

/// `3 tags added: 1.1, 1.2, 1.3` or `25 tags added: 1.0, …, 1.9 and 15 more`.
pub fn summary(verb: &str, tags: &[String]) -> String {
    let shown: Vec<&str> = tags
        .iter()
        .rev()
        .take(LISTED)
        .rev()
        .map(String::as_str)
        .collect();
    let more = tags.len() - shown.len();
    let noun = if tags.len() == 1 { "tag" } else { "tags" };
    let mut s = format!("{} {noun} {verb}: {}", tags.len(), shown.join(", "));
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(tag: &str, digest: &str) -> Image {
        Image {
            tag: tag.into(),
            digest: digest.into(),
            size: None,
            media_type: None,
            platforms: vec![],
            note: None,
            ..Image::default()
        }
    }

    #[test]
    fn added_removed_changed() {
        let before = [img("1.0", "a"), img("1.1", "b"), img("latest", "b")];
        let after = [img("1.1", "b"), img("1.2", "c"), img("latest", "c")];
        let c = diff(&before, &after);
        assert_eq!(c.added, ["1.2"]);
        assert_eq!(c.removed, ["1.0"]);
        assert_eq!(c.changed, ["latest"]);
    }

    #[test]
    fn summaries_are_bounded() {
        let tags: Vec<String> = (0..25).map(|i| format!("1.{i}")).collect();
        let s = summary("added", &tags);
        assert!(s.starts_with("25 tags added: 1.15, "), "{s}");
        assert!(s.ends_with("1.24 and 15 more"), "{s}");
        assert_eq!(summary("removed", &["x".into()]), "1 tag removed: x");
    }
}
