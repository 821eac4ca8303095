//! A real kube-apiserver + etcd on loopback, for tests, `make demo` and `make lint`.
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! let cp = testenv::controlplane::shared().await; // one per test binary
//! let ns = cp.create_namespace("scan").await; // fresh namespace per test
//! cp.apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n").await?;
//! let client = cp.client().await;
//! # let _ = (ns, client); Ok(()) }
//! ```
//!
//! There is no controller-manager and no scheduler: namespaces never finish deleting, nothing
//! is garbage collected, no pod runs. Use a fresh namespace per test.
//!
//! The processes are SIGKILLed when the [`ControlPlane`] is dropped, and in any case when the
//! process that started them ends (`PR_SET_PDEATHSIG`), so a static [`shared`] control plane
//! does not outlive `cargo test`.

mod pki;
mod process;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};

use process::Proc;

/// Field manager used for server-side apply by [`ControlPlane::apply_yaml`].
pub const FIELD_MANAGER: &str = "testenv";

/// Prefix of the temporary directories holding a control plane's state.
const TEMP_PREFIX: &str = "testenv-controlplane-";

/// Lines of each process log included in start-up errors.
const LOG_TAIL_LINES: usize = 40;

/// Installs rustls' ring provider as the process default (kube and reqwest both use it).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The folder with `kube-apiserver`, `etcd` and `kubectl`: `KUBEBUILDER_ASSETS` if set, else the
/// cache of `hack/tools.sh controlplane`, which builds the binaries from `tools/k8s` on the first
/// run (10-20 minutes on 2 cores; its progress goes to stderr). Concurrent callers on one machine
/// wait for each other instead of building twice.
pub fn controlplane_dir() -> anyhow::Result<PathBuf> {
    const HOWTO: &str = "run `hack/tools.sh controlplane` (the first build takes ~10-20 minutes \
        and needs Go >= 1.25 and the Go module proxy), or set KUBEBUILDER_ASSETS to a folder \
        holding kube-apiserver, etcd and kubectl";
    let dir = match std::env::var_os("KUBEBUILDER_ASSETS").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let script = crate::tools::repo_root().join("hack/tools.sh");
            let _lock = build_lock();
            let out = std::process::Command::new("bash")
                .arg(&script)
                .arg("controlplane")
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("running {}; {HOWTO}", script.display()))?;
            if !out.status.success() {
                bail!(
                    "{} controlplane failed ({}); {HOWTO}",
                    script.display(),
                    out.status
                );
            }
            PathBuf::from(String::from_utf8(out.stdout)?.trim())
        }
    };
    for bin in ["kube-apiserver", "etcd", "kubectl"] {
        if !is_executable(&dir.join(bin)) {
            bail!(
                "control-plane binary {} is missing or not executable; {HOWTO}",
                dir.join(bin).display()
            );
        }
    }
    Ok(dir)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// An exclusive `flock` on a file next to the tool cache, held while `hack/tools.sh` runs.
fn build_lock() -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let cache = std::env::var_os("REGISTRY_OPERATOR_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/registry-operator-tools"))
        })?;
    std::fs::create_dir_all(&cache).ok()?;
    let file = std::fs::File::create(cache.join(".controlplane.lock")).ok()?;
    // SAFETY: flock on a descriptor we own; released when `file` is dropped.
    (unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0).then_some(file)
}

/// How to start a [`ControlPlane`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Where state, certificates and logs go. `None`: a fresh temporary directory, removed on
    /// drop. `Some(dir)`: kept after drop (the `testenv controlplane` CLI uses this); its etcd
    /// data is wiped at start.
    pub dir: Option<PathBuf>,
    /// How long to wait for `/readyz`. Default 120 s, or `TESTENV_CONTROLPLANE_TIMEOUT` seconds.
    pub startup_timeout: Duration,
    /// Extra kube-apiserver flags (`--name=value`), appended after the defaults.
    pub apiserver_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        let secs = std::env::var("TESTENV_CONTROLPLANE_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120);
        Options {
            dir: None,
            startup_timeout: Duration::from_secs(secs),
            apiserver_args: Vec::new(),
        }
    }
}

