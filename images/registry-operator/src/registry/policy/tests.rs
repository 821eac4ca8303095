use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_800_000_000;

fn image(tag: &str) -> Image {
    Image {
        tag: tag.into(),
        digest: format!("sha256:{:0>64}", hex_of(tag)),
        ..Image::default()
    }
}

fn hex_of(tag: &str) -> String {
    tag.bytes().map(|b| format!("{b:02x}")).collect::<String>()
}

fn images(tags: &[&str]) -> Vec<Image> {
    tags.iter().map(|t| image(t)).collect()
}

fn policy(kind: Kind) -> Policy {
    Policy::new(&kind, None, None, None).unwrap()
}

fn semver(range: &str) -> Policy {
    policy(Kind::Semver {
        range: range.into(),
    })
}

fn now() -> Timestamp {
    Timestamp::from_unix(NOW).unwrap()
}

fn latest(p: &Policy, tags: &[&str]) -> Option<String> {
    p.evaluate(&images(tags), now()).latest.map(|l| l.tag)
}

/// Flux image-reflector-controller docs, "Policy" → "SemVer": `range: 5.1.x` over podinfo's
/// tags selects 5.1.4; `>=1.0.0` (flux create image policy's example) selects the highest
/// release, never a prerelease.
#[test]
fn flux_semver_examples() {
    let podinfo = [
        "5.0.0",
        "5.0.3",
        "5.1.0",
        "5.1.1",
        "5.1.2",
        "5.1.3",
        "5.1.4",
        "5.2.0",
        "6.0.0-rc.1",
        "latest",
    ];
    assert_eq!(latest(&semver("5.1.x"), &podinfo).as_deref(), Some("5.1.4"));
    assert_eq!(
        latest(&semver(">=1.0.0"), &podinfo).as_deref(),
        Some("5.2.0")
    );
    assert_eq!(
        latest(&semver(">=6.0.0-0"), &podinfo).as_deref(),
        Some("6.0.0-rc.1")
    );
    // `v` prefixes and lenient versions are versions; the issue's `^1.25`.
    let nginx = [
        "v1.24.0",
        "1.25",
        "1.25.3",
        "v1.25.4",
        "1.26.0-rc.1",
        "mainline",
    ];
    let e = semver("^1.25").evaluate(&images(&nginx), now());
    let l = e.latest.unwrap();
    assert_eq!((l.tag.as_str(), l.version.as_str()), ("v1.25.4", "v1.25.4"));
    let ordered: Vec<&str> = e.order.iter().map(|i| nginx[*i]).collect();
    assert_eq!(
        ordered,
        [
            "v1.24.0",
            "1.26.0-rc.1",
            "mainline",
            "1.25",
            "1.25.3",
            "v1.25.4"
        ],
        "tags the policy does not select first, then its candidates lowest first"
    );
}

/// Flux docs, "Alphabetical": MinIO's `RELEASE.<RFC 3339>Z` tags with `filterTags.pattern:
/// '^RELEASE\.(?P<timestamp>.*)Z$'`, `extract: '$timestamp'`, `order: asc`.
#[test]
fn flux_alphabetical_calver_example() {
    let tags = [
        "RELEASE.2021-05-11T23-27-41Z",
        "RELEASE.2021-06-09T18-51-39Z",
        "RELEASE.2021-04-22T15-44-28Z",
        "latest",
    ];
    let p = Policy::new(
        &Kind::Alphabetical(Order::Asc),
        Some(r"^RELEASE\.(?P<timestamp>.*)Z$"),
        Some("$timestamp"),
        None,
    )
    .unwrap();
    let l = p.evaluate(&images(&tags), now()).latest.unwrap();
    assert_eq!(l.tag, "RELEASE.2021-06-09T18-51-39Z");
    assert_eq!(l.version, "2021-06-09T18-51-39");
    let desc = Policy::new(
        &Kind::Alphabetical(Order::Desc),
        Some(r"^RELEASE\.(?P<timestamp>.*)Z$"),
        Some("$timestamp"),
        None,
    )
    .unwrap();
    assert_eq!(
        latest(&desc, &tags).as_deref(),
        Some("RELEASE.2021-04-22T15-44-28Z")
    );
    // CalVer without a filter.
    let calver = ["2024.01.15", "2024.10.02", "2024.09.30"];
    assert_eq!(
        latest(&policy(Kind::Alphabetical(Order::Asc)), &calver).as_deref(),
        Some("2024.10.02")
    );
}

