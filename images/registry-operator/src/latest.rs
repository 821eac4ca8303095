//! `spec.policy` on a scan's status: the images in the policy's order, `latest`,
//! `previousLatest` and the `LatestFound` condition. Pure, shared by the operator and
//! `registry-operator scan --policy`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::RegistryStatus;
use crate::registry::policy::{Evaluation, Policy};
use crate::registry::{Image, Latest, ScanReport, Timestamp};
use crate::status::{self, Context};

/// With `spec.policy`: whether a tag is eligible, and why not.
pub const LATEST_FOUND: &str = "LatestFound";
pub const REASON_LATEST_FOUND: &str = "LatestFound";
pub const REASON_NO_ELIGIBLE_TAG: &str = "NoEligibleTag";
/// A policy the API server let through but the operator cannot build (a range's or regular
/// expression's grammar, which CEL cannot check).
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// Event: `status.latest` moved to another tag or digest.
pub const REASON_NEWER_VERSION: &str = "NewerVersion";

/// Puts the report's images in the policy's order (what the status cap keeps is then what the
/// policy ranks highest) and returns what the policy found.
pub fn order_report(policy: &Policy, report: &mut ScanReport, now: Timestamp) -> Evaluation {
    let evaluation = policy.evaluate(&report.images, now);
    report.images = reorder(std::mem::take(&mut report.images), &evaluation.order);
    evaluation
}

fn reorder(images: Vec<Image>, order: &[usize]) -> Vec<Image> {
    let mut slots: Vec<Option<Image>> = images.into_iter().map(Some).collect();
    order
        .iter()
        .filter_map(|i| slots.get_mut(*i).and_then(Option::take))
        .collect()
}

/// What applying the policy changed.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// Status fields the patch must remove.
    pub clear: &'static [&'static str],
    /// `latest` moved: from, to.
    pub moved: Option<(Latest, Latest)>,
}

/// What the object's status holds of the policy before this scan.
#[derive(Clone, Copy, Debug, Default)]
pub struct Before<'a> {
    pub latest: Option<&'a Latest>,
    /// Whether it has a `previousLatest` (removed with the policy).
    pub has_previous: bool,
}

/// Sets `latest`, `previousLatest` and `LatestFound` on a successful scan's status. `before`
/// is what the object has; `previous` its conditions. Without a policy both fields go (and a
/// status that never had them is not patched for them). The first `latest` an object gets is
/// no move (nothing was newer than something).
pub fn apply(
    status: &mut RegistryStatus,
    evaluation: Option<&Evaluation>,
    before: Before<'_>,
    previous: &[Condition],
    ctx: &Context,
) -> Applied {
    let Some(evaluation) = evaluation else {
        let clear: &'static [&'static str] = match (before.latest.is_some(), before.has_previous) {
            (false, false) => &[],
            (true, false) => &["latest"],
            (false, true) => &["previousLatest"],
            (true, true) => &["latest", "previousLatest"],
        };
        return Applied { clear, moved: None };
    };
    let before = before.latest;
    match &evaluation.latest {
        Some(latest) => {
            let message = format!(
                "The policy selects {} (version {})",
                latest.tag, latest.version
            );
            status.conditions.push(status::condition(
                previous,
                LATEST_FOUND,
                true,
                REASON_LATEST_FOUND,
                &message,
                ctx,
            ));
            status.latest = Some(latest.clone());
            let moved = before
                .filter(|b| b.tag != latest.tag || b.digest != latest.digest)
                .map(|b| (b.clone(), latest.clone()));
            if let Some((from, _)) = &moved {
                status.previous_latest = Some(from.clone());
            }
            Applied { clear: &[], moved }
        }
        None => {
            let message = evaluation
                .none_because
                .clone()
                .unwrap_or_else(|| "No tag is eligible under spec.policy".into());
            status.conditions.push(status::condition(
                previous,
                LATEST_FOUND,
                false,
                REASON_NO_ELIGIBLE_TAG,
                &message,
                ctx,
            ));
            Applied {
                clear: &["latest"],
                moved: None,
            }
        }
    }
}

