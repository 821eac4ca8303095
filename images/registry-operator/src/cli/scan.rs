//! `registry-operator scan`: one scan, no cluster. `--output json` prints the status object the
//! operator writes, plus (when `images` had to leave tags out) a `facts` field with every tag's
//! digest and facts; `--previous` reads both, so a rescan of an unchanged repository, however
//! large, costs only the tag list and one HEAD per tag.

use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{DEFAULT_MAX_IMAGES, DEFAULT_REFERRERS_INTERVAL, RegistryStatus};
use crate::cli::proxy::ProxyArgs;
use crate::registry::{
    ClientOptions, Credentials, DEFAULT_MAX_TAGS, ListingMode, RegistryClient, RegistryState,
    RepositoryFacts, ScanError, ScanLimits, ScanOptions, TagFilter, Target, Timestamp, policy,
    scan,
};
use crate::status;

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// Registry URL, e.g. https://registry-1.docker.io (a bare host means https).
    #[arg(long)]
    url: String,
    /// Repository, e.g. library/nginx.
    #[arg(long)]
    repository: String,
    /// Username for Basic or token authentication.
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read the password from standard input (never from the command line).
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Skip TLS certificate verification.
    #[arg(long)]
    insecure_skip_verify: bool,
    /// PEM file of CA certificates to trust besides the system's.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Registry requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// Deadline for the whole scan, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Only tags matching this regular expression.
    #[arg(long)]
    include: Option<String>,
    /// Leave out tags matching this regular expression.
    #[arg(long)]
    exclude: Option<String>,
    /// At most this many images in the JSON status (the highest versions), within the same
    /// byte budget the operator keeps; 0 lists every tag, with no byte budget.
    #[arg(long, default_value_t = DEFAULT_MAX_IMAGES as usize)]
    max_images: usize,
    /// Fail when the repository lists more tags than this (after --include/--exclude), as the
    /// operator does; 0 lifts every limit (tags, tag-list pages and page size).
    #[arg(long, default_value_t = DEFAULT_MAX_TAGS)]
    max_tags: usize,
    /// An earlier `--output json` result: digests it knows need no manifest GET.
    #[arg(long)]
    previous: Option<PathBuf>,
    /// At most this many requests per second to the registry host (default: no ceiling).
    #[arg(long, value_parser = positive_rate)]
    requests_per_second: Option<f64>,
    /// How tags and digests are listed: `auto` uses a registry's native listing API where
    /// one is detected (checked by HEADs, falling back on any doubt), `distribution` always
    /// the registry API.
    #[arg(long, value_enum, default_value = "auto")]
    listing: ListingArg,
    /// Also read each new image's config for its `created` when the manifest has no
    /// `org.opencontainers.image.created` annotation, as `spec.timestamps: Created` does: one
    /// blob GET per new digest; with --previous from an earlier --created run, none.
    #[arg(long)]
    created: bool,
    /// Tags that name referrers (`sha256-<hex>`, cosign's `.sig`, `.att`, `.sbom`) are
    /// folded into the images they name; `show` lists them as well.
    #[arg(long, value_enum, default_value = "hide")]
    referrer_tags: ReferrerTagsArg,
    /// Seconds between two reads of known digests' referrers (signatures, SBOMs,
    /// attestations) when `--previous` says when they were last read; new digests' are read
    /// as they appear. 0: no referrer is read.
    #[arg(long, default_value_t = DEFAULT_REFERRERS_INTERVAL as u64)]
    referrers_interval: u64,
    /// Name the newest version (`latest` in the output) and list images in its order:
    /// `semver:RANGE` (Masterminds/Flux ranges, e.g. `semver:^1.25`), `numerical:asc|desc`,
    /// `alphabetical:asc|desc` or `newest-build`.
    #[arg(long, value_parser = parse_policy)]
    policy: Option<policy::Kind>,
    /// With --policy: only tags matching this regular expression are candidates.
    #[arg(long, requires = "policy")]
    policy_pattern: Option<String>,
    /// With --policy-pattern: the value compared instead of the tag (`$name`, `${name}`, `$1`).
    #[arg(long, requires = "policy_pattern")]
    policy_extract: Option<String>,
    /// With --policy: only versions created and pushed at least this long ago (`24h`, `90m`, `7d`).
    #[arg(long, requires = "policy")]
    min_age: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "table")]
    output: Output,
    #[command(flatten)]
    proxy: ProxyArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ReferrerTagsArg {
    Hide,
    Show,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ListingArg {
    Auto,
    Distribution,
}

fn parse_policy(s: &str) -> Result<policy::Kind, String> {
    let order = |o: &str| match o {
        "asc" => Ok(policy::Order::Asc),
        "desc" => Ok(policy::Order::Desc),
        _ => Err(format!("{o:?} is not an order: use asc or desc")),
    };
    match s.split_once(':') {
        Some(("semver", range)) => Ok(policy::Kind::Semver {
            range: range.to_string(),
        }),
        Some(("numerical", o)) => order(o).map(policy::Kind::Numerical),
        Some(("alphabetical", o)) => order(o).map(policy::Kind::Alphabetical),
        None if s == "newest-build" => Ok(policy::Kind::NewestBuild),
        _ => Err(format!(
            "{s:?} is not a policy: use semver:RANGE, numerical:asc|desc, alphabetical:asc|desc or newest-build"
        )),
    }
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

/// What `--output json` prints: the status, and the full facts when `images` is capped.
#[derive(serde::Serialize, serde::Deserialize)]
struct JsonResult {
    #[serde(flatten)]
    status: RegistryStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    facts: Option<RepositoryFacts>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Table,
    Json,
}

pub async fn run(args: ScanArgs) -> ExitCode {
    // A policy that cannot be built is a usage error (exit 2), found before any request.
    let policy = match &args.policy {
        Some(kind) => match policy::Policy::new(
            kind,
            args.policy_pattern.as_deref(),
            args.policy_extract.as_deref(),
            args.min_age.as_deref(),
        ) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("error: --policy: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    match scan_once(&args, policy.as_ref()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn scan_once(args: &ScanArgs, policy: Option<&policy::Policy>) -> anyhow::Result<()> {
    let target = Target::new(&args.url, &args.repository)?;
    let credentials = match (&args.username, args.password_stdin) {
        (Some(user), true) => Some(Credentials::new(user.clone(), read_password()?)),
        _ => None,
    };
    let ca_pem = args
        .ca_file
        .as_ref()
        .map(|p| std::fs::read(p).with_context(|| format!("reading --ca-file {}", p.display())))
        .transpose()?;
    let previous = args.previous.as_ref().map(read_previous).transpose()?;
    let client = RegistryClient::new(ClientOptions {
        insecure_skip_verify: args.insecure_skip_verify,
        ca_pem,
        proxy: args.proxy.settings()?,
        ..ClientOptions::default()
    })?
    .with_state(Arc::new(RegistryState::new(args.requests_per_second)));
    let mut options = ScanOptions {
        concurrency: args.concurrency.into(),
        timeout: Duration::from_secs(args.timeout),
        filter: TagFilter::new(args.include.as_deref(), args.exclude.as_deref())?,
        limits: match args.max_tags {
            0 => ScanLimits::unlimited(),
            n => ScanLimits {
                max_tags: n,
                ..ScanLimits::default()
            },
        },
        listing: match args.listing {
            ListingArg::Auto => ListingMode::Auto,
            ListingArg::Distribution => ListingMode::Distribution,
        },
        created_from_config: args.created,
        referrers_interval: (args.referrers_interval > 0)
            .then(|| Duration::from_secs(args.referrers_interval)),
        ..ScanOptions::default()
    };
    if let Some(p) = &previous {
        options.referrers_checked_at = status::referrers_checked_at(&p.status);
        if let Some(facts) = &p.facts {
            facts.merge_into(&mut options.known, &mut options.known_tags);
        }
        for (d, f) in status::known_facts(&p.status) {
            options.known.entry(d).or_insert(f);
        }
        for (t, d) in status::known_tags(&p.status) {
            options.known_tags.entry(t).or_insert(d);
        }
    }
    // A panic in the scan is reported as the scan's error (InternalError), not exit code 101.
    let mut report = AssertUnwindSafe(scan(&client, &target, credentials.as_ref(), &options))
        .catch_unwind()
        .await
        .unwrap_or(Err(ScanError::Internal { phase: "scan" }))?;
    tracing::info!(
        tags = report.images.len(),
        tag_pages = report.requests.tag_pages,
        heads = report.requests.manifest_heads,
        gets = report.requests.manifest_gets,
        blob_heads = report.requests.blob_heads,
        blob_gets = report.requests.blob_gets,
        tokens = report.requests.token_requests,
        failed_tags = report.failed_tags.len(),
        retries = report.requests.retries,
        native_requests = report.requests.native_requests,
        referrer_requests = report.requests.referrer_requests,
        lister = report.requests.lister.as_deref().unwrap_or_default(),
        ms = report.duration.as_millis() as u64,
        "scan finished"
    );
    let ctx = status::Context {
        generation: None,
        now: Time(k8s_openapi::jiff::Timestamp::now()),
        next_scan: None,
        max_images: if args.max_images == 0 {
            usize::MAX
        } else {
            args.max_images
        },
        byte_budget: if args.max_images == 0 {
            usize::MAX
        } else {
            status::IMAGES_BYTE_BUDGET
        },
        show_referrer_tags: args.referrer_tags == ReferrerTagsArg::Show,
    };
    let conditions = previous
        .as_ref()
        .map_or(&[][..], |p| &p.status.conditions[..]);
    let evaluation = policy.map(|p| crate::latest::order_report(p, &mut report, Timestamp::now()));
    let mut status = status::succeeded(conditions, &report, &ctx);
    let before = crate::latest::Before {
        latest: previous.as_ref().and_then(|p| p.status.latest.as_ref()),
        has_previous: false,
    };
    let applied = crate::latest::apply(&mut status, evaluation.as_ref(), before, conditions, &ctx);
    // The file of an earlier run carries its previousLatest on while latest stays.
    if evaluation.is_some() && applied.moved.is_none() && status.latest.is_some() {
        status.previous_latest = previous
            .as_ref()
            .and_then(|p| p.status.previous_latest.clone());
    }
    match args.output {
        Output::Json => {
            // Also when referrer tags are not listed: their digests and what a fallback
            // tag's index lists let `--previous` skip their GETs too.
            let facts = (status.omitted_tags.unwrap_or(0) > 0
                || status.referrer_tags.unwrap_or(0) > 0)
                .then(|| RepositoryFacts::new(&report.images, &report.facts));
            println!(
                "{}",
                serde_json::to_string_pretty(&JsonResult { status, facts })?
            )
        }
        Output::Table => print_table(&status),
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(
        !password.is_empty(),
        "--password-stdin: standard input was empty"
    );
    Ok(password)
}

fn read_previous(path: &PathBuf) -> anyhow::Result<JsonResult> {
    let text =
        std::fs::read(path).with_context(|| format!("reading --previous {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| {
        format!(
            "--previous {} is not an earlier `scan --output json` result",
            path.display()
        )
    })
}

fn print_table(status: &RegistryStatus) {
    let images = status.images.as_deref().unwrap_or_default();
    let tag_width = images.iter().map(|i| i.tag.len()).max().unwrap_or(3).max(3);
    println!(
        "{:<tag_width$}  {:<71}  {:>10}  PLATFORMS",
        "TAG", "DIGEST", "SIZE"
    );
    for i in images {
        let platforms: Vec<String> = i
            .platforms
            .iter()
            .map(|p| match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            })
            .collect();
        println!(
            "{:<tag_width$}  {:<71}  {:>10}  {}{}{}",
            i.tag,
            i.digest,
            i.size.map(human_size).unwrap_or_else(|| "-".into()),
            platforms.join(","),
            artifact_summary(i),
            i.note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
        );
    }
    if let Some(m) = &status.message {
        eprintln!("{m}");
    }
    if let Some(l) = &status.latest {
        eprintln!("Latest: {} (version {}, {})", l.tag, l.version, l.digest);
    } else if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::latest::LATEST_FOUND)
    {
        eprintln!("{}", c.message);
    }
}

/// `  [artifact application/vnd.cncf.helm.config.v1+json]  [signature, sbom]`: what a tag
/// holds when it is not an image, and the kinds of its referrers (its platforms' too).
fn artifact_summary(i: &crate::registry::Image) -> String {
    let mut out = String::new();
    if let Some(t) = &i.artifact_type {
        out.push_str(&format!("  [artifact {t}]"));
    }
    let mut kinds: Vec<&'static str> = i
        .referrers
        .iter()
        .chain(i.platforms.iter().flat_map(|p| p.referrers.iter()))
        .map(|r| match r.kind {
            crate::registry::ReferrerKind::Signature => "signature",
            crate::registry::ReferrerKind::Sbom => "sbom",
            crate::registry::ReferrerKind::Attestation => "attestation",
            crate::registry::ReferrerKind::Other => "other",
        })
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    if !kinds.is_empty() {
        out.push_str(&format!("  [{}]", kinds.join(", ")));
    }
    out
}

fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(142_857_392), "136.2 MiB");
    }
}
