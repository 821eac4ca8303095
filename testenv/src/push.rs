//! Push synthetic images, indexes and raw manifests through the registry HTTP API.
//!
//! Blobs go up monolithically (`POST /v2/<repo>/blobs/uploads/` then `PUT <location>?digest=`),
//! skipped when a `HEAD` (or this pusher's memory) says they exist. Authentication is handled
//! here: Basic (htpasswd) or the Bearer token flow with scope `repository:<repo>:pull,push`
//! (`delete` for deletions), learnt from the registry's `WWW-Authenticate` challenge and then
//! sent up front. A [`Pusher`] is cheap to clone and safe to use from many tasks at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::registry::{RegistryServer, http_client};

/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The layer media type of buildkit's attestations.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The four manifest media types, as an `Accept` header value.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Docker (schema 2) or OCI media types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Docker,
    Oci,
}

impl Format {
    /// The single-image manifest media type.
    pub fn manifest_type(self) -> &'static str {
        match self {
            Format::Docker => DOCKER_MANIFEST,
            Format::Oci => OCI_MANIFEST,
        }
    }
    /// The index / manifest list media type.
    pub fn index_type(self) -> &'static str {
        match self {
            Format::Docker => DOCKER_MANIFEST_LIST,
            Format::Oci => OCI_INDEX,
        }
    }
    /// The config media type.
    pub fn config_type(self) -> &'static str {
        match self {
            Format::Docker => DOCKER_CONFIG,
            Format::Oci => OCI_CONFIG,
        }
    }
    /// The layer media type.
    pub fn layer_type(self) -> &'static str {
        match self {
            Format::Docker => DOCKER_LAYER,
            Format::Oci => OCI_LAYER,
        }
    }
}

/// A synthetic single-platform image. Everything is derived from the fields, so the same spec
/// always gives the same blobs and manifest digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageSpec {
    pub format: Format,
    /// Sizes in bytes of the (pseudo-random, incompressible) layers.
    pub layer_sizes: Vec<usize>,
    /// Seeds the layer bytes (layer `i` of seed `s` is the same in every image) and is written
    /// into the config, so two seeds always give two different images.
    pub seed: u64,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl ImageSpec {
    /// A linux/amd64 image with layers of these sizes.
    pub fn new(format: Format, seed: u64, layer_sizes: &[usize]) -> Self {
        ImageSpec {
            format,
            layer_sizes: layer_sizes.to_vec(),
            seed,
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// The same image for another platform.
    pub fn platform(mut self, os: &str, architecture: &str, variant: Option<&str>) -> Self {
        self.os = os.into();
        self.architecture = architecture.into();
        self.variant = variant.map(str::to_string);
        self
    }

    /// `os/architecture[/variant]`.
    pub fn platform_string(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// Build the blobs and manifest (no network).
    pub fn build(&self) -> BuiltImage {
        let layers: Vec<Blob> = self
            .layer_sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Blob::new(layer_bytes(self.seed, i as u64, size)))
            .collect();
        let mut config = json!({
            "architecture": self.architecture,
            "os": self.os,
            "created": "2024-01-01T00:00:00Z",
            "config": {
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                "Labels": {"io.registry-operator.testenv.seed": self.seed.to_string()},
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
            },
            "history": layers.iter().enumerate().map(|(i, _)| json!({
                "created": "2024-01-01T00:00:00Z",
                "created_by": format!("testenv layer {i}"),
            })).collect::<Vec<_>>(),
        });
        if let Some(v) = &self.variant {
            config["variant"] = json!(v);
        }
        let config = Blob::new(serde_json::to_vec(&config).expect("serializing a config"));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": self.format.manifest_type(),
            "config": {
                "mediaType": self.format.config_type(),
                "size": config.data.len(),
                "digest": config.digest,
            },
            "layers": layers.iter().map(|l| json!({
                "mediaType": self.format.layer_type(),
                "size": l.data.len(),
                "digest": l.digest,
            })).collect::<Vec<_>>(),
        });
        let manifest = Bytes::from(serde_json::to_vec(&manifest).expect("serializing a manifest"));
        BuiltImage {
            digest: sha256_digest(&manifest),
            media_type: self.format.manifest_type().to_string(),
            manifest,
            config,
            layers,
        }
    }
}

