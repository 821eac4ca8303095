//! Schema 1 signature bombs: a signed manifest of 4 MiB whose payload is 2 MiB and whose
//! ~27,000 signatures all say "rebuild the payload from the first 2 MiB". A verifier that
//! copies the payload per signature does ~55 GB of copying per manifest; a linear one reads
//! 4 MiB. The signatures are not valid (the point is the work before any check could fail).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use super::http::{Reply, Request};
use super::repo::{Repo, sha256};
use super::{Ctx, Mode};

pub(super) const REPOSITORY: &str = "bomb";
const SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const TAGS: usize = 4;
const TOTAL: usize = (4 << 20) - (64 << 10);
const PAYLOAD: usize = 2 << 20;

/// One bomb for `name:tag`, and its signature count.
pub fn bomb(name: &str, tag: &str) -> (Vec<u8>, usize) {
    let layer = sha256(b"layer");
    let head = format!(
        r#"{{"schemaVersion":1,"name":"{name}","tag":"{tag}","architecture":"amd64","fsLayers":[{{"blobSum":"{layer}"}}],"history":[{{"v1Compatibility":""#
    );
    let mut body = head.into_bytes();
    body.resize(PAYLOAD.saturating_sub(4), b'x');
    body.extend_from_slice(br#""}]"#);
    let format_length = body.len();
    let protected = B64.encode(format!(
        r#"{{"formatLength":{format_length},"formatTail":"{}","time":"2026-01-01T00:00:00Z"}}"#,
        B64.encode("}")
    ));
    let signature =
        format!(r#"{{"header":{{"alg":"ES256"}},"signature":"AA","protected":"{protected}"}}"#);
    let count = TOTAL.saturating_sub(format_length) / (signature.len() + 1);
    body.extend_from_slice(br#","signatures":["#);
    for i in 0..count {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(signature.as_bytes());
    }
    body.extend_from_slice(b"]}");
    (body, count)
}

pub(super) struct Bomb {
    repo: Repo,
}

impl Bomb {
    pub fn new() -> Self {
        let mut repo = Repo::default();
        for i in 0..TAGS {
            let tag = format!("{i}.0");
            repo.put(&tag, bomb(REPOSITORY, &tag).0, SIGNED);
        }
        // As simple registries do: no digest on HEAD, so the scan GETs each tag and works the
        // digest out of the payload itself.
        repo.no_digest_header = true;
        Self { repo }
    }
}

impl Mode for Bomb {
    fn answer(&self, ctx: &Ctx, req: &Request) -> Reply {
        self.repo.answer(ctx, req)
    }
}
