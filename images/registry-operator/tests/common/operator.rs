//! Runs the real `registry-operator run` binary against the shared test control plane, as the
//! module chart's own ServiceAccount: with exactly the permissions the chart grants.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::CustomResourceExt;
use kube::api::{Api, PostParams};
use registry_operator::api::{Registry, RegistryStatus};
use testenv::controlplane::ControlPlane;

/// The module's namespace, where the chart puts the operator's ServiceAccount and lease Role.
pub const MODULE_NAMESPACE: &str = "d8-registry-operator";
/// The operator's ServiceAccount (templates/registry-operator/rbac-for-us.yaml).
pub const SERVICE_ACCOUNT: &str = "registry-operator";

/// Kinds of the chart's objects that make up the operator's identity and permissions.
const IDENTITY_KINDS: [&str; 6] = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// A kubeconfig that authenticates as the chart's ServiceAccount. Once per test binary (one shared
/// control plane): `helm template` renders the chart with Deckhouse's default values, its
/// Namespace, ServiceAccount and RBAC objects are applied, and a token is issued for the
/// ServiceAccount with `kubectl create token` (the TokenRequest API).
pub async fn chart_kubeconfig(cp: &ControlPlane) -> &'static Path {
    static KUBECONFIG: tokio::sync::OnceCell<(String, PathBuf)> =
        tokio::sync::OnceCell::const_new();
    let (server, path) = KUBECONFIG
        .get_or_init(|| async {
            let path = chart_identity(cp)
                .await
                .unwrap_or_else(|e| panic!("running as the chart's ServiceAccount: {e:#}"));
            (cp.server_url().to_string(), path)
        })
        .await;
    assert_eq!(server, cp.server_url(), "one control plane per test binary");
    path
}

