//! `alphabetical`: values compared byte by byte, as Go's `sort.Strings` in Flux does — right
//! for CalVer (`2024.01.15`), RFC 3339 stamps (`RELEASE.2021-05-11T23-27-41Z`) and code names.

use std::cmp::Ordering;

pub fn compare(a: &str, b: &str) -> Ordering {
    a.as_bytes().cmp(b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_not_version_order() {
        assert_eq!(compare("2024.10.01", "2024.09.30"), Ordering::Greater);
        assert_eq!(compare("b", "a"), Ordering::Greater);
        // Not a version order: `9` sorts after `10`, which is why numbers use `numerical`.
        assert_eq!(compare("9", "10"), Ordering::Greater);
    }
}