/// A webhook refresh under a policy: `all` (the merged full list) goes into the policy's
/// order, the patch's `images` is capped from it, and `latest` follows. The refresh patch
/// leaves the scan's conditions alone except `LatestFound`, which it replaces.
pub fn apply_to_refresh(
    policy: &Policy,
    patch: &mut status::StatusPatch,
    all: &mut Vec<Image>,
    before: Option<&Latest>,
    previous: &[Condition],
    ctx: &Context,
    now: Timestamp,
) -> Applied {
    let evaluation = policy.evaluate(all, now);
    *all = reorder(std::mem::take(all), &evaluation.order);
    let images = status::cap(all, ctx.max_images, ctx.byte_budget);
    let total = patch.status.tag_count.unwrap_or(0);
    patch.status.omitted_tags = Some(total.saturating_sub(images.len() as i64));
    patch.status.images = Some(images);
    let mut scratch = RegistryStatus::default();
    let before = Before {
        latest: before,
        has_previous: false,
    };
    let applied = apply(&mut scratch, Some(&evaluation), before, previous, ctx);
    let mut conditions: Vec<Condition> = previous
        .iter()
        .filter(|c| c.type_ != LATEST_FOUND)
        .cloned()
        .collect();
    conditions.extend(scratch.conditions);
    patch.status.conditions = conditions;
    patch.status.latest = scratch.latest;
    patch.status.previous_latest = scratch.previous_latest;
    patch.clear = applied.clear;
    applied
}

