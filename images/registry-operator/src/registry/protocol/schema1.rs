//! Docker image manifest v2 schema 1 (`manifest.v1+json`, signed `v1+prettyjws`): still served by
//! old repositories on Quay, Artifactory, Nexus and Docker Hub.
//!
//! A signed manifest's digest is not the digest of the bytes served: registries (libtrust) hash
//! the payload without its JWS signatures, which each signature's protected header describes as
//! `formatLength` (bytes of the body to keep) and `formatTail` (base64url bytes to append).

use base64::Engine;
use serde::Deserialize;

pub const SCHEMA1_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

pub fn is_schema1(media_type: &str) -> bool {
    media_type == SCHEMA1_MANIFEST || media_type == SCHEMA1_SIGNED
}

/// Signatures checked at most. Docker signed with one key; libtrust allows several, which
/// must all describe the same payload. A body with more is not verified as signed: checking
/// ~55,000 signatures of a 4 MiB body took seconds of CPU.
pub const MAX_SIGNATURES: usize = 16;

#[derive(Deserialize)]
struct Signed {
    #[serde(default)]
    signatures: Option<Signatures>,
}

/// The protected headers of the first signatures, and how many there are in all.
struct Signatures {
    protected: Vec<String>,
    count: usize,
}

impl<'de> Deserialize<'de> for Signatures {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Signatures;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of JWS signatures")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Signatures, A::Error> {
                let mut out = Signatures {
                    protected: Vec::new(),
                    count: 0,
                };
                loop {
                    // Past the cap only counted: nothing of them is kept.
                    let more = if out.count < MAX_SIGNATURES {
                        seq.next_element::<Signature>()?
                            .map(|s| out.protected.push(s.protected))
                            .is_some()
                    } else {
                        seq.next_element::<serde::de::IgnoredAny>()?.is_some()
                    };
                    if !more {
                        return Ok(out);
                    }
                    out.count = out.count.saturating_add(1);
                }
            }
        }
        d.deserialize_seq(Visitor)
    }
}

#[derive(Deserialize)]
struct Signature {
    protected: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Protected {
    format_length: usize,
    format_tail: String,
}

fn b64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// What a body's JWS signatures say its signed payload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// No signatures (or not JSON): the digest is that of the bytes served.
    Unsigned,
    /// The payload is `body[..head]` followed by `tail`, as every signature agrees.
    Signed { head: usize, tail: Vec<u8> },
    /// Signatures that cannot be checked: why.
    Unverifiable(String),
}

/// Reads the signatures (at most [`MAX_SIGNATURES`]), in time linear in the body: every
/// protected header lies inside it, and the payload is described, never copied. Signatures
/// agree as libtrust demands: the same `formatLength` and the same decoded `formatTail`.
pub fn signing(body: &[u8]) -> Signing {
    let Ok(Signed {
        signatures: Some(signatures),
    }) = serde_json::from_slice::<Signed>(body)
    else {
        return Signing::Unsigned;
    };
    if signatures.count == 0 {
        return Signing::Unsigned;
    }
    if signatures.count > MAX_SIGNATURES {
        return Signing::Unverifiable(format!(
            "it carries {} signatures, more than the {MAX_SIGNATURES} checked",
            signatures.count
        ));
    }
    let unverifiable = |why: &str| Signing::Unverifiable(why.to_string());
    let mut agreed: Option<(usize, Vec<u8>)> = None;
    for protected in &signatures.protected {
        let Some(header) =
            b64url(protected).and_then(|h| serde_json::from_slice::<Protected>(&h).ok())
        else {
            return unverifiable("a signature's protected header does not parse");
        };
        let Some(tail) = b64url(&header.format_tail) else {
            return unverifiable("a signature's formatTail is not base64url");
        };
        if header.format_length > body.len() || tail.len() > body.len() {
            return unverifiable("a signature describes more than the body holds");
        }
        match &agreed {
            Some((head, t)) if *head != header.format_length || *t != tail => {
                return unverifiable("its signatures disagree on formatLength or formatTail");
            }
            Some(_) => {}
            None => agreed = Some((header.format_length, tail)),
        }
    }
    match agreed {
        Some((head, tail)) => Signing::Signed { head, tail },
        None => Signing::Unsigned,
    }
}

/// The pieces whose digest the registry reports: the signed payload, or the body itself.
pub fn digested_parts<'b>(body: &'b [u8], signing: &'b Signing) -> [&'b [u8]; 2] {
    match signing {
        Signing::Signed { head, tail } => [body.get(..*head).unwrap_or(body), tail],
        _ => [body, &[]],
    }
}

/// The signed payload of a JWS-signed schema 1 manifest; `None` for a body without signatures
/// (whose digest is that of its bytes) or whose signatures cannot be checked. A copy: the
/// digest checks use [`signing`] and [`digested_parts`] instead.
pub fn signed_payload(body: &[u8]) -> Option<Vec<u8>> {
    match signing(body) {
        s @ Signing::Signed { .. } => Some(digested_parts(body, &s).concat()),
        _ => None,
    }
}

