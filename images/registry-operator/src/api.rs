//! The `Registry` custom resource (registry.kubecontroller.io/v1alpha1).
//!
//! Field names follow the product's contract; fields are only ever added, never renamed.
//! The schema carries the validation so that the API server rejects a bad object itself.

// kube's `printcolumn(name = .., type_ = ..)` repeats keys by design; clippy reads them as duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::registry::{Image, Latest, RequestCounts};

pub const GROUP: &str = "registry.kubecontroller.io";
pub const DEFAULT_SCAN_INTERVAL: i64 = 300;
pub const MIN_SCAN_INTERVAL: i64 = 30;
pub const DEFAULT_MAX_IMAGES: i32 = 1000;
pub const DEFAULT_REFERRERS_INTERVAL: i64 = 3600;

/// A URL whose authority holds an `@`: user information, with or without a scheme.
macro_rules! url_credentials {
    () => {
        "^([a-zA-Z][-+.a-zA-Z0-9]*://)?[^/?#]*@"
    };
}

/// A repository in a Docker/OCI registry that registry-operator scans on a schedule,
/// recording every tag's digest and size in `status.images`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "registry.kubecontroller.io",
    version = "v1alpha1",
    kind = "Registry",
    plural = "registries",
    singular = "registry",
    shortname = "reg",
    namespaced,
    label("heritage", "deckhouse"),
    label("module", "registry-operator"),
    status = "RegistryStatus",
    doc = "A repository in a Docker/OCI registry whose tags, digests and sizes registry-operator records in its status.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(name = "Repository", type_ = "string", json_path = ".spec.repository"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.lastScanStatus"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Tags",
        type_ = "integer",
        json_path = ".status.tagCount",
        priority = "1"
    ),
    printcolumn(
        name = "Last Scan",
        type_ = "date",
        json_path = ".status.lastScanTime",
        priority = "1"
    ),
    printcolumn(
        name = "Latest",
        type_ = "string",
        json_path = ".status.latest.tag",
        priority = "1"
    ),
    printcolumn(
        name = "Signed",
        type_ = "string",
        json_path = ".status.signed",
        priority = "1"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySpec {
    /// Registry base URL, `https://` or `http://` (e.g. `https://registry-1.docker.io`).
    /// `docker.io`, `index.docker.io` and `registry-1.docker.io` all mean Docker Hub.
    /// Without credentials (`user:password@`): they belong in the `credentialsSecret`.
    #[schemars(length(min = 1, max = 2048))]
    // A URL with credentials answers to the second rule only, and that one is `Forbidden`:
    // the API server then prints no value, so the password is not repeated back to whoever
    // reads the refusal (an `Invalid` rule's error carries the value).
    #[x_kube(validation = kube::core::Rule::new(concat!(
        "self.matches('", url_credentials!(), "') || ",
        "self.matches('^https?://[^/?#\\\\s]+(/[^?#\\\\s]*)?$')"
    ))
        .message("url must be an http:// or https:// URL with a host, without query or fragment, e.g. https://registry-1.docker.io"))]
    #[x_kube(validation = kube::core::Rule::new(concat!("!self.matches('", url_credentials!(), "')"))
        .message("url must not contain credentials (user:password@host): put them in a Secret and name it in credentialsSecret")
        .reason(kube::core::Reason::FieldValueForbidden))]
    pub url: String,

    /// Repository path within the registry (e.g. `library/nginx`, `company/app`).
    /// A single name on Docker Hub means `library/<name>`.
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[a-z0-9]+((\\\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\\\.|_|__|-+)[a-z0-9]+)*)*$')")
        .message("repository must be a lowercase repository path such as library/nginx: components of [a-z0-9] separated by '.', '_', '__' or '-', joined by '/'"))]
    pub repository: String,

    /// Seconds between scans (minimum 30, default 300).
    #[serde(default = "default_scan_interval")]
    #[schemars(range(min = 30, max = 2_592_000))]
    pub scan_interval: i64,

    /// Secret in the same namespace with `username` and `password` keys, or a
    /// `kubernetes.io/dockerconfigjson` Secret with an entry for this registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretReference>,

    /// Skip TLS certificate verification (for registries with self-signed certificates;
    /// prefer `caSecret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,

    /// Secret in the same namespace holding a PEM CA bundle that signs the registry's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<CaSecretReference>,

    /// Which tags to record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_filter: Option<TagFilter>,

    /// At most this many images are kept in `status.images` (the highest versions win);
    /// `status.tagCount` always counts them all. Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5000))]
    pub max_images: Option<i32>,

    /// Registry requests in flight at once during one scan of this object (default: the
    /// operator's `--scan-concurrency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub concurrency: Option<i32>,

    /// Stop scanning; the last status stays as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// How tags and their digests are listed. `Auto` (the default): through the registry's
    /// own listing API where one is detected (Docker Hub, Harbor, Quay, Google Artifact
    /// Registry/GCR, Azure ACR), up to 100 digests per request, each listing checked by HEADs
    /// of a random sample and of every changed tag; on any disagreement or error the scan
    /// uses the registry API instead. `Distribution`: always the registry API (the tag list
    /// plus one HEAD per tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<Listing>,

    /// Which image timestamps may cost requests. Without it only free ones are reported:
    /// `images[].pushedAt` from a native listing API and `images[].createdAt` from the
    /// manifest's `org.opencontainers.image.created` annotation. `Created`: also the image
    /// config's `created` when the annotation is absent — one blob GET per new digest (for a
    /// multi-arch image, the config of the platform whose size is reported), remembered with
    /// the digest and never repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamps: Option<Timestamps>,

    /// Registry webhooks from this namespace's own senders: they post to
    /// `/webhook/namespaces/<namespace>/<kind>` with the `token` of the Secret named here, and
    /// such a request refreshes only this namespace's objects that name that Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,

    /// Tags that name referrers rather than versions — the distribution spec's fallback tag
    /// `sha256-<hex>` and cosign's `sha256-<hex>.sig`, `.att`, `.sbom` — are folded into the
    /// `referrers` of the image they name. `Hide` (the default): they are not listed in
    /// `images` (`status.referrerTags` counts them, `tagCount` includes them). `Show`: they
    /// are listed too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_tags: Option<ReferrerTags>,
    /// Seconds between two reads of the referrers (signatures, SBOMs, attestations) of
    /// digests already known (minimum 60, maximum 30 days, default 3600). A new digest's
    /// referrers are read when it first appears; between two reads a rescan of an unchanged
    /// repository makes no referrer request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 2_592_000))]
    pub referrers_interval: Option<i64>,
    /// Which tag is the newest version to run: `status.latest` names it, with its digest and
    /// times. Exactly one of `semver`, `numerical`, `alphabetical`, `newestBuild`; optionally
    /// `filterTags` and `minAge`. With a policy, `images` is in the policy's order and
    /// `maxImages` keeps what it ranks highest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySpec>,
}

