//! Which registry and repository a scan talks to, and the API URLs that follow from them.

use url::Url;

use super::ScanError;

/// Hosts that all mean Docker Hub; its API lives on `registry-1.docker.io`.
const DOCKER_HUB_ALIASES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A normalised registry endpoint plus repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    base: Url,
    repository: String,
}

impl Target {
    /// Accepts `https://host[:port][/prefix]`, `http://…`, or a bare host (HTTPS is assumed).
    /// A trailing `/v2` is dropped; a single-segment repository on Docker Hub gains `library/`.
    pub fn new(url: &str, repository: &str) -> Result<Self, ScanError> {
        let raw = url.trim();
        let with_scheme = if raw.contains("://") {
            raw.to_string()
        } else {
            format!("https://{raw}")
        };
        let mut base = Url::parse(&with_scheme).map_err(|e| {
            ScanError::InvalidConfig(format!("url {raw:?} is not a valid URL: {e}"))
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ScanError::InvalidConfig(format!(
                "url {raw:?} must start with http:// or https://"
            )));
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(ScanError::InvalidConfig(format!("url {raw:?} has no host")));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(ScanError::InvalidConfig(
                "url must not carry credentials; use a credentials Secret".into(),
            ));
        }
        base.set_query(None);
        base.set_fragment(None);
        let path = base.path().trim_end_matches('/');
        let path = path.strip_suffix("/v2").unwrap_or(path).to_string();
        base.set_path(&path);

        let mut repository = repository.trim().trim_matches('/').to_string();
        if repository.is_empty() {
            return Err(ScanError::InvalidConfig("repository is empty".into()));
        }
        if !valid_repository(&repository) {
            return Err(ScanError::InvalidConfig(format!(
                "repository {:?} is not a valid repository path: lowercase components of [a-z0-9] separated by '.', '_', '__' or '-', joined by '/' (at most {MAX_REPOSITORY} characters)",
                repository.chars().take(80).collect::<String>()
            )));
        }
        let host = base.host_str().unwrap_or_default().to_ascii_lowercase();
        if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
            base.set_host(Some(DOCKER_HUB_API))
                .map_err(|e| ScanError::InvalidConfig(e.to_string()))?;
            base.set_scheme("https").ok();
            base.set_port(None).ok();
            if !repository.contains('/') {
                repository = format!("library/{repository}");
            }
        }
        Ok(Self { base, repository })
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `host[:port]`, as credentials and messages name the registry.
    pub fn registry(&self) -> String {
        match self.base.port() {
            Some(port) => format!("{}:{port}", self.base.host_str().unwrap_or_default()),
            None => self.base.host_str().unwrap_or_default().to_string(),
        }
    }

    pub fn is_docker_hub(&self) -> bool {
        self.base.host_str() == Some(DOCKER_HUB_API)
    }

    /// The registry's base URL (scheme, host, port, path prefix) without `/v2`.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn api(&self, rest: &str) -> Url {
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{prefix}/v2/{rest}"));
        url
    }

    pub fn tags_url(&self, page_size: Option<u32>) -> Url {
        let mut url = self.api(&format!("{}/tags/list", self.repository));
        if let Some(n) = page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        url
    }

    pub fn manifest_url(&self, reference: &str) -> Url {
        self.api(&format!("{}/manifests/{reference}", self.repository))
    }

    pub fn referrers_url(&self, digest: &str) -> Url {
        self.api(&format!("{}/referrers/{digest}", self.repository))
    }

    pub fn blob_url(&self, digest: &str) -> Url {
        self.api(&format!("{}/blobs/{digest}", self.repository))
    }

    /// Resolves a `Link` target against the URL of the request that returned it (RFC 8288
    /// §3.2): registries send root-relative (`/v2/…?last=…`), relative or absolute links. An
    /// absolute link to another host (a proxy that reports its internal name) keeps only its
    /// path and query: credentials never go to another host.
    pub fn resolve_link(&self, link: &str, request: &Url) -> Result<Url, String> {
        let url = request
            .join(link)
            .map_err(|e| format!("invalid Link {link:?}: {e}"))?;
        if url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
            && url.scheme() == self.base.scheme()
        {
            return Ok(url);
        }
        let mut same_host = self.base.clone();
        same_host.set_path(url.path());
        same_host.set_query(url.query());
        same_host.set_fragment(None);
        Ok(same_host)
    }
}

/// The distribution spec's bound on a repository name (as the Registry CRD's).
pub const MAX_REPOSITORY: usize = 255;

