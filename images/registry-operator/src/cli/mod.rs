//! Command-line front ends that are not the controller.

pub mod logging;
pub mod proxy;
pub mod scan;

use kube::CustomResourceExt;

use crate::api::Registry;

/// The CRD as `make manifests` writes it to `crds/registry.yaml`.
pub fn crd_yaml() -> anyhow::Result<String> {
    Ok(serde_yaml::to_string(&Registry::crd())?)
}

pub fn print_crd() -> anyhow::Result<()> {
    print!("{}", crd_yaml()?);
    Ok(())
}
