//! Where the Go-built binaries live, and small process helpers.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The repository root (testenv sits one level below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testenv has a parent")
        .to_path_buf()
}

/// Directory holding the binaries of one `hack/tools.sh` set (`controlplane`, `registry`, `chart`,
/// `lint`, `peers`), building them on first use. `KUBEBUILDER_ASSETS` wins for `controlplane`.
pub fn tool_dir(set: &str) -> anyhow::Result<PathBuf> {
    let script = repo_root().join("hack/tools.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(set)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {set} failed:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = String::from_utf8(out.stdout)?.trim().to_string();
    Ok(PathBuf::from(dir))
}

/// A free loopback TCP port (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a loopback port")
}
