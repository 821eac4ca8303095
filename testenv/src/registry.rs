//! A real registry process on a free loopback port: CNCF distribution v3 (the default),
//! distribution 2.8 (Debian's `docker-registry`) or go-containerregistry's `crane registry serve`.
//!
//! Each [`RegistryServer`] owns a temporary directory holding its config, filesystem storage,
//! TLS material, htpasswd file and log (`registry.log`). The process is killed when the server is
//! dropped, and also when the test process dies (see [`spawn_tied`]).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::certs::TestCa;
use crate::token::{TokenOptions, TokenServer};
use crate::tools;

/// How clients authenticate to the registry.
#[derive(Clone, Debug, Default)]
pub enum RegistryAuth {
    /// Anonymous access to everything.
    #[default]
    None,
    /// `auth: htpasswd` (Basic) with these (user, password) pairs.
    Htpasswd { users: Vec<(String, String)> },
    /// `auth: token` backed by a [`TokenServer`] that knows these (user, password) pairs.
    Token {
        users: Vec<(String, String)>,
        options: TokenOptions,
    },
}

/// Which registry implementation runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Implementation {
    /// CNCF distribution v3 (`hack/tools.sh registry`).
    #[default]
    DistributionV3,
    /// distribution 2.8, as Debian packages it (`docker-registry`, `apt-get install
    /// docker-registry`); accepts schema 1 pushes (`compatibility.schema1.enabled`).
    Distribution28,
    /// go-containerregistry's in-memory registry (`crane registry serve`, `hack/tools.sh
    /// peers`): no auth, no TLS.
    Crane,
}

impl Implementation {
    pub const ALL: [Implementation; 3] = [
        Implementation::DistributionV3,
        Implementation::Distribution28,
        Implementation::Crane,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Implementation::DistributionV3 => "distribution-v3",
            Implementation::Distribution28 => "distribution-2.8",
            Implementation::Crane => "crane-registry",
        }
    }

    /// The binary, or an error that says how to get it.
    pub fn binary(self) -> anyhow::Result<PathBuf> {
        match self {
            Implementation::DistributionV3 => registry_binary(),
            Implementation::Distribution28 => {
                let path = std::env::var_os("PATH").unwrap_or_default();
                std::env::split_paths(&path)
                    .chain([PathBuf::from("/usr/bin")])
                    .map(|d| d.join("docker-registry"))
                    .find(|p| p.is_file())
                    .context("no docker-registry binary (distribution 2.8): apt-get install -y docker-registry")
            }
            Implementation::Crane => {
                let bin = tools::tool_dir("peers")?.join("crane");
                if !bin.is_file() {
                    bail!("no crane binary at {} (hack/tools.sh peers)", bin.display());
                }
                Ok(bin)
            }
        }
    }
}

/// What [`RegistryServer::start`] starts.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    pub auth: RegistryAuth,
    /// Serve HTTPS with a certificate from a fresh [`TestCa`] (SANs 127.0.0.1, localhost).
    pub tls: bool,
    pub implementation: Implementation,
    /// A `notifications` endpoint the registry sends its events to (distribution only).
    pub notify: Option<Notify>,
}

/// One endpoint of distribution's `notifications` configuration.
#[derive(Clone, Debug)]
pub struct Notify {
    pub url: String,
    /// The `Authorization` header sent with every event.
    pub authorization: String,
}

impl RegistryOptions {
    /// Plain HTTP, no auth.
    pub fn plain() -> Self {
        Self::default()
    }

    /// `auth: htpasswd` with one user.
    pub fn htpasswd(user: &str, password: &str) -> Self {
        RegistryOptions {
            auth: RegistryAuth::Htpasswd {
                users: vec![(user.into(), password.into())],
            },
            ..Self::default()
        }
    }

    /// `auth: token` with one user and default [`TokenOptions`].
    pub fn token(user: &str, password: &str) -> Self {
        RegistryOptions {
            auth: RegistryAuth::Token {
                users: vec![(user.into(), password.into())],
                options: TokenOptions::default(),
            },
            ..Self::default()
        }
    }

    /// The same options served by another implementation.
    pub fn on(mut self, implementation: Implementation) -> Self {
        self.implementation = implementation;
        self
    }

    /// The same options, the registry posting its events to `url` with this `Authorization`.
    pub fn notifying(mut self, url: &str, authorization: &str) -> Self {
        self.notify = Some(Notify {
            url: url.into(),
            authorization: authorization.into(),
        });
        self
    }

    /// The same options served over HTTPS.
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }
}