/// A running etcd + kube-apiserver pair. Dropping it kills both (and removes its temporary
/// directory); they also die with the process that started them.
#[derive(Debug)]
pub struct ControlPlane {
    // Declared before `temp` so the processes die before their directory is removed.
    procs: Mutex<Vec<Proc>>,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    bin_dir: PathBuf,
    server_url: String,
    etcd_url: String,
    token: String,
    ca_pem: String,
    kubeconfig_path: PathBuf,
    kubeconfig: String,
    startup: Duration,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver on free loopback ports in a temporary directory and waits
    /// until `/readyz` answers ok.
    pub async fn start() -> anyhow::Result<ControlPlane> {
        Self::start_with(Options::default()).await
    }

    /// [`ControlPlane::start`] with [`Options`].
    pub async fn start_with(opts: Options) -> anyhow::Result<ControlPlane> {
        install_crypto_provider();
        let bin_dir = tokio::task::spawn_blocking(controlplane_dir).await??;
        let (dir, temp) = match &opts.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                (std::path::absolute(dir)?, None)
            }
            None => {
                sweep_stale_tempdirs();
                let temp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempdir()?;
                std::fs::write(
                    temp.path().join("owner.pid"),
                    std::process::id().to_string(),
                )?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let pki = pki::Pki::generate(&dir)?;

        // A port taken between `free_port` and the bind makes a process exit at once with
        // "address already in use": pick new ports and try again.
        let started = Instant::now();
        let mut attempt = 0;
        let (procs, server_url, etcd_url) = loop {
            attempt += 1;
            match launch(&bin_dir, &dir, &pki, &opts, started).await {
                Ok(up) => break up,
                Err(Launch::PortClash(e)) if attempt < 4 => {
                    tracing::debug!("control plane port clash, retrying: {e:#}");
                }
                Err(Launch::PortClash(e) | Launch::Failed(e)) => return Err(e),
            }
        };
        let startup = started.elapsed();

        let kubeconfig = pki::kubeconfig(&server_url, &pki.ca_pem, &pki.token);
        let kubeconfig_path = dir.join("kubeconfig");
        write_atomic(&kubeconfig_path, &kubeconfig)?;

        Ok(ControlPlane {
            procs: Mutex::new(procs),
            dir,
            _temp: temp,
            bin_dir,
            server_url,
            etcd_url,
            token: pki.token,
            ca_pem: pki.ca_pem,
            kubeconfig_path,
            kubeconfig,
            startup,
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// `http://127.0.0.1:<port>` of etcd.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// Bearer token of the `admin` user (group `system:masters`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// PEM of the CA that signed the apiserver's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig file (server, CA, admin token; context namespace `default`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The kubeconfig's text.
    pub fn kubeconfig_yaml(&self) -> &str {
        &self.kubeconfig
    }

    /// The state directory (pki/, etcd-data/, etcd.log, kube-apiserver.log, kubeconfig).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `kubectl` matching this apiserver.
    pub fn kubectl(&self) -> PathBuf {
        self.bin_dir.join("kubectl")
    }

    /// How long start-up took (process launch to `/readyz` ok).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// `(name, pid)` of the running processes.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        procs.iter().map(|p| (p.name, p.pid())).collect()
    }

    /// Errors if etcd or kube-apiserver has exited (with the tail of its log).
    pub fn check_alive(&self) -> anyhow::Result<()> {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        if procs.is_empty() {
            bail!("control plane was stopped");
        }
        for p in procs.iter_mut() {
            if let Some(status) = p.exited() {
                bail!(
                    "{} exited ({status}); last lines of {}:\n{}",
                    p.name,
                    p.log.display(),
                    process::tail(&p.log, LOG_TAIL_LINES)
                );
            }
        }
        Ok(())
    }

    /// The last `lines` lines of both process logs.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tails(&self.dir, lines)
    }

    /// Stops kube-apiserver, then etcd: SIGTERM, up to `grace` each, then SIGKILL. Idempotent;
    /// dropping the control plane does the same with no grace.
    pub fn stop(&self, grace: Duration) {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        // kube-apiserver was started last: stop it first.
        while let Some(mut p) = procs.pop() {
            p.stop(libc::SIGTERM, grace);
        }
    }

    /// A new client for the admin identity. Each call builds a fresh client, so it works from
    /// any tokio runtime (every `#[tokio::test]` has its own).
    ///
    /// # Panics
    /// If the kubeconfig cannot be turned into a client (it is generated here, so this is a bug).
    pub async fn client(&self) -> kube::Client {
        self.try_client()
            .await
            .expect("building a kube client for the test control plane")
    }

    /// [`ControlPlane::client`] returning errors.
    pub async fn try_client(&self) -> anyhow::Result<kube::Client> {
        install_crypto_provider();
        let kubeconfig = Kubeconfig::from_yaml(&self.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Creates a namespace named `<prefix>-<random>` and returns its name.
    ///
    /// # Panics
    /// If the apiserver refuses (see [`ControlPlane::try_create_namespace`]).
    pub async fn create_namespace(&self, prefix: &str) -> String {
        self.try_create_namespace(prefix)
            .await
            .unwrap_or_else(|e| panic!("creating a namespace with prefix {prefix:?}: {e:#}"))
    }

    /// [`ControlPlane::create_namespace`] returning errors.
    pub async fn try_create_namespace(&self, prefix: &str) -> anyhow::Result<String> {
        let api: Api<Namespace> = Api::all(self.try_client().await?);
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", dns_label_prefix(prefix))),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = api.create(&PostParams::default(), &ns).await?;
        created
            .metadata
            .name
            .context("created namespace has no name")
    }

    /// Server-side applies (field manager [`FIELD_MANAGER`], forced) every document of a
    /// multi-document YAML, in order. Namespaced objects without a namespace go to `default`.
    /// After a CustomResourceDefinition it waits until the CRD is Established, so later
    /// documents (and the caller) can use the new kind at once. Returns the applied objects.
    pub async fn apply_yaml(&self, yaml: &str) -> anyhow::Result<Vec<DynamicObject>> {
        self.apply_yaml_in("default", yaml).await
    }

    /// [`ControlPlane::apply_yaml`], with `namespace` for namespaced objects that name none.
    pub async fn apply_yaml_in(
        &self,
        namespace: &str,
        yaml: &str,
    ) -> anyhow::Result<Vec<DynamicObject>> {
        use serde::Deserialize;
        let client = self.try_client().await?;
        let mut applied = Vec::new();
        for (i, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
            let value = serde_yaml::Value::deserialize(doc)
                .with_context(|| format!("parsing YAML document {}", i + 1))?;
            if value.is_null() {
                continue;
            }
            let obj: DynamicObject = serde_yaml::from_value(value)
                .with_context(|| format!("YAML document {} is not a Kubernetes object", i + 1))?;
            let what = describe(&obj, i);
            let out = apply_one(&client, namespace, obj)
                .await
                .with_context(|| format!("applying {what}"))?;
            applied.push(out);
        }
        Ok(applied)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
        // `temp` (if any) is removed right after, by its own Drop.
    }
}

/// The control plane shared by all tests of one test binary, started on first use. It is
/// never dropped; its processes die with the test process (see the module docs) and its
/// temporary directory is removed at exit.
///
/// # Panics
/// If the control plane cannot start (the message says why, with the process logs).
pub async fn shared() -> &'static ControlPlane {
    static SHARED: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();
    extern "C" fn at_exit() {
        if let Some(cp) = SHARED.get() {
            cp.stop(Duration::ZERO);
            let _ = std::fs::remove_dir_all(&cp.dir);
        }
    }
    SHARED
        .get_or_init(|| async {
            let cp = ControlPlane::start()
                .await
                .unwrap_or_else(|e| panic!("starting the shared test control plane: {e:#}"));
            // SAFETY: registering a plain extern "C" fn with no captured state.
            unsafe {
                libc::atexit(at_exit);
            }
            cp
        })
        .await
}

enum Launch {
    /// A process lost a port race; worth retrying with other ports.
    PortClash(anyhow::Error),
    Failed(anyhow::Error),
}

/// Starts etcd and kube-apiserver and waits for `/readyz`.
async fn launch(
    bin: &Path,
    dir: &Path,
    pki: &pki::Pki,
    opts: &Options,
    started: Instant,
) -> Result<(Vec<Proc>, String, String), Launch> {
    let failed = |e: anyhow::Error| Launch::Failed(e);
    let etcd_port = crate::tools::free_port();
    let peer_port = crate::tools::free_port();
    let api_port = crate::tools::free_port();
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let server_url = format!("https://127.0.0.1:{api_port}");

    let data = dir.join("etcd-data");
    if data.exists() {
        std::fs::remove_dir_all(&data)
            .with_context(|| format!("removing {}", data.display()))
            .map_err(failed)?;
    }
    for log in ["etcd.log", "kube-apiserver.log"] {
        let _ = std::fs::remove_file(dir.join(log));
    }
    let p = |path: &Path| path.display().to_string();
    let etcd_args = vec![
        "--name=testenv".to_string(),
        format!("--data-dir={}", p(&data)),
        format!("--listen-client-urls={etcd_url}"),
        format!("--advertise-client-urls={etcd_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=testenv={peer_url}"),
        "--unsafe-no-fsync=true".to_string(),
        "--log-level=warn".to_string(),
    ];
    let mut api_args = vec![
        format!("--etcd-servers={etcd_url}"),
        format!("--cert-dir={}", p(&dir.join("pki"))),
        format!("--tls-cert-file={}", p(&pki.serving_cert_file)),
        format!("--tls-private-key-file={}", p(&pki.serving_key_file)),
        format!("--secure-port={api_port}"),
        "--bind-address=127.0.0.1".to_string(),
        "--advertise-address=127.0.0.1".to_string(),
        "--service-cluster-ip-range=10.0.0.0/24".to_string(),
        "--allow-privileged=true".to_string(),
        "--authorization-mode=RBAC".to_string(),
        "--disable-admission-plugins=ServiceAccount".to_string(),
        format!("--service-account-issuer={server_url}/"),
        format!("--service-account-key-file={}", p(&pki.sa_pub_file)),
        format!("--service-account-signing-key-file={}", p(&pki.sa_key_file)),
        format!("--token-auth-file={}", p(&pki.token_file)),
        "--endpoint-reconciler-type=none".to_string(),
    ];
    api_args.extend(opts.apiserver_args.iter().cloned());

    let mut procs = Vec::with_capacity(2);
    procs.push(
        Proc::start("etcd", &bin.join("etcd"), &etcd_args, &dir.join("etcd.log"))
            .map_err(failed)?,
    );
    procs.push(
        Proc::start(
            "kube-apiserver",
            &bin.join("kube-apiserver"),
            &api_args,
            &dir.join("kube-apiserver.log"),
        )
        .map_err(failed)?,
    );
    for p in &procs {
        let _ = std::fs::write(dir.join(format!("{}.pid", p.name)), p.pid().to_string());
    }

    match wait_ready(&mut procs, &server_url, pki, started, opts.startup_timeout).await {
        Ok(()) => Ok((procs, server_url, etcd_url)),
        Err(e) => {
            // Kill before reading the logs so they are complete.
            while let Some(mut p) = procs.pop() {
                p.stop(libc::SIGKILL, Duration::ZERO);
            }
            let logs = log_tails(dir, LOG_TAIL_LINES);
            let clash = logs.contains("address already in use");
            // The reason first, then the logs (anyhow's context would print them before it).
            let e = anyhow::anyhow!(
                "starting the control plane in {}: {e:#}\n{logs}",
                dir.display()
            );
            Err(if clash {
                Launch::PortClash(e)
            } else {
                Launch::Failed(e)
            })
        }
    }
}

async fn wait_ready(
    procs: &mut [Proc],
    server_url: &str,
    pki: &pki::Pki,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes())?])
        .timeout(Duration::from_secs(5))
        .build()?;
    let readyz = format!("{server_url}/readyz");
    let mut last;
    loop {
        for p in procs.iter_mut() {
            if let Some(status) = p.exited() {
                bail!("{} exited during start-up ({status})", p.name);
            }
        }
        match http.get(&readyz).bearer_auth(&pki.token).send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => last = format!("/readyz answered {}", resp.status()),
            Err(e) => last = format!("/readyz: {e}"),
        }
        if started.elapsed() > timeout {
            // The verbose form names the failing checks.
            let detail = match http
                .get(format!("{readyz}?verbose"))
                .bearer_auth(&pki.token)
                .send()
                .await
            {
                Ok(resp) => resp.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let failing: Vec<&str> = detail.lines().filter(|l| l.contains("failed")).collect();
            bail!(
                "kube-apiserver not ready after {timeout:?} (raise it with TESTENV_CONTROLPLANE_TIMEOUT=<seconds> \
                 the limit); last: {last}{}",
                if failing.is_empty() {
                    String::new()
                } else {
                    format!("; failing: {}", failing.join(", "))
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log_tails(dir: &Path, lines: usize) -> String {
    ["etcd.log", "kube-apiserver.log"]
        .iter()
        .map(|name| {
            let path = dir.join(name);
            format!(
                "--- last lines of {} ---\n{}",
                path.display(),
                process::tail(&path, lines)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Removes temporary control-plane directories whose owning process is gone (left behind
/// when a test process was killed before its exit handler ran).
fn sweep_stale_tempdirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let Some(pid) = std::fs::read_to_string(entry.path().join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the pid exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `prefix` reduced to a DNS label prefix: lowercase alphanumerics and '-', at most 40 chars.
fn dns_label_prefix(prefix: &str) -> String {
    let mut s: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    s = s.trim_matches('-').to_string();
    if s.is_empty() { "test".to_string() } else { s }
}

fn describe(obj: &DynamicObject, index: usize) -> String {
    let kind = obj.types.as_ref().map_or("<no kind>", |t| t.kind.as_str());
    let name = obj.metadata.name.as_deref().unwrap_or("<no name>");
    format!("document {} ({kind} {name})", index + 1)
}

async fn apply_one(
    client: &kube::Client,
    default_ns: &str,
    obj: DynamicObject,
) -> anyhow::Result<DynamicObject> {
    let types = obj.types.clone().context("object has no apiVersion/kind")?;
    let name = obj
        .metadata
        .name
        .clone()
        .context("object has no metadata.name")?;
    let gvk = GroupVersionKind::try_from(&types)?;

    // Discovery of a kind whose CRD was just established can lag for a moment; a kind that no
    // CRD defines fails at once.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (resource, caps) = loop {
        match discovery::pinned_kind(client, &gvk).await {
            Ok(found) => break found,
            Err(e) if Instant::now() < deadline && crd_defines(client, &gvk).await => {
                tracing::debug!("discovery of {gvk:?}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "no API resource serves {}/{}",
                        types.api_version, types.kind
                    )
                });
            }
        }
    };
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => {
            let ns = obj.metadata.namespace.as_deref().unwrap_or(default_ns);
            Api::namespaced_with(client.clone(), ns, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await?;

    if gvk.group == "apiextensions.k8s.io" && gvk.kind == "CustomResourceDefinition" {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let established = kube::runtime::wait::await_condition(
            crds,
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .with_context(|| format!("CRD {name} not Established after 30s"))??;
    }
    Ok(applied)
}

/// Whether some CustomResourceDefinition defines `gvk` (false on any error).
async fn crd_defines(client: &kube::Client, gvk: &GroupVersionKind) -> bool {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let Ok(list) = crds.list(&Default::default()).await else {
        return false;
    };
    list.items.iter().any(|crd| {
        crd.spec.group == gvk.group
            && crd.spec.names.kind == gvk.kind
            && crd.spec.versions.iter().any(|v| v.name == gvk.version)
    })
}