/// The `NewerVersion` event's note: `1.25.3 → 1.25.4`, or the digests when only they moved.
pub fn moved_note(from: &Latest, to: &Latest) -> String {
    if from.tag == to.tag {
        format!(
            "{}: digest {} → {}",
            to.tag,
            short(&from.digest),
            short(&to.digest)
        )
    } else {
        format!("{} → {}", from.tag, to.tag)
    }
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::policy::Kind;
    use crate::registry::{RefreshReport, RequestCounts, ScanReport};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::time::Duration;

    fn report(tags: &[&str]) -> ScanReport {
        ScanReport::of_images(
            tags.iter()
                .map(|t| Image {
                    tag: t.to_string(),
                    digest: format!("sha256:{:0>64}", t.len()),
                    ..Image::default()
                })
                .collect(),
        )
    }

    fn ctx(max: usize) -> Context {
        Context {
            generation: Some(1),
            now: Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap()),
            next_scan: None,
            max_images: max,
            byte_budget: status::IMAGES_BYTE_BUDGET,
            show_referrer_tags: false,
        }
    }

    fn semver(range: &str) -> Policy {
        Policy::new(
            &Kind::Semver {
                range: range.into(),
            },
            None,
            None,
            None,
        )
        .unwrap()
    }

    #[test]
    fn max_images_keeps_what_the_policy_ranks_highest() {
        // By tag order the cap would keep "latest" and "2.0.0"; by the policy it keeps the
        // two highest versions in range.
        let mut r = report(&["1.0.0", "1.1.0", "1.2.0", "2.0.0", "latest"]);
        let e = order_report(&semver("^1.0"), &mut r, Timestamp::now());
        let mut s = status::succeeded(&[], &r, &ctx(2));
        let applied = apply(&mut s, Some(&e), Before::default(), &[], &ctx(2));
        let tags: Vec<_> = s.images.unwrap().into_iter().map(|i| i.tag).collect();
        assert_eq!(tags, ["1.1.0", "1.2.0"]);
        assert_eq!(s.latest.unwrap().tag, "1.2.0");
        assert_eq!(applied, Applied::default(), "the first latest is no move");
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == LATEST_FOUND)
            .unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", REASON_LATEST_FOUND)
        );
    }

    #[test]
    fn a_move_keeps_the_previous_and_none_clears_latest() {
        let mut r = report(&["1.0.0", "1.1.0"]);
        let e = order_report(&semver("^1.0"), &mut r, Timestamp::now());
        let mut s = status::succeeded(&[], &r, &ctx(10));
        let old = Latest {
            tag: "1.0.0".into(),
            digest: "sha256:old".into(),
            version: "1.0.0".into(),
            pushed_at: None,
            created_at: None,
        };
        fn was(l: &Latest) -> Before<'_> {
            Before {
                latest: Some(l),
                has_previous: true,
            }
        }
        let applied = apply(&mut s, Some(&e), was(&old), &[], &ctx(10));
        let (from, to) = applied.moved.unwrap();
        assert_eq!(moved_note(&from, &to), "1.0.0 → 1.1.0");
        assert_eq!(s.previous_latest.as_ref(), Some(&old));

        let mut r = report(&["latest"]);
        let e = order_report(&semver("^1.0"), &mut r, Timestamp::now());
        let mut s = status::succeeded(&[], &r, &ctx(10));
        let applied = apply(&mut s, Some(&e), was(&to), &[], &ctx(10));
        assert_eq!(applied.clear, ["latest"]);
        assert_eq!(s.latest, None);
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == LATEST_FOUND)
            .unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", REASON_NO_ELIGIBLE_TAG)
        );
        assert!(
            c.message.contains("1 are not semantic versions"),
            "{}",
            c.message
        );

        let mut s = status::succeeded(&[], &r, &ctx(10));
        let applied = apply(&mut s, None, was(&to), &[], &ctx(10));
        assert_eq!(applied.clear, ["latest", "previousLatest"]);
        let untouched = apply(&mut s, None, Before::default(), &[], &ctx(10));
        assert!(
            untouched.clear.is_empty(),
            "no policy, never had one: no extra bytes"
        );
        assert!(s.conditions.iter().all(|c| c.type_ != LATEST_FOUND));
    }

    #[test]
    fn a_refresh_reorders_caps_and_replaces_only_latest_found() {
        let ready = status::condition(&[], status::READY, true, "ScanSucceeded", "ok", &ctx(2));
        let stale = status::condition(
            &[],
            LATEST_FOUND,
            false,
            REASON_NO_ELIGIBLE_TAG,
            "none",
            &ctx(2),
        );
        let known = report(&["1.0.0", "latest"]).images;
        let refreshed = RefreshReport {
            images: report(&["1.1.0"]).images,
            facts: Default::default(),
            gone: vec![],
            failed: vec![],
            requests: RequestCounts::default(),
            duration: Duration::ZERO,
        };
        let (mut patch, mut all) =
            status::event_applied(&known, 0, &refreshed, &Default::default(), &ctx(2));
        let applied = apply_to_refresh(
            &semver("^1.0"),
            &mut patch,
            &mut all,
            None,
            &[ready.clone(), stale],
            &ctx(2),
            Timestamp::now(),
        );
        let tags: Vec<&str> = all.iter().map(|i| i.tag.as_str()).collect();
        assert_eq!(tags, ["latest", "1.0.0", "1.1.0"]);
        let kept: Vec<&str> = patch
            .status
            .images
            .iter()
            .flatten()
            .map(|i| i.tag.as_str())
            .collect();
        assert_eq!(
            kept,
            ["1.0.0", "1.1.0"],
            "the cap keeps what the policy ranks highest"
        );
        assert_eq!(patch.status.omitted_tags, Some(1));
        assert_eq!(
            patch.status.latest.as_ref().map(|l| l.tag.as_str()),
            Some("1.1.0")
        );
        let types: Vec<(&str, &str)> = patch
            .status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(types, [(status::READY, "True"), (LATEST_FOUND, "True")]);
        assert_eq!(applied.moved, None);
    }
}
