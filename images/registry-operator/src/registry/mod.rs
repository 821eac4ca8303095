//! The cluster-free scan core: registry client, auth, manifests and the scanner.
//! Nothing here knows about Kubernetes; the controller and the `scan` CLI both call it.

mod model;

pub use model::{Image, ManifestFacts, Platform};
