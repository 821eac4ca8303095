//! Where a scan learns each tag's digest: the distribution API (a tag list, then one HEAD per
//! tag: always available) or, on registries that have one, the vendor's own listing API, which
//! names the digest of up to 100 tags per request. A native listing is only trusted after
//! [`guard`] has checked a sample of it against the distribution API; anything odd falls back
//! to the distribution path for the scan. Sizes and platforms always come from the manifests.

mod acr;
mod collect;
mod detect;
mod dockerhub;
mod gar;
mod guard;
mod harbor;
mod pushed;
mod quay;
mod state;

use std::collections::HashMap;

use super::error::ScanError;
use super::protocol::{TagFilter, list_tags};
use super::session::Session;
use super::{Referrer, ScanLimits, Timestamp};

pub(crate) use collect::Collector;
pub use detect::detect_by_host;
pub(crate) use state::Listers;

/// What a listing needs of the scan's options.
pub(crate) struct ListRequest<'o> {
    pub mode: ListingMode,
    /// `n` asked for per tag list page.
    pub page_size: u32,
    pub filter: &'o TagFilter,
    pub limits: &'o ScanLimits,
    /// Tag → digest of the previous scan: the guard HEADs every tag that changed.
    pub known_tags: &'o HashMap<String, String>,
    pub concurrency: usize,
}

/// `spec.listing` / `scan --listing`: whether a native listing API may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ListingMode {
    /// A native API where one is detected, guarded; the distribution API elsewhere.
    #[default]
    Auto,
    /// Always the distribution API (tag list plus one HEAD per tag).
    Distribution,
}

/// Which API listed the tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lister {
    Distribution,
    DockerHub,
    Harbor,
    Quay,
    /// Google Artifact Registry and Container Registry: the tag list's `manifest` map.
    Gar,
    Acr,
}

impl Lister {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Distribution => "distribution",
            Self::DockerHub => "dockerhub",
            Self::Harbor => "harbor",
            Self::Quay => "quay",
            Self::Gar => "gar",
            Self::Acr => "acr",
        }
    }

    /// How messages name the vendor's API.
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Distribution => "distribution API",
            Self::DockerHub => "Docker Hub tags API",
            Self::Harbor => "Harbor artifacts API",
            Self::Quay => "Quay tag API",
            Self::Gar => "Artifact Registry tag list manifest map",
            Self::Acr => "ACR tags API",
        }
    }
}

/// What became of a native listing this scan, for the object's `NativeListing` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeOutcome {
    /// The native API gave the digests and the guard agreed.
    Used(Lister),
    /// The native API failed or disagreed; this scan used the distribution API.
    FellBack { lister: Lister, reason: String },
    /// An earlier disagreement turned the native API off for this repository until the
    /// operator restarts. The reason names no tag: it may come from another tenant's scan.
    Off { lister: Lister, reason: String },
}

/// Every tag in listing order, and the digests vouched for (native and guarded, or HEADed by
/// the guard); tags without one get their HEAD in the scan.
pub(crate) struct Listed {
    pub tags: Vec<String>,
    pub digests: HashMap<String, String>,
    /// When the native API says each tag was pushed (only from a listing the guard accepted;
    /// the distribution API says nothing of the kind).
    pub pushed: HashMap<String, Timestamp>,
    pub lister: Lister,
    pub native: Option<NativeOutcome>,
    /// Referrers by digest, when the native API gave them (Harbor's accessories).
    pub referrers: Option<HashMap<String, Vec<Referrer>>>,
}

pub(crate) async fn list(
    session: &Session<'_>,
    listers: &Listers,
    options: &ListRequest<'_>,
) -> Result<Listed, ScanError> {
    if options.mode == ListingMode::Distribution {
        return distribution(session, options, None).await;
    }
    let lister = detect::detect(session, listers).await;
    if lister == Lister::Distribution {
        return distribution(session, options, None).await;
    }
    let base = session.target.base_url().to_string();
    let repository = session.target.repository();
    if listers.is_off(&base, repository) {
        // Said the same way to every scan of the repository: what the disagreement was about
        // (a tag name) is only for the scan that listed it.
        let reason = format!(
            "an earlier scan of this repository found the {} disagreeing with the registry; native listing is off for this repository until the operator restarts",
            lister.api_name()
        );
        return distribution(
            session,
            options,
            Some(NativeOutcome::Off { lister, reason }),
        )
        .await;
    }
    let mut collector = Collector::new(session, options.filter, options.limits);
    let listed = match lister {
        Lister::DockerHub => dockerhub::list(session, &mut collector).await,
        Lister::Harbor => harbor::list(session, &mut collector).await,
        Lister::Quay => quay::list(session, &mut collector).await,
        Lister::Gar => gar::list(session, &mut collector, options.page_size).await,
        Lister::Acr => acr::list(session, &mut collector).await,
        // Returned above; listed the plain way should that ever change.
        Lister::Distribution => return distribution(session, options, None).await,
    };
    let fell_back = |reason: String| {
        tracing::info!(registry = %session.target.registry(), repository = session.target.repository(), lister = lister.as_str(), %reason, "native listing not used; falling back to the distribution API");
        Some(NativeOutcome::FellBack { lister, reason })
    };
    if let Err(e) = listed {
        // Too many tags is the repository's size, not the API's fault: say so either way.
        if matches!(e, ScanError::TooManyTags { .. }) {
            return Err(e);
        }
        return distribution(
            session,
            options,
            fell_back(format!("the {} failed: {e}", lister.api_name())),
        )
        .await;
    }
    let (entries, pushed, referrers) = collector.finish();
    match guard::check(session, &entries, options.known_tags, options.concurrency).await {
        Ok(heads) => {
            let mut digests: HashMap<String, String> = entries
                .iter()
                .filter_map(|(t, d)| d.clone().map(|d| (t.clone(), d)))
                .collect();
            digests.extend(heads);
            Ok(Listed {
                tags: entries.into_iter().map(|(t, _)| t).collect(),
                digests,
                pushed,
                lister,
                native: Some(NativeOutcome::Used(lister)),
                referrers,
            })
        }
        Err(guard::Verdict::Disagrees(why)) => {
            let reason = format!(
                "the {} disagreed with the registry: {why}; native listing is off for this repository until the operator restarts",
                lister.api_name(),
            );
            listers.turn_off(session.tenant, &base, repository);
            distribution(session, options, fell_back(reason)).await
        }
        Err(guard::Verdict::Failed(e)) => {
            distribution(
                session,
                options,
                fell_back(format!(
                    "the guard's check of the {} could not finish: {e}",
                    lister.api_name()
                )),
            )
            .await
        }
    }
}

async fn distribution(
    session: &Session<'_>,
    options: &ListRequest<'_>,
    native: Option<NativeOutcome>,
) -> Result<Listed, ScanError> {
    let tags = list_tags(session, options.page_size, options.filter, options.limits).await?;
    Ok(Listed {
        tags,
        digests: HashMap::new(),
        pushed: HashMap::new(),
        lister: Lister::Distribution,
        native,
        referrers: None,
    })
}