/// `spec.policy`: the shapes of Flux's `ImagePolicy`, plus `newestBuild` and `minAge`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.semver) ? 1 : 0) + (has(self.numerical) ? 1 : 0) + (has(self.alphabetical) ? 1 : 0) + (has(self.newestBuild) ? 1 : 0) == 1"
).message("policy must name exactly one of semver, numerical, alphabetical or newestBuild"))]
pub struct PolicySpec {
    /// Tags as semantic versions (a `v` prefix and `1.2` for `1.2.0` are accepted), the highest
    /// in `range` wins; prereleases only when the range names one (`>=1.0.0-0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<SemverPolicy>,
    /// Tags (or what `filterTags.extract` makes of them) as numbers: build numbers, Unix times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numerical: Option<OrderPolicy>,
    /// Tags (or their extracted values) in byte order: CalVer, RFC 3339 stamps, code names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alphabetical: Option<OrderPolicy>,
    /// The image built last (`createdAt`, else `pushedAt`) wins, whatever its tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_build: Option<NewestBuildPolicy>,
    /// Only tags matching `pattern` are considered; `extract` makes the value compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_tags: Option<FilterTagsSpec>,
    /// Only versions created and pushed at least this long ago (e.g. `24h`, `90m`, `7d`);
    /// a version with neither time is then not eligible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^([0-9]+[smhd])+$')")
        .message("minAge must be a duration of whole numbers with s, m, h or d, e.g. 24h, 90m, 1h30m, 7d"))]
    pub min_age: Option<String>,
}

