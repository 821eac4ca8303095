//! Absurd numbers wherever a registry controls one. Repository `nK` carries value K of
//! [`absurd_values`] in the mode's number; everything else about it is a small honest
//! repository, so that what breaks is the number and nothing else.

use std::sync::atomic::Ordering;

use super::http::{Reply, Request};
use super::repo::{OCI_INDEX, OCI_MANIFEST, Repo, Route, route, sha256, small_manifest};
use super::{Ctx, Mode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberHeader {
    /// `Retry-After` on 429 (even K) and 503 (odd K) answers to the tag list.
    RetryAfter,
    /// `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset: V` on every answer.
    RateLimitReset,
    /// `Content-Length: V` on manifest GETs (the body is the true manifest).
    ContentLength,
    /// `expires_in: V` (and `issued_at`) in the token JSON of a bearer registry.
    ExpiresIn,
    /// `size: V` for the config and layers of a manifest, and for an index's children.
    ManifestSizes,
    /// Tag-list pages that never end, each `Link` asking for `n=V`.
    PageLinks,
}

impl NumberHeader {
    pub const ALL: [NumberHeader; 6] = [
        NumberHeader::RetryAfter,
        NumberHeader::RateLimitReset,
        NumberHeader::ContentLength,
        NumberHeader::ExpiresIn,
        NumberHeader::ManifestSizes,
        NumberHeader::PageLinks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NumberHeader::RetryAfter => "Retry-After",
            NumberHeader::RateLimitReset => "X-RateLimit-Reset",
            NumberHeader::ContentLength => "Content-Length",
            NumberHeader::ExpiresIn => "expires_in",
            NumberHeader::ManifestSizes => "manifest sizes",
            NumberHeader::PageLinks => "page links",
        }
    }
}

/// Values no registry should send; each is what some parser gets wrong.
const ABSURD: [&str; 12] = [
    "1e300",
    "-1",
    "NaN",
    "18446744073709551616",
    "18446744073709551615",
    "9223372036854775808",
    "9223372036854775807",
    "inf",
    "-1e300",
    "1.7976931348623157e308",
    "99999999999999999999999999999999999999999999",
    "0x7fffffff",
];

/// The values repository `n0`, `n1`, … carry, in order.
pub fn absurd_values(header: NumberHeader) -> Vec<&'static str> {
    let mut v = ABSURD.to_vec();
    match header {
        NumberHeader::RetryAfter => v.push("Fri, 31 Dec 9999 23:59:59 GMT"),
        // A timestamp a second past what `SystemTime` can add to the epoch on some systems.
        NumberHeader::RateLimitReset => v.push("315360001"),
        _ => {}
    }
    v
}

pub(super) fn repository(k: usize) -> String {
    format!("n{k}")
}

pub(super) struct Numbers {
    header: NumberHeader,
    values: Vec<&'static str>,
    honest: Repo,
}

impl Numbers {
    pub fn new(header: NumberHeader) -> Self {
        let mut honest = Repo::default();
        honest.put("1.0", small_manifest("1.0"), OCI_MANIFEST);
        honest.put("2.0", small_manifest("2.0"), OCI_MANIFEST);
        Self {
            header,
            values: absurd_values(header),
            honest,
        }
    }

    /// The value for the repository a request names.
    fn value(&self, req: &Request) -> Option<(usize, &'static str)> {
        let name = match route(req) {
            Route::Tags(n) | Route::Manifest(n, _) | Route::Blob(n) => n,
            _ => {
                // The token endpoint names the repository in its scope.
                let scope = req.query("scope")?;
                let name = scope.split(':').nth(1)?.to_string();
                return self.lookup(&name);
            }
        };
        self.lookup(name)
    }

    fn lookup(&self, name: &str) -> Option<(usize, &'static str)> {
        let k: usize = name.strip_prefix('n')?.parse().ok()?;
        self.values.get(k).map(|v| (k, *v))
    }
}

