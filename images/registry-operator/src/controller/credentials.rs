//! Reading a Registry's Secrets: credentials (`username`/`password`, or a
//! `kubernetes.io/dockerconfigjson` entry for the registry's host) and a PEM CA bundle.
//!
//! `.dockerconfigjson` is parsed here on purpose: credential-helper programs named in a
//! tenant's Secret must never run inside the operator.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::registry::{Credentials, Target};
use crate::status::{REASON_SECRET_INVALID, REASON_SECRET_NOT_FOUND};

/// Why the Secret could not be used; `reason` becomes the `Ready` condition's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem {
    pub reason: &'static str,
    pub message: String,
}

/// The Secret, or why the user must fix it. Only a 404 means "not found": any other API error
/// (403, 429, 5xx, a timeout) is returned as is, for the retry path.
pub async fn fetch(
    api: &Api<Secret>,
    name: &str,
    what: &str,
) -> Result<Result<Secret, SecretProblem>, kube::Error> {
    Ok(match api.get_opt(name).await? {
        Some(s) => Ok(s),
        None => Err(SecretProblem {
            reason: REASON_SECRET_NOT_FOUND,
            message: format!(
                "{what} Secret {name:?} not found in namespace {:?}",
                api_namespace(api)
            ),
        }),
    })
}

fn api_namespace(api: &Api<Secret>) -> String {
    api.resource_url()
        .split('/')
        .nth(4)
        .unwrap_or_default()
        .to_string()
}

fn data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, ByteString(v))| (k.clone(), v.clone()))
        .collect();
    // stringData only appears on objects that were never stored; honour it for completeness.
    for (k, v) in secret.string_data.iter().flatten() {
        out.entry(k.clone())
            .or_insert_with(|| v.clone().into_bytes());
    }
    out
}

/// The key of a tenant's webhook Secret that holds its senders' token (as in Flux's Receiver).
pub const WEBHOOK_TOKEN_KEY: &str = "token";
/// Longer tokens are refused: no sender needs one, and each request hashes every candidate.
const MAX_WEBHOOK_TOKEN: usize = 4096;

/// The senders' token of a tenant webhook Secret; `None` when it has none worth comparing.
pub fn webhook_token(secret: &Secret) -> Option<Vec<u8>> {
    let token = data(secret).remove(WEBHOOK_TOKEN_KEY)?;
    let token = token.trim_ascii();
    (!token.is_empty() && token.len() <= MAX_WEBHOOK_TOKEN).then(|| token.to_vec())
}

/// Credentials for `target` from a Secret with `username`/`password` keys or a docker config.
pub fn credentials_from(secret: &Secret, target: &Target) -> Result<Credentials, SecretProblem> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let invalid = |message: String| SecretProblem {
        reason: REASON_SECRET_INVALID,
        message,
    };
    let data = data(secret);
    if let Some(config) = data
        .get(".dockerconfigjson")
        .or_else(|| data.get(".dockercfg"))
    {
        return from_docker_config(config, target)
            .map_err(|e| invalid(format!("Secret {name:?}: {e}")));
    }
    let text = |key: &str| -> Result<String, SecretProblem> {
        let raw = data
            .get(key)
            .ok_or_else(|| invalid(format!("Secret {name:?} has no {key:?} key (expected username and password, or .dockerconfigjson)")))?;
        let value = String::from_utf8(raw.clone())
            .map_err(|_| invalid(format!("Secret {name:?}: {key:?} is not UTF-8 text")))?;
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(invalid(format!("Secret {name:?}: {key:?} is empty")));
        }
        Ok(value)
    };
    Ok(Credentials::new(text("username")?, text("password")?))
}