/// Flux docs, "Numerical" and "Filter tags": `main-<sha>-<unix time>` builds with
/// `pattern: '^main-[a-fA-F0-9]+-(?P<ts>.*)'`, `extract: '$ts'`, `order: asc`; numbers compare
/// as numbers (`9` below `10`), `desc` picks the lowest.
#[test]
fn flux_numerical_build_number_example() {
    let tags = [
        "main-1a2b3c4-1611234567",
        "main-9f8e7d6-1611999999",
        "main-0a0b0c0-999999999",
        "feature-x-1711999999",
    ];
    let p = Policy::new(
        &Kind::Numerical(Order::Asc),
        Some(r"^main-[a-fA-F0-9]+-(?P<ts>.*)"),
        Some("$ts"),
        None,
    )
    .unwrap();
    let l = p.evaluate(&images(&tags), now()).latest.unwrap();
    assert_eq!(
        (l.tag.as_str(), l.version.as_str()),
        ("main-9f8e7d6-1611999999", "1611999999")
    );
    let builds = ["9", "10", "100", "latest", "-1"];
    assert_eq!(
        latest(&policy(Kind::Numerical(Order::Asc)), &builds).as_deref(),
        Some("100")
    );
    assert_eq!(
        latest(&policy(Kind::Numerical(Order::Desc)), &builds).as_deref(),
        Some("-1")
    );
}

#[test]
fn newest_build_by_created_else_pushed_with_ties_by_tag() {
    let mut list = images(&["a", "b", "c", "d"]);
    list[0].created_at = Timestamp::from_unix(100);
    list[1].pushed_at = Timestamp::from_unix(300);
    list[2].created_at = Timestamp::from_unix(300);
    let e = policy(Kind::NewestBuild).evaluate(&list, now());
    assert_eq!(
        e.latest.unwrap().tag,
        "c",
        "tie at 300: the higher tag wins"
    );
    assert_eq!(e.order, [3, 0, 1, 2]);
}

#[test]
fn referrer_tags_are_never_picked() {
    let sig = format!("sha256-{}.sig", "a".repeat(64));
    let fallback = format!("sha256-{}", "b".repeat(64));
    let tags = ["1.0.0", sig.as_str(), fallback.as_str()];
    for p in [
        policy(Kind::Alphabetical(Order::Asc)),
        policy(Kind::Alphabetical(Order::Desc)),
        semver("*"),
    ] {
        assert_eq!(latest(&p, &tags).as_deref(), Some("1.0.0"));
    }
    let only = [sig.as_str()];
    let e = policy(Kind::Alphabetical(Order::Asc)).evaluate(&images(&only), now());
    assert_eq!(e.latest, None);
    assert!(
        e.none_because
            .unwrap()
            .contains("1 name signatures or attestations")
    );
}

#[test]
fn min_age_holds_back_young_and_ageless_versions() {
    let mut list = images(&["1.0.0", "1.1.0", "1.2.0"]);
    list[0].created_at = Timestamp::from_unix(NOW - 3 * 86_400);
    list[1].pushed_at = Timestamp::from_unix(NOW - 86_400);
    list[2].created_at = Timestamp::from_unix(NOW - 3600);
    let p = Policy::new(
        &Kind::Semver {
            range: ">=1.0".into(),
        },
        None,
        None,
        Some("24h"),
    )
    .unwrap();
    let e = p.evaluate(&list, now());
    assert_eq!(
        e.latest.as_ref().unwrap().tag,
        "1.1.0",
        "exactly 24h old is old enough"
    );
    assert_eq!(
        e.order,
        [0, 1, 2],
        "a young version keeps its place in the order"
    );
    // A push after the build: the push is what counts.
    list[1].created_at = Timestamp::from_unix(NOW - 10 * 86_400);
    list[1].pushed_at = Timestamp::from_unix(NOW - 60);
    assert_eq!(p.evaluate(&list, now()).latest.unwrap().tag, "1.0.0");
    list[0].created_at = None;
    let none = p.evaluate(&list, now());
    assert_eq!(none.latest, None);
    let why = none.none_because.unwrap();
    assert!(why.contains("2 are younger than minAge 24h"), "{why}");
    assert!(why.contains("1 have no createdAt or pushedAt"), "{why}");
    // The clock moves on: the fresh push becomes eligible.
    let later = Timestamp::from_unix(NOW + 86_400).unwrap();
    assert_eq!(p.evaluate(&list, later).latest.unwrap().tag, "1.2.0");
}

#[test]
fn no_candidate_says_why() {
    let e = semver("^2.0").evaluate(&images(&["1.0.0", "latest", "1.5"]), now());
    assert_eq!(e.latest, None);
    assert_eq!(
        e.none_because.unwrap(),
        "No tag is eligible under spec.policy: of 3 tags, 1 are not semantic versions, 2 are outside the range \"^2.0\""
    );
    let empty = semver("*").evaluate(&[], now());
    assert!(empty.none_because.unwrap().contains("no tags"));
}

