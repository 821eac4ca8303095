//! Referrer tags folded into the images they name: the distribution spec's fallback tag
//! (`sha256-<hex>`, an index listing the referrers of that digest) and cosign's legacy tags
//! (`sha256-<hex>.sig`, `.att`, `.sbom`, each one referrer). A pass over a whole tag list
//! after resolution: the tags' manifests were read like any other (one GET per new digest),
//! so folding costs no request.
//!
//! Exact: a tag's referrers go only to images (and index platforms) whose digest the tag
//! names, merged into what the referrers API gave (deduplicated by digest) and bounded per
//! image. The facts stay as the registry gave them; the fold is redone on every list, so a
//! re-signed image (cosign replaces its `.sig` tag) never keeps the old signature.

use std::collections::HashMap;

use crate::registry::artifact::{self, ReferrerTag};
use crate::registry::{Image, ManifestFacts, Referrer};

/// Referrers a tag-derived pass adds to one image or platform at most: what the status lists
/// stays bounded however many tags name the image.
pub const MAX_FOLDED_REFERRERS: usize = 64;

/// Attaches every referrer tag's referrers in `images` to the images and platforms whose
/// digest the tag names; `facts` (by digest) hold what a fallback tag's index lists. Returns
/// how many tags name referrers. The referrer tags themselves stay in `images`: whether they
/// are listed is the status's choice (`spec.referrerTags`).
pub fn fold(images: &mut [Image], facts: &HashMap<String, ManifestFacts>) -> usize {
    let mut by_tag: HashMap<&str, (ReferrerTag, Vec<Referrer>)> = HashMap::new();
    for image in images.iter() {
        let Some(tag) = artifact::referrer_tag(&image.tag) else {
            continue;
        };
        let referrers = match tag.kind {
            // A cosign tag is one referrer: its own manifest.
            Some(kind) => vec![Referrer {
                digest: image.digest.clone(),
                artifact_type: image.artifact_type.clone(),
                kind,
            }],
            // A fallback tag lists them; an index it could not read lists none (yet).
            None => facts
                .get(&image.digest)
                .map(|f| f.listed.clone())
                .unwrap_or_default(),
        };
        by_tag.insert(image.tag.as_str(), (tag, referrers));
    }
    let count = by_tag.len();
    if count == 0 {
        return 0;
    }
    let attach = |digest: &str, into: &mut Vec<Referrer>| {
        for tag in names_of(digest) {
            let Some((parsed, referrers)) = by_tag.get(tag.as_str()) else {
                continue;
            };
            if !parsed.refers_to(digest) {
                continue;
            }
            for r in referrers {
                if into.len() >= MAX_FOLDED_REFERRERS {
                    return;
                }
                if !into.iter().any(|known| known.digest == r.digest) {
                    into.push(r.clone());
                }
            }
        }
    };
    let mut folded: Vec<(usize, Vec<Referrer>, Vec<Vec<Referrer>>)> = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let mut own = image.referrers.clone();
        attach(&image.digest, &mut own);
        let platforms: Vec<Vec<Referrer>> = image
            .platforms
            .iter()
            .map(|p| {
                let mut r = p.referrers.clone();
                attach(&p.digest, &mut r);
                r
            })
            .collect();
        let changed = own.len() != image.referrers.len()
            || platforms
                .iter()
                .zip(&image.platforms)
                .any(|(r, p)| r.len() != p.referrers.len());
        if changed {
            folded.push((i, own, platforms));
        }
    }
    for (i, own, platforms) in folded {
        let image = &mut images[i];
        image.referrers = own;
        for (p, r) in image.platforms.iter_mut().zip(platforms) {
            p.referrers = r;
        }
    }
    count
}

