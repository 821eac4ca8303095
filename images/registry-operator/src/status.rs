//! Turning a scan's outcome into `Registry.status`: the same object the operator writes and
//! `registry-operator scan --output json` prints. Pure functions, no cluster.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{RegistryStatus, ScanStatus};
use std::collections::HashMap;

use crate::registry::{Image, ManifestFacts, RefreshReport, ScanReport};

pub const READY: &str = "Ready";
/// True while the latest successful scan could not read some tags' manifests.
pub const DEGRADED: &str = "Degraded";
pub const REASON_SUCCEEDED: &str = "ScanSucceeded";
pub const REASON_TAGS_UNREADABLE: &str = "TagsUnreadable";
pub const REASON_ALL_TAGS_READ: &str = "AllTagsRead";
pub const REASON_SECRET_NOT_FOUND: &str = "SecretNotFound";
pub const REASON_SECRET_INVALID: &str = "SecretInvalid";
pub const REASON_SUSPENDED: &str = "Suspended";

/// `images` stays below this many bytes of JSON whatever `maxImages` says, so that a status
/// (and a watch event carrying it) stays small: ~1,000 single-platform images fit.
pub const IMAGES_BYTE_BUDGET: usize = 192 * 1024;

/// Facts about the scan that are not in the report itself.
#[derive(Debug, Clone)]
pub struct Context {
    pub generation: Option<i64>,
    pub now: Time,
    pub next_scan: Option<Time>,
    pub max_images: usize,
    /// Bytes of JSON `images` may take (the operator uses [`IMAGES_BYTE_BUDGET`]).
    pub byte_budget: usize,
}

pub fn succeeded(
    previous: Option<&RegistryStatus>,
    report: &ScanReport,
    ctx: &Context,
) -> RegistryStatus {
    let total = report.images.len();
    let images = cap(&report.images, ctx.max_images, ctx.byte_budget);
    let omitted = total - images.len();
    let distinct: std::collections::HashSet<&str> =
        report.images.iter().map(|i| i.digest.as_str()).collect();
    let mut message = format!(
        "Found {total} tag{} ({} distinct digest{})",
        plural(total),
        distinct.len(),
        plural(distinct.len())
    );
    if omitted > 0 {
        message.push_str(&format!(
            "; images lists the {} highest versions, {omitted} older tag{} omitted (maxImages or status size limit)",
            images.len(),
            plural(omitted)
        ));
    }
    if !report.vanished_tags.is_empty() {
        message.push_str(&format!(
            "; {} tag{} deleted during the scan",
            report.vanished_tags.len(),
            plural(report.vanished_tags.len())
        ));
    }
    let failed = report.failed_tags.len();
    let degraded = match report.failed_tags.first() {
        Some(first) => {
            let text = format!(
                "{failed} tag{} could not be read (first: {}: {}); they keep their last known digest",
                plural(failed),
                first.tag,
                first.message
            );
            message.push_str(&format!("; {text}"));
            condition(previous, DEGRADED, true, REASON_TAGS_UNREADABLE, &text, ctx)
        }
        None => condition(
            previous,
            DEGRADED,
            false,
            REASON_ALL_TAGS_READ,
            "Every tag's manifest was read",
            ctx,
        ),
    };
    RegistryStatus {
        last_scan_status: Some(ScanStatus::Success),
        last_scan_time: Some(ctx.now.clone()),
        last_successful_scan_time: Some(ctx.now.clone()),
        message: Some(message.clone()),
        images: Some(images),
        tag_count: Some(total as i64),
        omitted_tags: Some(omitted as i64),
        observed_generation: ctx.generation,
        next_scan_time: ctx.next_scan.clone(),
        last_scan_duration_ms: Some(report.duration.as_millis().min(i64::MAX as u128) as i64),
        last_scan_requests: Some(report.requests.clone()),
        failed_tags: Some(failed as i64),
        last_event_time: previous.and_then(|p| p.last_event_time.clone()),
        conditions: vec![
            condition(previous, READY, true, REASON_SUCCEEDED, &message, ctx),
            degraded,
        ],
    }
}

/// A failed scan: the last good `images` (and their counts and time) stay; the rest says why.
pub fn failed(
    previous: Option<&RegistryStatus>,
    reason: &str,
    message: &str,
    ctx: &Context,
) -> RegistryStatus {
    let prev = previous.cloned().unwrap_or_default();
    RegistryStatus {
        last_scan_status: Some(ScanStatus::Failed),
        last_scan_time: Some(ctx.now.clone()),
        message: Some(message.to_string()),
        observed_generation: ctx.generation,
        next_scan_time: ctx.next_scan.clone(),
        last_scan_duration_ms: None,
        last_scan_requests: None,
        conditions: vec![condition(previous, READY, false, reason, message, ctx)],
        ..prev
    }
}