/// A blob and its digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: String,
    pub data: Bytes,
}

impl Blob {
    pub fn new(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Blob {
            digest: sha256_digest(&data),
            data,
        }
    }
}

/// The blobs and manifest of an [`ImageSpec`], before pushing.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub digest: String,
    pub media_type: String,
    pub manifest: Bytes,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl BuiltImage {
    /// Config size + sum of layer sizes.
    pub fn size(&self) -> i64 {
        (self.config.data.len() + self.layers.iter().map(|l| l.data.len()).sum::<usize>()) as i64
    }

    fn pushed(&self, platform: String) -> PushedImage {
        PushedImage {
            digest: self.digest.clone(),
            size: self.size(),
            media_type: self.media_type.clone(),
            manifest_len: self.manifest.len(),
            config_digest: self.config.digest.clone(),
            layer_digests: self.layers.iter().map(|l| l.digest.clone()).collect(),
            platform,
        }
    }
}

/// A single-platform image in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedImage {
    /// `sha256:…` of the manifest bytes.
    pub digest: String,
    /// Config size + sum of layer sizes.
    pub size: i64,
    pub media_type: String,
    /// Length of the manifest bytes (the `size` an index lists for it).
    pub manifest_len: usize,
    pub config_digest: String,
    pub layer_digests: Vec<String>,
    /// `os/architecture[/variant]` (`unknown/unknown` for attestations).
    pub platform: String,
}

/// An index (OCI) or manifest list (Docker) in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedIndex {
    pub digest: String,
    pub media_type: String,
    /// The platform images, in index order.
    pub children: Vec<PushedImage>,
    /// The attestation manifests (one per child, listed after the children), if asked for.
    pub attestations: Vec<PushedImage>,
    pub manifest_len: usize,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic pseudo-random bytes (splitmix64), a function of (seed, index, size) only.
fn layer_bytes(seed: u64, index: u64, size: usize) -> Vec<u8> {
    let mut state = seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ 0x5EED_0F1A_7E55_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        out.extend_from_slice(&next().to_le_bytes());
    }
    out.truncate(size);
    out
}

#[derive(Clone, Debug)]
enum AuthScheme {
    Unknown,
    Anonymous,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct Inner {
    client: reqwest::Client,
    base: url::Url,
    creds: Option<(String, String)>,
    scheme: Mutex<AuthScheme>,
    tokens: Mutex<HashMap<String, String>>,
    blobs: Mutex<HashSet<(String, String)>>,
    manifests: Mutex<HashMap<String, (String, Bytes)>>,
    concurrency: usize,
}

/// Pushes images to one registry. Clones share state (tokens, known blobs, pushed manifests).
#[derive(Clone)]
pub struct Pusher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

impl Pusher {
    /// A pusher for `reg` with optional (user, password).
    pub fn new(reg: &RegistryServer, creds: Option<(&str, &str)>) -> anyhow::Result<Self> {
        Self::for_url(&reg.url, reg.ca_pem.as_deref(), creds)
    }

    /// A pusher for any registry base URL (e.g. a [`crate::fault::FaultProxy`]).
    pub fn for_url(
        url: &str,
        ca_pem: Option<&str>,
        creds: Option<(&str, &str)>,
    ) -> anyhow::Result<Self> {
        let base = url::Url::parse(url).with_context(|| format!("parsing {url}"))?;
        Ok(Pusher {
            inner: Arc::new(Inner {
                client: http_client(ca_pem)?,
                base,
                creds: creds.map(|(u, p)| (u.to_string(), p.to_string())),
                scheme: Mutex::new(AuthScheme::Unknown),
                tokens: Mutex::new(HashMap::new()),
                blobs: Mutex::new(HashSet::new()),
                manifests: Mutex::new(HashMap::new()),
                concurrency: 16,
            }),
        })
    }

