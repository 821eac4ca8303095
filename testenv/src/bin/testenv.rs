//! `testenv`: run the real services of the test environment in the foreground, for the demo and
//! lint scripts (and for poking at them by hand).
//!
//! ```text
//! testenv controlplane --state-dir DIR &   # writes DIR/kubeconfig, then touches DIR/ready
//! until [ -e DIR/ready ]; do sleep 1; done
//! KUBECONFIG=DIR/kubeconfig kubectl get ns
//! kill %1                                  # SIGINT/SIGTERM: stops etcd + kube-apiserver
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use testenv::controlplane::{ControlPlane, Options};

#[derive(Parser)]
#[command(
    name = "testenv",
    about = "Real services for registry-operator's tests, demo and lint"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run etcd + kube-apiserver on loopback until SIGINT/SIGTERM.
    Controlplane(ControlplaneArgs),
    /// Run the demo's two registries (public, and password-protected) with sample images
    /// until SIGINT/SIGTERM. Writes DIR/env (URLs and the demo credentials), then DIR/ready.
    DemoRegistries(DemoArgs),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Directory for env and ready.
    #[arg(long)]
    state_dir: PathBuf,
}

#[derive(clap::Args)]
struct ControlplaneArgs {
    /// Directory for state and logs. Written: kubeconfig, ready (once /readyz is ok),
    /// etcd.pid, kube-apiserver.pid, etcd.log, kube-apiserver.log, kubectl (a symlink).
    #[arg(long, env = "TESTENV_STATE_DIR")]
    state_dir: PathBuf,
    /// Seconds to wait for the apiserver to become ready.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Extra kube-apiserver flag, e.g. `--apiserver-arg=--feature-gates=Foo=true` (repeatable).
    #[arg(long = "apiserver-arg", allow_hyphen_values = true)]
    apiserver_args: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    testenv::controlplane::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Command::Controlplane(args) => rt.block_on(controlplane(args)),
        Command::DemoRegistries(args) => rt.block_on(demo_registries(args)),
    }
}

fn say(msg: impl std::fmt::Display) {
    eprintln!("testenv: {msg}");
}

async fn controlplane(args: ControlplaneArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Listen before starting, so a signal during start-up is not lost.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let dir = &args.state_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ready = dir.join("ready");
    for stale in [&ready, &dir.join("kubeconfig")] {
        let _ = std::fs::remove_file(stale);
    }

    if std::env::var_os("KUBEBUILDER_ASSETS").is_none() {
        say(
            "locating kube-apiserver, etcd and kubectl (hack/tools.sh controlplane); the first \
             run builds them from tools/k8s, which takes ~10-20 minutes",
        );
    }
    let bin_dir = tokio::task::spawn_blocking(testenv::controlplane::controlplane_dir).await??;
    say(format!("binaries: {}", bin_dir.display()));
    say(format!(
        "starting etcd + kube-apiserver in {}",
        dir.display()
    ));

    let opts = Options {
        dir: Some(dir.clone()),
        startup_timeout: Duration::from_secs(args.timeout),
        apiserver_args: args.apiserver_args,
    };
    let cp = tokio::select! {
        cp = ControlPlane::start_with(opts) => cp?,
        _ = sigterm.recv() => { say("SIGTERM during start-up, exiting"); return Ok(()); }
        _ = sigint.recv() => { say("SIGINT during start-up, exiting"); return Ok(()); }
    };
    link_kubectl(&cp.kubectl(), &dir.join("kubectl"));
    std::fs::write(&ready, format!("{}\n", cp.server_url()))
        .with_context(|| format!("writing {}", ready.display()))?;
    say(format!(
        "ready in {:.1}s at {}\n  export KUBECONFIG={}\n  {} get ns\nSIGINT/SIGTERM stops it",
        cp.startup_time().as_secs_f64(),
        cp.server_url(),
        cp.kubeconfig_path().display(),
        dir.join("kubectl").display(),
    ));

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let result = loop {
        tokio::select! {
            _ = sigterm.recv() => { say("SIGTERM, stopping"); break Ok(()); }
            _ = sigint.recv() => { say("SIGINT, stopping"); break Ok(()); }
            _ = tick.tick() => {
                if let Err(e) = cp.check_alive() { break Err(e); }
            }
        }
    };
    let _ = std::fs::remove_file(&ready);
    cp.stop(Duration::from_secs(5));
    drop(cp);
    say("stopped");
    result
}

/// `DIR/kubectl` -> the kubectl matching the apiserver (best effort).
fn link_kubectl(target: &Path, link: &Path) {
    let _ = std::fs::remove_file(link);
    let _ = std::os::unix::fs::symlink(target, link);
}

async fn demo_registries(args: DemoArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let dir = &args.state_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ready = dir.join("ready");
    let _ = std::fs::remove_file(&ready);
    say("starting the demo registries (the first run builds the registry from tools/registry)");
    let registries = testenv::demo::start(dir).await?;
    std::fs::write(&ready, "")?;
    say(format!(
        "public registry {} ({}), private registry {} ({}, user {})",
        registries.public.url,
        testenv::demo::PUBLIC_REPOSITORY,
        registries.private.url,
        testenv::demo::PRIVATE_REPOSITORY,
        testenv::demo::PRIVATE_USERNAME
    ));
    tokio::select! {
        _ = sigterm.recv() => {}
        _ = sigint.recv() => {}
    }
    let _ = std::fs::remove_file(&ready);
    drop(registries);
    say("demo registries stopped");
    Ok(())
}
