//! The tools people script instead: skopeo, crane and regctl, each listing the tags and then
//! resolving every tag's digest with 8-way parallelism (`xargs -P 8`), the way a user writes it;
//! and the stronger peer, a small Go program on go-containerregistry (`tools/peers/cmd/ggcr-digests`)
//! that lists and HEADs in one process with the same concurrency, what a competent user writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::fixture::{Check, Fixture};
use crate::sys::{Measured, run_measured};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Peer {
    Skopeo,
    Crane,
    Regctl,
    /// go-containerregistry in one process (tools/peers/cmd/ggcr-digests).
    Ggcr,
}

pub const ALL: [Peer; 4] = [Peer::Skopeo, Peer::Crane, Peer::Regctl, Peer::Ggcr];

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Skopeo => "skopeo",
            Peer::Crane => "crane",
            Peer::Regctl => "regctl",
            Peer::Ggcr => "ggcr-digests",
        }
    }

    /// The commands, as BENCHMARKS.md shows them (`$R` is `host:port/repository`).
    pub fn recipe(self) -> &'static str {
        match self {
            Peer::Skopeo => {
                "skopeo list-tags --tls-verify=false docker://$R | jq -r '.Tags[]' | xargs -P 8 -I{} sh -c 'echo \"$1 sha256:$(skopeo inspect --raw --tls-verify=false docker://$2:$1 | sha256sum | cut -d\" \" -f1)\"' _ {} $R"
            }
            Peer::Crane => {
                "crane ls --insecure $R | xargs -P 8 -I{} sh -c 'echo \"$1 $(crane digest --insecure $2:$1)\"' _ {} $R"
            }
            Peer::Regctl => {
                "regctl registry set --tls disabled $HOST (once); regctl tag ls $R | xargs -P 8 -I{} sh -c 'echo \"$1 $(regctl image digest $2:$1)\"' _ {} $R"
            }
            Peer::Ggcr => {
                "ggcr-digests -insecure -concurrency 8 $R (one Go process: go-containerregistry's remote.Puller lists the tags, then 8 workers HEAD them over one connection pool and token)"
            }
        }
    }
}

/// One peer run over one repository.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerRun {
    pub peer: Peer,
    pub measured: Measured,
    pub check: Check,
}

pub struct Peers {
    pub skopeo: PathBuf,
    pub crane: PathBuf,
    pub regctl: PathBuf,
    pub ggcr: PathBuf,
    /// `host:port` of the registry.
    pub host: String,
    pub parallelism: usize,
    pub work: PathBuf,
}

impl Peers {
    /// Points regctl at the plain-HTTP registry, in a private config (HOME is the work dir).
    pub fn prepare(&self) -> anyhow::Result<()> {
        let out = Command::new(&self.regctl)
            .args(["registry", "set", "--tls", "disabled", &self.host])
            .env("HOME", &self.work)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "regctl registry set: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn script(&self, peer: Peer, repo: &str) -> String {
        let r = format!("{}/{repo}", self.host);
        let p = self.parallelism;
        let q = |p: &Path| format!("'{}'", p.display());
        match peer {
            Peer::Skopeo => format!(
                "set -euo pipefail\n{s} list-tags --tls-verify=false docker://{r} | jq -r '.Tags[]' \
                 | xargs -P {p} -I{{}} sh -c 'echo \"$1 sha256:$({s} inspect --raw --tls-verify=false docker://$2:$1 | sha256sum | cut -d\" \" -f1)\"' _ {{}} {r}\n",
                s = q(&self.skopeo)
            ),
            Peer::Crane => format!(
                "set -euo pipefail\n{c} ls --insecure {r} \
                 | xargs -P {p} -I{{}} sh -c 'echo \"$1 $({c} digest --insecure $2:$1)\"' _ {{}} {r}\n",
                c = q(&self.crane)
            ),
            Peer::Regctl => format!(
                "set -euo pipefail\n{g} tag ls {r} \
                 | xargs -P {p} -I{{}} sh -c 'echo \"$1 $({g} image digest $2:$1)\"' _ {{}} {r}\n",
                g = q(&self.regctl)
            ),
            Peer::Ggcr => format!(
                "set -euo pipefail\n{g} -insecure -concurrency {p} {r}\n",
                g = q(&self.ggcr)
            ),
        }
    }

    /// Runs one peer over `fixture` and checks every digest it printed.
    pub fn run(&self, peer: Peer, fixture: &Fixture, label: &str) -> anyhow::Result<PeerRun> {
        let out = self.work.join(format!("{label}.out"));
        let err = self.work.join(format!("{label}.stderr"));
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(self.script(peer, &fixture.repo))
            .env("HOME", &self.work)
            // crane/regctl/skopeo read no proxy settings from here.
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY");
        let measured = run_measured(&mut cmd, &out, &err, Duration::from_secs(1800))?;
        let found: HashMap<String, String> = std::fs::read_to_string(&out)?
            .lines()
            .filter_map(|l| {
                let (t, d) = l.split_once(' ')?;
                Some((t.to_string(), d.trim().to_string()))
            })
            .collect();
        Ok(PeerRun {
            peer,
            measured,
            check: fixture.check(&found),
        })
    }
}