    /// Push one image (blobs then manifest). `tag: None` pushes by digest only.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: Option<&str>,
        spec: &ImageSpec,
    ) -> anyhow::Result<PushedImage> {
        let built = spec.build();
        self.push_built(repo, tag, &built).await?;
        Ok(built.pushed(spec.platform_string()))
    }

    /// Push many images concurrently; `items` are (tag, spec). Results keep the input order.
    pub async fn push_many(
        &self,
        repo: &str,
        items: &[(Option<&str>, &ImageSpec)],
    ) -> anyhow::Result<Vec<PushedImage>> {
        futures::stream::iter(
            items
                .iter()
                .map(|(tag, spec)| self.push_image(repo, *tag, spec)),
        )
        .buffered(self.inner.concurrency)
        .try_collect()
        .await
    }

    /// Push a built image (blobs then manifest).
    pub async fn push_built(
        &self,
        repo: &str,
        tag: Option<&str>,
        built: &BuiltImage,
    ) -> anyhow::Result<()> {
        let blobs = std::iter::once(&built.config).chain(built.layers.iter());
        futures::future::try_join_all(blobs.map(|b| self.ensure_blob(repo, b))).await?;
        let reference = tag.unwrap_or(&built.digest);
        self.put_manifest(repo, reference, &built.media_type, built.manifest.clone())
            .await?;
        Ok(())
    }

