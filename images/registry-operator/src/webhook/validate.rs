//! What a sender may name: every field of an event is checked here before anything acts on
//! it or writes it anywhere (a digest ends up in other tenants' hand-over annotations, a tag
//! in registry URLs). Whatever fails is dropped, never repaired.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Events taken from one payload; the rest wait for the periodic scan.
pub const MAX_EVENTS: usize = 256;

/// `sha256:` + 64 or `sha512:` + 128 lower-case hex digits: the registered OCI algorithms,
/// and what the scan core accepts as well.
pub fn digest(d: &str) -> bool {
    let hex_len = match d.split_once(':') {
        Some(("sha256", hex)) => (hex, 64),
        Some(("sha512", hex)) => (hex, 128),
        _ => return false,
    };
    let (hex, len) = hex_len;
    hex.len() == len
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && crate::registry::valid_digest(d)
}

/// A tag as the distribution spec allows it.
pub fn tag(t: &str) -> bool {
    crate::registry::valid_tag(t)
}

/// A repository name as the distribution spec (and the CRD) allow it.
pub fn repository(r: &str) -> bool {
    crate::registry::valid_repository(r)
}

/// `host[:port]` (already lower case): a DNS name, an IPv4 address or a bracketed IPv6
/// address, and a port that fits.
pub fn host(h: &str) -> bool {
    if h.len() > 261 {
        return false;
    }
    if let Some(rest) = h.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        return ip.parse::<Ipv6Addr>().is_ok()
            && (after.is_empty() || after.strip_prefix(':').is_some_and(port));
    }
    let (name, p) = match h.rsplit_once(':') {
        Some((name, p)) => (name, Some(p)),
        None => (h, None),
    };
    if !p.is_none_or(port) {
        return false;
    }
    name.parse::<Ipv4Addr>().is_ok() || dns_name(name)
}

fn port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

fn dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert!(digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(digest(&format!("sha512:{}", "0".repeat(128))));
        for bad in [
            "".to_string(),
            "sha256:".to_string(),
            "sha256:0123456789abcdef0123456789abcdef".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("SHA256:{}", "a".repeat(64)),
            format!("sha384:{}", "a".repeat(96)),
            format!("sha256:{}\"", "a".repeat(63)),
            format!("sha512:{}", "a".repeat(64)),
        ] {
            assert!(!digest(&bad), "{bad}");
        }
    }

    #[test]
    fn repositories() {
        for ok in ["a", "library/nginx", "team/app-1", "a.b/c__d/e--f", "0/1"] {
            assert!(repository(ok), "{ok}");
        }
        for bad in [
            "",
            "Team/app",
            "a//b",
            "/a",
            "a/",
            "a/../b",
            "a b",
            "-a",
            "a_",
            "a___b",
            &"a".repeat(256),
        ] {
            assert!(!repository(bad), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        for ok in [
            "registry.example.com",
            "localhost",
            "127.0.0.1:5000",
            "[::1]:5000",
            "[fd00::1]",
            "a-b.c",
        ] {
            assert!(host(ok), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "-a.b",
            "a:99999",
            "a:",
            "a:b",
            "[::1",
            "[zz]:1",
            "a b",
            "a/b",
            "user@host",
            &"a".repeat(64),
        ] {
            assert!(!host(bad), "{bad}");
        }
    }
}
