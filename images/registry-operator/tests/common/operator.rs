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
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Watches only `namespace`, so that tests sharing the control plane stay apart.
    pub async fn start(cp: &ControlPlane, namespace: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("operator.log");
        let health_port = testenv::tools::free_port();
        let metrics_port = testenv::tools::free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_registry-operator"))
            .args(["--log-level", "debug", "run", "--namespace", namespace])
            .args(["--health-addr", &format!("127.0.0.1:{health_port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            // The test registries listen on 127.0.0.1, which the egress policy closes by
            // default; `extra` can close it again (`--egress-deny 127.0.0.1/32` wins a tie).
            .args(["--egress-allow", "127.0.0.1/32"])
            .args(extra)
            .env("KUBECONFIG", cp.kubeconfig_path())
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
            _dir: dir,
        }
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

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
