//! `registry-operator scan` as a user runs it: JSON equals the status object, passwords come
//! from stdin and never show, `--previous` makes a rescan cost no manifest GET.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use testenv::fault::{Fault, FaultAction, FaultProxy};
use testenv::registry::{RegistryOptions, RegistryServer};

const PASSWORD: &str = "cli-Secret-9000";

fn run_scan(args: &[&str], stdin: Option<&str>) -> Output {
    run_scan_env(args, stdin, &[])
}

/// The proxy variables a shell may carry, all pointing at `url`.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

fn run_scan_env(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registry-operator"));
    for var in PROXY_VARIABLES.iter().chain(&["NO_PROXY", "no_proxy"]) {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd
        .arg("scan")
        .args(args)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting registry-operator");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_the_status_object_and_previous_skips_gets() {
    let reg = RegistryServer::start(RegistryOptions::htpasswd("bob", PASSWORD))
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, Some(("bob", PASSWORD)), "cli/app").await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();

    let out = run_scan(
        &[
            "--url",
            &proxy.url,
            "--repository",
            "cli/app",
            "--username",
            "bob",
            "--password-stdin",
            "--output",
            "json",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains(PASSWORD),
        "password leaked: {}",
        text(&out)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["lastScanStatus"], "Success");
    assert!(status["lastScanTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(status["tagCount"], 3);
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["reason"], "ScanSucceeded");
    let images = status["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for (image, (tag, p)) in images.iter().zip(&pushed.tags) {
        assert_eq!(image["tag"], tag.as_str());
        assert_eq!(image["digest"], p.digest.as_str());
        assert_eq!(image["size"], p.size);
    }
    assert_eq!(
        proxy.count("GET", "/manifests/sha256:"),
        2,
        "one GET per distinct digest"
    );

    let previous = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(previous.path(), &out.stdout).unwrap();
    proxy.reset();
    let again = run_scan(
        &[
            "--url",
            &proxy.url,
            "--repository",
            "cli/app",
            "--username",
            "bob",
            "--password-stdin",
            "--output",
            "json",
            "--previous",
            previous.path().to_str().unwrap(),
        ],
        Some(PASSWORD),
    );
    assert!(again.status.success(), "{}", text(&again));
    let second: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(second["images"], status["images"]);
    assert_eq!(
        proxy.count("GET", "/manifests/"),
        0,
        "rescan with --previous makes no manifest GET"
    );
    assert_eq!(proxy.count("HEAD", "/manifests/"), 3, "one HEAD per tag");
    assert_eq!(second["lastScanRequests"]["manifestGets"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_one_actionable_line_without_the_password() {
    let reg = RegistryServer::start(RegistryOptions::htpasswd("bob", PASSWORD))
        .await
        .unwrap();
    common::seed_small(&reg, Some(("bob", PASSWORD)), "cli/app").await;

    let out = run_scan(
        &[
            "--url",
            &reg.url,
            "--repository",
            "cli/app",
            "--username",
            "bob",
            "--password-stdin",
        ],
        Some("WrongPass-123"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: authentication failed"), "{err}");
    assert!(last.contains("check the username and password"), "{err}");
    assert!(
        !text(&out).contains("WrongPass-123"),
        "password leaked: {err}"
    );
    assert!(out.stdout.is_empty());

    let out = run_scan(
        &[
            "--url",
            &reg.url,
            "--repository",
            "nope/missing",
            "--username",
            "bob",
            "--password-stdin",
        ],
        Some(PASSWORD),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("repository nope/missing not found"),
        "{}",
        text(&out)
    );
}

/// What answered an error is echoed only when it is a registry's own error body, and then only
/// its codes and messages: a tenant pointing the operator at an internal web page learns nothing
/// of its content from the message (the same text the operator writes to `status.message`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_messages_carry_registry_errors_never_other_bodies() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    common::seed_small(&reg, None, "cli/app").await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let scan = |body: &str| {
        proxy.reset();
        proxy.inject(Fault::new(
            "/tags/list",
            1000,
            FaultAction::Status {
                code: 400,
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: body.into(),
            },
        ));
        let out = run_scan(&["--url", &proxy.url, "--repository", "cli/app"], None);
        assert!(!out.status.success(), "{}", text(&out));
        text(&out)
    };
    let page = "<html><title>Grafana admin</title><body>db-password=hunter2 internal-host-42</body></html>";
    let out = scan(page);
    assert!(out.contains("with HTTP 400"), "{out}");
    for secret in ["Grafana", "hunter2", "internal-host-42", "<html"] {
        assert!(!out.contains(secret), "{secret:?} echoed: {out}");
    }
    let out = scan(r#"{"message":"internal-host-42","data":{"token":"hunter2"}}"#);
    assert!(
        !out.contains("internal-host-42") && !out.contains("hunter2"),
        "{out}"
    );

    let out = scan(
        r#"{"errors":[{"code":"NAME_INVALID","message":"invalid repository name","detail":{"host":"internal-host-42"}}]}"#,
    );
    assert!(
        out.contains("with HTTP 400: NAME_INVALID invalid repository name"),
        "{out}"
    );
    assert!(!out.contains("internal-host-42"), "detail echoed: {out}");
}

/// Proxy variables in the environment are not the operator's to follow: a tenant's registry
/// would otherwise be reached through whatever the Pod's environment names, past the egress
/// policy's address checks. Only `--registry-http-proxy` / `--registry-https-proxy` route
/// requests through a proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_are_ignored_unless_a_flag_names_the_proxy() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "cli/app").await;
    // A recording proxy: it forwards every request it gets to the registry.
    let recording = FaultProxy::start(&reg.url).await.unwrap();
    let env: Vec<(&str, &str)> = PROXY_VARIABLES
        .iter()
        .map(|v| (*v, recording.url.as_str()))
        .collect();
    let args = [
        "--url",
        reg.url.as_str(),
        "--repository",
        "cli/app",
        "--output",
        "json",
    ];

    let out = run_scan_env(&args, None, &env);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        recording.requests().len(),
        0,
        "the scan went through the proxy of the environment: {:?}",
        recording.requests()
    );

    let with_flag: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--registry-http-proxy", recording.url.as_str()])
        .collect();
    let out = run_scan_env(&with_flag, None, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["tagCount"], pushed.tags.len());
    assert!(
        recording.count("GET", "/v2/cli/app/tags/list") >= 1,
        "the flag's proxy was not used: {:?}",
        recording.requests()
    );

    // A host in --registry-no-proxy is reached directly.
    recording.reset();
    let host = url::Url::parse(&reg.url).unwrap();
    let no_proxy = host.host_str().unwrap().to_string();
    let bypass: Vec<&str> = with_flag
        .iter()
        .copied()
        .chain(["--registry-no-proxy", no_proxy.as_str()])
        .collect();
    let out = run_scan_env(&bypass, None, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(recording.requests().len(), 0, "{:?}", recording.requests());

    // The proxy's own credentials never show, not even in debug logs of a failure.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let proxy_url = format!("http://bob:Pr0xy-Secret@127.0.0.1:{port}");
    let failing: Vec<&str> = args
        .iter()
        .copied()
        .chain([
            "--registry-http-proxy",
            proxy_url.as_str(),
            "--timeout",
            "5",
        ])
        .collect();
    let out = run_scan_env(&failing, None, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("Pr0xy-Secret"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_output_lists_tags_for_people() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "table/app").await;
    let out = run_scan(&["--url", &reg.url, "--repository", "table/app"], None);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("TAG"), "{stdout}");
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[1].starts_with("1.0") && lines[1].contains(&pushed.tags[0].1.digest),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_holds_full_facts_beyond_the_status_cap() {
    const TAGS: usize = 5000;
    const DIGESTS: usize = 20;
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pusher = testenv::push::Pusher::new(&reg, None).unwrap();
    for d in 0..DIGESTS {
        let spec = testenv::push::ImageSpec::new(testenv::push::Format::Oci, 100 + d as u64, &[64]);
        let image = pusher.push_image("big/app", None, &spec).await.unwrap();
        let tags: Vec<String> = (0..TAGS / DIGESTS)
            .map(|i| format!("{d:02}.{i:03}"))
            .collect();
        pusher
            .tag_many("big/app", &tags, &image.digest)
            .await
            .unwrap();
    }
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let args = |previous: Option<&str>| {
        let mut a = vec![
            "--url".to_string(),
            proxy.url.clone(),
            "--repository".into(),
            "big/app".into(),
            "--max-images".into(),
            "100".into(),
            "--output".into(),
            "json".into(),
            // A huge deadline means no deadline, not a panic.
            "--timeout".into(),
            u64::MAX.to_string(),
        ];
        if let Some(p) = previous {
            a.extend(["--previous".to_string(), p.to_string()]);
        }
        a
    };
    let first_args = args(None);
    let out = run_scan(
        &first_args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first["tagCount"], TAGS);
    assert_eq!(first["images"].as_array().unwrap().len(), 100);
    assert_eq!(first["facts"]["tags"].as_object().unwrap().len(), TAGS);
    assert_eq!(
        first["facts"]["manifests"].as_object().unwrap().len(),
        DIGESTS
    );

    let previous = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(previous.path(), &out.stdout).unwrap();
    proxy.reset();
    let again_args = args(Some(previous.path().to_str().unwrap()));
    let again = run_scan(
        &again_args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    );
    assert!(again.status.success(), "{}", text(&again));
    let second: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        proxy.count("GET", "/manifests/"),
        0,
        "every digest, listed in images or not, is known"
    );
    assert_eq!(second["lastScanRequests"]["manifestGets"], 0);
    assert_eq!(proxy.count("HEAD", "/manifests/"), TAGS);
    assert_eq!(second["images"], first["images"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_flag_chooses_between_the_native_api_and_the_registry_api() {
    use testenv::vendor::{Vendor, VendorFixture};
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pushed = common::seed_small(&reg, None, "cli/app").await;
    let harbor = VendorFixture::start(Vendor::Harbor, &reg.url, None)
        .await
        .unwrap();
    let lister_of = |o: &Output| {
        assert!(o.status.success(), "{}", text(o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let images: Vec<registry_operator::registry::Image> =
            serde_json::from_value(v["images"].clone()).unwrap();
        common::assert_images(&images, &pushed);
        (
            v["lastScanRequests"]["lister"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            v["lastScanRequests"]["nativeRequests"]
                .as_i64()
                .unwrap_or(-1),
        )
    };
    let args = [
        "--url",
        &harbor.url,
        "--repository",
        "cli/app",
        "-o",
        "json",
    ];
    let off = run_scan(&[&args[..], &["--listing", "distribution"]].concat(), None);
    assert_eq!(lister_of(&off), ("distribution".to_string(), 0));
    assert_eq!(harbor.native_requests(), 0, "not even a probe");
    let auto = run_scan(&args, None);
    let (lister, native) = lister_of(&auto);
    assert_eq!(lister, "harbor");
    assert!(native >= 2, "a probe and a page: {native}");
    let bad = run_scan(&[&args[..], &["--listing", "sometimes"]].concat(), None);
    assert!(!bad.status.success());
}

/// A registry's rate-limit reset of `1e300` seconds once made `Duration::from_secs_f64` panic
/// and the CLI exit 101; whatever such numbers do, the scan ends with its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_rate_limit_numbers_never_crash_the_scan() {
    use testenv::fault::{Fault, FaultAction};
    let reg = RegistryServer::start(RegistryOptions::default())
        .await
        .unwrap();
    common::seed_small(&reg, None, "cli/app").await;
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    for reset in ["1e300", "1.8e19", "18446744073709551616"] {
        proxy.clear_faults();
        proxy.inject(Fault::new(
            "/tags/list",
            1,
            FaultAction::Status {
                code: 200,
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("X-RateLimit-Remaining".into(), "0".into()),
                    ("X-RateLimit-Reset".into(), reset.into()),
                ],
                body: r#"{"name":"cli/app","tags":["v1.0.0"]}"#.into(),
            },
        ));
        let out = run_scan(&["--url", &proxy.url, "--repository", "cli/app"], None);
        assert_ne!(
            out.status.code(),
            Some(101),
            "reset {reset}: {}",
            text(&out)
        );
        assert!(
            out.status.code().is_some(),
            "reset {reset}: killed by a signal: {}",
            text(&out)
        );
        assert!(
            !text(&out).contains("panicked"),
            "reset {reset}: {}",
            text(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrer_tags_are_hidden_shown_on_request_and_known_to_previous() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pusher = testenv::push::Pusher::new(&reg, None).unwrap();
    let spec = |seed| testenv::push::ImageSpec::new(testenv::push::Format::Oci, seed, &[64]);
    let app = pusher
        .push_image("cli/signed", Some("1.0"), &spec(71))
        .await
        .unwrap();
    // Any manifest will do as cosign's `.sig` here: its tag says what it is.
    let stem = registry_operator::registry::artifact::fallback_tag(&app.digest).unwrap();
    let sig_tag = format!("{stem}.sig");
    let sig = pusher
        .push_image("cli/signed", Some(&sig_tag), &spec(72))
        .await
        .unwrap();
    let proxy = FaultProxy::start(&reg.url).await.unwrap();
    let scan = |extra: &[&str]| {
        let mut a = vec![
            "--url",
            proxy.url.as_str(),
            "--repository",
            "cli/signed",
            "--output",
            "json",
        ];
        a.extend_from_slice(extra);
        let out = run_scan(&a, None);
        assert!(out.status.success(), "{}", text(&out));
        (
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
            out.stdout,
        )
    };
    let (hidden, bytes) = scan(&[]);
    let tags = |v: &serde_json::Value| -> Vec<String> {
        v["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["tag"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(tags(&hidden), ["1.0"]);
    assert_eq!(
        (&hidden["tagCount"], &hidden["referrerTags"]),
        (&2.into(), &1.into())
    );
    assert_eq!(hidden["images"][0]["referrers"][0]["digest"], sig.digest);
    assert_eq!(hidden["images"][0]["referrers"][0]["kind"], "Signature");
    let (shown, _) = scan(&["--referrer-tags", "show"]);
    assert_eq!(tags(&shown), ["1.0", sig_tag.as_str()]);

    let previous = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(previous.path(), &bytes).unwrap();
    proxy.reset();
    let (again, _) = scan(&["--previous", previous.path().to_str().unwrap()]);
    assert_eq!(
        proxy.count("GET", "/manifests/"),
        0,
        "the hidden tag's digest is known too"
    );
    assert_eq!(again["images"], hidden["images"]);
}

fn days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn json_of(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_flags_name_latest_and_order_images() {
    let reg = RegistryServer::start(RegistryOptions::plain())
        .await
        .unwrap();
    let pusher = testenv::push::Pusher::new(&reg, None).unwrap();
    let repo = "cli/policy";
    for (i, (tag, age)) in [
        ("1.0.0", 10),
        ("1.1.0", 3),
        ("1.2.0", 0),
        ("2.0.0-rc.1", 0),
        ("latest", 0),
        ("main-abc1234-100", 5),
        ("main-def5678-99", 1),
    ]
    .iter()
    .enumerate()
    {
        common::push_created(&pusher, repo, tag, i as u64 + 1, &days_ago(*age)).await;
    }
    let scan = |extra: &[&str]| {
        let mut args = vec!["--url", &reg.url, "--repository", repo, "--output", "json"];
        args.extend(extra);
        json_of(&run_scan(&args, None))
    };

    let out = scan(&["--policy", "semver:^1.0"]);
    assert_eq!(out["latest"]["tag"], "1.2.0");
    assert_eq!(out["latest"]["version"], "1.2.0");
    assert!(out["latest"]["createdAt"].is_string(), "{out}");
    let tags: Vec<&str> = out["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        &tags[tags.len() - 3..],
        ["1.0.0", "1.1.0", "1.2.0"],
        "{tags:?}"
    );
    let found = out["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "LatestFound")
        .unwrap();
    assert_eq!(found["status"], "True");

    // minAge holds the fresh 1.2.0 back; the prerelease never wins `^1.0`.
    let aged = scan(&["--policy", "semver:^1.0", "--min-age", "24h"]);
    assert_eq!(aged["latest"]["tag"], "1.1.0");

    // Build numbers: filter + extract, compared as numbers (100 > 99).
    let builds = scan(&[
        "--policy",
        "numerical:asc",
        "--policy-pattern",
        r"^main-[a-f0-9]+-(?P<n>\d+)$",
        "--policy-extract",
        "$n",
    ]);
    assert_eq!(builds["latest"]["tag"], "main-abc1234-100");
    assert_eq!(builds["latest"]["version"], "100");

    // Newest build: the image created last, whatever its tag says.
    let newest = scan(&["--policy", "newest-build", "--policy-pattern", "^1\\."]);
    assert_eq!(newest["latest"]["tag"], "1.2.0");

    // maxImages keeps what the policy ranks highest.
    let capped = scan(&["--policy", "alphabetical:desc", "--max-images", "1"]);
    assert_eq!(capped["images"][0]["tag"], "1.0.0");
    assert_eq!(capped["latest"]["tag"], "1.0.0");

    // No eligible tag: success, no latest, the reason in LatestFound.
    let none = scan(&["--policy", "semver:^3"]);
    assert!(none.get("latest").is_none(), "{none}");
    let found = none["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "LatestFound")
        .unwrap();
    assert_eq!(found["status"], "False");
    assert!(
        found["message"]
            .as_str()
            .unwrap()
            .contains("outside the range"),
        "{found}"
    );
}

#[test]
fn invalid_policy_flags_exit_2_before_any_request() {
    // Nothing listens here: a usage error must come before any connection attempt.
    let url = format!("http://127.0.0.1:{}", testenv::tools::free_port());
    for (flags, says) in [
        (vec!["--policy", "semver:>=1.0 <<2"], "not a valid range"),
        (vec!["--policy", "semver:"], "not a valid range"),
        (
            vec![
                "--policy",
                "alphabetical:asc",
                "--policy-pattern",
                "(unclosed",
            ],
            "not a valid regular expression",
        ),
        (
            vec!["--policy", "semver:^1", "--min-age", "1 day"],
            "minAge",
        ),
        (vec!["--policy", "numerical:up"], "not an order"),
        (vec!["--policy", "biggest"], "not a policy"),
        (vec!["--policy-pattern", "^v"], "--policy"),
    ] {
        let mut args = vec!["--url", url.as_str(), "--repository", "a/b"];
        args.extend(flags.iter().copied());
        let out = run_scan(&args, None);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{flags:?}: {}", text(&out));
        assert!(!text(&out).contains("connect"), "{flags:?}: {}", text(&out));
    }
}
