//! Runs the real `registry-operator run` binary against the shared test control plane.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::CustomResourceExt;
use kube::api::{Api, PostParams};
use registry_operator::api::{Registry, RegistryStatus};
use testenv::controlplane::ControlPlane;

/// One operator process; killed on drop. Its logs go to a file the test can search.
pub struct Operator {
    pub child: tokio::process::Child,
    pub log: PathBuf,
    pub health: String,
    pub metrics: String,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Watches only `namespace` and keeps its Leases there, so that tests sharing the control
    /// plane stay apart.
    pub async fn start(cp: &ControlPlane, namespace: &str, extra: &[&str]) -> Self {
        Self::start_with_kubeconfig(cp.kubeconfig_path(), namespace, extra).await
    }

    /// [`Operator::start`] talking to the API server through `kubeconfig` (a proxy, another
    /// identity).
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
        Self::spawn(kubeconfig, &args).await
    }

    /// An operator over every namespace (its Leases in `default`): only for a test binary of
    /// its own, since it works on every Registry of the control plane.
    pub async fn start_all_namespaces(cp: &ControlPlane, extra: &[&str]) -> Self {
        Self::spawn(cp.kubeconfig_path(), extra).await
    }

    async fn spawn(kubeconfig: &std::path::Path, run_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let health_port = testenv::tools::free_port();
        let metrics_port = testenv::tools::free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_registry-operator"))
            .args(["--log-level", "debug", "run"])
            .args(["--health-addr", &format!("127.0.0.1:{health_port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(run_args)
            .env("KUBECONFIG", kubeconfig)
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
