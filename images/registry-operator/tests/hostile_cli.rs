//! `registry-operator scan` against every mode of the hostile registry (testenv::hostile):
//! whatever the registry sends, the CLI ends within its deadline with an answer of bounded
//! size — a clear error, or a result — and never with a panic (exit code 101).

use std::process::Stdio;
use std::time::{Duration, Instant};

use testenv::hostile::{Attack, HostileRegistry, HugeField, NumberHeader};

/// The `--timeout` every run gets; a run must end this long after it (plus a margin for a
/// debug build on a busy machine). Long enough that a scan which holds megabytes of strings
/// finishes (and shows what it prints) rather than passing by running out of time.
const SCAN_TIMEOUT: Duration = Duration::from_secs(45);
const MARGIN: Duration = Duration::from_secs(40);
/// What a person reading a terminal can call a clear answer: no megabytes echoed back.
const MAX_OUTPUT: usize = 256 << 10;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// Exit code 1 with an error on stderr.
    Fails,
    /// Exit code 0.
    Succeeds,
    /// Exit code 1 with an error of its own, not the scan's deadline.
    Refuses,
    /// Either, depending on the value (some absurd numbers are harmless once ignored).
    Either,
}

struct Run {
    repository: String,
    code: Option<i32>,
    elapsed: Duration,
    stdout: Vec<u8>,
    stderr: String,
}

async fn scan(url: &str, repository: &str) -> Run {
    let started = Instant::now();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_registry-operator"))
        .args(["--log-level", "warn", "scan", "--url", url])
        .args(["--repository", repository, "--output", "json"])
        .args(["--timeout", &SCAN_TIMEOUT.as_secs().to_string()])
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting registry-operator scan");
    let out = tokio::time::timeout(SCAN_TIMEOUT + MARGIN, child.wait_with_output()).await;
    let elapsed = started.elapsed();
    match out {
        Ok(Ok(out)) => Run {
            repository: repository.to_string(),
            code: out.status.code(),
            elapsed,
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        _ => Run {
            repository: repository.to_string(),
            code: None,
            elapsed,
            stdout: Vec::new(),
            stderr: format!(
                "(still running {}s after a --timeout of {}s: killed)",
                elapsed.as_secs(),
                SCAN_TIMEOUT.as_secs()
            ),
        },
    }
}

fn excerpt(s: &str) -> String {
    let s: String = s.chars().take(1500).collect();
    s.replace(|c: char| c.is_control() && c != '\n', "?")
}

/// What is wrong with one run, if anything.
fn judge(run: &Run, expect: Expect) -> Option<String> {
    let what = |why: &str| {
        Some(format!(
            "{}: {why} (exit {:?} after {:.1}s, {} bytes out, {} bytes err); stderr: {}",
            run.repository,
            run.code,
            run.elapsed.as_secs_f64(),
            run.stdout.len(),
            run.stderr.len(),
            excerpt(&run.stderr)
        ))
    };
    let Some(code) = run.code else {
        return what("did not end within its deadline");
    };
    if code == 101 || run.stderr.contains("panicked") {
        return what("panicked");
    }
    if run.stdout.len() + run.stderr.len() > MAX_OUTPUT {
        return what("answered with more than 256 KiB of output");
    }
    match (expect, code) {
        (Expect::Succeeds, 0) | (Expect::Fails | Expect::Refuses, 1) | (Expect::Either, 0 | 1) => {}
        _ => return what(&format!("expected {expect:?}")),
    }
    if expect == Expect::Refuses && run.stderr.contains("timed out") {
        return what("ran into its deadline instead of refusing");
    }
    if code == 1 && !run.stderr.to_ascii_lowercase().contains("error") {
        return what("failed without saying why");
    }
    None
}

async fn against(attack: Attack, expect: Expect) -> Vec<Run> {
    let hostile = HostileRegistry::start(attack.clone()).await.unwrap();
    let runs =
        futures::future::join_all(attack.repositories().iter().map(|r| scan(&hostile.url, r)))
            .await;
    for r in &runs {
        let last = r.stderr.lines().last().unwrap_or_default();
        eprintln!(
            "{} {}: exit {:?} in {:.1}s, {} bytes out: {}",
            attack.name(),
            r.repository,
            r.code,
            r.elapsed.as_secs_f64(),
            r.stdout.len(),
            excerpt(last).chars().take(300).collect::<String>()
        );
    }
    let problems: Vec<String> = runs.iter().filter_map(|r| judge(r, expect)).collect();
    assert!(
        problems.is_empty(),
        "scan against {} ({} of {} runs wrong):\n{}",
        attack.name(),
        problems.len(),
        runs.len(),
        problems.join("\n")
    );
    runs
}

macro_rules! cli_attack {
    ($($name:ident: $attack:expr, $expect:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            against($attack, $expect).await;
        }
    )*};
}

cli_attack! {
    scan_survives_absurd_retry_after: Attack::Numbers(NumberHeader::RetryAfter), Expect::Either;
    scan_survives_absurd_rate_limit_reset: Attack::Numbers(NumberHeader::RateLimitReset), Expect::Either;
    scan_survives_absurd_content_length: Attack::Numbers(NumberHeader::ContentLength), Expect::Either;
    scan_survives_absurd_expires_in: Attack::Numbers(NumberHeader::ExpiresIn), Expect::Either;
    scan_survives_absurd_manifest_sizes: Attack::Numbers(NumberHeader::ManifestSizes), Expect::Either;
    scan_survives_absurd_page_links: Attack::Numbers(NumberHeader::PageLinks), Expect::Either;
    scan_survives_huge_media_types: Attack::HugeStrings(HugeField::MediaType), Expect::Either;
    scan_survives_huge_platforms: Attack::HugeStrings(HugeField::Platform), Expect::Either;
    scan_survives_huge_unknown_kinds: Attack::HugeStrings(HugeField::UnknownKind), Expect::Either;
    scan_survives_huge_tag_names: Attack::HugeStrings(HugeField::TagNames), Expect::Either;
    scan_survives_huge_error_messages: Attack::HugeStrings(HugeField::ErrorMessage), Expect::Refuses;
    scan_refuses_one_mib_tokens: Attack::FreshTokens, Expect::Refuses;
    scan_survives_schema1_signature_bombs: Attack::Schema1Bomb, Expect::Either;
    scan_gives_up_on_stalled_bodies: Attack::StalledBodies, Expect::Fails;
    scan_gives_up_on_trickled_bodies: Attack::TrickledBodies, Expect::Fails;
}

/// distribution 2.x with exactly a page of tags: the scan lists each of the 1,000 tags once.
#[tokio::test]
async fn scan_lists_a_registry_that_ignores_paging() {
    let runs = against(Attack::IgnoresPaging { tags: 1000 }, Expect::Succeeds).await;
    let report: serde_json::Value = serde_json::from_slice(&runs[0].stdout).unwrap();
    let text = report.to_string();
    let tags = (0..1000)
        .filter(|j| text.contains(&format!("\"1.{}.{}\"", j / 10, j % 10)))
        .count();
    assert_eq!(tags, 1000, "every tag listed once");
}
