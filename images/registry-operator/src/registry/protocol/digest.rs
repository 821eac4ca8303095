//! Digests as the distribution spec writes them: `algorithm:encoded`.

/// A plausible digest: a lowercase algorithm and at least 128 bits of hex, bounded in length.
pub fn valid_digest(d: &str) -> bool {
    d.len() <= 256
        && d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && alg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        })
}
