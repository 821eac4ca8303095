//! GitHub Packages (ghcr.io) webhooks: `package` and `registry_package` events, action
//! `published`/`updated`, with `package_version.container_metadata.tag` {name, digest} and
//! `package_version.package_url` (`ghcr.io/owner/name:tag`). Signed with
//! `X-Hub-Signature-256` (see auth.rs). A `ping` (`zen`) carries no event.
//! https://docs.github.com/en/webhooks/webhook-events-and-payloads#package
//! https://docs.github.com/en/webhooks/webhook-events-and-payloads#registry_package

use serde_json::Value;

use super::{Action, Event, ParseError, host_of, shape, str_at};

pub fn parse(v: &Value) -> Result<Vec<Event>, ParseError> {
    if v.get("zen").is_some() {
        return Ok(Vec::new());
    }
    let package = v
        .get("package")
        .or_else(|| v.get("registry_package"))
        .ok_or_else(|| {
            shape("no \"package\" or \"registry_package\" (not a GitHub package event)")
        })?;
    if !matches!(
        v.get("action").and_then(Value::as_str),
        Some("published" | "updated")
    ) {
        return Ok(Vec::new());
    }
    let kind = str_at(package, &["package_type"]).unwrap_or_default();
    if !kind.eq_ignore_ascii_case("container") && !kind.eq_ignore_ascii_case("docker") {
        return Ok(Vec::new());
    }
    let version = package
        .get("package_version")
        .ok_or_else(|| shape("no package_version"))?;
    let Some(tag) =
        str_at(version, &["container_metadata", "tag", "name"]).filter(|t| !t.is_empty())
    else {
        return Ok(Vec::new()); // an untagged version (a platform manifest, a signature)
    };
    let url = str_at(version, &["package_url"]).unwrap_or_default();
    let (host, repository) = match reference(url) {
        Some((host, repository)) => (Some(host), repository),
        None => {
            let owner = str_at(package, &["owner", "login"]).ok_or_else(|| shape("no owner"))?;
            let name = str_at(package, &["name"]).ok_or_else(|| shape("no package name"))?;
            (None, format!("{owner}/{name}").to_ascii_lowercase())
        }
    };
    Ok(vec![Event {
        host,
        repository,
        tag: Some(tag.to_string()),
        digest: str_at(version, &["container_metadata", "tag", "digest"]).map(str::to_string),
        action: Action::Push,
    }])
}

/// `ghcr.io/owner/name:tag` → (`ghcr.io`, `owner/name`).
fn reference(url: &str) -> Option<(String, String)> {
    let host = host_of(url)?;
    let path = url.strip_prefix(&host)?.trim_start_matches('/');
    let path = path.split('@').next()?;
    let repository = match path.rsplit_once(':') {
        Some((repo, _tag)) => repo,
        None => path,
    };
    (!repository.is_empty()).then(|| (host, repository.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::super::{Kind, parse};

    /// A `package` event as GitHub documents its fields (trimmed to what identifies the image).
    const PUBLISHED: &str = include_str!("testdata/ghcr-package-published.json");

    #[test]
    fn published_container_version() {
        let e = parse(Kind::Ghcr, PUBLISHED.as_bytes()).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].host.as_deref(), Some("ghcr.io"));
        assert_eq!(e[0].repository, "octo-org/hello-world");
        assert_eq!(e[0].tag.as_deref(), Some("v1.2.0"));
        assert!(e[0].digest.is_some());
    }

    #[test]
    fn registry_package_without_url_ping_and_npm() {
        let legacy = PUBLISHED
            .replace("\"package\":", "\"registry_package\":")
            .replace(
                "\"package_url\": \"ghcr.io/octo-org/hello-world:v1.2.0\"",
                "\"package_url\": \"\"",
            );
        let e = parse(Kind::Ghcr, legacy.as_bytes()).unwrap();
        assert_eq!(e[0].repository, "octo-org/hello-world");
        assert_eq!(e[0].host.as_deref(), Some("ghcr.io"));
        assert_eq!(
            parse(Kind::Ghcr, br#"{"zen": "Keep it simple.", "hook_id": 1}"#).unwrap(),
            []
        );
        let npm = PUBLISHED.replace(
            "\"package_type\": \"CONTAINER\"",
            "\"package_type\": \"npm\"",
        );
        assert_eq!(parse(Kind::Ghcr, npm.as_bytes()).unwrap(), []);
    }
}
