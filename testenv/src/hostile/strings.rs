//! Strings of megabytes in the JSON fields a scan keeps: a manifest's `mediaType`, an index's
//! `os`/`architecture`/`variant`, the media types of an index's children (unknown kinds), tag
//! names, and the `message` of a registry's error. Each body stays under the operator's 4 MiB
//! manifest and tag-list limits: the point is what is held after reading, not the reading.

use super::http::{Reply, Request};
use super::repo::{OCI_INDEX, OCI_MANIFEST, Repo, Route, route, small_manifest};
use super::{Ctx, Mode};

pub(super) const REPOSITORY: &str = "huge";

/// Just under the 4 MiB manifest limit.
const NEAR_LIMIT: usize = (4 << 20) - (16 << 10);
/// Manifests of huge strings per repository: tens of them are hundreds of MiB held.
const TAGS: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugeField {
    /// A manifest's own `mediaType` (an unknown kind, so it is kept as is).
    MediaType,
    /// An index's platforms: `os`, `architecture`, `variant` of 400 KiB each.
    Platform,
    /// An index's children with media types of 1.3 MiB: unknown kinds.
    UnknownKind,
    /// Tag names of 64 KiB in the tag list, among a few real ones.
    TagNames,
    /// A registry error (`errors[].message`) of nearly 4 MiB on every manifest GET.
    ErrorMessage,
}

impl HugeField {
    pub const ALL: [HugeField; 5] = [
        HugeField::MediaType,
        HugeField::Platform,
        HugeField::UnknownKind,
        HugeField::TagNames,
        HugeField::ErrorMessage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HugeField::MediaType => "mediaType",
            HugeField::Platform => "os/architecture/variant",
            HugeField::UnknownKind => "unknown kinds",
            HugeField::TagNames => "tag names",
            HugeField::ErrorMessage => "error messages",
        }
    }
}

/// `len` bytes of `seed` repeated: a valid JSON string body, distinct per seed.
fn filler(seed: &str, len: usize) -> String {
    let mut s = String::with_capacity(len + seed.len());
    while s.len() < len {
        s.push_str(seed);
        s.push('-');
    }
    s.truncate(len);
    s
}

pub(super) struct Strings {
    field: HugeField,
    repo: Repo,
}

impl Strings {
    pub fn new(field: HugeField) -> Self {
        let mut repo = Repo::default();
        match field {
            HugeField::MediaType => {
                for i in 0..TAGS {
                    let tag = format!("{i}.0");
                    let mut m: serde_json::Value =
                        serde_json::from_slice(&small_manifest(&tag)).unwrap_or_default();
                    m["mediaType"] = format!("application/vnd.{}", filler(&tag, NEAR_LIMIT)).into();
                    repo.put(&tag, m.to_string().into_bytes(), OCI_MANIFEST);
                }
            }
            HugeField::Platform | HugeField::UnknownKind => {
                for i in 0..TAGS {
                    let tag = format!("{i}.0");
                    let children: Vec<serde_json::Value> = (0..3)
                        .map(|c| {
                            let seed = format!("{tag}-{c}");
                            let digest = repo.add(small_manifest(&seed), OCI_MANIFEST);
                            if field == HugeField::Platform {
                                serde_json::json!({
                                    "mediaType": OCI_MANIFEST, "size": 400, "digest": digest,
                                    "platform": {
                                        "os": filler(&format!("os{seed}"), 400 << 10),
                                        "architecture": filler(&format!("arch{seed}"), 400 << 10),
                                        "variant": filler(&format!("v{seed}"), 400 << 10),
                                    },
                                })
                            } else {
                                serde_json::json!({
                                    "mediaType": format!("application/x.{}", filler(&seed, 1300 << 10)),
                                    "size": 400, "digest": digest,
                                    "platform": {"os": "linux", "architecture": format!("a{c}")},
                                })
                            }
                        })
                        .collect();
                    let index = serde_json::json!({
                        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
                    });
                    repo.put(&tag, index.to_string().into_bytes(), OCI_INDEX);
                }
            }
            HugeField::TagNames => {
                for i in 0..3 {
                    let tag = format!("{i}.0");
                    repo.put(&tag, small_manifest(&tag), OCI_MANIFEST);
                }
                let d = repo.add(small_manifest("junk"), OCI_MANIFEST);
                for i in 0..50 {
                    repo.tag(&filler(&format!("t{i}"), 64 << 10), &d);
                }
            }
            HugeField::ErrorMessage => {
                // Few: what matters is where the message ends up, not how many there are.
                for i in 0..4 {
                    let tag = format!("{i}.0");
                    repo.put(&tag, small_manifest(&tag), OCI_MANIFEST);
                }
                // HEADs name no digest, so that the scan GETs each tag and meets the error.
                repo.no_digest_header = true;
            }
        }
        Self { field, repo }
    }
}

impl Mode for Strings {
    fn answer(&self, ctx: &Ctx, req: &Request) -> Reply {
        if self.field == HugeField::ErrorMessage
            && req.method == "GET"
            && let Route::Manifest(_, reference) = route(req)
        {
            return Reply::error(
                400,
                "MANIFEST_INVALID",
                &filler(&format!("manifest {reference} is broken"), NEAR_LIMIT),
            );
        }
        self.repo.answer(ctx, req)
    }
}