#[test]
fn invalid_specs_are_refused_with_readable_messages() {
    let bad = |kind: Kind, pattern: Option<&str>, extract: Option<&str>, age: Option<&str>| {
        Policy::new(&kind, pattern, extract, age).unwrap_err().0
    };
    let any = || Kind::Alphabetical(Order::Asc);
    assert!(
        bad(
            Kind::Semver {
                range: ">=1.0 <<2".into()
            },
            None,
            None,
            None
        )
        .starts_with("policy.semver.range \">=1.0 <<2\" is not a valid range")
    );
    assert!(bad(any(), Some("(unclosed"), None, None).contains("filterTags.pattern"));
    assert!(bad(any(), None, Some("$ts"), None).contains("needs filterTags.pattern"));
    assert!(bad(any(), None, None, Some("tomorrow")).contains("minAge \"tomorrow\""));
}

#[test]
fn twenty_thousand_tags_sort_once() {
    let tags: Vec<String> = (0..20_000)
        .map(|i| format!("1.{}.{}", i / 100, i % 100))
        .collect();
    let list: Vec<Image> = tags.iter().map(|t| image(t)).collect();
    let e = semver(">=1.0 <1.200").evaluate(&list, now());
    assert_eq!(e.latest.unwrap().tag, "1.199.99");
    assert_eq!(e.order.len(), 20_000);
}

fn version_strategy() -> impl Strategy<Value = String> {
    (
        0u64..4,
        0u64..4,
        0u64..4,
        prop_oneof![
            Just(String::new()),
            Just("-alpha".to_string()),
            Just("-rc.1".to_string()),
            Just("-beta.2".to_string())
        ],
        prop::bool::ANY,
    )
        .prop_map(|(a, b, c, pre, v)| format!("{}{a}.{b}.{c}{pre}", if v { "v" } else { "" }))
}

fn range_strategy() -> impl Strategy<Value = String> {
    let comparator = (
        prop_oneof![
            Just(""),
            Just("="),
            Just(">"),
            Just("<"),
            Just(">="),
            Just("<="),
            Just("~"),
            Just("^"),
            Just("!=")
        ],
        0u64..4,
        prop_oneof![
            Just(String::new()),
            (0u64..4).prop_map(|m| format!(".{m}")),
            Just(".x".to_string())
        ],
    )
        .prop_map(|(op, major, rest)| format!("{op}{major}{rest}"));
    prop::collection::vec(prop::collection::vec(comparator, 1..3), 1..3).prop_map(|groups| {
        groups
            .iter()
            .map(|g| g.join(" "))
            .collect::<Vec<_>>()
            .join(" || ")
    })
}

proptest! {
    /// The latest is the maximum of the eligible tags under the policy's order.
    #[test]
    fn latest_is_the_maximum_of_the_eligible(
        tags in prop::collection::btree_set(version_strategy(), 0..30),
        range in range_strategy(),
    ) {
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let p = semver(&range);
        let r = Range::parse(&range).unwrap();
        let eligible: Vec<(Version, &str)> = tags
            .iter()
            .filter_map(|t| Version::parse(t).filter(|v| r.matches(v)).map(|v| (v, *t)))
            .collect();
        let max = eligible.iter().max_by(|a, b| a.0.cmp(&b.0).then_with(|| compare_tags(a.1, b.1)));
        let e = p.evaluate(&images(&tags), now());
        prop_assert_eq!(e.latest.map(|l| l.tag), max.map(|m| m.1.to_string()));
        let mut seen = e.order.clone();
        seen.sort_unstable();
        prop_assert_eq!(seen, (0..tags.len()).collect::<Vec<_>>(), "order is a permutation");
    }

    /// A prerelease never wins a range that names none.
    #[test]
    fn no_prerelease_without_one_in_the_range(
        tags in prop::collection::btree_set(version_strategy(), 0..30),
        range in range_strategy(),
    ) {
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        prop_assume!(!range.contains('-'));
        if let Some(l) = semver(&range).evaluate(&images(&tags), now()).latest {
            prop_assert!(!l.tag.contains('-'), "{} won {:?}", l.tag, range);
        }
    }

    /// Numerical and alphabetical: the winner is the max (asc) or min (desc) of the values.
    #[test]
    fn ordered_policies_pick_the_extreme(values in prop::collection::btree_set(-1000i64..1000, 1..40)) {
        let tags: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
        let max = values.iter().max().map(|v| v.to_string());
        let min = values.iter().min().map(|v| v.to_string());
        prop_assert_eq!(latest(&policy(Kind::Numerical(Order::Asc)), &refs), max);
        prop_assert_eq!(latest(&policy(Kind::Numerical(Order::Desc)), &refs), min);
        let alpha_max = tags.iter().max().cloned();
        prop_assert_eq!(latest(&policy(Kind::Alphabetical(Order::Asc)), &refs), alpha_max);
    }
}