/// The bytes whose digest the registry reports: the signed payload, or the body itself.
pub fn digested_bytes(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match signed_payload(body) {
        Some(p) => std::borrow::Cow::Owned(p),
        None => std::borrow::Cow::Borrowed(body),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(default)]
    fs_layers: Vec<FsLayer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FsLayer {
    blob_sum: String,
}

/// The distinct layer blobs a schema 1 manifest references (it lists no sizes; schema 1 repeats
/// the empty layer once per history entry).
pub fn blob_sums(body: &[u8]) -> Result<Vec<String>, String> {
    let m: Manifest = serde_json::from_slice(body)
        .map_err(|e| format!("schema 1 manifest does not parse: {e}"))?;
    if m.schema_version != 1 {
        return Err(format!("schemaVersion is {}, not 1", m.schema_version));
    }
    let mut seen = std::collections::HashSet::new();
    Ok(m.fs_layers
        .into_iter()
        .map(|l| l.blob_sum)
        .filter(|d| seen.insert(d.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// A signed body the way libtrust lays it out: payload minus its closing "\n}", then the
    /// signatures, then the tail again.
    fn signed_body(payload: &str, extra_sig: Option<&str>) -> (String, String) {
        let cut = payload.rfind('\n').unwrap();
        let tail = &payload[cut..];
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let protected = e.encode(format!(
            r#"{{"formatLength":{cut},"formatTail":"{}","time":"2026-01-01T00:00:00Z"}}"#,
            e.encode(tail)
        ));
        let mut sigs = format!(
            r#"{{"header":{{"alg":"ES256"}},"signature":"c2ln","protected":"{protected}"}}"#
        );
        if let Some(p) = extra_sig {
            sigs.push_str(&format!(
                r#",{{"header":{{"alg":"ES256"}},"signature":"c2ln","protected":"{p}"}}"#
            ));
        }
        let body = format!("{},\n   \"signatures\": [{sigs}]{tail}", &payload[..cut]);
        (
            body,
            format!("sha256:{}", hex::encode(Sha256::digest(payload))),
        )
    }

    const PAYLOAD: &str = "{\n   \"schemaVersion\": 1,\n   \"name\": \"a/b\",\n   \"tag\": \"old\",\n   \"fsLayers\": [\n      {\"blobSum\": \"sha256:aa\"},\n      {\"blobSum\": \"sha256:bb\"},\n      {\"blobSum\": \"sha256:aa\"}\n   ]\n}";

    #[test]
    fn the_digest_is_that_of_the_payload_without_signatures() {
        let (body, digest) = signed_body(PAYLOAD, None);
        let bytes = digested_bytes(body.as_bytes());
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            digest
        );
        assert_ne!(bytes.as_ref(), body.as_bytes());
        assert_eq!(
            blob_sums(body.as_bytes()).unwrap(),
            ["sha256:aa", "sha256:bb"]
        );
    }

    #[test]
    fn unsigned_or_inconsistent_bodies_are_hashed_as_served() {
        assert_eq!(
            digested_bytes(PAYLOAD.as_bytes()).as_ref(),
            PAYLOAD.as_bytes()
        );
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let other = e.encode(r#"{"formatLength":3,"formatTail":"fQ"}"#);
        let (body, _) = signed_body(PAYLOAD, Some(&other));
        assert_eq!(signed_payload(body.as_bytes()), None);
        let huge = e.encode(r#"{"formatLength":999999,"formatTail":"fQ"}"#);
        let body = format!(r#"{{"signatures":[{{"protected":"{huge}"}}]}}"#);
        assert_eq!(
            signed_payload(body.as_bytes()),
            None,
            "length past the body"
        );
        assert_eq!(signed_payload(b"not json"), None);
        let (body, _) = signed_body(PAYLOAD, Some("!"));
        assert!(matches!(signing(body.as_bytes()), Signing::Unverifiable(_)));
        assert!(blob_sums(br#"{"schemaVersion":2}"#).is_err());
    }

    #[test]
    fn signatures_agree_on_length_and_tail_and_are_capped() {
        let (body, _) = signed_body(PAYLOAD, None);
        let Signing::Signed { head, tail } = signing(body.as_bytes()) else {
            panic!("signed")
        };
        // The same signature again agrees with itself, up to the cap.
        let sig_at = body.find("{\"header\"").unwrap();
        let sig_end = body[sig_at..].find("}]").unwrap() + sig_at + 1;
        let one = &body[sig_at..sig_end];
        let with = |n: usize| {
            let sigs = vec![one; n].join(",");
            format!("{}{sigs}{}", &body[..sig_at], &body[sig_end..])
        };
        assert_eq!(
            signing(with(MAX_SIGNATURES).as_bytes()),
            Signing::Signed {
                head,
                tail: tail.clone()
            }
        );
        let over = signing(with(MAX_SIGNATURES + 1).as_bytes());
        assert_eq!(
            over,
            Signing::Unverifiable(format!(
                "it carries {} signatures, more than the {MAX_SIGNATURES} checked",
                MAX_SIGNATURES + 1
            ))
        );
        // Same payload, described differently: libtrust refuses it, and so do we.
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let shorter = e.encode(format!(
            r#"{{"formatLength":{},"formatTail":"{}"}}"#,
            head - 1,
            e.encode([&body.as_bytes()[head - 1..head], &tail[..]].concat())
        ));
        let (two, _) = signed_body(PAYLOAD, Some(&shorter));
        assert!(matches!(signing(two.as_bytes()), Signing::Unverifiable(_)));
    }

    #[test]
    fn a_signature_bomb_is_not_verified() {
        // ~4 MiB: every signature claims the first 1 MiB of the body as its payload.
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let protected = e.encode(r#"{"formatLength":1048576,"formatTail":"fQ"}"#);
        let sig = format!(r#"{{"protected":"{protected}"}}"#);
        let n = (4 << 20) / (sig.len() + 1);
        let body = format!(
            r#"{{"schemaVersion":1,"pad":"{}","signatures":[{}]}}"#,
            "x".repeat(1 << 20),
            vec![sig.as_str(); n].join(",")
        );
        assert!(matches!(signing(body.as_bytes()), Signing::Unverifiable(_)));
        assert_eq!(signed_payload(body.as_bytes()), None);
    }
}
