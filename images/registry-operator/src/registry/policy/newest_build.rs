//! `newestBuild`: the image built (else pushed) last wins, whatever its tag says — Argo CD
//! Image Updater's `newest-build`. `createdAt` is the publisher's build time and answers the
//! question directly; `pushedAt` stands in when the registry knows only that.

use crate::registry::{Image, Timestamp};

/// `None` when the image has neither time: it cannot be placed, so it is not a candidate.
pub fn key(image: &Image) -> Option<Timestamp> {
    image.created_at.or(image.pushed_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_before_pushed() {
        let t = |s: i64| Timestamp::from_unix(s);
        let mut image = Image {
            pushed_at: t(200),
            ..Image::default()
        };
        assert_eq!(key(&image), t(200));
        image.created_at = t(100);
        assert_eq!(key(&image), t(100));
        assert_eq!(key(&Image::default()), None);
    }
}
