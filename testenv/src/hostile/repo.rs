//! What every hostile mode shares: routes of the distribution API, and a small in-memory
//! repository (tags, manifests by tag and digest) for the parts of an attack that behave.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};

use super::Ctx;
use super::http::{Reply, Request};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub enum Route<'a> {
    /// `GET /v2/`.
    Base,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str),
    /// The token endpoint modes with auth name as their realm.
    Token,
    Other,
}

pub fn route(req: &Request) -> Route<'_> {
    let path = req.path();
    if path == "/v2/" || path == "/v2" {
        return Route::Base;
    }
    if path == "/token" {
        return Route::Token;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::Other;
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Route::Tags(name);
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        return Route::Manifest(name, reference);
    }
    if let Some((name, _digest)) = rest.rsplit_once("/blobs/") {
        return Route::Blob(name);
    }
    Route::Other
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// An OCI image manifest of one small layer, distinct per `seed`.
pub fn small_manifest(seed: &str) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 100,
                   "digest": sha256(format!("config {seed}").as_bytes())},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 1000,
                    "digest": sha256(format!("layer {seed}").as_bytes())}],
    })
    .to_string()
    .into_bytes()
}

pub struct Stored {
    pub body: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

/// Tags and manifests, answered the way distribution does.
#[derive(Default)]
pub struct Repo {
    pub tags: Vec<String>,
    by_tag: HashMap<String, usize>,
    by_digest: HashMap<String, usize>,
    manifests: Vec<Stored>,
    /// Whether HEAD and GET carry `Docker-Content-Digest`.
    pub no_digest_header: bool,
}

impl Repo {
    /// Stores a manifest (once per digest) and returns its digest.
    pub fn add(&mut self, body: Vec<u8>, media_type: &str) -> String {
        let digest = sha256(&body);
        if !self.by_digest.contains_key(&digest) {
            self.by_digest.insert(digest.clone(), self.manifests.len());
            self.manifests.push(Stored {
                body,
                media_type: media_type.to_string(),
                digest: digest.clone(),
            });
        }
        digest
    }

    pub fn tag(&mut self, tag: &str, digest: &str) {
        if let Some(&i) = self.by_digest.get(digest)
            && self.by_tag.insert(tag.to_string(), i).is_none()
        {
            self.tags.push(tag.to_string());
        }
    }

    /// A manifest stored under `tag` and tagged.
    pub fn put(&mut self, tag: &str, body: Vec<u8>, media_type: &str) -> String {
        let digest = self.add(body, media_type);
        self.tag(tag, &digest);
        digest
    }

    pub fn get(&self, reference: &str) -> Option<&Stored> {
        let i = self
            .by_tag
            .get(reference)
            .or_else(|| self.by_digest.get(reference))?;
        self.manifests.get(*i)
    }

    pub fn tags_reply(&self, name: &str) -> Reply {
        Reply::json(
            200,
            serde_json::json!({"name": name, "tags": self.tags}).to_string(),
        )
    }

    pub fn manifest_reply(&self, ctx: &Ctx, req: &Request, reference: &str) -> Reply {
        let Some(m) = self.get(reference) else {
            return Reply::error(404, "MANIFEST_UNKNOWN", "manifest unknown");
        };
        if req.method != "HEAD" {
            ctx.counters.manifest_gets.fetch_add(1, Ordering::Relaxed);
        }
        let mut reply = Reply::new(200)
            .header("Content-Type", m.media_type.clone())
            .body(m.body.clone());
        if !self.no_digest_header {
            reply = reply.header("Docker-Content-Digest", m.digest.clone());
        }
        reply
    }

    /// The distribution API over this repository, whatever the repository's name.
    pub fn answer(&self, ctx: &Ctx, req: &Request) -> Reply {
        match route(req) {
            Route::Base => Reply::json(200, "{}"),
            Route::Tags(name) => {
                ctx.counters.tag_lists.fetch_add(1, Ordering::Relaxed);
                self.tags_reply(name)
            }
            Route::Manifest(_, reference) => self.manifest_reply(ctx, req, reference),
            // Layers (schema 1 sizes) all exist and weigh 1,000 bytes.
            Route::Blob(..) => Reply::new(200)
                .header("Content-Type", "application/octet-stream")
                .body(vec![0u8; 1000]),
            Route::Token | Route::Other => Reply::error(404, "NOT_FOUND", "not found"),
        }
    }
}
