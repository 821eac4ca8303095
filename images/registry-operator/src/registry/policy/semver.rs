//! Versions and ranges as Flux's semver policy reads them: Masterminds/semver v3's lenient
//! `NewVersion` (`v` prefix, `1.2` = `1.2.0`) and its constraint language (`1.0.x`, `~1.2`,
//! `^1.0`, `>=1.0 <2.0`, `>0,<2.0`, `a || b`, `1.2 - 1.4.5`, wildcards `x`, `X`, `*`).
//!
//! Why not a crate: `semver` implements Cargo's rules (no `||`, no hyphen ranges, no `v`, and
//! a prerelease only matches next to its own `major.minor.patch`), and `node-semver` /
//! `nodejs-semver` implement npm's, which share that prerelease rule. Masterminds instead lets
//! an AND group take prereleases as soon as any of its comparators names one, and otherwise
//! takes none; Flux users rely on exactly that. So the grammar below follows Masterminds' own
//! expressions, and the prerelease identifiers and their order come from `semver::Prerelease`
//! (the SemVer 2.0 rules, which Masterminds v3 also follows).

use std::cmp::Ordering;
use std::sync::LazyLock;

use regex::Regex;
use semver::Prerelease;

/// A version as `NewVersion` reads it; build metadata is dropped (it never orders).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Prerelease,
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            // `semver::Prerelease` orders the empty prerelease above every other.
            .then_with(|| self.pre.cmp(&other.pre))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

const VERSION: &str = r"v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";
/// A constraint's version: like [`VERSION`], with wildcards in the numbers.
const CV: &str = r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?";
/// The operators; the empty one means `=` (or `~` with a wildcard).
const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";

fn compiled(pattern: String) -> Regex {
    // The patterns are constants of this file; a test compiles each one.
    Regex::new(&pattern).unwrap_or_else(|e| panic!("semver pattern {pattern}: {e}"))
}

static VERSION_RE: LazyLock<Regex> = LazyLock::new(|| compiled(format!("^{VERSION}$")));
static CONSTRAINT_RE: LazyLock<Regex> =
    LazyLock::new(|| compiled(format!(r"^\s*({OPS})\s*({CV})\s*$")));
static RANGE_RE: LazyLock<Regex> =
    LazyLock::new(|| compiled(format!(r"\s*({CV})\s+-\s+({CV})\s*")));
static FIND_RE: LazyLock<Regex> = LazyLock::new(|| compiled(format!(r"({OPS})\s*({CV})")));
static VALID_RE: LazyLock<Regex> = LazyLock::new(|| {
    compiled(format!(
        r"^(\s*({OPS})\s*({CV})\s*)((?:\s+|,\s*)({OPS})\s*({CV})\s*)*$"
    ))
});

impl Version {
    /// `None` for anything Masterminds' `NewVersion` refuses (numbers past 64 bits, a numeric
    /// prerelease identifier with a leading zero, four parts, …).
    pub fn parse(text: &str) -> Option<Self> {
        let m = VERSION_RE.captures(text)?;
        let number = |i: usize| -> Option<u64> {
            match m.get(i) {
                Some(g) => g.as_str().trim_start_matches('.').parse().ok(),
                None => Some(0),
            }
        };
        let pre = match m.get(5) {
            Some(p) => Prerelease::new(p.as_str()).ok()?,
            None => Prerelease::EMPTY,
        };
        Some(Self {
            major: number(1)?,
            minor: number(2)?,
            patch: number(3)?,
            pre,
        })
    }

    fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    TildeOrEqual,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Tilde,
    Caret,
}

#[derive(Clone, Debug)]
struct Comparator {
    op: Op,
    con: Version,
    /// Any wildcard or missing part (`1.x`, `1`, `*`).
    dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
}

/// A parsed range: OR of AND groups; each group remembers whether it takes prereleases.
#[derive(Clone, Debug)]
pub struct Range {
    groups: Vec<(Vec<Comparator>, bool)>,
}

