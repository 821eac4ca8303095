//! The distribution API's operations, one file each, on top of a session: tag lists (tags),
//! a tag's digest (head), a manifest by reference (fetch), a blob's size (blob), an image
//! config's creation time (config); and the formats they read (manifest, schema1, digest).

mod blob;
mod config;
pub(crate) mod digest;
mod fetch;
mod head;
pub mod manifest;
mod referrers;
pub mod schema1;
mod tags;

pub(crate) use blob::blob_size;
pub(crate) use config::{ConfigRef, Created, read_created};
pub use digest::valid_digest;
pub(crate) use fetch::{Fetched, fetch};
pub(crate) use head::{HeadOutcome, head};
pub(crate) use referrers::{
    Listing as ReferrerListing, MAX_REFERRERS_PER_DIGEST, ReferrersMemory, list_referrers,
};
pub(crate) use tags::list_tags;
pub use tags::{TagFilter, next_link, next_page};
