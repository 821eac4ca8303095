//! `filterTags`: which tags a policy looks at, and the value it compares (Flux's `pattern` and
//! `extract`: `$name`, `${name}`, `$1` expand the pattern's groups, as Go's
//! `Regexp.ExpandString`, which `regex::Captures::expand` mirrors).

use regex::{Regex, RegexBuilder};

/// Bounds on what a tenant's pattern may cost: compiled once per evaluation, and refused
/// when its program would grow past these sizes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const REGEX_DFA_SIZE_LIMIT: usize = 2 << 20;
pub const MAX_PATTERN_LEN: usize = 1024;
pub const MAX_EXTRACT_LEN: usize = 256;

#[derive(Clone, Debug)]
pub struct Filter {
    pattern: Regex,
    extract: Option<String>,
}

impl Filter {
    pub fn new(pattern: &str, extract: Option<&str>) -> Result<Self, String> {
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "filterTags.pattern is longer than {MAX_PATTERN_LEN} characters"
            ));
        }
        let extract = extract.filter(|e| !e.is_empty());
        if extract.is_some_and(|e| e.len() > MAX_EXTRACT_LEN) {
            return Err(format!(
                "filterTags.extract is longer than {MAX_EXTRACT_LEN} characters"
            ));
        }
        let pattern = RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("filterTags.pattern is not a valid regular expression: {e}"))?;
        Ok(Self {
            pattern,
            extract: extract.map(str::to_string),
        })
    }

    /// The value to compare for `tag`, or `None` when the pattern does not match it. Without
    /// `extract` the value is the tag itself.
    pub fn apply(&self, tag: &str) -> Option<String> {
        match &self.extract {
            None => self.pattern.is_match(tag).then(|| tag.to_string()),
            Some(template) => {
                let captures = self.pattern.captures(tag)?;
                let mut out = String::new();
                captures.expand(template, &mut out);
                Some(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flux image-reflector-controller docs, "Filter tags": `^main-[a-fA-F0-9]+-(?P<ts>.*)`
    /// with `extract: '$ts'`; and flux create image policy's example
    /// `^main-[a-f0-9]+-(?P<ts>[0-9]+)` with `--filter-extract='$ts'`.
    #[test]
    fn flux_pattern_and_extract() {
        let f = Filter::new(r"^main-[a-fA-F0-9]+-(?P<ts>.*)", Some("$ts")).unwrap();
        assert_eq!(
            f.apply("main-3a1f9c2-1611234567").as_deref(),
            Some("1611234567")
        );
        assert_eq!(f.apply("feature-3a1f9c2-1611234567"), None);
        let braces = Filter::new(r"^v(?P<v>\d+\.\d+)-(?P<os>\w+)$", Some("${v}.0")).unwrap();
        assert_eq!(braces.apply("v1.2-alpine").as_deref(), Some("1.2.0"));
        let numbered = Filter::new(r"^RELEASE\.(.*)Z$", Some("$1")).unwrap();
        assert_eq!(
            numbered.apply("RELEASE.2021-05-11T23-27-41Z").as_deref(),
            Some("2021-05-11T23-27-41")
        );
        let plain = Filter::new(r"^1\.", None).unwrap();
        assert_eq!(plain.apply("1.25.3").as_deref(), Some("1.25.3"));
        assert_eq!(plain.apply("2.0"), None);
    }

    #[test]
    fn bad_and_oversized_patterns_are_refused() {
        assert!(
            Filter::new("(", None)
                .unwrap_err()
                .contains("not a valid regular expression")
        );
        assert!(Filter::new(&"a".repeat(MAX_PATTERN_LEN + 1), None).is_err());
        // Small to write, huge to compile: refused by the size limit, not built.
        assert!(Filter::new(r"(\w{500}){500}", None).is_err());
    }
}
