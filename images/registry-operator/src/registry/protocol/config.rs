//! An image's config blob, read only for its `created` (`spec.timestamps: Created`): which
//! config a manifest names, and one `GET /v2/<name>/blobs/<digest>` of it, verified against
//! its digest and size-limited.

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::digest::valid_digest;
use super::fetch::Fetched;
use super::manifest;
use crate::registry::Timestamp;
use crate::registry::artifact::is_image_config;
use crate::registry::error::ScanError;
use crate::registry::session::Session;
use crate::registry::transport::{RequestKind, offload};

/// Image configs are a few KiB (a very large history: tens of KiB). A config that says, or
/// turns out to be, larger is not read for a timestamp.
pub(crate) const CONFIG_BODY_LIMIT: usize = 1 << 20;

/// The config an image manifest names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConfigRef {
    pub digest: String,
    /// As the manifest declares it.
    pub size: Option<i64>,
}

/// What reading a config settled for good: its creation time, or that it has none to give
/// (no `created`, not a time, not JSON, too large, gone, not matching its digest).
pub(crate) type Created = Option<Timestamp>;

/// An image manifest's facts with the image config it names, when it names one: what an
/// artifact's config holds is no build time, so only image configs are offered.
pub(crate) fn attach(body: &[u8], fetched: Fetched) -> Fetched {
    match fetched {
        Fetched::Facts(f) => match config_of(body) {
            Some(config) => Fetched::Image(f, config),
            None => Fetched::Facts(f),
        },
        other => other,
    }
}

fn config_of(body: &[u8]) -> Option<ConfigRef> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Manifest {
        config: Descriptor,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Descriptor {
        media_type: String,
        digest: String,
        #[serde(default)]
        size: Option<i64>,
    }
    let m: Manifest = serde_json::from_slice(body).ok()?;
    let c = m.config;
    (is_image_config(&c.media_type) && valid_digest(&c.digest)).then_some(ConfigRef {
        digest: c.digest,
        size: c.size,
    })
}

/// GETs `config` and reads its `created`. `Ok` is final (remember it, never ask again);
/// `Err` is a failure worth another try on a later scan (the registry failed or refused).
pub(crate) async fn read_created(
    session: &Session<'_>,
    config: &ConfigRef,
) -> Result<Created, ScanError> {
    if config
        .size
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > CONFIG_BODY_LIMIT))
    {
        return Ok(None);
    }
    let url = session.target.blob_url(&config.digest);
    let reply = match session
        .send(
            RequestKind::BlobGet,
            Method::GET,
            url.clone(),
            None,
            CONFIG_BODY_LIMIT,
        )
        .await
    {
        Ok(reply) => reply,
        Err(ScanError::ResponseTooLarge { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    match reply.status {
        // Content-addressed: a config the registry does not have will not appear later.
        StatusCode::NOT_FOUND => Ok(None),
        s if s.is_success() => {
            let body = reply.body.clone();
            let digest = config.digest.clone();
            Ok(offload(session.tenant, body.len(), move || {
                created_in(&body, &digest)
            })
            .await)
        }
        _ => Err(session.status_error(&Method::GET, &url, &reply)),
    }
}

/// The config's `created`, if the body is the blob `digest` names and holds a meaningful one.
fn created_in(body: &[u8], digest: &str) -> Created {
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        created: Option<String>,
    }
    let algorithm = digest.split_once(':').map(|(a, _)| a)?;
    if manifest::digest_of(body, algorithm).as_deref() != Some(digest) {
        tracing::warn!(%digest, "image config does not match its digest; no creation time");
        return None;
    }
    let config: Config = serde_json::from_slice(body).ok()?;
    config
        .created
        .as_deref()
        .and_then(Timestamp::parse)
        .and_then(Timestamp::meaningful)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(body: &[u8]) -> String {
        manifest::digest_of(body, "sha256").unwrap()
    }

    #[test]
    fn created_is_read_only_from_the_blob_the_digest_names() {
        let body = br#"{"architecture":"amd64","created":"2024-05-01T10:20:30.123456789+02:00","os":"linux"}"#;
        assert_eq!(
            created_in(body, &sha(body))
                .map(|t| t.to_string())
                .as_deref(),
            Some("2024-05-01T08:20:30Z")
        );
        assert_eq!(created_in(body, &sha(b"other")), None, "wrong blob");
        for body in [
            &br#"{"os":"linux"}"#[..],
            br#"{"created":"1970-01-01T00:00:00Z"}"#,
            br#"{"created":"0001-01-01T00:00:00Z"}"#,
            br#"{"created":"last tuesday"}"#,
            br#"{"created":12345}"#,
            b"not json",
        ] {
            assert_eq!(created_in(body, &sha(body)), None, "{body:?}");
        }
    }

    #[test]
    fn only_image_configs_are_offered() {
        let d = format!("sha256:{}", "a".repeat(64));
        let manifest = |media_type: &str| {
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"{media_type}","digest":"{d}","size":1469}},"layers":[]}}"#
            )
        };
        assert_eq!(
            config_of(manifest("application/vnd.oci.image.config.v1+json").as_bytes()),
            Some(ConfigRef {
                digest: d.clone(),
                size: Some(1469)
            })
        );
        assert!(
            config_of(manifest("application/vnd.docker.container.image.v1+json").as_bytes())
                .is_some()
        );
        assert_eq!(
            config_of(manifest("application/vnd.cncf.helm.config.v1+json").as_bytes()),
            None
        );
        assert_eq!(
            config_of(manifest(crate::registry::artifact::EMPTY_CONFIG).as_bytes()),
            None
        );
        assert_eq!(config_of(br#"{"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"nope"}}"#), None);
        assert_eq!(config_of(b"[]"), None);
    }
}