    /// Push an OCI index or Docker manifest list over already pushed `children` (same repo).
    /// With `attestation`, a buildkit-style attestation manifest is pushed per child and listed
    /// after the children (platform unknown/unknown, annotations
    /// `vnd.docker.reference.type=attestation-manifest` and `vnd.docker.reference.digest`).
    pub async fn push_index(
        &self,
        repo: &str,
        tag: Option<&str>,
        format: Format,
        children: &[(&ImageSpec, &PushedImage)],
        attestation: bool,
    ) -> anyhow::Result<PushedIndex> {
        let mut entries = Vec::new();
        for (spec, image) in children {
            let mut platform = json!({"architecture": spec.architecture, "os": spec.os});
            if let Some(v) = &spec.variant {
                platform["variant"] = json!(v);
            }
            entries.push(json!({
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": image.manifest_len,
                "platform": platform,
            }));
        }
        let mut attestations = Vec::new();
        if attestation {
            for (_, image) in children {
                let att = attestation_manifest(&image.digest);
                self.push_built(repo, None, &att).await?;
                entries.push(json!({
                    "mediaType": att.media_type,
                    "digest": att.digest,
                    "size": att.manifest.len(),
                    "annotations": {
                        "vnd.docker.reference.digest": image.digest,
                        "vnd.docker.reference.type": "attestation-manifest",
                    },
                    "platform": {"architecture": "unknown", "os": "unknown"},
                }));
                attestations.push(att.pushed("unknown/unknown".into()));
            }
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": format.index_type(),
            "manifests": entries,
        });
        let body = Bytes::from(serde_json::to_vec(&index)?);
        let digest = sha256_digest(&body);
        let manifest_len = body.len();
        self.put_manifest(repo, tag.unwrap_or(&digest), format.index_type(), body)
            .await?;
        Ok(PushedIndex {
            digest,
            media_type: format.index_type().to_string(),
            children: children.iter().map(|(_, i)| (*i).clone()).collect(),
            attestations,
            manifest_len,
        })
    }

    /// Put an existing manifest under another tag, with the very bytes that were pushed (or, for
    /// a manifest this pusher did not push, the bytes the registry serves).
    pub async fn tag(&self, repo: &str, tag: &str, digest: &str) -> anyhow::Result<()> {
        let known = self.inner.manifests.lock().unwrap().get(digest).cloned();
        let (media_type, body) = match known {
            Some(m) => m,
            None => self.fetch_manifest(repo, digest).await?,
        };
        self.put_manifest(repo, tag, &media_type, body).await?;
        Ok(())
    }

    /// [`Pusher::tag`] for many tags, concurrently.
    pub async fn tag_many<S: AsRef<str>>(
        &self,
        repo: &str,
        tags: &[S],
        digest: &str,
    ) -> anyhow::Result<()> {
        // Fetch once (if needed) before fanning out.
        if !self.inner.manifests.lock().unwrap().contains_key(digest) {
            let m = self.fetch_manifest(repo, digest).await?;
            self.inner
                .manifests
                .lock()
                .unwrap()
                .insert(digest.to_string(), m);
        }
        futures::stream::iter(tags.iter().map(|t| self.tag(repo, t.as_ref(), digest)))
            .buffer_unordered(self.inner.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// `DELETE /v2/<repo>/manifests/<digest>` (the registry has `delete.enabled: true`).
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> anyhow::Result<()> {
        let url = self.url(&format!("/v2/{repo}/manifests/{digest}"))?;
        let resp = self
            .send(repo, "delete", Method::DELETE, url, HeaderMap::new(), None)
            .await?;
        expect_status(
            resp,
            &[StatusCode::ACCEPTED, StatusCode::OK],
            "deleting a manifest",
        )
        .await?;
        Ok(())
    }

    /// PUT arbitrary manifest bytes under `reference` (tag or digest) with this media type;
    /// returns the digest of the bytes (checked against `Docker-Content-Digest`).
    pub async fn push_raw_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> anyhow::Result<String> {
        self.put_manifest(repo, reference, media_type, Bytes::copy_from_slice(body))
            .await
    }

    /// Push a signed schema 1 manifest (its layer blobs first) under `tag`; returns the digest
    /// the registry reports: the payload's (distribution) or the bytes' (simpler registries).
    pub async fn push_schema1(
        &self,
        repo: &str,
        tag: &str,
        manifest: &crate::schema1::SignedManifest,
    ) -> anyhow::Result<String> {
        for layer in &manifest.layers {
            self.push_blob(repo, layer.clone()).await?;
        }
        let url = self.url(&format!("/v2/{repo}/manifests/{tag}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, crate::schema1::MEDIA_TYPE.parse()?);
        let body = Bytes::from(manifest.body.clone());
        let resp = self
            .send(repo, "pull,push", Method::PUT, url, headers, Some(body))
            .await?;
        let resp =
            expect_status(resp, &[StatusCode::CREATED], "putting a schema 1 manifest").await?;
        let got = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| manifest.raw_digest.clone());
        if got != manifest.digest && got != manifest.raw_digest {
            bail!(
                "registry says the schema 1 digest is {got}, expected {} or {}",
                manifest.digest,
                manifest.raw_digest
            );
        }
        Ok(got)
    }

    /// Upload a blob unless the registry already has it.
    pub async fn push_blob(&self, repo: &str, data: impl Into<Bytes>) -> anyhow::Result<String> {
        let blob = Blob::new(data);
        self.ensure_blob(repo, &blob).await?;
        Ok(blob.digest)
    }

    async fn ensure_blob(&self, repo: &str, blob: &Blob) -> anyhow::Result<()> {
        let key = (repo.to_string(), blob.digest.clone());
        if self.inner.blobs.lock().unwrap().contains(&key) {
            return Ok(());
        }
        let head = self.url(&format!("/v2/{repo}/blobs/{}", blob.digest))?;
        let resp = self
            .send(
                repo,
                "pull,push",
                Method::HEAD,
                head,
                HeaderMap::new(),
                None,
            )
            .await?;
        if resp.status() == StatusCode::OK {
            self.inner.blobs.lock().unwrap().insert(key);
            return Ok(());
        }
        let start = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        let resp = self
            .send(
                repo,
                "pull,push",
                Method::POST,
                start,
                HeaderMap::new(),
                Some(Bytes::new()),
            )
            .await?;
        let resp = expect_status(resp, &[StatusCode::ACCEPTED], "starting a blob upload").await?;
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("blob upload answered 202 without Location"))?;
        let mut put = self
            .inner
            .base
            .join(location)
            .context("resolving Location")?;
        put.query_pairs_mut().append_pair("digest", &blob.digest);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/octet-stream".parse().unwrap());
        let resp = self
            .send(
                repo,
                "pull,push",
                Method::PUT,
                put,
                headers,
                Some(blob.data.clone()),
            )
            .await?;
        expect_status(resp, &[StatusCode::CREATED], "finishing a blob upload").await?;
        self.inner.blobs.lock().unwrap().insert(key);
        Ok(())
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: Bytes,
    ) -> anyhow::Result<String> {
        let digest = sha256_digest(&body);
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, media_type.parse().context("media type")?);
        let resp = self
            .send(
                repo,
                "pull,push",
                Method::PUT,
                url,
                headers,
                Some(body.clone()),
            )
            .await?;
        let resp = expect_status(resp, &[StatusCode::CREATED], "putting a manifest").await?;
        if let Some(got) = resp.headers().get("docker-content-digest")
            && got.as_bytes() != digest.as_bytes()
        {
            bail!("registry says the manifest digest is {got:?}, the bytes hash to {digest}");
        }
        self.inner
            .manifests
            .lock()
            .unwrap()
            .insert(digest.clone(), (media_type.to_string(), body));
        Ok(digest)
    }

    async fn fetch_manifest(&self, repo: &str, reference: &str) -> anyhow::Result<(String, Bytes)> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, ACCEPT_MANIFESTS.parse().unwrap());
        let resp = self
            .send(repo, "pull", Method::GET, url, headers, None)
            .await?;
        let resp = expect_status(resp, &[StatusCode::OK], "getting a manifest").await?;
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok((media_type, resp.bytes().await?))
    }

    fn url(&self, path: &str) -> anyhow::Result<url::Url> {
        self.inner
            .base
            .join(path)
            .with_context(|| format!("joining {path}"))
    }

    /// Send with auth: credentials up front once the scheme is known; on a 401, learn the
    /// challenge, (re)fetch a token if Bearer, and retry once.
    async fn send(
        &self,
        repo: &str,
        actions: &str,
        method: Method,
        url: url::Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> anyhow::Result<reqwest::Response> {
        let scope = format!("repository:{repo}:{actions}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let scheme = self.inner.scheme.lock().unwrap().clone();
            let mut req = self
                .inner
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .timeout(REQUEST_TIMEOUT);
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let mut fresh_token = false;
            match &scheme {
                AuthScheme::Basic => {
                    if let Some((u, p)) = &self.inner.creds {
                        req = req.basic_auth(u, Some(p));
                    }
                }
                AuthScheme::Bearer { realm, service } => {
                    let cached = self.inner.tokens.lock().unwrap().get(&scope).cloned();
                    let token = match cached {
                        Some(t) => t,
                        None => {
                            fresh_token = true;
                            self.fetch_token(realm, service.as_deref(), &scope).await?
                        }
                    };
                    req = req.bearer_auth(token);
                }
                AuthScheme::Unknown | AuthScheme::Anonymous => {}
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("{method} {url}"))?;
            if resp.status() != StatusCode::UNAUTHORIZED || attempt >= 3 {
                return Ok(resp);
            }
            let Some(challenge) = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
            else {
                return Ok(resp);
            };
            let learnt = parse_challenge(challenge);
            match (&scheme, &learnt) {
                // Wrong or missing Basic credentials: nothing more to try.
                (AuthScheme::Basic, AuthScheme::Basic) => return Ok(resp),
                (_, AuthScheme::Basic) if self.inner.creds.is_none() => return Ok(resp),
                // A token fetched just now was refused (e.g. scope not granted): give up.
                (AuthScheme::Bearer { .. }, AuthScheme::Bearer { .. }) if fresh_token => {
                    return Ok(resp);
                }
                (_, AuthScheme::Basic | AuthScheme::Bearer { .. }) => {
                    // A cached token may have expired: drop it and fetch anew.
                    self.inner.tokens.lock().unwrap().remove(&scope);
                    *self.inner.scheme.lock().unwrap() = learnt;
                }
                _ => return Ok(resp),
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> anyhow::Result<String> {
        let mut url = url::Url::parse(realm).with_context(|| format!("token realm {realm}"))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let mut req = self.inner.client.get(url.clone()).timeout(REQUEST_TIMEOUT);
        if let Some((u, p)) = &self.inner.creds {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        let resp = expect_status(resp, &[StatusCode::OK], "fetching a token").await?;
        let body: Value = resp.json().await.context("token response")?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("token response without token: {body}"))?
            .to_string();
        self.inner
            .tokens
            .lock()
            .unwrap()
            .insert(scope.to_string(), token.clone());
        Ok(token)
    }
}

/// The attestation manifest buildkit would attach to `subject`: an OCI image manifest with an
/// `unknown/unknown` config and one in-toto (SLSA provenance) layer.
fn attestation_manifest(subject: &str) -> BuiltImage {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{
            "name": "pkg:docker/testenv",
            "digest": {"sha256": subject.trim_start_matches("sha256:")},
        }],
        "predicate": {"builder": {"id": "https://github.com/registry-operator/testenv"}},
    });
    let layer = Blob::new(serde_json::to_vec(&statement).expect("statement"));
    let config = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
    });
    let config = Blob::new(serde_json::to_vec(&config).expect("config"));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config.data.len(), "digest": config.digest},
        "layers": [{
            "mediaType": IN_TOTO,
            "size": layer.data.len(),
            "digest": layer.digest,
            "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
        }],
    });
    let manifest = Bytes::from(serde_json::to_vec(&manifest).expect("manifest"));
    BuiltImage {
        digest: sha256_digest(&manifest),
        media_type: OCI_MANIFEST.to_string(),
        manifest,
        config,
        layers: vec![layer],
    }
}