/// A running registry. Dropping it kills the process and removes its directory.
pub struct RegistryServer {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA that signed the TLS certificate (PEM), when `tls`.
    pub ca_pem: Option<String>,
    /// The token server, for `RegistryAuth::Token`.
    pub token: Option<TokenServer>,
    /// The users of `Htpasswd`/`Token` auth (empty for `None`).
    pub users: Vec<(String, String)>,
    port: u16,
    child: Mutex<Option<Child>>,
    htpasswd: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for RegistryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryServer")
            .field("url", &self.url)
            .field("dir", &self.dir.path())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.kill();
    }
}

const START_TIMEOUT: Duration = Duration::from_secs(30);

impl RegistryServer {
    /// Start a registry with these options and wait until `GET /v2/` answers (200 or 401).
    pub async fn start(opts: RegistryOptions) -> anyhow::Result<Self> {
        let implementation = opts.implementation;
        let bin = implementation.binary()?;
        if implementation == Implementation::Crane
            && (opts.tls || !matches!(opts.auth, RegistryAuth::None))
        {
            bail!(
                "crane registry serve has no TLS or auth; put a FaultProxy with require_bearer in front"
            );
        }
        let parent = storage_parent();
        let dir = tempfile::Builder::new()
            .prefix("testenv-registry-")
            .tempdir_in(&parent)
            .with_context(|| format!("creating the registry's temp dir in {}", parent.display()))?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("data"))?;

        // TLS material.
        let (ca_pem, tls) = if opts.tls {
            let ca = TestCa::new();
            let (cert, key) = ca.server_cert(&["127.0.0.1", "localhost"]);
            std::fs::write(root.join("tls.crt"), cert)?;
            std::fs::write(root.join("tls.key"), key)?;
            std::fs::write(root.join("ca.crt"), &ca.ca_pem)?;
            (Some(ca.ca_pem.clone()), true)
        } else {
            (None, false)
        };

        // Auth.
        let mut token = None;
        let mut htpasswd = None;
        let (auth, users) = match opts.auth {
            RegistryAuth::None => (None, Vec::new()),
            RegistryAuth::Htpasswd { users } => {
                let path = root.join("htpasswd");
                write_htpasswd(&path, &users)?;
                let auth = json!({"htpasswd": {"realm": "testenv-registry", "path": path}});
                htpasswd = Some(path);
                (Some(auth), users)
            }
            RegistryAuth::Token { users, options } => {
                let ca = TestCa::new();
                let bundle = root.join("token-root.crt");
                std::fs::write(&bundle, &ca.ca_pem)?;
                let server = TokenServer::start(users.clone(), options, &ca).await?;
                let auth = json!({"token": {
                    "realm": server.realm,
                    "service": server.service,
                    "issuer": server.issuer,
                    "rootcertbundle": bundle,
                }});
                token = Some(server);
                (Some(auth), users)
            }
        };

