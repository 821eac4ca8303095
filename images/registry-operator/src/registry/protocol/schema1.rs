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

#[derive(Deserialize)]
struct Signed {
    #[serde(default)]
    signatures: Option<Vec<Signature>>,
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

/// The signed payload of a JWS-signed schema 1 manifest; `None` for a body without signatures
/// (whose digest is that of its bytes) or whose signatures disagree or do not parse.
pub fn signed_payload(body: &[u8]) -> Option<Vec<u8>> {
    let signed: Signed = serde_json::from_slice(body).ok()?;
    let mut payload: Option<Vec<u8>> = None;
    for sig in signed.signatures.unwrap_or_default() {
        let header: Protected = serde_json::from_slice(&b64url(&sig.protected)?).ok()?;
        let tail = b64url(&header.format_tail)?;
        let head = body.get(..header.format_length)?;
        if tail.len() > body.len() {
            return None;
        }
        let this = [head, tail.as_slice()].concat();
        match &payload {
            Some(p) if *p != this => return None,
            Some(_) => {}
            None => payload = Some(this),
        }
    }
    payload
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
        assert!(blob_sums(br#"{"schemaVersion":2}"#).is_err());
    }
}