async fn expect_status(
    resp: reqwest::Response,
    ok: &[StatusCode],
    what: &str,
) -> anyhow::Result<reqwest::Response> {
    if ok.contains(&resp.status()) {
        return Ok(resp);
    }
    let status = resp.status();
    let url = resp.url().clone();
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(2000).collect();
    bail!("{what}: {url} answered {status}: {body}")
}

/// Parse a `WWW-Authenticate` value into the scheme this pusher should use.
fn parse_challenge(value: &str) -> AuthScheme {
    let (scheme, params) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return AuthScheme::Basic;
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return AuthScheme::Anonymous;
    }
    let params = parse_auth_params(params);
    match params.get("realm") {
        Some(realm) => AuthScheme::Bearer {
            realm: realm.clone(),
            service: params.get("service").cloned(),
        },
        None => AuthScheme::Anonymous,
    }
}

/// `k="v", k2=v2` → map (keys lower-cased; quoted values may hold commas and `\"`).
pub(crate) fn parse_auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parses() {
        let p = parse_auth_params(
            r#"realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p["realm"], "http://127.0.0.1:1/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        assert!(matches!(
            parse_challenge("Basic realm=\"x\""),
            AuthScheme::Basic
        ));
    }

    #[test]
    fn images_are_deterministic() {
        let a = ImageSpec::new(Format::Oci, 7, &[100, 3000]).build();
        let b = ImageSpec::new(Format::Oci, 7, &[100, 3000]).build();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.layers[1].data.len(), 3000);
        let c = ImageSpec::new(Format::Oci, 8, &[100, 3000]).build();
        assert_ne!(a.digest, c.digest);
        assert_ne!(a.layers[0].digest, a.layers[1].digest);
        let d = ImageSpec::new(Format::Docker, 7, &[100, 3000]).build();
        assert_eq!(a.layers[0].digest, d.layers[0].digest);
        assert_eq!(d.media_type, DOCKER_MANIFEST);
    }
}