        let client = http_client(ca_pem.as_deref())?;
        let scheme = if tls { "https" } else { "http" };
        let mut last_err = None;
        for _attempt in 0..3 {
            let port = tools::free_port();
            let mut config = config_yaml(root, port, tls, auth.as_ref(), opts.notify.as_ref());
            if implementation == Implementation::Distribution28 {
                // Old repositories still hold schema 1; 2.8 refuses new ones unless asked.
                config.push_str("compatibility:\n  schema1:\n    enabled: true\n");
            }
            let config_path = root.join("config.yml");
            std::fs::write(&config_path, config)?;
            let log_path = root.join("registry.log");
            let log = std::fs::File::create(&log_path)?;
            let mut cmd = Command::new(&bin);
            match implementation {
                Implementation::Crane => {
                    cmd.args(["registry", "serve", "--address"])
                        .arg(format!("127.0.0.1:{port}"));
                }
                _ => {
                    cmd.arg("serve").arg(&config_path);
                }
            }
            cmd.current_dir(root)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .env("OTEL_TRACES_EXPORTER", "none")
                .env("OTEL_METRICS_EXPORTER", "none");
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            let mut child =
                spawn_tied(cmd).with_context(|| format!("spawning {}", bin.display()))?;
            let url = format!("{scheme}://127.0.0.1:{port}");
            match wait_ready(&client, &url, &mut child).await {
                Ok(()) => {
                    return Ok(RegistryServer {
                        url,
                        ca_pem,
                        token,
                        users,
                        port,
                        child: Mutex::new(Some(child)),
                        htpasswd,
                        dir,
                    });
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let tail = log_tail(&log_path, 40);
                    let retry = tail.contains("address already in use");
                    last_err = Some(e.context(format!("registry log tail:\n{tail}")));
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    /// `127.0.0.1:PORT` (what image references use).
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's temp directory (config, `data/` storage, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The last `lines` lines of the registry's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    /// A reqwest client that trusts this registry's CA (if TLS).
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        http_client(self.ca_pem.as_deref())
    }

    /// Replace the users: rewrites the htpasswd file (the registry re-reads it on change) or
    /// updates the token server.
    pub fn set_users(&mut self, users: &[(&str, &str)]) -> anyhow::Result<()> {
        let owned: Vec<(String, String)> = users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        if let Some(path) = &self.htpasswd {
            let tmp = path.with_extension("tmp");
            write_htpasswd(&tmp, &owned)?;
            std::fs::rename(&tmp, path)?;
        }
        if let Some(token) = &self.token {
            token.set_users(users);
        }
        self.users = owned;
        Ok(())
    }

    /// The registry's process id (while running).
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    /// Whether the registry process is still running.
    pub fn is_running(&self) -> bool {
        let mut guard = self.child.lock().unwrap();
        match guard.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kill the process now (the directory stays until drop).
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_ready(client: &reqwest::Client, url: &str, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let url = format!("{url}/v2/");
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("registry exited during start-up: {status}");
        }
        let last = match client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(resp) if matches!(resp.status().as_u16(), 200 | 401) => return Ok(()),
            Ok(resp) => format!("GET /v2/ answered {}", resp.status()),
            Err(e) => format!("GET /v2/ failed: {e:#}"),
        };
        if Instant::now() > deadline {
            bail!("registry not ready after {START_TIMEOUT:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The `registry` binary (`hack/tools.sh registry`, asked once per process).
pub fn registry_binary() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    if let Some(bin) = BIN.get() {
        return Ok(bin.clone());
    }
    let bin = tools::tool_dir("registry")?.join("registry");
    if !bin.is_file() {
        bail!("no registry binary at {}", bin.display());
    }
    Ok(BIN.get_or_init(|| bin).clone())
}

/// Where registry directories go: `$TESTENV_REGISTRY_TMPDIR` if set, else `/dev/shm` when it is
/// a writable tmpfs with at least 2 GiB free, else the usual temp dir. Distribution's filesystem
/// driver fsyncs every write; on a disk that makes 2,000 tag PUTs take ~8 s instead of ~1 s.
fn storage_parent() -> PathBuf {
    if let Some(dir) = std::env::var_os("TESTENV_REGISTRY_TMPDIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && free_bytes(shm).is_some_and(|b| b >= 2 << 30) {
        let probe = tempfile::Builder::new()
            .prefix("testenv-probe-")
            .tempdir_in(shm);
        if probe.is_ok() {
            return shm.to_path_buf();
        }
    }
    std::env::temp_dir()
}

fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

fn config_yaml(
    root: &Path,
    port: u16,
    tls: bool,
    auth: Option<&serde_json::Value>,
    notify: Option<&Notify>,
) -> String {
    let mut http = json!({
        "addr": format!("127.0.0.1:{port}"),
        "secret": hex::encode(rand::random::<[u8; 16]>()),
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    });
    if tls {
        http["tls"] = json!({
            "certificate": root.join("tls.crt"),
            "key": root.join("tls.key"),
        });
    }
    let mut config = json!({
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": false}},
        "storage": {
            "filesystem": {"rootdirectory": root.join("data")},
            "delete": {"enabled": true},
            "maintenance": {"uploadpurging": {"enabled": false}},
        },
        "http": http,
    });
    if let Some(auth) = auth {
        config["auth"] = auth.clone();
    }
    if let Some(n) = notify {
        // Short retry backoff: a test's receiver may start after the registry.
        config["notifications"] = json!({"endpoints": [{
            "name": "testenv",
            "url": n.url,
            "headers": {"Authorization": [n.authorization]},
            "timeout": "5s",
            "threshold": 3,
            "backoff": "500ms",
        }]});
    }
    serde_yaml::to_string(&config).expect("serializing the registry config")
}

fn write_htpasswd(path: &Path, users: &[(String, String)]) -> anyhow::Result<()> {
    let mut out = String::new();
    for (user, pass) in users {
        // Cost 4 (bcrypt's minimum) keeps every authenticated request cheap.
        let hash = bcrypt::hash(pass, 4).context("bcrypt")?;
        out.push_str(&format!("{user}:{hash}\n"));
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Install rustls' `ring` provider as the process default (a no-op if one is installed).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client for tests: trusts only `ca_pem` when given, no proxy from the environment,
/// no redirects.
pub fn http_client(ca_pem: Option<&str>) -> anyhow::Result<reqwest::Client> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(64);
    if let Some(pem) = ca_pem {
        let cert = reqwest::Certificate::from_pem(pem.as_bytes()).context("parsing the CA")?;
        builder = builder.tls_certs_only([cert]);
    }
    builder.build().context("building a reqwest client")
}

pub use crate::spawn::spawn_tied;
