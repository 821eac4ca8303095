//! A small honest repository whose every answer carries the headers a test chose: for
//! property tests over the headers a scan reads (`X-RateLimit-*`, `Retry-After` …).

use super::http::{Reply, Request};
use super::repo::{OCI_MANIFEST, Repo, small_manifest};
use super::{Ctx, Mode};

pub(super) const REPOSITORY: &str = "h";

pub(super) struct Headers {
    headers: Vec<(String, String)>,
    repo: Repo,
}

impl Headers {
    pub fn new(headers: Vec<(String, String)>) -> Self {
        let mut repo = Repo::default();
        repo.put("1.0", small_manifest("1.0"), OCI_MANIFEST);
        Self { headers, repo }
    }
}

impl Mode for Headers {
    fn answer(&self, ctx: &Ctx, req: &Request) -> Reply {
        let mut reply = self.repo.answer(ctx, req);
        reply.headers.extend(self.headers.iter().cloned());
        reply
    }
}
