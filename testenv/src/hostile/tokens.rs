//! A bearer registry that wants a token for a new scope on every manifest request, and hands
//! out tokens of 1 MiB, each good for one request: whatever caches tokens by scope grows by a
//! megabyte per request.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use super::http::{Reply, Request};
use super::repo::{OCI_MANIFEST, Repo, Route, route, small_manifest};
use super::{Ctx, Mode};

pub(super) const REPOSITORY: &str = "tokens";
const TAGS: usize = 300;
/// The token's length: its JSON answer stays within a 1 MiB body limit.
pub const TOKEN_BYTES: usize = (1 << 20) - 512;

pub(super) struct Tokens {
    repo: Repo,
    /// Tokens issued and not used yet, by number.
    fresh: Mutex<HashSet<usize>>,
}

impl Default for Tokens {
    fn default() -> Self {
        let mut repo = Repo::default();
        for i in 0..TAGS {
            let tag = format!("{i}.0");
            repo.put(&tag, small_manifest(&tag), OCI_MANIFEST);
        }
        Self {
            repo,
            fresh: Mutex::new(HashSet::new()),
        }
    }
}

/// The number a token of ours carries (`f<n>-…`).
fn number(token: &str) -> Option<usize> {
    token.strip_prefix('f')?.split('-').next()?.parse().ok()
}

impl Mode for Tokens {
    fn answer(&self, ctx: &Ctx, req: &Request) -> Reply {
        let r = route(req);
        if let Route::Token = r {
            let n = ctx.counters.tokens.fetch_add(1, Ordering::Relaxed);
            let mut token = format!("f{n}-");
            token.extend(std::iter::repeat_n(
                'x',
                TOKEN_BYTES.saturating_sub(token.len()),
            ));
            ctx.counters
                .token_bytes
                .fetch_add(token.len() as u64, Ordering::Relaxed);
            if let Ok(mut fresh) = self.fresh.lock() {
                fresh.insert(n);
            }
            return Reply::json(200, format!(r#"{{"token":"{token}","expires_in":3600}}"#));
        }
        let sent = req.bearer().and_then(number);
        let ok = match (&r, sent) {
            // The tag list takes any token of ours; manifests take each token once.
            (Route::Base | Route::Tags(_), Some(_)) => true,
            (Route::Manifest(..) | Route::Blob(..), Some(n)) => {
                self.fresh.lock().is_ok_and(|mut f| f.remove(&n))
            }
            _ => false,
        };
        if ok || matches!(r, Route::Other) {
            return self.repo.answer(ctx, req);
        }
        let n = ctx.counters.requests.load(Ordering::Relaxed);
        let scope = match r {
            Route::Manifest(name, _) | Route::Blob(name) => {
                format!(",scope=\"repository:{name}:pull repository:fresh-{n}:pull\"")
            }
            Route::Tags(name) => format!(",scope=\"repository:{name}:pull\""),
            _ => String::new(),
        };
        let error = if sent.is_some() {
            ",error=\"insufficient_scope\""
        } else {
            ""
        };
        Reply::error(401, "UNAUTHORIZED", "authentication required").header(
            "WWW-Authenticate",
            format!(
                "Bearer realm=\"{}/token\",service=\"hostile\"{scope}{error}",
                ctx.base
            ),
        )
    }
}
