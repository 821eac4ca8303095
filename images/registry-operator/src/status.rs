//! Turning a scan's outcome into `Registry.status`: the same object the operator writes and
//! `registry-operator scan --output json` prints. Pure functions, no cluster.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{RegistryStatus, ScanStatus};
use std::collections::HashMap;

use crate::registry::{Image, ManifestFacts, NativeOutcome, RefreshReport, ScanReport};

pub const READY: &str = "Ready";
/// True while the latest successful scan could not read some tags' manifests.
pub const DEGRADED: &str = "Degraded";
pub const REASON_SUCCEEDED: &str = "ScanSucceeded";
pub const REASON_TAGS_UNREADABLE: &str = "TagsUnreadable";
pub const REASON_ALL_TAGS_READ: &str = "AllTagsRead";
pub const REASON_SECRET_NOT_FOUND: &str = "SecretNotFound";
pub const REASON_SECRET_INVALID: &str = "SecretInvalid";
pub const REASON_SUSPENDED: &str = "Suspended";
/// On registries with a native listing API: whether it gave this scan's digests.
pub const NATIVE_LISTING: &str = "NativeListing";
pub const REASON_NATIVE_LISTING_USED: &str = "NativeListingUsed";
pub const REASON_NATIVE_LISTING_FELL_BACK: &str = "NativeListingFellBack";
pub const REASON_NATIVE_LISTING_OFF: &str = "NativeListingOff";

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
    /// List referrer tags (`sha256-<hex>`, cosign's `.sig`/`.att`/`.sbom`) in `images` as
    /// well (`spec.referrerTags: Show`); by default they are only folded into the images
    /// they name.
    pub show_referrer_tags: bool,
}

/// The images `status.images` may list (referrer tags only with `show`), and how many tags
/// name referrers.
fn listable(all: &[Image], show: bool) -> (std::borrow::Cow<'_, [Image]>, usize) {
    let is_referrer = |i: &Image| crate::registry::artifact::referrer_tag(&i.tag).is_some();
    let count = all.iter().filter(|i| is_referrer(i)).count();
    if show || count == 0 {
        return (std::borrow::Cow::Borrowed(all), count);
    }
    let listed = all.iter().filter(|i| !is_referrer(i)).cloned().collect();
    (std::borrow::Cow::Owned(listed), count)
}

/// The whole status after a successful scan; `previous` are the conditions it replaces.
pub fn succeeded(previous: &[Condition], report: &ScanReport, ctx: &Context) -> RegistryStatus {
    let total = report.images.len();
    let (listed, referrer_tags) = listable(&report.images, ctx.show_referrer_tags);
    let images = cap(&listed, ctx.max_images, ctx.byte_budget);
    let omitted = listed.len() - images.len();
    let distinct: std::collections::HashSet<&str> =
        report.images.iter().map(|i| i.digest.as_str()).collect();
    let mut message = format!(
        "Found {total} tag{} ({} distinct digest{})",
        plural(total),
        distinct.len(),
        plural(distinct.len())
    );
    if referrer_tags > 0 && !ctx.show_referrer_tags {
        message.push_str(&format!(
            "; {referrer_tags} referrer tag{} (signatures, SBOMs, attestations) folded into the images they name",
            plural(referrer_tags)
        ));
    }
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
    let mut conditions = vec![
        condition(previous, READY, true, REASON_SUCCEEDED, &message, ctx),
        degraded,
    ];
    if let Some(native) = &report.native {
        conditions.push(native_condition(previous, native, ctx));
    }
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
        // Left as it is: only events set it.
        last_event_time: None,
        latest: None,
        previous_latest: None,
        referrer_tags: Some(referrer_tags as i64),
        signed: Some(signed(&listed)),
        referrers_checked_at: report.referrers_checked_at.and_then(|t| {
            k8s_openapi::jiff::Timestamp::from_second(t.unix())
                .ok()
                .map(Time)
        }),
        conditions,
    }
}

/// `signed/total`: tags with at least one signature referrer, of all tags.
pub fn signed(images: &[Image]) -> String {
    format!("{}/{}", signed_count(images), images.len())
}

pub fn signed_count(images: &[Image]) -> usize {
    images
        .iter()
        .filter(|i| {
            i.referrers
                .iter()
                .any(|r| r.kind == crate::registry::ReferrerKind::Signature)
        })
        .count()
}