/// Scanning is suspended: everything stays, Ready says so.
pub fn suspended(previous: Option<&RegistryStatus>, ctx: &Context) -> RegistryStatus {
    let prev = previous.cloned().unwrap_or_default();
    let message = "Scanning is suspended (spec.suspend); images are from the last scan";
    RegistryStatus {
        observed_generation: ctx.generation,
        next_scan_time: None,
        conditions: vec![condition(
            previous,
            READY,
            false,
            REASON_SUSPENDED,
            message,
            ctx,
        )],
        ..prev
    }
}

/// A webhook event re-read some tags: only they change. `known` is every tag known before (the
/// status's `images`, or the full list when the status is capped) and `unlisted` how many
/// existing tags `known` lacks. Everything the last scan said (its time, message, conditions)
/// stays. Returns the status and the new full list.
pub fn event_applied(
    previous: &RegistryStatus,
    known: &[Image],
    unlisted: usize,
    report: &RefreshReport,
    ctx: &Context,
) -> (RegistryStatus, Vec<Image>) {
    let mut by_tag: std::collections::BTreeMap<&str, &Image> =
        known.iter().map(|i| (i.tag.as_str(), i)).collect();
    for gone in &report.gone {
        by_tag.remove(gone.as_str());
    }
    for image in &report.images {
        by_tag.insert(image.tag.as_str(), image);
    }
    let mut all: Vec<Image> = by_tag.into_values().cloned().collect();
    all.sort_by(|a, b| crate::registry::order::compare_tags(&a.tag, &b.tag));
    let total = all.len() + unlisted;
    let images = cap(&all, ctx.max_images, ctx.byte_budget);
    let status = RegistryStatus {
        tag_count: Some(total as i64),
        omitted_tags: Some((total - images.len()) as i64),
        images: Some(images),
        last_event_time: Some(ctx.now.clone()),
        ..previous.clone()
    };
    (status, all)
}

/// What an earlier status teaches the next scan: each listed digest's size and platforms, so
/// that those digests need no manifest GET. Images with a note (facts incomplete) are left
/// out, so the next scan reads them again.
pub fn known_facts(status: &RegistryStatus) -> HashMap<String, ManifestFacts> {
    status
        .images
        .iter()
        .flatten()
        .filter(|i| i.note.is_none())
        .map(|i| (i.digest.clone(), ManifestFacts::of(i)))
        .collect()
}

/// Tag → digest as an earlier status lists them: a tag that cannot be read keeps its digest.
pub fn known_tags(status: &RegistryStatus) -> HashMap<String, String> {
    status
        .images
        .iter()
        .flatten()
        .map(|i| (i.tag.clone(), i.digest.clone()))
        .collect()
}

/// Keeps the highest versions: at most `max`, and within `budget` bytes.
fn cap(images: &[Image], max: usize, budget: usize) -> Vec<Image> {
    let mut kept: Vec<Image> = images[images.len().saturating_sub(max)..].to_vec();
    let mut bytes: usize = kept.iter().map(encoded_len).sum();
    let mut drop = 0;
    while bytes > budget && drop < kept.len() {
        bytes -= encoded_len(&kept[drop]);
        drop += 1;
    }
    kept.drain(..drop);
    kept
}

fn encoded_len(image: &Image) -> usize {
    serde_json::to_vec(image).map_or(0, |v| v.len() + 1)
}

