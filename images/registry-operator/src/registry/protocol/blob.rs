//! `HEAD /v2/<name>/blobs/<digest>`: a blob's size, for schema 1 manifests that list none.

use reqwest::Method;
use reqwest::header::CONTENT_LENGTH;

use super::digest::valid_digest;
use crate::registry::error::ScanError;
use crate::registry::session::Session;
use crate::registry::transport::RequestKind;

pub(crate) async fn blob_size(session: &Session<'_>, digest: &str) -> Result<i64, ScanError> {
    if !valid_digest(digest) {
        return Err(ScanError::InvalidResponse {
            registry: session.target.registry(),
            what: "schema 1 manifest".into(),
            detail: "a blobSum is not a digest".into(),
        });
    }
    let url = session.target.blob_url(digest);
    let reply = session
        .send(RequestKind::BlobHead, Method::HEAD, url.clone(), None, 0)
        .await?;
    if !reply.status.is_success() {
        return Err(session.status_error(&Method::HEAD, &url, &reply));
    }
    reply
        .header(CONTENT_LENGTH.as_str())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| session.invalid(&Method::HEAD, &url, "no Content-Length".into()))
}