fn native_condition(previous: &[Condition], native: &NativeOutcome, ctx: &Context) -> Condition {
    match native {
        NativeOutcome::Used(l) => condition(
            previous,
            NATIVE_LISTING,
            true,
            REASON_NATIVE_LISTING_USED,
            &format!(
                "Digests came from the {} ({}), checked by HEADs through the registry API",
                l.api_name(),
                l.as_str()
            ),
            ctx,
        ),
        NativeOutcome::FellBack { reason, .. } => condition(
            previous,
            NATIVE_LISTING,
            false,
            REASON_NATIVE_LISTING_FELL_BACK,
            &format!("This scan used the registry API: {reason}"),
            ctx,
        ),
        NativeOutcome::Off { reason, .. } => condition(
            previous,
            NATIVE_LISTING,
            false,
            REASON_NATIVE_LISTING_OFF,
            &format!("This scan used the registry API: {reason}"),
            ctx,
        ),
    }
}

/// A status change, sent as a JSON merge patch: fields left `None` in `status` keep what the
/// object has (a failure never touches the last good `images`), fields named in `clear` are
/// removed.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPatch {
    pub status: RegistryStatus,
    pub clear: &'static [&'static str],
}

impl StatusPatch {
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.status).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            for field in self.clear {
                map.insert((*field).to_string(), serde_json::Value::Null);
            }
        }
        v
    }
}

/// A failed scan: says why; the last good `images`, their counts and time stay as they are.
pub fn failed(previous: &[Condition], reason: &str, message: &str, ctx: &Context) -> StatusPatch {
    StatusPatch {
        status: RegistryStatus {
            last_scan_status: Some(ScanStatus::Failed),
            last_scan_time: Some(ctx.now.clone()),
            message: Some(message.to_string()),
            observed_generation: ctx.generation,
            next_scan_time: ctx.next_scan.clone(),
            conditions: with_others(
                previous,
                condition(previous, READY, false, reason, message, ctx),
            ),
            ..RegistryStatus::default()
        },
        clear: &["lastScanDurationMs", "lastScanRequests"],
    }
}

/// Scanning is suspended: everything stays, Ready says so.
pub fn suspended(previous: &[Condition], ctx: &Context) -> StatusPatch {
    let message = "Scanning is suspended (spec.suspend); images are from the last scan";
    StatusPatch {
        status: RegistryStatus {
            observed_generation: ctx.generation,
            conditions: with_others(
                previous,
                condition(previous, READY, false, REASON_SUSPENDED, message, ctx),
            ),
            ..RegistryStatus::default()
        },
        clear: &["nextScanTime"],
    }
}

/// A merge patch replaces the whole list: the other conditions go along unchanged.
fn with_others(previous: &[Condition], new: Condition) -> Vec<Condition> {
    let mut all: Vec<Condition> = previous
        .iter()
        .filter(|c| c.type_ != new.type_)
        .cloned()
        .collect();
    all.insert(0, new);
    all
}

/// A webhook event re-read some tags: only they change. `known` is every tag known before (the
/// status's `images`, or the full list when the status is capped) and `unlisted` how many
/// existing tags `known` lacks. Everything the last scan said (its time, message, conditions)
/// stays: the patch carries only the images, their counts and the event's time. Returns the
/// patch and the new full list.
/// Referrer tags are folded again over the new full list, with `facts` (by digest: what the
/// last scan and the refresh read).
pub fn event_applied(
    known: &[Image],
    unlisted: usize,
    report: &RefreshReport,
    facts: &HashMap<String, ManifestFacts>,
    ctx: &Context,
) -> (StatusPatch, Vec<Image>) {
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
    crate::registry::fold_referrer_tags(&mut all, facts);
    let total = all.len() + unlisted;
    let (listed, referrer_tags) = listable(&all, ctx.show_referrer_tags);
    let images = cap(&listed, ctx.max_images, ctx.byte_budget);
    let status = RegistryStatus {
        tag_count: Some(total as i64),
        omitted_tags: Some((listed.len() + unlisted - images.len()) as i64),
        referrer_tags: Some(referrer_tags as i64),
        signed: Some(signed(&listed)),
        images: Some(images),
        last_event_time: Some(ctx.now.clone()),
        ..RegistryStatus::default()
    };
    (StatusPatch { status, clear: &[] }, all)
}

/// What an earlier status teaches the next scan: each listed digest's size and platforms, so
/// that those digests need no manifest GET. Images with a note (facts incomplete) are left
/// out, so the next scan reads them again; so are fallback tags' indexes (what they list is
/// not in the status).
pub fn known_facts(status: &RegistryStatus) -> HashMap<String, ManifestFacts> {
    status
        .images
        .iter()
        .flatten()
        .filter(|i| i.note.is_none())
        .filter(|i| {
            crate::registry::artifact::referrer_tag(&i.tag).is_none_or(|t| t.kind.is_some())
        })
        .map(|i| (i.digest.clone(), ManifestFacts::of(i)))
        .collect()
}

