//! Smoke tests of the registry half of testenv: a real distribution registry (plain, TLS,
//! htpasswd, token auth), the pusher, the token server and the fault-injecting proxy.

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;
use testenv::fault::{Fault, FaultAction, FaultProxy};
use testenv::push::{
    ACCEPT_MANIFESTS, DOCKER_MANIFEST, Format, ImageSpec, OCI_INDEX, OCI_MANIFEST, Pusher,
    sha256_digest,
};
use testenv::registry::{RegistryAuth, RegistryOptions, RegistryServer, http_client};
use testenv::token::{TokenField, TokenOptions};

const USER: &str = "alice";
const PASS: &str = "wonderland";

async fn tags(client: &reqwest::Client, base: &str, repo: &str) -> Vec<String> {
    let resp = client
        .get(format!("{base}/v2/{repo}/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// GET and HEAD a manifest; check the bytes hash to `digest` and the headers agree.
async fn check_manifest(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
    digest: &str,
    media_type: &str,
) -> Vec<u8> {
    let url = format!("{base}/v2/{repo}/manifests/{reference}");
    let resp = client
        .get(&url)
        .header("Accept", ACCEPT_MANIFESTS)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
    let header_digest = resp.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    let body = resp.bytes().await.unwrap().to_vec();
    assert_eq!(
        sha256_digest(&body),
        digest,
        "{reference}: digest of the bytes"
    );
    assert_eq!(header_digest, digest, "{reference}: Docker-Content-Digest");
    assert_eq!(content_type, media_type, "{reference}: Content-Type");

    let head = client
        .head(&url)
        .header("Accept", ACCEPT_MANIFESTS)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["docker-content-digest"], digest);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        body.len().to_string()
    );
    body
}

#[tokio::test]
async fn plain_registry_push_and_read_back() {
    let reg = RegistryServer::start(RegistryOptions::default())
        .await
        .unwrap();
    assert!(reg.url.starts_with("http://127.0.0.1:"));
    assert_eq!(reg.url, format!("http://{}", reg.host()));
    let client = reg.client().unwrap();
    let pusher = Pusher::new(&reg, None).unwrap();
    let repo = "team/app";

    let docker = ImageSpec::new(Format::Docker, 1, &[1024, 2048]);
    let docker_img = pusher
        .push_image(repo, Some("docker-1"), &docker)
        .await
        .unwrap();
    assert_eq!(docker_img.media_type, DOCKER_MANIFEST);
    let config_len = docker.build().config.data.len() as i64;
    assert_eq!(docker_img.size, config_len + 1024 + 2048);

    let amd = ImageSpec::new(Format::Oci, 2, &[4096]);
    let arm = ImageSpec::new(Format::Oci, 3, &[512]).platform("linux", "arm64", Some("v8"));
    let amd_img = pusher.push_image(repo, Some("oci-1"), &amd).await.unwrap();
    let arm_img = pusher.push_image(repo, None, &arm).await.unwrap();
    assert_eq!(arm_img.platform, "linux/arm64/v8");
    let index = pusher
        .push_index(
            repo,
            Some("multi"),
            Format::Oci,
            &[(&amd, &amd_img), (&arm, &arm_img)],
            true,
        )
        .await
        .unwrap();
    assert_eq!(index.media_type, OCI_INDEX);
    assert_eq!(index.attestations.len(), 2);

    assert_eq!(
        tags(&client, &reg.url, repo).await,
        ["docker-1", "multi", "oci-1"]
    );
    check_manifest(
        &client,
        &reg.url,
        repo,
        "docker-1",
        &docker_img.digest,
        DOCKER_MANIFEST,
    )
    .await;
    check_manifest(
        &client,
        &reg.url,
        repo,
        "oci-1",
        &amd_img.digest,
        OCI_MANIFEST,
    )
    .await;
    check_manifest(
        &client,
        &reg.url,
        repo,
        &arm_img.digest,
        &arm_img.digest,
        OCI_MANIFEST,
    )
    .await;
    let body = check_manifest(&client, &reg.url, repo, "multi", &index.digest, OCI_INDEX).await;
    assert_eq!(body.len(), index.manifest_len);
    let body: Value = serde_json::from_slice(&body).unwrap();
    let entries = body["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[1]["platform"]["variant"], "v8");
    assert_eq!(entries[1]["size"], arm_img.manifest_len);
    assert_eq!(entries[2]["platform"]["os"], "unknown");
    assert_eq!(
        entries[2]["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        entries[2]["annotations"]["vnd.docker.reference.digest"],
        amd_img.digest
    );
    assert_eq!(entries[3]["digest"], index.attestations[1].digest);

    // Docker manifest list, retag (same bytes), delete.
    let list = pusher
        .push_index(
            repo,
            Some("list"),
            Format::Docker,
            &[(&docker, &docker_img)],
            false,
        )
        .await
        .unwrap();
    check_manifest(
        &client,
        &reg.url,
        repo,
        "list",
        &list.digest,
        &list.media_type,
    )
    .await;
    pusher
        .tag(repo, "docker-2", &docker_img.digest)
        .await
        .unwrap();
    check_manifest(
        &client,
        &reg.url,
        repo,
        "docker-2",
        &docker_img.digest,
        DOCKER_MANIFEST,
    )
    .await;
    let fresh = Pusher::new(&reg, None).unwrap(); // does not know the bytes: fetches them
    fresh
        .tag(repo, "docker-3", &docker_img.digest)
        .await
        .unwrap();
    check_manifest(
        &client,
        &reg.url,
        repo,
        "docker-3",
        &docker_img.digest,
        DOCKER_MANIFEST,
    )
    .await;
    pusher.delete_manifest(repo, &amd_img.digest).await.unwrap();
    let gone = client
        .get(format!("{}/v2/{repo}/manifests/oci-1", reg.url))
        .header("Accept", ACCEPT_MANIFESTS)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // Raw manifests, and paging with a Link header.
    let raw = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let d = pusher
        .push_raw_manifest(repo, "empty", OCI_INDEX, raw)
        .await
        .unwrap();
    assert_eq!(d, sha256_digest(raw));
    let page = client
        .get(format!("{}/v2/{repo}/tags/list?n=2", reg.url))
        .send()
        .await
        .unwrap();
    let link = page.headers()["link"].to_str().unwrap().to_string();
    assert!(link.contains("rel=\"next\""), "{link}");
    let page: Value = page.json().await.unwrap();
    assert_eq!(page["tags"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn tls_registry_with_htpasswd() {
    let reg = RegistryServer::start(RegistryOptions::htpasswd(USER, PASS).with_tls())
        .await
        .unwrap();
    assert!(reg.url.starts_with("https://127.0.0.1:"));
    let ca = reg.ca_pem.clone().unwrap();
    assert!(ca.contains("BEGIN CERTIFICATE"));

    let client = http_client(Some(&ca)).unwrap();
    let resp = client.get(format!("{}/v2/", reg.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");

    // A client that does not trust the test CA fails the handshake.
    let other_ca = testenv::certs::TestCa::new();
    let stranger = http_client(Some(&other_ca.ca_pem)).unwrap();
    assert!(
        stranger
            .get(format!("{}/v2/", reg.url))
            .send()
            .await
            .is_err()
    );

    let pusher = Pusher::new(&reg, Some((USER, PASS))).unwrap();
    let img = pusher
        .push_image(
            "secure",
            Some("v1"),
            &ImageSpec::new(Format::Oci, 9, &[100]),
        )
        .await
        .unwrap();
    let ok = client
        .get(format!("{}/v2/secure/tags/list", reg.url))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let bad = client
        .get(format!("{}/v2/secure/tags/list", reg.url))
        .basic_auth(USER, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);

    // Anonymous pushes fail.
    let anon = Pusher::new(&reg, None).unwrap();
    let err = anon
        .push_image("secure", Some("v2"), &ImageSpec::new(Format::Oci, 10, &[]))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("401"), "{err:#}");

    // Password rotation: the registry re-reads the htpasswd file.
    let mut reg = reg;
    reg.set_users(&[(USER, "new-password")]).unwrap();
    let status = |pass: &'static str| {
        let client = client.clone();
        let url = format!("{}/v2/secure/manifests/{}", reg.url, img.digest);
        async move {
            let resp = client
                .head(url)
                .header("Accept", ACCEPT_MANIFESTS)
                .basic_auth(USER, Some(pass))
                .send()
                .await
                .unwrap();
            resp.status()
        }
    };
    assert_eq!(status("new-password").await, StatusCode::OK);
    assert_eq!(status(PASS).await, StatusCode::UNAUTHORIZED);
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> url::Url {
    let mut url = url::Url::parse(base).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url
}

/// `Bearer realm="…",service="…",scope="…"` → (realm, service, scope).
fn bearer_challenge(resp: &reqwest::Response) -> (String, String, String) {
    let value = resp.headers()["www-authenticate"].to_str().unwrap();
    let rest = value.strip_prefix("Bearer ").expect(value);
    let get = |key: &str| {
        let start = rest.find(&format!("{key}=\"")).unwrap() + key.len() + 2;
        let end = start + rest[start..].find('"').unwrap();
        rest[start..end].to_string()
    };
    (get("realm"), get("service"), get("scope"))
}

#[tokio::test]
async fn token_registry_flow() {
    let reg = RegistryServer::start(RegistryOptions::token(USER, PASS))
        .await
        .unwrap();
    let token_server = reg.token.as_ref().unwrap();
    let pusher = Pusher::new(&reg, Some((USER, PASS))).unwrap();
    let img = pusher
        .push_image(
            "lib/tok",
            Some("1.0"),
            &ImageSpec::new(Format::Docker, 5, &[300]),
        )
        .await
        .unwrap();
    assert!(token_server.requests() >= 1);
    token_server.reset();
    assert_eq!(token_server.requests(), 0);

    let client = reg.client().unwrap();
    let url = format!("{}/v2/lib/tok/tags/list", reg.url);
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (realm, service, scope) = bearer_challenge(&resp);
    assert_eq!(realm, token_server.realm);
    assert_eq!(service, token_server.service);
    assert_eq!(scope, "repository:lib/tok:pull");

    // Right password → token → 200.
    let token_resp = client
        .get(with_query(
            &realm,
            &[("service", &service), ("scope", &scope)],
        ))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(token_resp.status(), StatusCode::OK);
    let body: Value = token_resp.json().await.unwrap();
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].is_string());
    assert!(body.get("access_token").is_none());
    let token = body["token"].as_str().unwrap().to_string();
    // The JWT carries an x5c chain and ES256.
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["x5c"].as_array().unwrap().len(), 1);

    let ok = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["tags"][0], "1.0");
    let head = client
        .head(format!("{}/v2/lib/tok/manifests/1.0", reg.url))
        .header("Accept", ACCEPT_MANIFESTS)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["docker-content-digest"], img.digest);

    // The pull token does not allow another repository, nor pushing.
    let other = client
        .get(format!("{}/v2/other/tags/list", reg.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    let push = client
        .post(format!("{}/v2/lib/tok/blobs/uploads/", reg.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(push.status(), StatusCode::UNAUTHORIZED);
    let (_, _, push_scope) = bearer_challenge(&push);
    // distribution lists the actions in Go map order: either "pull,push" or "push,pull".
    let (prefix, actions) = push_scope.rsplit_once(':').unwrap();
    assert_eq!(prefix, "repository:lib/tok");
    let mut actions: Vec<&str> = actions.split(',').collect();
    actions.sort();
    assert_eq!(actions, ["pull", "push"]);

    // Wrong password and anonymous → 401 from the token server.
    let wrong = client
        .get(with_query(
            &realm,
            &[("service", &service), ("scope", &scope)],
        ))
        .basic_auth(USER, Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let anon = client
        .get(with_query(
            &realm,
            &[("service", &service), ("scope", &scope)],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(token_server.requests(), 3);
    let log = token_server.request_log();
    assert_eq!(log[0].user.as_deref(), Some(USER));
    assert_eq!(log[0].scopes, vec![scope.clone()]);
    assert_eq!((log[1].status, log[2].status), (401, 401));
    assert_eq!(log[2].user, None);

    // Garbage token → 401 invalid_token.
    let bad = client
        .get(&url)
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_registry_anonymous_pull_and_access_token() {
    let opts = RegistryOptions {
        auth: RegistryAuth::Token {
            users: vec![(USER.into(), PASS.into())],
            options: TokenOptions {
                allow_anonymous_pull: true,
                field: TokenField::AccessToken,
                expires_in: None,
            },
        },
        tls: false,
        ..RegistryOptions::default()
    };
    let reg = RegistryServer::start(opts).await.unwrap();
    let pusher = Pusher::new(&reg, Some((USER, PASS))).unwrap();
    pusher
        .push_image(
            "pub",
            Some("latest"),
            &ImageSpec::new(Format::Oci, 11, &[64]),
        )
        .await
        .unwrap();

    let token_server = reg.token.as_ref().unwrap();
    let client = reg.client().unwrap();
    // Two scopes in one request (repeated parameter); anonymous gets pull only.
    let resp = client
        .get(with_query(
            &token_server.realm,
            &[
                ("service", &token_server.service),
                ("scope", "repository:pub:pull,push"),
                ("scope", "repository:other:pull"),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert!(body.get("token").is_none());
    assert!(body.get("expires_in").is_none());
    let token = body["access_token"].as_str().unwrap();
    let ok = client
        .get(format!("{}/v2/pub/tags/list", reg.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let push = client
        .post(format!("{}/v2/pub/blobs/uploads/", reg.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(push.status(), StatusCode::UNAUTHORIZED);

    // An anonymous pusher cannot push (its pull-only token is refused).
    let anon = Pusher::new(&reg, None).unwrap();
    assert!(
        anon.push_image("pub", Some("x"), &ImageSpec::new(Format::Oci, 12, &[]))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn fault_proxy_forwards_and_injects() {
    let reg = RegistryServer::start(RegistryOptions::default())
        .await
        .unwrap();
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let client = http_client(None).unwrap();

    // Pushing through the proxy keeps every request behind it (Location uses the proxy's Host).
    let pusher = Pusher::for_url(&proxy.url, None, None).unwrap();
    let img = pusher
        .push_image(
            "via/proxy",
            Some("a"),
            &ImageSpec::new(Format::Oci, 20, &[2000]),
        )
        .await
        .unwrap();
    pusher.tag("via/proxy", "b", &img.digest).await.unwrap();
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 2);
    assert_eq!(proxy.count("PUT", "digest=sha256"), 2);
    assert_eq!(proxy.count("PUT", "/manifests/"), 2);
    assert!(
        proxy
            .requests()
            .iter()
            .all(|r| r.status < 300 || r.status == 404)
    );

    // Headers and bodies come back intact, including Link and HEAD's Content-Length.
    proxy.reset();
    check_manifest(
        &client,
        &proxy.url,
        "via/proxy",
        "a",
        &img.digest,
        OCI_MANIFEST,
    )
    .await;
    let page = client
        .get(format!("{}/v2/via/proxy/tags/list?n=1", proxy.url))
        .send()
        .await
        .unwrap();
    assert!(page.headers()["link"].to_str().unwrap().contains("last=a"));
    let blob = client
        .get(format!(
            "{}/v2/via/proxy/blobs/{}",
            proxy.url, img.layer_digests[0]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(blob.headers()["content-length"], "2000");
    assert_eq!(
        blob.headers()["docker-content-digest"],
        img.layer_digests[0].as_str()
    );
    assert_eq!(blob.bytes().await.unwrap().len(), 2000);
    let recorded = proxy.requests();
    assert_eq!(recorded.len(), 4);
    assert_eq!(recorded[2].path, "/v2/via/proxy/tags/list?n=1");
    assert_eq!(recorded[2].status, 200);

    // 429 with Retry-After, once.
    proxy.inject(Fault::new("/tags/list", 1, FaultAction::too_many_requests(7)).method("GET"));
    let url = format!("{}/v2/via/proxy/tags/list", proxy.url);
    let limited = client.get(&url).send().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(proxy.count("GET", "/tags/list"), 3);
    let last_two: Vec<(u16, bool)> = proxy
        .requests()
        .iter()
        .rev()
        .take(2)
        .map(|r| (r.status, r.injected))
        .collect();
    assert_eq!(last_two, [(200, false), (429, true)]);

    // Garbage, Delay and Hang.
    proxy.inject(Fault::new("/tags/list", 1, FaultAction::Garbage));
    let garbage = client.get(&url).send().await.unwrap();
    assert_eq!(garbage.status(), StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&garbage.bytes().await.unwrap()).is_err());

    proxy.inject(Fault::new(
        "/tags/list",
        1,
        FaultAction::Delay(Duration::from_millis(300)),
    ));
    let started = Instant::now();
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    proxy.inject(Fault::new("/tags/list", 1, FaultAction::Hang));
    let hung = client
        .get(&url)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
    assert_eq!(proxy.requests().last().unwrap().status, 0);
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );

    // A status fault for another method does not match.
    proxy.inject(Fault::new("/tags/list", 1, FaultAction::status(500)).method("HEAD"));
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn fault_proxy_in_front_of_token_auth() {
    let reg = RegistryServer::start(RegistryOptions::token(USER, PASS))
        .await
        .unwrap();
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let pusher = Pusher::for_url(&proxy.url, None, Some((USER, PASS))).unwrap();
    pusher
        .push_image(
            "behind",
            Some("t"),
            &ImageSpec::new(Format::Docker, 30, &[10]),
        )
        .await
        .unwrap();
    let client = http_client(None).unwrap();
    let resp = client
        .get(format!("{}/v2/behind/tags/list", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (realm, _, scope) = bearer_challenge(&resp);
    assert_eq!(realm, reg.token.as_ref().unwrap().realm);
    assert_eq!(scope, "repository:behind:pull");
    let token = reg
        .token
        .as_ref()
        .unwrap()
        .issue(USER, &[("repository", "behind", &["pull"])], 60);
    let ok = client
        .get(format!("{}/v2/behind/tags/list", proxy.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let last = proxy.requests().pop().unwrap();
    assert!(last.authorization.unwrap().starts_with("Bearer "));
}

#[tokio::test]
async fn many_tags_are_fast() {
    let reg = RegistryServer::start(RegistryOptions::default())
        .await
        .unwrap();
    let pusher = Pusher::new(&reg, None).unwrap();
    let started = Instant::now();
    let img = pusher
        .push_image(
            "many",
            Some("base"),
            &ImageSpec::new(Format::Oci, 40, &[128]),
        )
        .await
        .unwrap();
    let names: Vec<String> = (0..2000).map(|i| format!("v{i:04}")).collect();
    pusher.tag_many("many", &names, &img.digest).await.unwrap();
    // 50 distinct images too (no layers: a config and a manifest each).
    let specs: Vec<ImageSpec> = (0..50)
        .map(|i| ImageSpec::new(Format::Docker, 100 + i, &[]))
        .collect();
    let img_tags: Vec<String> = (0..50).map(|i| format!("img-{i}")).collect();
    let items: Vec<(Option<&str>, &ImageSpec)> = img_tags
        .iter()
        .zip(&specs)
        .map(|(t, s)| (Some(t.as_str()), s))
        .collect();
    let pushed = pusher.push_many("many", &items).await.unwrap();
    assert_eq!(pushed.len(), 50);
    assert_ne!(pushed[0].digest, pushed[1].digest);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(60),
        "pushing took {elapsed:?}"
    );

    let client = reg.client().unwrap();
    let all = tags(&client, &reg.url, "many").await;
    assert_eq!(all.len(), 2051);
}

/// The registry must not outlive the test process, even when it dies without running `Drop`:
/// re-run this test binary as a child that starts a registry and exits abruptly.
#[tokio::test]
async fn registry_dies_with_the_test_process() {
    const CHILD: &str = "TESTENV_ORPHAN_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let reg = RegistryServer::start(RegistryOptions::default())
            .await
            .unwrap();
        println!("PID={} DIR={}", reg.pid().unwrap(), reg.dir().display());
        use std::io::Write;
        std::io::stdout().flush().unwrap();
        std::process::exit(0); // no Drop
    }
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "registry_dies_with_the_test_process",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("PID="))
        .unwrap_or_else(|| {
            panic!(
                "child said: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let (pid, dir) = line.trim_start_matches("PID=").split_once(" DIR=").unwrap();
    let stat = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Gone, or a zombie waiting for init to reap it.
        match std::fs::read_to_string(&stat) {
            Err(_) => break,
            Ok(s) if s.rsplit(')').next().unwrap().trim_start().starts_with('Z') => break,
            Ok(_) => {}
        }
        if Instant::now() > deadline {
            let _ = std::process::Command::new("kill")
                .args(["-9", pid])
                .status();
            let _ = std::fs::remove_dir_all(dir);
            panic!("registry {pid} outlived its parent");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn strict_expiry_makes_the_registry_refuse_old_tokens() {
    let opts = RegistryOptions {
        auth: RegistryAuth::Token {
            users: vec![(USER.into(), PASS.into())],
            options: TokenOptions {
                allow_anonymous_pull: false,
                field: TokenField::Both,
                expires_in: Some(1),
            },
        },
        tls: false,
        ..RegistryOptions::default()
    };
    let reg = RegistryServer::start(opts).await.unwrap();
    let token_server = reg.token.as_ref().unwrap();
    token_server.set_strict_expiry(true);
    let client = reg.client().unwrap();
    let resp = client
        .get(with_query(
            &token_server.realm,
            &[("scope", "repository:x:pull")],
        ))
        .basic_auth(USER, Some(PASS))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 1);
    let token = body["token"].as_str().unwrap();
    let url = format!("{}/v2/x/tags/list", reg.url);
    // Fresh: authorized (404: the repository does not exist).
    let fresh = client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(fresh.status(), StatusCode::NOT_FOUND);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let stale = client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    let challenge = stale.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("invalid_token"), "{challenge}");
}
