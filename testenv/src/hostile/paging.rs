//! distribution 2.x's tag list (Debian's `docker-registry` 2.8, `registry:2`): `n` and `last`
//! are ignored, every answer holds every tag, unsorted, and there is no `Link`. With exactly
//! as many tags as a scanner's page size, a scanner that asks again after a full page gets the
//! same page back.

use std::sync::atomic::Ordering;

use super::http::{Reply, Request};
use super::repo::{OCI_MANIFEST, Repo, Route, route, small_manifest};
use super::{Ctx, Mode};

pub(super) const REPOSITORY: &str = "old";

pub(super) struct Paging {
    repo: Repo,
}

impl Paging {
    pub fn new(tags: usize) -> Self {
        let mut repo = Repo::default();
        let digest = repo.add(small_manifest("old"), OCI_MANIFEST);
        // Version-like names in a fixed scrambled order (multiplying by a number prime to
        // the count permutes 0..count).
        let step = (1..)
            .map(|k| 7919 * k)
            .find(|s| gcd(*s, tags.max(1)) == 1)
            .unwrap_or(1);
        let mut names: Vec<String> = (0..tags)
            .map(|i| {
                let j = (i * step) % tags.max(1);
                format!("1.{}.{}", j / 10, j % 10)
            })
            .collect();
        // The page starts above where it ends (as in the wild): a scanner that takes a page
        // starting at or before the `last` it sent for the end of the list is not fooled.
        if let Some(max) = (0..names.len()).max_by(|&a, &b| names[a].cmp(&names[b])) {
            names.swap(0, max);
        }
        if let Some(min) = (1..names.len()).min_by(|&a, &b| names[a].cmp(&names[b])) {
            let last = names.len() - 1;
            names.swap(last, min);
        }
        for name in &names {
            repo.tag(name, &digest);
        }
        Self { repo }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Mode for Paging {
    fn answer(&self, ctx: &Ctx, req: &Request) -> Reply {
        if let Route::Tags(name) = route(req) {
            ctx.counters.tag_lists.fetch_add(1, Ordering::Relaxed);
            return self.repo.tags_reply(name);
        }
        self.repo.answer(ctx, req)
    }
}