/// Returns the kubeconfig's path, in the control plane's state directory (removed with it).
async fn chart_identity(cp: &ControlPlane) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let root = testenv::tools::repo_root();
    let helm = testenv::tools::tool_dir("chart")?.join("helm");
    let out = std::process::Command::new(&helm)
        .current_dir(&root)
        .args(["template", "registry-operator", "."])
        .args(["-f", "hack/testdata/values-default.yaml"])
        .output()
        .context("running helm template")?;
    anyhow::ensure!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut identity = Vec::new();
    for doc in String::from_utf8(out.stdout)?.split("\n---\n") {
        let value: serde_yaml::Value = serde_yaml::from_str(doc)?;
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        if IDENTITY_KINDS.contains(&kind) {
            identity.push(serde_yaml::to_string(&value)?);
        }
    }
    anyhow::ensure!(
        identity.len() >= 6,
        "the chart rendered too few RBAC objects"
    );
    // The Namespace first, so that the objects inside it can be created.
    identity.sort_by_key(|doc| !doc.contains("kind: Namespace"));
    cp.apply_yaml(&identity.join("---\n")).await?;

    let token = std::process::Command::new(cp.kubectl())
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args(["create", "token", SERVICE_ACCOUNT, "-n", MODULE_NAMESPACE])
        .args(["--duration", "24h"])
        .output()
        .context("running kubectl create token")?;
    anyhow::ensure!(
        token.status.success(),
        "kubectl create token: {}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout)?.trim().to_string();

    // The admin kubeconfig with the ServiceAccount's token in place of the admin's.
    let mut config: serde_yaml::Value = serde_yaml::from_str(cp.kubeconfig_yaml())?;
    let users = config
        .get_mut("users")
        .and_then(|u| u.as_sequence_mut())
        .context("kubeconfig has no users")?;
    anyhow::ensure!(users.len() == 1, "one user in the test kubeconfig");
    users[0]["user"] = serde_yaml::to_value(std::collections::BTreeMap::from([("token", token)]))?;
    let path = cp.dir().join("chart-serviceaccount.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;

    // RBAC reaches the authorizer through its informers: wait until the grants show.
    let client = kube_client(&path).await?;
    let registries: Api<Registry> = Api::all(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match registries
            .list(&kube::api::ListParams::default().limit(1))
            .await
        {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                anyhow::bail!("the chart's ServiceAccount cannot list Registries: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Ok(path)
}

/// A client for a kubeconfig file (the chart's ServiceAccount, in tests that check its limits).
pub async fn kube_client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let text = std::fs::read_to_string(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&text)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// One operator process; killed on drop. Its logs go to a file the test can search.
pub struct Operator {
    pub child: tokio::process::Child,
    pub log: PathBuf,
    pub health: String,
    pub metrics: String,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Watches only `namespace`, so that tests sharing the control plane stay apart. Runs as the
    /// chart's ServiceAccount ([`chart_kubeconfig`]) with its Leases in the module's namespace,
    /// as in the chart's Deployment, named after `namespace` unless `extra` names them.
    pub async fn start(cp: &ControlPlane, namespace: &str, extra: &[&str]) -> Self {
        Self::start_env(cp, namespace, extra, &[]).await
    }

    /// [`Operator::start`] with extra environment variables (test hooks such as
    /// `REGISTRY_OPERATOR_TEST_NOW_FILE`).
    pub async fn start_env(
        cp: &ControlPlane,
        namespace: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let kubeconfig = chart_kubeconfig(cp).await;
        let lease = format!("registry-operator-{namespace}");
        let mut args = vec!["--namespace", namespace];
        if !extra.contains(&"--leader-election-lease-name") {
            args.extend(["--leader-election-lease-name", lease.as_str()]);
        }
        args.extend(extra);
        Self::spawn(kubeconfig, &args, Some(MODULE_NAMESPACE), env).await
    }

    /// As an administrator, its Leases in `namespace`: for leader-election and shard tests
    /// whose replicas talk through proxies or other identities (the chart's RBAC is what
    /// [`Operator::start`] tests).
    pub async fn start_admin(cp: &ControlPlane, namespace: &str, extra: &[&str]) -> Self {
        Self::start_with_kubeconfig(cp.kubeconfig_path(), namespace, extra).await
    }

    /// [`Operator::start_admin`] talking to the API server through `kubeconfig` (a proxy,
    /// another identity).
    pub async fn start_with_kubeconfig(
        kubeconfig: &std::path::Path,
        namespace: &str,
        extra: &[&str],
    ) -> Self {
        let mut args = vec!["--namespace", namespace];
        if !extra.contains(&"--leader-election-namespace") {
            args.extend(["--leader-election-namespace", namespace]);
        }
        args.extend(extra);
        Self::spawn(kubeconfig, &args, None, &[]).await
    }

    /// An operator over every namespace (its Leases in `default`): only for a test binary of
    /// its own, since it works on every Registry of the control plane.
    pub async fn start_all_namespaces(cp: &ControlPlane, extra: &[&str]) -> Self {
        Self::spawn(cp.kubeconfig_path(), extra, None, &[]).await
    }

    async fn spawn(
        kubeconfig: &std::path::Path,
        run_args: &[&str],
        pod_namespace: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let health_port = testenv::tools::free_port();
        let metrics_port = testenv::tools::free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_registry-operator"))
            .args(["--log-level", "debug", "run"])
            .args(["--health-addr", &format!("127.0.0.1:{health_port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            // The test registries listen on 127.0.0.1, which the egress policy closes by
            // default; `run_args` can close it again (`--egress-deny 127.0.0.1/32` wins a tie).
            .args(["--egress-allow", "127.0.0.1/32"])
            .args(run_args)
            .env("KUBECONFIG", kubeconfig)
            .envs(pod_namespace.map(|ns| ("POD_NAMESPACE", ns)))
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .kill_on_drop(true)
            .spawn()
            .expect("starting registry-operator run");
        Self {
            child,
            log,
            health: format!("http://127.0.0.1:{health_port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}"),
            _dir: dir,
        }
    }

    /// The operator's /metrics text (served next to /healthz in tests).
    pub async fn metrics(&self) -> String {
        match reqwest::get(format!("{}/metrics", self.metrics)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Sum of the samples of `name` whose labels contain every `label="value"` in `labels`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        sum_metric(&self.metrics().await, name, labels)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn terminate(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

pub async fn install_crd(cp: &ControlPlane) {
    cp.apply_yaml(&serde_yaml::to_string(&Registry::crd()).unwrap())
        .await
        .expect("installing the CRD");
}

pub fn registry(name: &str, url: &str, repository: &str, extra: serde_json::Value) -> Registry {
    let mut spec = serde_json::json!({"url": url, "repository": repository, "scanInterval": 300});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "registry.kubecontroller.io/v1alpha1",
        "kind": "Registry",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

pub async fn create_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
    user: &str,
    password: &str,
) {
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
        "stringData": {"username": user, "password": password},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// Polls the Registry until `check` holds; panics with the last status and the operator log.
pub async fn wait_for<F>(
    api: &Api<Registry>,
    name: &str,
    op: &Operator,
    what: &str,
    check: F,
) -> Registry
where
    F: Fn(&Registry) -> bool,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = api.get(name).await.unwrap();
        if check(&r) {
            return r;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; status: {:#?}\noperator log tail:\n{}",
                r.status,
                tail(&op.logs(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn status(r: &Registry) -> RegistryStatus {
    r.status.clone().unwrap_or_default()
}

pub fn reason(r: &Registry) -> String {
    status(r)
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// Sum of the samples of `name` (Prometheus text) whose label sets contain all of `labels`.
pub fn sum_metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
