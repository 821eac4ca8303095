//! Bodies that do not come: manifest GETs announce 4 MiB (just under the manifest limit, so
//! that a body budget reserves all of it) and then send nothing, or a byte every
//! [`super::TRICKLE_EVERY`] (which no idle timeout catches). HEADs and the tag list answer,
//! so every tag of every scan ends up holding one such body.

use super::http::{Body, Reply, Request};
use super::repo::{OCI_MANIFEST, Repo, Route, route, small_manifest};
use super::{Ctx, Mode, TRICKLE_EVERY};

pub(super) const REPOSITORY: &str = "stall";
const TAGS: usize = 64;
const DECLARED: u64 = (4 << 20) - 1;

pub(super) struct Stall {
    trickle: bool,
    repo: Repo,
}

impl Stall {
    pub fn new(trickle: bool) -> Self {
        let mut repo = Repo::default();
        for i in 0..TAGS {
            let tag = format!("{i}.0");
            repo.put(&tag, small_manifest(&tag), OCI_MANIFEST);
        }
        Self { trickle, repo }
    }
}

impl Mode for Stall {
    fn answer(&self, ctx: &Ctx, req: &Request) -> Reply {
        let reply = self.repo.answer(ctx, req);
        if req.method != "GET" || !matches!(route(req), Route::Manifest(..)) || reply.status != 200
        {
            return reply;
        }
        let reply = Reply {
            headers: reply
                .headers
                .into_iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("content-length"))
                .collect(),
            ..reply
        };
        if self.trickle {
            reply.with_body(Body::Trickle {
                declared: DECLARED,
                every: TRICKLE_EVERY,
            })
        } else {
            reply
                .header("Content-Length", DECLARED.to_string())
                .with_body(Body::Stall(Vec::new()))
        }
    }
}
