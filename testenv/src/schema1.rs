//! Signed Docker image manifests, schema 1 (`application/vnd.docker.distribution.manifest.v1+prettyjws`),
//! built and signed the way docker/libtrust did it, so that distribution 2.8 verifies them on push.
//!
//! Layout of a signed manifest: the payload (indented JSON) without its closing `\n}`, then
//! `,\n   "signatures": [ … ]`, then the tail again. Each signature's protected header tells a
//! reader how to rebuild the payload (`formatLength`, `formatTail`); the JWS signing input is
//! `protected + "." + base64url(payload)`, ES256 (ECDSA P-256, SHA-256, `r||s`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::push::sha256_digest;

pub const MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// A signed schema 1 manifest and what a scan should report for it.
#[derive(Clone, Debug)]
pub struct SignedManifest {
    /// The bytes a registry stores and serves (with signatures).
    pub body: String,
    /// Digest of the payload without signatures: what distribution reports.
    pub digest: String,
    /// Digest of `body` (what registries that hash the served bytes report).
    pub raw_digest: String,
    /// The layer blobs, in manifest order (duplicates kept, as schema 1 repeats them).
    pub layers: Vec<Vec<u8>>,
    /// Sum of the distinct layer blobs' sizes.
    pub size: i64,
}

/// Builds and signs a manifest for `name:tag` with these layers (each also listed once in
/// `history`, as schema 1 requires). `layers` may repeat a blob; the size counts it once.
pub fn signed(name: &str, tag: &str, layers: &[Vec<u8>]) -> SignedManifest {
    let fs_layers: Vec<_> = layers
        .iter()
        .map(|l| json!({"blobSum": sha256_digest(l)}))
        .collect();
    let history: Vec<_> = (0..layers.len())
        .map(|i| {
            json!({"v1Compatibility": json!({
                "id": hex::encode(Sha256::digest(format!("{name}:{tag}:{i}"))),
                "created": "2016-01-01T00:00:00Z",
                "container_config": {"Cmd": ["/bin/sh"]},
            }).to_string()})
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 1,
        "name": name,
        "tag": tag,
        "architecture": "amd64",
        "fsLayers": fs_layers,
        "history": history,
    });
    let payload = pretty(&manifest);
    let format_length = payload.rfind('\n').expect("indented JSON has newlines");
    let tail = &payload[format_length..];

    let key = signing_key();
    let point = key.verifying_key().to_sec1_point(false);
    let xy = point.as_bytes();
    let protected = B64.encode(
        json!({
            "formatLength": format_length,
            "formatTail": B64.encode(tail),
            "time": "2026-01-01T00:00:00Z",
        })
        .to_string(),
    );
    let signing_input = format!("{protected}.{}", B64.encode(&payload));
    let signature: Signature = key.sign(signing_input.as_bytes());
    let signatures = json!([{
        "header": {
            "jwk": {
                "crv": "P-256",
                "kid": key_id(&xy[1..]),
                "kty": "EC",
                "x": B64.encode(&xy[1..33]),
                "y": B64.encode(&xy[33..65]),
            },
            "alg": "ES256",
        },
        "signature": B64.encode(signature.to_bytes()),
        "protected": protected,
    }]);
    let body = format!(
        "{},\n   \"signatures\": {}{tail}",
        &payload[..format_length],
        indent_tail(&pretty(&signatures))
    );
    let mut seen = std::collections::HashSet::new();
    let size = layers
        .iter()
        .filter(|l| seen.insert(sha256_digest(l)))
        .map(|l| l.len() as i64)
        .sum();
    SignedManifest {
        digest: sha256_digest(payload.as_bytes()),
        raw_digest: sha256_digest(body.as_bytes()),
        body,
        layers: layers.to_vec(),
        size,
    }
}

/// `json.MarshalIndent(v, "", "   ")`, as libtrust formats payloads.
fn pretty(v: &serde_json::Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(v, &mut ser).expect("serializing JSON");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// Nested one level (inside the manifest object).
fn indent_tail(s: &str) -> String {
    s.replace('\n', "\n   ")
}

fn signing_key() -> SigningKey {
    loop {
        if let Ok(k) = SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
            return k;
        }
    }
}

/// libtrust's key ID: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 in
/// groups of four joined by ':'.
fn key_id(xy: &[u8]) -> String {
    // DER SPKI prefix for an uncompressed P-256 point (id-ecPublicKey, prime256v1).
    let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    der.push(0x04);
    der.extend_from_slice(xy);
    let hash = Sha256::digest(&der);
    let b32 = base32(&hash[..30]);
    b32.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in data {
        buffer = (buffer << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn the_payload_is_rebuilt_from_the_protected_header_and_verifies() {
        let m = signed(
            "a/b",
            "old",
            &[b"one".to_vec(), b"two".to_vec(), b"one".to_vec()],
        );
        assert_eq!(m.size, 6);
        let v: serde_json::Value = serde_json::from_str(&m.body).expect("valid JSON");
        let sig = &v["signatures"][0];
        let protected = sig["protected"].as_str().unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(protected).unwrap()).unwrap();
        let len = header["formatLength"].as_u64().unwrap() as usize;
        let tail = B64.decode(header["formatTail"].as_str().unwrap()).unwrap();
        let payload = [&m.body.as_bytes()[..len], &tail[..]].concat();
        assert_eq!(sha256_digest(&payload), m.digest);
        assert_ne!(m.digest, m.raw_digest);
        let jwk = &sig["header"]["jwk"];
        let mut point = vec![4u8];
        point.extend(B64.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(B64.decode(jwk["y"].as_str().unwrap()).unwrap());
        let key = VerifyingKey::from_sec1_bytes(&point).unwrap();
        let signature =
            Signature::from_slice(&B64.decode(sig["signature"].as_str().unwrap()).unwrap())
                .unwrap();
        let input = format!("{protected}.{}", B64.encode(&payload));
        key.verify(input.as_bytes(), &signature)
            .expect("signature verifies");
        assert_eq!(jwk["kid"].as_str().unwrap().split(':').count(), 12);
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }
}