fn condition(
    previous: Option<&RegistryStatus>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    ctx: &Context,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    // The transition time moves only when the condition's status does.
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| ctx.now.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: truncate(message, 32 * 1024),
        observed_generation: ctx.generation,
        last_transition_time,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RequestCounts;
    use std::time::Duration;

    fn image(tag: &str) -> Image {
        Image {
            tag: tag.into(),
            digest: format!("sha256:{:0>64}", tag.len()),
            size: Some(10),
            media_type: None,
            platforms: vec![],
            note: None,
        }
    }

    fn report(tags: &[&str]) -> ScanReport {
        ScanReport {
            images: tags.iter().map(|t| image(t)).collect(),
            facts: Default::default(),
            requests: RequestCounts::default(),
            vanished_tags: vec![],
            failed_tags: vec![],
            duration: Duration::from_millis(5),
        }
    }

    fn ctx(max: usize) -> Context {
        Context {
            generation: Some(3),
            now: Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap()),
            next_scan: None,
            max_images: max,
            byte_budget: IMAGES_BYTE_BUDGET,
        }
    }

    #[test]
    fn success_caps_to_highest_versions() {
        let s = succeeded(None, &report(&["1.0", "1.1", "1.2"]), &ctx(2));
        let tags: Vec<_> = s
            .images
            .as_ref()
            .unwrap()
            .iter()
            .map(|i| i.tag.as_str())
            .collect();
        assert_eq!(tags, ["1.1", "1.2"]);
        assert_eq!(s.tag_count, Some(3));
        assert_eq!(s.omitted_tags, Some(1));
        assert_eq!(s.conditions[0].status, "True");
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn failure_keeps_last_good_images_and_transition_time() {
        let ok = succeeded(None, &report(&["a"]), &ctx(10));
        let mut later = ctx(10);
        later.now = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_100).unwrap());
        let bad = failed(Some(&ok), "AuthenticationFailed", "nope", &later);
        assert_eq!(bad.images, ok.images);
        assert_eq!(bad.last_successful_scan_time, ok.last_successful_scan_time);
        assert_eq!(bad.last_scan_status, Some(ScanStatus::Failed));
        assert_eq!(bad.conditions[0].last_transition_time, later.now);
        let worse = failed(Some(&bad), "Timeout", "slow", &ctx(10));
        assert_eq!(
            worse.conditions[0].last_transition_time, later.now,
            "status unchanged: time stays"
        );
    }

    #[test]
    fn unreadable_tags_degrade_but_do_not_fail() {
        let mut r = report(&["1.0", "2.0"]);
        r.images[1].note = Some("manifest could not be read: HTTP 500".into());
        r.failed_tags.push(crate::registry::TagFailure {
            tag: "2.0".into(),
            message: "HTTP 500".into(),
            reason: "RegistryError",
        });
        let s = succeeded(None, &r, &ctx(10));
        assert_eq!(s.last_scan_status, Some(ScanStatus::Success));
        assert_eq!(s.failed_tags, Some(1));
        let msg = s.message.as_deref().unwrap();
        assert!(
            msg.contains("1 tag could not be read (first: 2.0: HTTP 500)"),
            "{msg}"
        );
        let degraded = s.conditions.iter().find(|c| c.type_ == DEGRADED).unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", REASON_TAGS_UNREADABLE)
        );
        assert_eq!(
            known_facts(&s).len(),
            1,
            "the noted image is not remembered as complete"
        );
        assert_eq!(known_tags(&s).len(), 2);
        let healed = succeeded(Some(&s), &report(&["1.0", "2.0"]), &ctx(10));
        let degraded = healed
            .conditions
            .iter()
            .find(|c| c.type_ == DEGRADED)
            .unwrap();
        assert_eq!(degraded.status, "False");
    }

    #[test]
    fn an_event_changes_only_its_tags() {
        let ok = succeeded(None, &report(&["1.0", "1.1", "2.0"]), &ctx(2));
        assert_eq!(ok.omitted_tags, Some(1));
        let mut moved = image("1.1");
        moved.digest = format!("sha256:{:0>64}", "f");
        let r = RefreshReport {
            images: vec![image("3.0"), moved.clone()],
            facts: Default::default(),
            gone: vec!["2.0".into()],
            failed: vec![],
            requests: RequestCounts::default(),
            duration: Duration::ZERO,
        };
        let known = ok.images.clone().unwrap();
        let (s, all) = event_applied(&ok, &known, 1, &r, &ctx(2));
        let tags: Vec<_> = all.iter().map(|i| i.tag.as_str()).collect();
        assert_eq!(tags, ["1.1", "3.0"]);
        assert_eq!(s.tag_count, Some(3), "1.0 is still there, just not listed");
        assert_eq!(s.omitted_tags, Some(1));
        assert_eq!(s.images.as_ref().unwrap()[0], moved);
        assert_eq!(s.last_event_time, Some(ctx(2).now));
        assert_eq!(
            (s.message, s.last_scan_time),
            (ok.message, ok.last_scan_time)
        );
    }

    #[test]
    fn byte_budget_bounds_images() {
        let many: Vec<String> = (0..20_000).map(|i| format!("tag-{i:05}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let s = succeeded(None, &report(&refs), &ctx(20_000));
        let bytes = serde_json::to_vec(&s.images).unwrap().len();
        assert!(bytes <= IMAGES_BYTE_BUDGET, "{bytes}");
        assert_eq!(s.images.as_ref().unwrap().last().unwrap().tag, "tag-19999");
    }
}
