//! What one scan may hold: tags, tag-list pages and bytes per page. A repository over a limit
//! fails its scan with a reason of its own instead of growing the operator's memory.

/// Limits of one scan. `usize::MAX` means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Tags (after the tag filter) one scan may list; one more fails it with `TooManyTags`.
    pub max_tags: usize,
    /// Bytes of one tag-list page; a larger page fails the scan with `ResponseTooLarge`.
    pub max_page_bytes: usize,
    /// Tag-list pages one scan may follow (a registry that pages forever).
    pub max_pages: usize,
}

pub const DEFAULT_MAX_TAGS: usize = 20_000;
pub const DEFAULT_MAX_PAGE_BYTES: usize = 4 << 20;
pub const DEFAULT_MAX_PAGES: usize = 10_000;

impl Default for ScanLimits {
    fn default() -> Self {
        Self {
            max_tags: DEFAULT_MAX_TAGS,
            max_page_bytes: DEFAULT_MAX_PAGE_BYTES,
            max_pages: DEFAULT_MAX_PAGES,
        }
    }
}

impl ScanLimits {
    /// No limits at all (a user's own one-shot scan may ask for that).
    pub fn unlimited() -> Self {
        Self {
            max_tags: usize::MAX,
            max_page_bytes: usize::MAX,
            max_pages: usize::MAX,
        }
    }
}