impl Mode for Numbers {
    fn answer(&self, ctx: &Ctx, req: &Request) -> Reply {
        let value = self.value(req);
        match self.header {
            NumberHeader::RetryAfter => match (route(req), value) {
                (Route::Tags(_), Some((k, v))) => {
                    ctx.counters.tag_lists.fetch_add(1, Ordering::Relaxed);
                    let status = if k % 2 == 0 { 429 } else { 503 };
                    Reply::error(status, "TOOMANYREQUESTS", "slow down").header("Retry-After", v)
                }
                _ => self.honest.answer(ctx, req),
            },
            NumberHeader::RateLimitReset => {
                let mut reply = self.honest.answer(ctx, req);
                if let Some((_, v)) = value {
                    reply = reply
                        .header("X-RateLimit-Remaining", "0")
                        .header("X-RateLimit-Limit", v)
                        .header("X-RateLimit-Reset", v);
                }
                reply
            }
            NumberHeader::ContentLength => {
                let mut reply = self.honest.answer(ctx, req);
                if let (Route::Manifest(..), Some((_, v))) = (route(req), value)
                    && req.method == "GET"
                {
                    reply = reply.header("Content-Length", v);
                }
                reply
            }
            NumberHeader::ExpiresIn => self.token_gated(ctx, req, value),
            NumberHeader::ManifestSizes => match value {
                Some((_, v)) => sized_repo(v).answer(ctx, req),
                None => self.honest.answer(ctx, req),
            },
            NumberHeader::PageLinks => match (route(req), value) {
                (Route::Tags(name), Some((_, v))) => {
                    ctx.counters.tag_lists.fetch_add(1, Ordering::Relaxed);
                    let page: u64 = req
                        .query("last")
                        .and_then(|l| l.strip_prefix('p')?.parse().ok())
                        .map_or(0, |p: u64| p.saturating_add(1));
                    let tag = format!("p{page}");
                    Reply::json(
                        200,
                        serde_json::json!({"name": name, "tags": [tag]}).to_string(),
                    )
                    .header(
                        "Link",
                        format!("</v2/{name}/tags/list?n={v}&last={tag}>; rel=\"next\""),
                    )
                }
                // Every page's tag is the same small image.
                (Route::Manifest(..), Some(_)) => {
                    let mut repo = Repo::default();
                    let d = repo.add(small_manifest("page"), OCI_MANIFEST);
                    if let Route::Manifest(_, reference) = route(req) {
                        repo.tag(reference, &d);
                        return repo.manifest_reply(ctx, req, reference);
                    }
                    self.honest.answer(ctx, req)
                }
                _ => self.honest.answer(ctx, req),
            },
        }
    }
}

impl Numbers {
    /// A bearer registry whose token endpoint says the token lives `V` seconds.
    fn token_gated(&self, ctx: &Ctx, req: &Request, value: Option<(usize, &str)>) -> Reply {
        match route(req) {
            Route::Token => {
                let Some((k, v)) = value else {
                    return Reply::error(400, "DENIED", "unknown scope");
                };
                let n = ctx.counters.tokens.fetch_add(1, Ordering::Relaxed);
                let token = format!("t-{k}-{n}");
                ctx.counters
                    .token_bytes
                    .fetch_add(token.len() as u64, Ordering::Relaxed);
                // Raw, so that `NaN` and `inf` go out as the bare words a broken server writes.
                Reply::json(
                    200,
                    format!(
                        r#"{{"token":"{token}","access_token":"{token}","expires_in":{v},"issued_at":"{v}"}}"#
                    ),
                )
            }
            _ if req.bearer().is_some_and(|t| t.starts_with("t-")) => self.honest.answer(ctx, req),
            Route::Base | Route::Tags(_) | Route::Manifest(..) | Route::Blob(..) => {
                let scope = match route(req) {
                    Route::Tags(n) | Route::Manifest(n, _) | Route::Blob(n) => {
                        format!(",scope=\"repository:{n}:pull\"")
                    }
                    _ => String::new(),
                };
                Reply::error(401, "UNAUTHORIZED", "authentication required").header(
                    "WWW-Authenticate",
                    format!(
                        "Bearer realm=\"{}/token\",service=\"hostile\"{scope}",
                        ctx.base
                    ),
                )
            }
            Route::Other => Reply::error(404, "NOT_FOUND", "not found"),
        }
    }
}

/// Tag `image`: config and two layers of size `v`; tag `index`: two children of size `v`,
/// each itself an image of size `v`.
fn sized_repo(v: &str) -> Repo {
    let mut repo = Repo::default();
    let image = |seed: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{v},"digest":"{}"}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":{v},"digest":"{}"}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":{v},"digest":"{}"}}]}}"#,
            sha256(format!("c{seed}").as_bytes()),
            sha256(format!("l1{seed}").as_bytes()),
            sha256(format!("l2{seed}").as_bytes()),
        )
        .into_bytes()
    };
    repo.put("image", image("image"), OCI_MANIFEST);
    let amd = repo.add(image("amd64"), OCI_MANIFEST);
    let arm = repo.add(image("arm64"), OCI_MANIFEST);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","size":{v},"digest":"{amd}","platform":{{"os":"linux","architecture":"amd64"}}}},{{"mediaType":"{OCI_MANIFEST}","size":{v},"digest":"{arm}","platform":{{"os":"linux","architecture":"arm64"}}}}]}}"#
    );
    repo.put("index", index.into_bytes(), OCI_INDEX);
    repo
}
