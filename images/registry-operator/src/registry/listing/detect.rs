//! Which native listing API a registry has. Hosts say it for the big clouds; Harbor and Quay
//! answer an anonymous probe (`GET /api/v2.0/systeminfo`, `GET /api/v1/discovery`). The answer
//! is remembered per registry in the shared state, so probes run once per operator process.

use reqwest::{Method, StatusCode};
use url::Url;

use super::{Lister, Listers};
use crate::registry::ScanError;
use crate::registry::session::Session;
use crate::registry::target::Target;
use crate::registry::transport::{RequestKind, offload};

const PROBE_BODY_LIMIT: usize = 1 << 20;

/// The vendor a registry host belongs to, when the host alone says it.
pub fn detect_by_host(target: &Target) -> Option<Lister> {
    if target.base_url().scheme() != "https" {
        return None;
    }
    let host = target.base_url().host_str()?.to_ascii_lowercase();
    if target.is_docker_hub() {
        return Some(Lister::DockerHub);
    }
    if host == "gcr.io" || host.ends_with(".gcr.io") || host.ends_with("-docker.pkg.dev") {
        return Some(Lister::Gar);
    }
    if host.ends_with(".azurecr.io") {
        return Some(Lister::Acr);
    }
    None
}

pub(super) async fn detect(session: &Session<'_>, listers: &Listers) -> Lister {
    let target = session.target;
    if let Some(l) = detect_by_host(target) {
        return l;
    }
    let base = target.base_url().to_string();
    if let Some(l) = listers.detected(&base) {
        return l;
    }
    // Anonymous probes on their own auth scope, so they never disturb the registry's.
    let probe = session.sibling(target, None, "probe");
    let found = match probe_json(&probe, "api/v2.0/systeminfo").await {
        // Harbor's GeneralInfo; anonymous callers get a subset that still has `auth_mode`
        // (harbor/api/v2.0/swagger.yaml, definitions.GeneralInfo).
        Ok(Some(v)) if v.get("auth_mode").is_some_and(|m| m.is_string()) => Some(Lister::Harbor),
        Ok(_) => match probe_json(&probe, "api/v1/discovery").await {
            // Quay lists its API in Swagger 2.0 format (Red Hat Quay API reference,
            // "discovery"): `paths` holds the repository endpoints.
            Ok(Some(v))
                if v.get("paths")
                    .and_then(|p| p.as_object())
                    .is_some_and(|p| p.keys().any(|k| k.starts_with("/api/v1/repository"))) =>
            {
                Some(Lister::Quay)
            }
            Ok(_) => Some(Lister::Distribution),
            Err(()) => None,
        },
        Err(()) => None,
    };
    match found {
        Some(l) => {
            listers.detected_as(session.tenant, &base, l);
            l
        }
        // The network failed: try again next scan.
        None => Lister::Distribution,
    }
}

/// `Ok(Some(json))` on a 200 with a JSON body, `Ok(None)` on any other answer, `Err` when no
/// answer came.
async fn probe_json(session: &Session<'_>, path: &str) -> Result<Option<serde_json::Value>, ()> {
    let url = api_url(session.target, path);
    match session
        .send(
            RequestKind::NativeList,
            Method::GET,
            url,
            Some("application/json"),
            PROBE_BODY_LIMIT,
        )
        .await
    {
        Ok(r) if r.status == StatusCode::OK => {
            let body = r.body.clone();
            Ok(offload(session.tenant, body.len(), move || {
                serde_json::from_slice(&body).ok()
            })
            .await)
        }
        Ok(_) => Ok(None),
        // A refusal (401/403) or an error status is an answer: not this vendor, or not for
        // anonymous callers.
        Err(
            ScanError::Unauthorized { .. }
            | ScanError::NotAccessible { .. }
            | ScanError::Status { .. }
            | ScanError::InvalidResponse { .. },
        ) => Ok(None),
        Err(_) => Err(()),
    }
}

/// `path` under the registry's base URL (its path prefix kept).
pub(super) fn api_url(target: &Target, path: &str) -> Url {
    let mut url = target.base_url().clone();
    let prefix = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{prefix}/{path}"));
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_their_vendor() {
        let of = |url: &str| detect_by_host(&Target::new(url, "a/b").unwrap());
        assert_eq!(of("docker.io"), Some(Lister::DockerHub));
        assert_eq!(of("https://registry-1.docker.io"), Some(Lister::DockerHub));
        assert_eq!(of("gcr.io"), Some(Lister::Gar));
        assert_eq!(of("eu.gcr.io"), Some(Lister::Gar));
        assert_eq!(of("europe-west1-docker.pkg.dev"), Some(Lister::Gar));
        assert_eq!(of("myreg.azurecr.io"), Some(Lister::Acr));
        assert_eq!(
            of("http://myreg.azurecr.io"),
            None,
            "plain HTTP is not the vendor"
        );
        assert_eq!(of("registry.example.com"), None);
        assert_eq!(of("notgcr.io"), None);
        assert_eq!(of("azurecr.io.evil.example"), None);
    }
}
