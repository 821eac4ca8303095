//! `numerical`: values compared as numbers, as Flux parses them (Go's `ParseFloat`: `42`,
//! `-1.5`, `1e3`). Flux fails the whole policy on one value that is not a number; here such a
//! tag is simply not a candidate, so a stray `latest` tag cannot stop the repository's policy.

use std::cmp::Ordering;

pub fn key(value: &str) -> Option<f64> {
    value.parse::<f64>().ok().filter(|n| !n.is_nan())
}

pub fn compare(a: f64, b: f64) -> Ordering {
    a.total_cmp(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_go_parse_float_reads_them() {
        assert_eq!(key("1611234567"), Some(1_611_234_567.0));
        assert_eq!(key("-1.5"), Some(-1.5));
        assert_eq!(key("1e3"), Some(1000.0));
        assert_eq!(key("NaN"), None);
        assert_eq!(key("v1"), None);
        assert_eq!(key(""), None);
        assert_eq!(compare(9.0, 10.0), Ordering::Less);
    }
}