/// Picks the `auths` entry for the registry host (Docker Hub under any of its names).
fn from_docker_config(raw: &[u8], target: &Target) -> Result<Credentials, String> {
    #[derive(serde::Deserialize)]
    struct Config {
        auths: Option<BTreeMap<String, Entry>>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        username: Option<String>,
        password: Option<String>,
        auth: Option<String>,
    }
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|_| "docker config is not valid JSON".to_string())?;
    // Legacy .dockercfg has the entries at the top level.
    let auths = match serde_json::from_value::<Config>(value.clone()) {
        Ok(Config { auths: Some(a) }) => a,
        _ => serde_json::from_value(value)
            .map_err(|_| "docker config has no \"auths\" entries".to_string())?,
    };
    let wanted = target.registry();
    let entry = auths
        .iter()
        .find(|(key, _)| {
            host_of(key) == wanted || (target.is_docker_hub() && is_docker_hub_key(key))
        })
        .map(|(_, e)| e)
        .ok_or_else(|| {
            format!(
                "docker config has no entry for {wanted} (entries: {})",
                auths.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
    if let (Some(u), Some(p)) = (&entry.username, &entry.password)
        && !u.is_empty()
    {
        return Ok(Credentials::new(u.clone(), p.clone()));
    }
    let auth = entry
        .auth
        .as_deref()
        .ok_or("docker config entry has neither username/password nor auth")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| "docker config entry's auth is not base64".to_string())?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| "docker config entry's auth is not UTF-8".to_string())?;
    let (u, p) = decoded
        .split_once(':')
        .ok_or("docker config entry's auth is not user:password")?;
    Ok(Credentials::new(u, p))
}

/// `https://host:port/v1/` or `host:port` → `host:port`.
fn host_of(key: &str) -> String {
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn is_docker_hub_key(key: &str) -> bool {
    matches!(
        host_of(key).as_str(),
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    )
}

/// The PEM bundle under `key` (default `ca.crt`).
pub fn ca_from(secret: &Secret, key: Option<&str>) -> Result<Vec<u8>, SecretProblem> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let key = key.unwrap_or("ca.crt");
    data(secret)
        .remove(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| SecretProblem {
            reason: REASON_SECRET_INVALID,
            message: format!("CA Secret {name:?} has no {key:?} key with a PEM bundle"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            },
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn username_password_keys() {
        let t = Target::new("https://r.example", "a").unwrap();
        let c = credentials_from(&secret(&[("username", "u"), ("password", "p\n")]), &t).unwrap();
        assert_eq!(c, Credentials::new("u", "p"));
        let e = credentials_from(&secret(&[("username", "u")]), &t).unwrap_err();
        assert_eq!(e.reason, REASON_SECRET_INVALID);
        assert!(e.message.contains("\"password\""));
    }

    #[test]
    fn dockerconfigjson_picks_the_host_and_hub_aliases() {
        let cfg = r#"{"auths":{"r.example:5000":{"auth":"dTE6cDE="},"https://index.docker.io/v1/":{"username":"hub","password":"hp"}}}"#;
        let s = secret(&[(".dockerconfigjson", cfg)]);
        let own = Target::new("https://r.example:5000", "a").unwrap();
        assert_eq!(
            credentials_from(&s, &own).unwrap(),
            Credentials::new("u1", "p1")
        );
        let hub = Target::new("https://registry-1.docker.io", "nginx").unwrap();
        assert_eq!(
            credentials_from(&s, &hub).unwrap(),
            Credentials::new("hub", "hp")
        );
        let other = Target::new("https://elsewhere", "a").unwrap();
        let e = credentials_from(&s, &other).unwrap_err();
        assert!(
            e.message.contains("no entry for elsewhere"),
            "{}",
            e.message
        );
    }

    #[test]
    fn broken_docker_config_is_reported_without_content() {
        let s = secret(&[(".dockerconfigjson", "{not json secretvalue")]);
        let t = Target::new("https://r", "a").unwrap();
        let e = credentials_from(&s, &t).unwrap_err();
        assert!(!e.message.contains("secretvalue"));
    }
}
