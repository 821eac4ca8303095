//! `registry-operator`: `run` the controller, `scan` one repository without a cluster, or
//! print the `crd`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use registry_operator::cli::{logging, scan::ScanArgs};
use registry_operator::controller::RunArgs;

#[derive(Parser)]
#[command(
    name = "registry-operator",
    version,
    about = "Scans Docker/OCI registries and records every tag's digest and size"
)]
struct Cli {
    /// Log level: error, warn, info, debug, trace (RUST_LOG, when set, wins).
    #[arg(long, env = "LOG_LEVEL", default_value = "info", global = true)]
    log_level: String,
    /// Log format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator: watch Registry objects and keep their status current.
    Run(Box<RunArgs>),
    /// Scan one repository now and print what the operator would write to status.
    Scan(Box<ScanArgs>),
    /// Print the Registry CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.log_level, cli.log_format);
    registry_operator::registry::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        // ok: start-up, no outside input; nothing can run without the runtime.
        .expect("building the tokio runtime");
    // Work runs as a spawned task, not on the main thread: otherwise every response hops
    // between the main thread and the workers that drive the connections (measured: ~30% more
    // CPU per scan, see BENCHMARKS.md).
    // A panic that escapes the work (the controller contains those of each object) ends the
    // process with an error line and exit code 1, never Rust's 101 with no word of what failed.
    let escaped = |e: tokio::task::JoinError| anyhow::anyhow!("internal error: {e}");
    let result = match cli.command {
        Command::Run(args) => runtime
            .block_on(runtime.spawn(registry_operator::controller::run(*args)))
            .map_err(escaped)
            .and_then(|r| r),
        Command::Scan(args) => {
            match runtime.block_on(runtime.spawn(registry_operator::cli::scan::run(*args))) {
                Ok(code) => return code,
                Err(e) => Err(escaped(e)),
            }
        }
        Command::Crd => registry_operator::cli::print_crd(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