/// The distribution spec's repository name grammar: lower-case path components of
/// `[a-z0-9]` joined by `.`, `_`, `__` or dashes, separated by `/` — the CRD's rule too, so a
/// name a sender or a CLI user gives is held to what admission holds a spec to.
pub fn valid_repository(r: &str) -> bool {
    static GRAMMAR: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$",
        )
        .ok()
    });
    r.len() <= MAX_REPOSITORY && GRAMMAR.as_ref().is_some_and(|g| g.is_match(r))
}

/// A tag name as the distribution spec defines it: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_follow_the_distribution_grammar_as_the_crd_does() {
        for ok in ["app", "library/nginx", "a.b_c__d---e/f-1", "bitnami/redis"] {
            assert!(Target::new("https://r.example", ok).is_ok(), "{ok}");
        }
        for bad in [
            "App",
            "a//b",
            "../etc",
            "a/./b",
            "-a",
            "a_",
            "a___b",
            "a b",
            &"a".repeat(256),
        ] {
            let e = Target::new("https://r.example", bad).unwrap_err();
            assert!(
                e.to_string().contains("not a valid repository path"),
                "{bad}: {e}"
            );
        }
        // The CLI trims slashes and blanks, as before.
        assert_eq!(
            Target::new("https://r.example", " /app/ ")
                .unwrap()
                .repository(),
            "app"
        );
    }

    #[test]
    fn docker_hub_aliases_are_one_registry_with_library_prefix() {
        for url in [
            "https://docker.io",
            "index.docker.io",
            "https://registry-1.docker.io/v2/",
        ] {
            let t = Target::new(url, "nginx").unwrap();
            assert!(t.is_docker_hub());
            assert_eq!(t.repository(), "library/nginx");
            assert_eq!(
                t.manifest_url("latest").as_str(),
                "https://registry-1.docker.io/v2/library/nginx/manifests/latest"
            );
        }
        let t = Target::new("docker.io", "bitnami/redis").unwrap();
        assert_eq!(t.repository(), "bitnami/redis");
    }

    #[test]
    fn other_registries_keep_repository_and_prefix() {
        let t = Target::new("http://127.0.0.1:5000", "app").unwrap();
        assert_eq!(t.repository(), "app");
        assert_eq!(t.registry(), "127.0.0.1:5000");
        assert_eq!(
            t.tags_url(Some(100)).as_str(),
            "http://127.0.0.1:5000/v2/app/tags/list?n=100"
        );
        let t = Target::new("https://host/artifactory/api/docker/repo/", "a/b").unwrap();
        assert_eq!(
            t.manifest_url("sha256:00").as_str(),
            "https://host/artifactory/api/docker/repo/v2/a/b/manifests/sha256:00"
        );
    }

    #[test]
    fn bad_urls_are_refused_plainly() {
        assert!(Target::new("ftp://x", "a").is_err());
        assert!(Target::new("https://user:pw@host", "a").is_err());
        assert!(Target::new("https://host", "a//b").is_err());
        assert!(Target::new("https://host", "").is_err());
    }

    #[test]
    fn links_resolve_against_the_request_url_and_never_leave_the_host() {
        let t = Target::new("http://127.0.0.1:5000/prefix", "app").unwrap();
        let request = t.tags_url(Some(2));
        let resolve = |link: &str| t.resolve_link(link, &request).unwrap().to_string();
        assert_eq!(
            resolve("/v2/app/tags/list?last=b&n=2"),
            "http://127.0.0.1:5000/v2/app/tags/list?last=b&n=2"
        );
        assert_eq!(
            resolve("list?last=b&n=2"),
            "http://127.0.0.1:5000/prefix/v2/app/tags/list?last=b&n=2",
            "relative to the request, not the root"
        );
        assert_eq!(
            resolve("?last=e"),
            "http://127.0.0.1:5000/prefix/v2/app/tags/list?last=e"
        );
        assert_eq!(
            resolve("http://127.0.0.1:5000/v2/app/tags/list?last=c"),
            "http://127.0.0.1:5000/v2/app/tags/list?last=c"
        );
        assert_eq!(
            resolve("http://internal:5000/v2/app/tags/list?last=d"),
            "http://127.0.0.1:5000/v2/app/tags/list?last=d",
            "another host's link keeps only path and query"
        );
    }

    #[test]
    fn tag_names_are_checked_before_they_reach_a_path() {
        for ok in ["latest", "1.0", "v1.2.3-rc_1", "_x", &"a".repeat(128)] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "-a",
            ".a",
            "a?b",
            "a#b",
            "a b",
            "ä",
            &"a".repeat(129),
        ] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }
}