impl Range {
    pub fn parse(text: &str) -> Result<Self, String> {
        let rewritten = RANGE_RE.replace_all(text, |c: &regex::Captures<'_>| {
            // ok: groups 1 and 11 are the two mandatory `({CV})` of a match (CV holds 9 groups).
            format!(">= {}, <= {}", &c[1], &c[11])
        });
        let mut groups = Vec::new();
        for part in rewritten.split("||") {
            if !VALID_RE.is_match(part) {
                return Err(format!("improper constraint: {:?}", part.trim()));
            }
            let mut comparators = Vec::new();
            for found in FIND_RE.find_iter(part) {
                comparators.push(Comparator::parse(found.as_str())?);
            }
            if comparators.is_empty() {
                comparators.push(Comparator::parse(part)?);
            }
            let takes_prereleases = comparators.iter().any(|c| c.con.is_prerelease());
            groups.push((comparators, takes_prereleases));
        }
        Ok(Self { groups })
    }

    pub fn matches(&self, v: &Version) -> bool {
        self.groups.iter().any(|(comparators, takes_prereleases)| {
            (*takes_prereleases || !v.is_prerelease()) && comparators.iter().all(|c| c.check(v))
        })
    }

    /// Whether any group names a prerelease (and so may pick one).
    pub fn names_prerelease(&self) -> bool {
        self.groups.iter().any(|(_, pre)| *pre)
    }
}