/// When an earlier scan last read every digest's referrers.
pub fn referrers_checked_at(status: &RegistryStatus) -> Option<crate::registry::Timestamp> {
    timestamp_of(status.referrers_checked_at.as_ref())
}

pub fn timestamp_of(at: Option<&Time>) -> Option<crate::registry::Timestamp> {
    crate::registry::Timestamp::from_unix(at?.0.as_second())
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
pub(crate) fn cap(images: &[Image], max: usize, budget: usize) -> Vec<Image> {
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

pub(crate) fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    ctx: &Context,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    // The transition time moves only when the condition's status does.
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_)
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
            ..Image::default()
        }
    }

    fn report(tags: &[&str]) -> ScanReport {
        ScanReport {
            duration: Duration::from_millis(5),
            ..ScanReport::of_images(tags.iter().map(|t| image(t)).collect())
        }
    }

    fn ctx(max: usize) -> Context {
        Context {
            generation: Some(3),
            now: Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap()),
            next_scan: None,
            max_images: max,
            byte_budget: IMAGES_BYTE_BUDGET,
            show_referrer_tags: false,
        }
    }

    #[test]
    fn signed_counts_tags_with_a_signature_referrer() {
        use crate::registry::{Referrer, ReferrerKind};
        let with = |kind| Referrer {
            digest: "sha256:1".into(),
            artifact_type: None,
            kind,
        };
        let mut images = vec![image("1"), image("2"), image("3")];
        images[0].referrers = vec![with(ReferrerKind::Sbom), with(ReferrerKind::Signature)];
        images[1].referrers = vec![with(ReferrerKind::Sbom)];
        let mut r = report(&[]);
        r.images = images;
        let s = succeeded(&[], &r, &ctx(10));
        assert_eq!(s.signed.as_deref(), Some("1/3"));
    }

    #[test]
    fn success_caps_to_highest_versions() {
        let s = succeeded(&[], &report(&["1.0", "1.1", "1.2"]), &ctx(2));
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
    fn referrer_tags_are_hidden_unless_shown_and_counted() {
        let hex = "ab".repeat(32);
        let fallback = format!("sha256-{hex}");
        let sig = format!("sha256-{hex}.sig");
        let r = report(&["1.0", "1.1", &fallback, &sig]);
        let tags = |s: &RegistryStatus| -> Vec<String> {
            s.images.iter().flatten().map(|i| i.tag.clone()).collect()
        };
        let hidden = succeeded(&[], &r, &ctx(10));
        assert_eq!(tags(&hidden), ["1.0", "1.1"]);
        assert_eq!(
            (hidden.tag_count, hidden.referrer_tags, hidden.omitted_tags),
            (Some(4), Some(2), Some(0))
        );
        assert!(
            hidden
                .message
                .as_deref()
                .is_some_and(|m| m.contains("2 referrer tags")),
            "{:?}",
            hidden.message
        );
        let capped = succeeded(&[], &r, &ctx(1));
        assert_eq!(tags(&capped), ["1.1"], "maxImages counts listed images");
        assert_eq!(capped.omitted_tags, Some(1));
        let shown = succeeded(
            &[],
            &r,
            &Context {
                show_referrer_tags: true,
                ..ctx(10)
            },
        );
        assert_eq!(tags(&shown).len(), 4);
        assert_eq!((shown.tag_count, shown.referrer_tags), (Some(4), Some(2)));
        let plain = succeeded(&[], &report(&["1.0"]), &ctx(10));
        assert_eq!(
            plain.referrer_tags,
            Some(0),
            "a count that went away is cleared"
        );
    }

    #[test]
    fn failure_leaves_images_alone_and_keeps_transition_time() {
        let ok = succeeded(&[], &report(&["a"]), &ctx(10));
        let mut later = ctx(10);
        later.now = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_100).unwrap());
        let bad = failed(&ok.conditions, "AuthenticationFailed", "nope", &later);
        let json = bad.to_json();
        for untouched in ["images", "tagCount", "lastSuccessfulScanTime", "failedTags"] {
            assert!(json.get(untouched).is_none(), "{untouched} in {json}");
        }
        assert_eq!(json["lastScanRequests"], serde_json::Value::Null);
        assert!(json.as_object().unwrap().contains_key("lastScanRequests"));
        assert_eq!(json["lastScanStatus"], "Failed");
        let c = &bad.status.conditions;
        assert_eq!(c[0].last_transition_time, later.now);
        assert_eq!(
            c.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            [READY, DEGRADED],
            "Degraded goes along unchanged"
        );
        let worse = failed(c, "Timeout", "slow", &ctx(10));
        assert_eq!(
            worse.status.conditions[0].last_transition_time, later.now,
            "status unchanged: time stays"
        );
        let paused = suspended(c, &ctx(10));
        assert_eq!(paused.to_json()["nextScanTime"], serde_json::Value::Null);
        assert_eq!(paused.status.conditions[0].reason, REASON_SUSPENDED);
    }

    #[test]
    fn native_listing_says_which_api_gave_the_digests() {
        let c = ctx(10);
        let plain = succeeded(&[], &report(&["1.0"]), &c);
        assert!(plain.conditions.iter().all(|c| c.type_ != NATIVE_LISTING));
        let mut r = report(&["1.0"]);
        r.native = Some(NativeOutcome::Used(crate::registry::Lister::Harbor));
        let used = succeeded(&[], &r, &c);
        let cond = used
            .conditions
            .iter()
            .find(|c| c.type_ == NATIVE_LISTING)
            .unwrap();
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("True", REASON_NATIVE_LISTING_USED)
        );
        r.native = Some(NativeOutcome::FellBack {
            lister: crate::registry::Lister::Harbor,
            reason: "the Harbor artifacts API failed: HTTP 403".into(),
        });
        let fell = succeeded(&used.conditions, &r, &c);
        let cond = fell
            .conditions
            .iter()
            .find(|c| c.type_ == NATIVE_LISTING)
            .unwrap();
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("False", REASON_NATIVE_LISTING_FELL_BACK)
        );
        assert!(cond.message.contains("HTTP 403"), "{}", cond.message);
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
        let s = succeeded(&[], &r, &ctx(10));
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
        let healed = succeeded(&s.conditions, &report(&["1.0", "2.0"]), &ctx(10));
        let degraded = healed
            .conditions
            .iter()
            .find(|c| c.type_ == DEGRADED)
            .unwrap();
        assert_eq!(degraded.status, "False");
    }

    #[test]
    fn an_event_changes_only_its_tags() {
        let ok = succeeded(&[], &report(&["1.0", "1.1", "2.0"]), &ctx(2));
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
        let (patch, all) = event_applied(&known, 1, &r, &HashMap::new(), &ctx(2));
        let s = &patch.status;
        let tags: Vec<_> = all.iter().map(|i| i.tag.as_str()).collect();
        assert_eq!(tags, ["1.1", "3.0"]);
        assert_eq!(s.tag_count, Some(3), "1.0 is still there, just not listed");
        assert_eq!(s.omitted_tags, Some(1));
        assert_eq!(s.images.as_ref().unwrap()[0], moved);
        assert_eq!(s.last_event_time, Some(ctx(2).now));
        let json = patch.to_json();
        for untouched in ["message", "lastScanTime", "lastScanStatus", "conditions"] {
            assert!(json.get(untouched).is_none(), "{untouched} in {json}");
        }
    }

    #[test]
    fn a_webhook_for_a_signature_tag_folds_it_into_its_image() {
        let app = image("1.0");
        let sig = Image {
            tag: format!("{}.sig", app.digest.replacen(':', "-", 1)),
            digest: format!("sha256:{}", "c".repeat(64)),
            ..image("x")
        };
        let r = RefreshReport {
            images: vec![sig.clone()],
            facts: Default::default(),
            gone: vec![],
            failed: vec![],
            requests: RequestCounts::default(),
            duration: Duration::ZERO,
        };
        let (patch, all) =
            event_applied(std::slice::from_ref(&app), 0, &r, &HashMap::new(), &ctx(10));
        let s = &patch.status;
        let listed = s.images.as_deref().unwrap();
        assert_eq!(listed.len(), 1, "the signature tag is not listed");
        assert_eq!(listed[0].referrers.len(), 1);
        assert_eq!(listed[0].referrers[0].digest, sig.digest);
        assert_eq!((s.tag_count, s.referrer_tags), (Some(2), Some(1)));
        assert_eq!(all.len(), 2, "the full list keeps it");
    }

    #[test]
    fn byte_budget_bounds_images() {
        let many: Vec<String> = (0..20_000).map(|i| format!("tag-{i:05}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let s = succeeded(&[], &report(&refs), &ctx(20_000));
        let bytes = serde_json::to_vec(&s.images).unwrap().len();
        assert!(bytes <= IMAGES_BYTE_BUDGET, "{bytes}");
        assert_eq!(s.images.as_ref().unwrap().last().unwrap().tag, "tag-19999");
    }
}
