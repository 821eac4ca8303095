//! The order of `images[]`: tags compare as versions, so `1.9` comes before `1.10`.
//!
//! Tags are split into runs of digits and of other characters; digit runs compare as numbers
//! (any length), other runs byte-wise. Equal-looking tags (`v01` vs `v1`) fall back to plain
//! string order, so the order is total and the same on every scan.

use std::cmp::Ordering;

pub fn compare_tags(a: &str, b: &str) -> Ordering {
    let mut x = Runs(a.as_bytes());
    let mut y = Runs(b.as_bytes());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let ord = match (is_digits(p), is_digits(q)) {
                    (true, true) => compare_numbers(p, q),
                    _ => p.cmp(q),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

fn is_digits(run: &[u8]) -> bool {
    run.first().is_some_and(u8::is_ascii_digit)
}

fn compare_numbers(p: &[u8], q: &[u8]) -> Ordering {
    let strip = |s: &'_ [u8]| -> usize {
        s.iter()
            .take_while(|c| **c == b'0')
            .count()
            .min(s.len() - 1)
    };
    let (p, q) = (&p[strip(p)..], &q[strip(q)..]);
    p.len().cmp(&q.len()).then_with(|| p.cmp(q))
}

struct Runs<'a>(&'a [u8]);

impl<'a> Iterator for Runs<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let first = *self.0.first()?;
        let digit = first.is_ascii_digit();
        let len = self
            .0
            .iter()
            .take_while(|c| c.is_ascii_digit() == digit)
            .count();
        let (run, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(tags: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = tags.iter().map(|s| s.to_string()).collect();
        v.sort_by(|a, b| compare_tags(a, b));
        v
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(
            sorted(&[
                "1.10",
                "1.9",
                "1.2.3",
                "1.10.0",
                "latest",
                "0.9",
                "1.25.3-alpine",
                "1.25.3"
            ]),
            [
                "0.9",
                "1.2.3",
                "1.9",
                "1.10",
                "1.10.0",
                "1.25.3",
                "1.25.3-alpine",
                "latest"
            ]
        );
    }

    #[test]
    fn order_is_total_and_stable() {
        assert_eq!(sorted(&["v1", "v01", "v001"]), ["v001", "v01", "v1"]);
        assert_eq!(compare_tags("a", "a"), Ordering::Equal);
        assert_eq!(
            sorted(&["99999999999999999999999", "100000000000000000000000"]),
            ["99999999999999999999999", "100000000000000000000000"]
        );
    }
}