fn is_wildcard(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

impl Comparator {
    fn parse(text: &str) -> Result<Self, String> {
        let improper = || format!("improper constraint: {:?}", text.trim());
        let m = CONSTRAINT_RE.captures(text).ok_or_else(improper)?;
        let op = match m.get(1).map_or("", |g| g.as_str()) {
            "" | "=" => Op::TildeOrEqual,
            "!=" => Op::NotEqual,
            ">" => Op::Greater,
            "<" => Op::Less,
            ">=" | "=>" => Op::GreaterEqual,
            "<=" | "=<" => Op::LessEqual,
            "~" | "~>" => Op::Tilde,
            "^" => Op::Caret,
            _ => return Err(improper()),
        };
        let group = |i: usize| m.get(i).map_or("", |g| g.as_str());
        let (major, minor, patch, pre) = (
            group(3),
            group(4).trim_start_matches('.'),
            group(5).trim_start_matches('.'),
            group(6),
        );
        let (text, dirty, minor_dirty, patch_dirty) = if is_wildcard(major) || major.is_empty() {
            (format!("0.0.0{pre}"), true, false, false)
        } else if is_wildcard(minor) || minor.is_empty() {
            (format!("{major}.0.0{pre}"), true, true, false)
        } else if is_wildcard(patch) || patch.is_empty() {
            (format!("{major}.{minor}.0{pre}"), true, false, true)
        } else {
            (group(2).to_string(), false, false, false)
        };
        let con =
            Version::parse(&text).ok_or_else(|| format!("{:?} is not a version", group(2)))?;
        Ok(Self {
            op,
            con,
            dirty,
            minor_dirty,
            patch_dirty,
        })
    }

    /// Masterminds' rule for each operator; the prerelease gate is the group's.
    fn check(&self, v: &Version) -> bool {
        let c = &self.con;
        match self.op {
            Op::NotEqual => {
                if self.dirty {
                    if c.major != v.major {
                        return true;
                    }
                    if c.minor != v.minor && !self.minor_dirty {
                        return true;
                    }
                    if self.minor_dirty {
                        return false;
                    }
                    if c.patch != v.patch && !self.patch_dirty {
                        return true;
                    }
                    if self.patch_dirty {
                        return (v.is_prerelease() || c.is_prerelease()) && v.pre != c.pre;
                    }
                }
                v != c
            }
            Op::Greater => {
                if !self.dirty {
                    return v > c;
                }
                match v.major.cmp(&c.major) {
                    Ordering::Greater => true,
                    Ordering::Less => false,
                    Ordering::Equal if self.minor_dirty => false,
                    Ordering::Equal if self.patch_dirty => v.minor > c.minor,
                    Ordering::Equal => v > c,
                }
            }
            Op::Less => v < c,
            Op::GreaterEqual => v >= c,
            Op::LessEqual => {
                if !self.dirty {
                    return v <= c;
                }
                !(v.major > c.major
                    || (v.major == c.major && v.minor > c.minor && !self.minor_dirty))
            }
            Op::Tilde => self.tilde(v),
            Op::TildeOrEqual => {
                if self.dirty {
                    self.tilde(v)
                } else {
                    v == c
                }
            }
            Op::Caret => {
                let c = &self.con;
                if v < c {
                    return false;
                }
                if c.major > 0 || self.minor_dirty {
                    return v.major == c.major;
                }
                if v.major > 0 {
                    return false;
                }
                if c.minor > 0 || self.patch_dirty {
                    return v.minor == c.minor;
                }
                if v.minor > 0 {
                    return false;
                }
                v.patch == c.patch
            }
        }
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.con;
        if v < c {
            return false;
        }
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        v.major == c.major && (v.minor == c.minor || self.minor_dirty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    fn check(range: &str, version: &str) -> bool {
        Range::parse(range)
            .unwrap_or_else(|e| panic!("{range}: {e}"))
            .matches(&v(version))
    }

    #[test]
    fn patterns_compile() {
        for re in [&VERSION_RE, &CONSTRAINT_RE, &RANGE_RE, &FIND_RE, &VALID_RE] {
            LazyLock::force(re);
        }
    }

    /// Masterminds/semver v3 README, "Parsing Semantic Versions" and version_test.go
    /// (`NewVersion` cases): `v` prefix, missing parts, metadata, refusals.
    #[test]
    fn versions_parse_leniently_like_new_version() {
        assert_eq!(v("v1.2.3"), v("1.2.3"));
        assert_eq!(v("1.2"), v("1.2.0"));
        assert_eq!(v("1"), v("1.0.0"));
        assert_eq!(v("1.2.3+build.7"), v("1.2.3"));
        assert!(v("1.2.3-beta.1").is_prerelease());
        for bad in [
            "",
            "latest",
            "1.2.3.4",
            "1.2.beta",
            "a.b.c",
            "1.2.3-01",
            "v",
            "-1.2.3",
            "1.2.3-",
            "99999999999999999999.0.0",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
    }

    /// SemVer 2.0 §11 precedence, which Masterminds v3 follows (version_test.go `TestCompare`).
    #[test]
    fn versions_order_by_precedence() {
        let mut list: Vec<Version> = [
            "1.0.0",
            "1.0.0-rc.1",
            "1.0.0-beta.11",
            "1.0.0-beta.2",
            "1.0.0-beta",
            "1.0.0-alpha.beta",
            "1.0.0-alpha.1",
            "1.0.0-alpha",
            "0.9.9",
            "1.10.0",
            "1.9.0",
        ]
        .iter()
        .map(|s| v(s))
        .collect();
        list.sort();
        let expect: Vec<Version> = [
            "0.9.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.9.0",
            "1.10.0",
        ]
        .iter()
        .map(|s| v(s))
        .collect();
        assert_eq!(list, expect);
    }

    /// Masterminds/semver v3 README, "Basic Comparisons", "Hyphen Range Comparisons",
    /// "Wildcards In Comparisons", "Tilde Range Comparisons (Patch)", "Caret Range Comparisons
    /// (Major)", and constraints_test.go `TestConstraintsCheck`.
    #[test]
    fn masterminds_constraint_rules() {
        let cases: &[(&str, &str, bool)] = &[
            // Basic comparisons, AND by space or comma, OR by ||.
            ("=2.0.0", "2.0.0", true),
            ("2.0", "2.0.1", true), // a bare version with a missing part is a tilde range
            ("2", "2.9.9", true),
            ("2.0.0", "2.0.1", false),
            ("!=4.1", "4.1.0", false),
            ("!=4.1", "4.2.0", true),
            ("!=4.x", "4.9.0", false),
            ("!=4.x", "5.0.0", true),
            (">1.1", "1.1.5", false),
            (">1.1", "1.2.0", true),
            (">1", "1.9.0", false),
            (">1", "2.0.0", true),
            (">=1.2", "1.2.0", true),
            ("<2", "1.9.9", true),
            ("<2", "2.0.0", false),
            ("<=1.1", "1.1.9", true),
            ("<=1.1", "1.2.0", false),
            ("=>1.2", "1.2.0", true),
            ("=<1.2.3", "1.2.3", true),
            (">= 1.2, < 3.0.0 || >= 4.2.3", "2.5.0", true),
            (">= 1.2, < 3.0.0 || >= 4.2.3", "3.5.0", false),
            (">= 1.2, < 3.0.0 || >= 4.2.3", "4.2.3", true),
            (">=1.0 <2.0", "1.5.0", true),
            (">=1.0 <2.0", "2.0.0", false),
            (">0,<2.0", "1.0.0", true),
            (">0,<2.0", "0.1.0", false), // >0 means a major above 0
            // Hyphen ranges.
            ("1.2 - 1.4.5", "1.4.5", true),
            ("1.2 - 1.4.5", "1.4.6", false),
            ("1.2 - 1.4.5", "1.1.9", false),
            ("2.3.4 - 4.5", "4.5.9", true),
            ("2.3.4 - 4.5", "4.6.0", false),
            // Wildcards.
            ("1.2.x", "1.2.9", true),
            ("1.2.x", "1.3.0", false),
            ("1.0.x", "1.0.7", true),
            (">= 1.2.x", "1.2.0", true),
            ("<= 2.x", "2.9.9", true),
            ("<= 2.x", "3.0.0", false),
            ("*", "7.3.1", true),
            ("x", "0.0.1", true),
            // Tilde.
            ("~1.2.3", "1.2.9", true),
            ("~1.2.3", "1.3.0", false),
            ("~1", "1.9.0", true),
            ("~1", "2.0.0", false),
            ("~2.3", "2.3.9", true),
            ("~2.3", "2.4.0", false),
            ("~1.x", "1.9.0", true),
            ("~>1.2", "1.2.5", true),
            // Caret.
            ("^1.2.3", "1.9.9", true),
            ("^1.2.3", "2.0.0", false),
            ("^1.2", "1.2.0", true),
            ("^1", "1.0.0", true),
            ("^0.2.3", "0.2.9", true),
            ("^0.2.3", "0.3.0", false),
            ("^0.2", "0.2.0", true),
            ("^0.0.3", "0.0.3", true),
            ("^0.0.3", "0.0.4", false),
            ("^0.0", "0.0.9", true),
            ("^0.0", "0.1.0", false),
            ("^0", "0.9.9", true),
            ("^0", "1.0.0", false),
            ("^1.25", "1.25.4", true),
            ("^1.25", "1.24.9", false),
            // `v` prefixes on both sides.
            ("^v1.2", "1.3.0", true),
            (">=v1.0.0", "1.0.0", true),
        ];
        for (range, version, expect) in cases {
            assert_eq!(check(range, version), *expect, "{version} in {range:?}");
        }
    }

    /// Masterminds/semver v3 README, "Working With Prerelease Versions": `>=1.2.3` skips
    /// prereleases, `>=1.2.3-0` evaluates them; a prerelease in any comparator of an AND group
    /// opens the whole group to prereleases (constraints.go `containsPre`), the other OR
    /// groups stay closed.
    #[test]
    fn prereleases_only_when_the_range_names_one() {
        assert!(!check(">=1.2.3", "1.3.0-beta"));
        assert!(check(">=1.2.3-0", "1.3.0-beta"));
        assert!(check(">=1.2.3-0 <2.0.0", "1.9.0-rc.1"));
        // An open group takes any prerelease in its bounds: 2.0.0-rc.1 sorts below 2.0.0.
        assert!(check(">=1.2.3-0 <2.0.0", "2.0.0-rc.1"));
        assert!(!check(">=1.2.3-0 <2.0.0", "2.0.1-rc.1"));
        assert!(!check("^1.0", "1.5.0-rc.1"));
        assert!(check("^1.0.0-0", "1.5.0-rc.1"));
        assert!(!check("*", "1.0.0-alpha"));
        assert!(!check("1.2.3-beta.2 || >=2", "2.1.0-rc.1"));
        assert!(check("1.2.3-beta.2 || >=2", "1.2.3-beta.2"));
        assert!(!check("!=1.2.3", "1.2.4-beta"));
        assert!(check("~1.2.3-beta.2", "1.2.3-beta.4"));
        assert!(!check("~1.2.3-beta.2", "1.2.3-beta.1"));
        assert!(Range::parse(">=1.0.0-rc.1").unwrap().names_prerelease());
        assert!(!Range::parse("^1.0").unwrap().names_prerelease());
    }

    #[test]
    fn improper_ranges_are_refused_with_a_reason() {
        for bad in [
            "",
            "  ",
            ">=",
            "abc",
            "1.2.3 ||",
            ">=1.0 <2.0 foo",
            "~>",
            "1.2.3-01",
            ">>1",
        ] {
            let e = Range::parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} parsed"));
            assert!(!e.is_empty());
        }
        assert!(
            Range::parse(">=1.0 <2.0 foo")
                .unwrap_err()
                .contains("improper constraint")
        );
    }
}