/// `spec.policy.semver`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SemverPolicy {
    /// A Masterminds/semver v3 range as Flux reads it: `1.0.x`, `~1.2`, `^1.0`,
    /// `>=1.0 <2.0`, `>0,<2.0`, `1.2 - 1.4.5`, `a || b`.
    #[schemars(length(min = 1, max = 256))]
    pub range: String,
}

/// `spec.policy.numerical` and `spec.policy.alphabetical`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct OrderPolicy {
    /// `asc` (default): the highest value wins; `desc`: the lowest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<PolicyOrder>,
}

/// Sort order of a policy.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum PolicyOrder {
    #[default]
    Asc,
    Desc,
}

/// `spec.policy.newestBuild`: no settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct NewestBuildPolicy {}

/// `spec.policy.filterTags`, as Flux's.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FilterTagsSpec {
    /// Regular expression (RE2/Rust syntax, unanchored) a tag must match; named groups
    /// `(?P<name>...)` feed `extract`.
    #[schemars(length(min = 1, max = 1024))]
    pub pattern: String,
    /// The value compared instead of the tag: `$name`, `${name}` or `$1` expand the
    /// pattern's groups (e.g. `$ts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub extract: Option<String>,
}

impl PolicySpec {
    /// The policy the scan core evaluates; an error names the field to fix (what CEL cannot
    /// check: the range's and the pattern's grammar).
    pub fn compile(
        &self,
    ) -> Result<crate::registry::policy::Policy, crate::registry::policy::PolicyError> {
        use crate::registry::policy::{Kind, Order, Policy, PolicyError};
        let order = |o: &OrderPolicy| match o.order.unwrap_or_default() {
            PolicyOrder::Asc => Order::Asc,
            PolicyOrder::Desc => Order::Desc,
        };
        let kind = match (
            &self.semver,
            &self.numerical,
            &self.alphabetical,
            &self.newest_build,
        ) {
            (Some(s), None, None, None) => Kind::Semver {
                range: s.range.clone(),
            },
            (None, Some(o), None, None) => Kind::Numerical(order(o)),
            (None, None, Some(o), None) => Kind::Alphabetical(order(o)),
            (None, None, None, Some(_)) => Kind::NewestBuild,
            _ => {
                return Err(PolicyError(
                    "policy must name exactly one of semver, numerical, alphabetical or newestBuild".into(),
                ));
            }
        };
        let filter = self.filter_tags.as_ref();
        Policy::new(
            &kind,
            filter.map(|f| f.pattern.as_str()),
            filter.and_then(|f| f.extract.as_deref()),
            self.min_age.as_deref(),
        )
    }
}

/// `spec.referrerTags`.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ReferrerTags {
    #[default]
    Hide,
    Show,
}

/// `spec.webhook`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// Secret in the same namespace whose `token` key senders present (as
    /// `Authorization: Bearer <token>`, the raw `Authorization` header, `?secret=<token>`, or
    /// the key of GitHub's `X-Hub-Signature-256`).
    pub secret_ref: SecretReference,
}

/// `spec.timestamps`: `Created` reads the image config's `created` where the manifest has no
/// creation annotation.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timestamps {
    Created,
}

