//! The control plane is real: etcd + kube-apiserver serve CRDs and objects, the `testenv
//! controlplane` CLI serves kubectl until SIGTERM, and no process outlives its owner.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use testenv::controlplane::{ControlPlane, controlplane_dir, shared};

const CRD: &str = "
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.testenv.example
spec:
  group: smoke.testenv.example
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
";

const WIDGET: &str = "
apiVersion: smoke.testenv.example/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3}
";

/// Generous: start-up takes ~4 s alone, but these tests start several control planes at once.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test]
async fn shared_control_plane_serves_a_crd_and_its_objects() -> anyhow::Result<()> {
    let cp = shared().await;
    let ns = cp.create_namespace("Smoke_Test").await;
    let other = cp.create_namespace("smoke-test").await;
    assert!(ns.starts_with("smoke-test-"), "{ns}");
    assert_ne!(ns, other);

    // CRD and object in one multi-document YAML: the object needs the CRD Established first.
    let applied = cp
        .apply_yaml_in(&ns, &format!("{CRD}\n---\n{WIDGET}"))
        .await?;
    assert_eq!(applied.len(), 2);
    assert_eq!(applied[1].metadata.namespace.as_deref(), Some(ns.as_str()));

    let gvk = GroupVersionKind::gvk("smoke.testenv.example", "v1", "Widget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(cp.client().await, &ns, &ar);
    let list = widgets.list(&ListParams::default()).await?;
    let names: Vec<_> = list
        .items
        .iter()
        .filter_map(|w| w.metadata.name.clone())
        .collect();
    assert_eq!(names, ["w1"]);
    assert_eq!(list.items[0].data["spec"]["size"], 3);
    // Re-applying is idempotent (server-side apply).
    cp.apply_yaml_in(&ns, WIDGET).await?;

    let elsewhere: Api<DynamicObject> = Api::namespaced_with(cp.client().await, &other, &ar);
    assert!(
        elsewhere
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
    );

    // The kubeconfig file on disk works on its own (CA-verified TLS, admin token).
    let kubeconfig = Kubeconfig::read_from(cp.kubeconfig_path())?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    namespaces.get(&ns).await?;
    Ok(())
}

#[tokio::test]
async fn apply_yaml_reports_the_failing_document() {
    let cp = shared().await;
    let err = cp
        .apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\napiVersion: nope.example/v1\nkind: Nothing\nmetadata: {name: bad}\n")
        .await
        .expect_err("an unknown kind cannot be applied");
    let msg = format!("{err:#}");
    assert!(msg.contains("document 2 (Nothing bad)"), "{msg}");
}

#[tokio::test]
async fn dropping_a_control_plane_kills_it_and_removes_its_directory() -> anyhow::Result<()> {
    let cp = ControlPlane::start().await?;
    let pids = cp.pids();
    let dir = cp.dir().to_path_buf();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|(_, pid)| alive(*pid)), "{pids:?}");
    eprintln!("owned control plane started in {:?}", cp.startup_time());
    drop(cp);
    for (name, pid) in pids {
        assert!(!alive(pid), "{name} ({pid}) survived the drop");
    }
    assert!(!dir.exists(), "{} survived the drop", dir.display());
    Ok(())
}

#[test]
fn cli_serves_kubectl_until_sigterm() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("state");
    let mut cli = Cli::start(&dir);
    cli.wait_ready(&dir);
    let pids = read_pids(&dir);

    let kubectl = controlplane_dir().unwrap().join("kubectl");
    let out = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .args(["get", "ns", "-o", "name"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().any(|l| l == "namespace/default"), "{stdout}");

    signal(cli.0.id(), libc::SIGTERM);
    let status = cli.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "testenv exited with {status}:\n{}",
        cli.log(&dir)
    );
    for (name, pid) in pids {
        assert!(
            !alive(pid),
            "{name} ({pid}) outlived `testenv controlplane`"
        );
    }
    assert!(
        !dir.join("ready").exists(),
        "ready must go away on shutdown"
    );
}

#[test]
fn cli_children_die_when_it_is_killed() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("state");
    let mut cli = Cli::start(&dir);
    cli.wait_ready(&dir);
    let pids = read_pids(&dir);

    // SIGKILL: no clean-up code runs; PR_SET_PDEATHSIG must take the children down.
    signal(cli.0.id(), libc::SIGKILL);
    cli.wait(Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    for (name, pid) in pids {
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "{name} ({pid}) outlived a SIGKILLed parent"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `testenv controlplane` child; SIGKILLed on drop so a failing test leaves nothing behind.
struct Cli(Child);

impl Cli {
    fn start(dir: &Path) -> Cli {
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_testenv"))
            .arg("controlplane")
            .arg("--state-dir")
            .arg(dir)
            .args(["--timeout", &READY_TIMEOUT.as_secs().to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Cli(child)
    }

    fn log(&self, dir: &Path) -> String {
        std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, dir: &Path) {
        let deadline = Instant::now() + READY_TIMEOUT + Duration::from_secs(10);
        while !dir.join("ready").exists() {
            if let Some(status) = self.0.try_wait().unwrap() {
                panic!("testenv exited early ({status}):\n{}", self.log(dir));
            }
            assert!(
                Instant::now() < deadline,
                "testenv not ready:\n{}",
                self.log(dir)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(dir.join("kubeconfig").exists());
    }

    fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "testenv did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read_pids(dir: &Path) -> Vec<(&'static str, u32)> {
    ["etcd", "kube-apiserver"]
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(format!("{name}.pid"))).unwrap();
            let pid = text.trim().parse().unwrap();
            assert!(alive(pid), "{name} ({pid}) is not running while ready");
            (name, pid)
        })
        .collect()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on our own unreaped child.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

/// Running (a zombie nobody has reaped yet counts as dead).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Format: `pid (comm) STATE ...`; comm may contain spaces, so split after the last ')'.
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}