/// The referrer tags that could name `digest`: its fallback tag and cosign's three.
fn names_of(digest: &str) -> Vec<String> {
    let Some((alg, hex)) = digest.split_once(':') else {
        return Vec::new();
    };
    let mut names: Vec<String> = ["sig", "att", "sbom"]
        .iter()
        .map(|suffix| format!("{alg}-{hex}.{suffix}"))
        .collect();
    names.extend(artifact::fallback_tag(digest));
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Platform, ReferrerKind};

    fn digest(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    fn tag_of(d: &str) -> String {
        d.replacen(':', "-", 1)
    }

    fn image(tag: &str, digest: &str) -> Image {
        Image {
            tag: tag.into(),
            digest: digest.into(),
            ..Image::default()
        }
    }

    fn referrer(n: u8, kind: ReferrerKind) -> Referrer {
        Referrer {
            digest: digest(n),
            artifact_type: None,
            kind,
        }
    }

    #[test]
    fn fallback_and_cosign_tags_attach_to_the_digest_they_name_only() {
        let (app, other, index) = (digest(1), digest(2), digest(3));
        let sig = digest(4);
        let mut images = vec![
            image("1.0", &app),
            image("latest", &app),
            image("2.0", &other),
            image(&tag_of(&app), &index),
            Image {
                artifact_type: Some("application/vnd.dev.cosign.simplesigning.v1+json".into()),
                ..image(&format!("{}.sig", tag_of(&app)), &sig)
            },
        ];
        let facts = HashMap::from([(
            index.clone(),
            ManifestFacts {
                listed: vec![referrer(10, ReferrerKind::Sbom)],
                ..ManifestFacts::default()
            },
        )]);
        assert_eq!(fold(&mut images, &facts), 2);
        for tag in ["1.0", "latest"] {
            let i = images.iter().find(|i| i.tag == tag).unwrap();
            let got: Vec<(&str, ReferrerKind)> = i
                .referrers
                .iter()
                .map(|r| (r.digest.as_str(), r.kind))
                .collect();
            assert_eq!(
                got,
                [
                    (sig.as_str(), ReferrerKind::Signature),
                    (digest(10).as_str(), ReferrerKind::Sbom)
                ],
                "{tag}"
            );
        }
        let signature = &images[0].referrers[0];
        assert_eq!(
            signature.artifact_type.as_deref(),
            Some("application/vnd.dev.cosign.simplesigning.v1+json")
        );
        assert!(images[2].referrers.is_empty(), "unrelated image untouched");
        assert!(images[3].referrers.is_empty() && images[4].referrers.is_empty());
    }

    #[test]
    fn merges_with_the_api_by_digest_and_stays_bounded() {
        let app = digest(1);
        let index = digest(3);
        let mut images = vec![
            Image {
                referrers: vec![referrer(10, ReferrerKind::Sbom)],
                ..image("1.0", &app)
            },
            image(&tag_of(&app), &index),
        ];
        let listed: Vec<Referrer> = (10..=200)
            .map(|n| referrer(n, ReferrerKind::Other))
            .collect();
        let facts = HashMap::from([(
            index.clone(),
            ManifestFacts {
                listed,
                ..ManifestFacts::default()
            },
        )]);
        fold(&mut images, &facts);
        let r = &images[0].referrers;
        assert_eq!(r.len(), MAX_FOLDED_REFERRERS);
        assert_eq!(r[0].kind, ReferrerKind::Sbom, "the API's entry is kept");
        assert_eq!(r.iter().filter(|r| r.digest == digest(10)).count(), 1);
    }

    #[test]
    fn platforms_get_the_referrers_of_their_own_digest() {
        let (index, amd, arm, sig) = (digest(1), digest(2), digest(3), digest(4));
        let platform = |d: &str| Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
            digest: d.into(),
            size: None,
            referrers: Vec::new(),
        };
        let mut images = vec![
            Image {
                platforms: vec![platform(&amd), platform(&arm)],
                ..image("1.0", &index)
            },
            image(&format!("{}.att", tag_of(&arm)), &sig),
        ];
        fold(&mut images, &HashMap::new());
        assert!(images[0].referrers.is_empty());
        assert!(images[0].platforms[0].referrers.is_empty());
        assert_eq!(
            images[0].platforms[1].referrers,
            [Referrer {
                digest: sig,
                artifact_type: None,
                kind: ReferrerKind::Attestation
            }]
        );
    }

    #[test]
    fn folding_twice_changes_nothing() {
        let app = digest(1);
        let mut images = vec![
            image("1.0", &app),
            image(&format!("{}.sbom", tag_of(&app)), &digest(5)),
        ];
        fold(&mut images, &HashMap::new());
        let once = images.clone();
        fold(&mut images, &HashMap::new());
        assert_eq!(images, once);
    }
}