/// `spec.listing`.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum Listing {
    #[default]
    Auto,
    Distribution,
}

impl Listing {
    pub fn mode(self) -> crate::registry::ListingMode {
        match self {
            Self::Auto => crate::registry::ListingMode::Auto,
            Self::Distribution => crate::registry::ListingMode::Distribution,
        }
    }
}

fn default_scan_interval() -> i64 {
    DEFAULT_SCAN_INTERVAL
}

/// A Secret in the Registry's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = secret_name_rule())]
    pub name: String,
}

/// A Secret in the Registry's own namespace holding a PEM CA bundle.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CaSecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = secret_name_rule())]
    pub name: String,
    /// Key of the PEM bundle in the Secret (default `ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[-._a-zA-Z0-9]+$')")
        .message("key must be a Secret key: letters, digits, '-', '_' and '.'"))]
    pub key: Option<String>,
}

/// A Secret's name is a DNS-1123 subdomain; refusing others at admission says so where the
/// object is written, instead of a `SecretNotFound` after the fact.
fn secret_name_rule() -> kube::core::Rule {
    kube::core::Rule::new(
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",
    )
    .message(
        "name must be a Secret name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
    )
}

/// Regular expressions (RE2/Rust syntax, unanchored) over tag names.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct TagFilter {
    /// Only tags matching this pattern are recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub include: Option<String>,
    /// Tags matching this pattern are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub exclude: Option<String>,
}

/// Outcome of a scan.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanStatus {
    Success,
    Failed,
}

/// What the last scans found. On a failed scan `images` keeps the last good result.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatus {
    /// `Success` or `Failed`: the outcome of the latest scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_status: Option<ScanStatus>,
    /// When the latest scan finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_time: Option<Time>,
    /// When the latest successful scan finished: the time `images` is from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_scan_time: Option<Time>,
    /// Human-readable outcome of the latest scan; on failure, what went wrong and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Tags with their digests and sizes, in ascending version order (`1.9` before `1.10`);
    /// with `spec.policy`, the tags it does not select first, then its candidates lowest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<Image>>,
    /// The newest version `spec.policy` allows, with its digest and times; kept when a scan
    /// fails, removed when no tag is eligible (the `LatestFound` condition says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<Latest>,
    /// The `latest` before the last time it moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_latest: Option<Latest>,
    /// How many tags name referrers (signatures, SBOMs, attestations) rather than versions:
    /// their referrers are folded into the images they refer to, and with
    /// `spec.referrerTags: Hide` (the default) they are not listed in `images`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_tags: Option<i64>,
    /// Tags whose image has at least one signature referrer, out of all tags listed:
    /// `12/40`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<String>,
    /// When the referrers of every digest were last read (the next full read is due
    /// `spec.referrersInterval` later; new digests' are read as they appear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrers_checked_at: Option<Time>,
    /// How many tags the repository has (after `tagFilter`), including any left out of `images`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_count: Option<i64>,
    /// How many tags were left out of `images` because of `maxImages` or the status size limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omitted_tags: Option<i64>,
    /// The `metadata.generation` the latest scan used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the next scheduled scan is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_scan_time: Option<Time>,
    /// Duration of the latest scan in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_duration_ms: Option<i64>,
    /// Registry requests the latest scan made, by kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_requests: Option<RequestCounts>,
    /// Tags whose manifest the latest successful scan could not read (they keep their last
    /// known digest and carry a `note`; the `Degraded` condition names the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_tags: Option<i64>,
    /// When a registry webhook event last updated `images` (only the tags it named were read
    /// again; the periodic scan still runs as a safety net).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_time: Option<Time>,
    /// Standard conditions; `Ready` says whether `images` is current, `Degraded` whether some
    /// tags could not be read, `NativeListing` (on registries with a native listing API)
    /// whether that API gave the digests or why the scan used the registry API instead,
    /// `LatestFound` (with `spec.policy`) whether a tag is eligible, and why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
