//! One webhook request, in the order that keeps unauthenticated senders cheap: the kind and
//! the announced length first, then the proof the headers or the query carry (no body byte is
//! read before it holds); a sender whose only proof is an HMAC of the body gets a small cap
//! and a share of a small budget. Every 202 reads the same, whether or not any object scans
//! the repository, and hand-overs to other replicas happen after the answer.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::shards::placement;
use super::targeted::Work;
use super::webhook::Webhooks;
use super::webhook_body::{self, BodyError};
use super::webhook_tenants::MAX_PER_NAMESPACE;
use crate::webhook::{self, Kind, MAX_BODY_BYTES, auth};

/// A body whose proof is its own HMAC is read before anyone knows the sender: this much at
/// most (GitHub's package events are a few KiB).
pub const UNAUTHENTICATED_BODY_BYTES: usize = 64 * 1024;

type Answer = (StatusCode, &'static str);

const ACCEPTED: Answer = (StatusCode::ACCEPTED, "accepted\n");
const UNAUTHORIZED: Answer = (
    StatusCode::UNAUTHORIZED,
    "missing or wrong webhook secret\n",
);

/// `POST /webhook/{kind}`: the cluster-wide secret, every namespace.
pub async fn cluster(
    State(hooks): State<Arc<Webhooks>>,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    respond(receive(hooks, None, &kind, query, request).await)
}

/// `POST /webhook/namespaces/{namespace}/{kind}`: the namespace's own Secrets, its objects.
pub async fn tenant(
    State(hooks): State<Arc<Webhooks>>,
    Path((namespace, kind)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    respond(receive(hooks, Some(namespace), &kind, query, request).await)
}

/// A refused sender's connection is closed after the answer: whatever it was still sending
/// is never read, and each new attempt starts over at the header read timeout and the
/// connection limit.
fn respond(answer: Answer) -> Response {
    let close = matches!(
        answer.0,
        StatusCode::UNAUTHORIZED
            | StatusCode::REQUEST_TIMEOUT
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::SERVICE_UNAVAILABLE
    );
    if close {
        (answer.0, [(header::CONNECTION, "close")], answer.1).into_response()
    } else {
        answer.into_response()
    }
}

async fn receive(
    hooks: Arc<Webhooks>,
    namespace: Option<String>,
    kind: &str,
    query: Option<String>,
    request: Request,
) -> Answer {
    let Some(kind) = Kind::parse(kind) else {
        hooks.count("unknown", "invalid");
        return (StatusCode::NOT_FOUND, "unknown webhook kind\n");
    };
    let name = kind.as_str();
    if namespace.as_deref().is_some_and(|ns| !dns_label(ns)) {
        hooks.count(name, "invalid");
        return (StatusCode::NOT_FOUND, "not a namespace\n");
    }
    let (parts, body) = request.into_parts();
    let declared = content_length(&parts.headers);
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        hooks.count(name, "too_large");
        return (StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB\n");
    }
    let authorization = parts.headers.get(header::AUTHORIZATION);
    let signature = parts.headers.get("x-hub-signature-256");
    if authorization.is_none() && query.is_none() && signature.is_none() {
        // Nothing to check: no Secret is read for it either.
        hooks.count(name, "unauthorized");
        return UNAUTHORIZED;
    }
    // Whose secrets may prove this request: `None` names the cluster-wide one.
    let secrets: Vec<(Option<String>, Arc<Vec<u8>>)> = match &namespace {
        None => vec![(None, hooks.secret.get())],
        Some(ns) => {
            let names = hooks.index.secrets_in(ns, MAX_PER_NAMESPACE);
            if names.is_empty() {
                Vec::new()
            } else {
                hooks
                    .tenants
                    .tokens(&hooks.ctx, ns, &names)
                    .await
                    .into_iter()
                    .map(|(n, t)| (Some(n), t))
                    .collect()
            }
        }
    };
    let proof = auth::Proof {
        authorization: parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
        query: query.as_deref(),
        hub_signature: None,
        body: &[],
    };
    let mut matched: Vec<Option<String>> = secrets
        .iter()
        .filter(|(_, s)| auth::by_header(s, &proof))
        .map(|(n, _)| n.clone())
        .collect();
    let body = if !matched.is_empty() {
        match webhook_body::read(body, MAX_BODY_BYTES, hooks.read_timeout).await {
            Ok(b) => b,
            Err(e) => return refused(&hooks, name, e),
        }
    } else {
        let Some(signature) = signature else {
            hooks.count(name, "unauthorized");
            return UNAUTHORIZED;
        };
        if secrets.is_empty() {
            hooks.count(name, "unauthorized");
            return UNAUTHORIZED;
        }
        if declared.is_some_and(|n| n > UNAUTHENTICATED_BODY_BYTES) {
            hooks.count(name, "too_large");
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "a body signed by its HMAC may hold 64 KiB at most\n",
            );
        }
        let Some(_reserved) = hooks
            .unauthenticated
            .reserve(declared.unwrap_or(UNAUTHENTICATED_BODY_BYTES))
        else {
            hooks.count(name, "busy");
            return (StatusCode::SERVICE_UNAVAILABLE, "busy, try again later\n");
        };
        let body =
            match webhook_body::read(body, UNAUTHENTICATED_BODY_BYTES, hooks.read_timeout).await {
                Ok(b) => b,
                Err(e) => return refused(&hooks, name, e),
            };
        matched = secrets
            .iter()
            .filter(|(_, s)| auth::by_signature(s, &body, signature.as_bytes()))
            .map(|(n, _)| n.clone())
            .collect();
        if matched.is_empty() {
            hooks.count(name, "unauthorized");
            return UNAUTHORIZED;
        }
        body
    };
    let events = match webhook::parse(kind, &body) {
        Ok(events) => events,
        Err(e) => {
            hooks.count(name, "invalid");
            tracing::info!(kind = name, error = %e, "unparsable webhook payload");
            return (StatusCode::BAD_REQUEST, "unparsable payload\n");
        }
    };
    if events.is_empty() {
        hooks.count(name, "ignored");
        return ACCEPTED;
    }
    // On a tenant's path, only its objects that name a Secret that proved the request.
    let allowed = |key: &str| match &namespace {
        None => true,
        Some(ns) => {
            key.split_once('/').is_some_and(|(k_ns, _)| k_ns == ns)
                && matched.contains(&hooks.index.secret_of(key))
        }
    };
    let mut work: HashMap<String, Work> = HashMap::new();
    for e in &events {
        for key in hooks.index.matching(e.host.as_deref(), &e.repository) {
            if !allowed(&key) {
                continue;
            }
            let mut one = Work::default();
            match &e.tag {
                Some(tag) => {
                    one.tags.insert(tag.clone());
                }
                None => one.digests.extend(e.digest.clone()),
            }
            work.entry(key).or_default().merge(one);
        }
    }
    if work.is_empty() {
        hooks.count(name, "no_match");
        return ACCEPTED;
    }
    let shards = hooks.ctx.shards.clone();
    let (mine, theirs): (Vec<_>, Vec<_>) = work.into_iter().partition(|(key, _)| {
        hooks
            .index
            .bucket_of(key)
            .is_some_and(|b| shards.is_held(placement::shard_of_bucket(b, shards.count())))
    });
    hooks.count(
        name,
        if theirs.is_empty() {
            "accepted"
        } else {
            "handed_over"
        },
    );
    for (key, w) in mine {
        hooks.refresher.submit(&hooks.ctx, key, w);
    }
    if !theirs.is_empty() {
        // After the answer: its timing must not tell that another replica's object matched.
        tokio::spawn(async move {
            for (key, w) in theirs {
                if let Err(e) = hooks.hand_over(&key, w).await {
                    tracing::warn!(registry = %key, error = %e, "handing a webhook event over failed; the periodic scan will catch up");
                }
            }
        });
    }
    ACCEPTED
}

fn refused(hooks: &Webhooks, kind: &'static str, e: BodyError) -> Answer {
    match e {
        BodyError::TooLarge => {
            hooks.count(kind, "too_large");
            (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n")
        }
        BodyError::Timeout => {
            hooks.count(kind, "timeout");
            (StatusCode::REQUEST_TIMEOUT, "body too slow\n")
        }
        BodyError::Broken => {
            hooks.count(kind, "invalid");
            (StatusCode::BAD_REQUEST, "unreadable body\n")
        }
    }
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// A namespace name (RFC 1123 label).
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
