//! Harbor's artifacts API (goharbor/harbor `api/v2.0/swagger.yaml`, operation
//! `listArtifacts`: `GET /api/v2.0/projects/{project_name}/repositories/{repository_name}/artifacts`
//! with `with_tag=true`, `page`, `page_size`; an `Artifact` has `digest`, `tags[]` of `Tag`
//! with `name`, `push_time`, `references[]`; `push_time` is RFC 3339 text on the `Tag` and on
//! the `Artifact`). A repository name holding `/` is URL-encoded twice, as the swagger says.
//! Harbor's API takes Basic credentials; robot accounts work too.
//!
//! With `with_accessory=true` each artifact also lists its `accessories[]` (`Accessory`:
//! `digest`, `subject_artifact_digest`, `type`), which stand in for the referrers API: the
//! types are Harbor's (`src/pkg/accessory/model/accessory.go`: `signature.cosign`,
//! `signature.notation`, `harbor.sbom`, `accelerator.nydus`, and `subject.accessory` for any
//! other manifest with a `subject`, whose artifact type Harbor does not say). The list is
//! omitted when empty, so an artifact without one has none.

use serde::Deserialize;

use super::detect::api_url;
use super::{Collector, pushed};
use crate::registry::session::Session;
use crate::registry::{Referrer, ReferrerKind, ScanError, Timestamp};

const PAGE_SIZE: usize = 100;

#[derive(Deserialize)]
struct Artifact {
    digest: String,
    #[serde(default)]
    tags: Option<Vec<Tag>>,
    #[serde(default, deserialize_with = "pushed::rfc3339")]
    push_time: Option<Timestamp>,
    #[serde(default)]
    accessories: Option<Vec<Accessory>>,
}

#[derive(Deserialize)]
struct Accessory {
    digest: String,
    #[serde(default)]
    subject_artifact_digest: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// What Harbor's accessory type says the accessory is, with the artifact type Harbor's
/// `subject` middleware (`src/server/middleware/subject/subject.go`) gave it that type for.
fn accessory_kind(kind: &str) -> (ReferrerKind, Option<&'static str>) {
    match kind {
        "signature.cosign" => (ReferrerKind::Signature, None),
        "signature.notation" => (
            ReferrerKind::Signature,
            Some("application/vnd.cncf.notary.signature"),
        ),
        "harbor.sbom" => (
            ReferrerKind::Sbom,
            Some("application/vnd.goharbor.harbor.sbom.v1"),
        ),
        _ => (ReferrerKind::Other, None),
    }
}

/// An artifact's accessories whose subject is the artifact itself.
fn referrers_of(a: &Artifact) -> Vec<Referrer> {
    let mut out: Vec<Referrer> = Vec::new();
    for acc in a.accessories.iter().flatten() {
        if acc.subject_artifact_digest.as_deref() != Some(a.digest.as_str())
            || !crate::registry::valid_digest(&acc.digest)
            || out.iter().any(|r| r.digest == acc.digest)
        {
            continue;
        }
        let (kind, artifact_type) = accessory_kind(acc.kind.as_deref().unwrap_or_default());
        out.push(Referrer {
            digest: acc.digest.clone(),
            artifact_type: artifact_type.map(str::to_string),
            kind,
        });
    }
    out
}

#[derive(Deserialize)]
struct Tag {
    name: String,
    /// When this tag was pushed (the artifact's own is its first push under any tag).
    #[serde(default, deserialize_with = "pushed::rfc3339")]
    push_time: Option<Timestamp>,
}

pub(super) async fn list(
    session: &Session<'_>,
    out: &mut Collector<'_, '_>,
) -> Result<(), ScanError> {
    let target = session.target;
    let repository = target.repository();
    let (project, name) = repository
        .split_once('/')
        .ok_or_else(|| ScanError::InvalidConfig(format!("{repository} names no Harbor project")))?;
    let api = session.sibling(target, session.credentials(), "harbor");
    api.assume_basic();
    let encoded = name.replace('/', "%252F");
    for page in 1.. {
        let mut url = api_url(
            target,
            &format!("api/v2.0/projects/{project}/repositories/{encoded}/artifacts"),
        );
        url.query_pairs_mut()
            .append_pair("with_tag", "true")
            .append_pair("with_accessory", "true")
            .append_pair("page", &page.to_string())
            .append_pair("page_size", &PAGE_SIZE.to_string());
        let reply = out.page(&api, &url).await?;
        let artifacts: Vec<Artifact> = out.parse(&api, &url, &reply).await?;
        for a in &artifacts {
            for t in a.tags.iter().flatten() {
                out.add(&t.name, Some(&a.digest), t.push_time.or(a.push_time))
                    .await?;
            }
            if a.tags.as_ref().is_some_and(|t| !t.is_empty()) {
                out.add_referrers(&a.digest, referrers_of(a));
            }
        }
        if artifacts.len() < PAGE_SIZE {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";
    const B: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const C: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn accessories_of_another_subject_or_without_a_digest_are_left_out() {
        let a: Artifact = serde_json::from_value(serde_json::json!({
            "digest": A,
            "tags": [{"name": "1.0"}],
            "accessories": [
                {"digest": B, "subject_artifact_digest": A, "type": "signature.notation"},
                {"digest": C, "subject_artifact_digest": B, "type": "signature.cosign"},
                {"digest": "nope", "subject_artifact_digest": A, "type": "signature.cosign"},
                {"digest": B, "subject_artifact_digest": A, "type": "signature.cosign"},
                {"digest": C, "subject_artifact_digest": A, "type": "subject.accessory"}
            ]
        }))
        .unwrap();
        let r = referrers_of(&a);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].kind, ReferrerKind::Signature);
        assert_eq!(
            r[0].artifact_type.as_deref(),
            Some("application/vnd.cncf.notary.signature")
        );
        assert_eq!((r[1].digest.as_str(), r[1].kind), (C, ReferrerKind::Other));
    }
}
