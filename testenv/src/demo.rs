//! The sample registries `make demo` scans: one public, one behind a password.

use std::path::Path;

use anyhow::Context;

use crate::push::{Format, ImageSpec, Pusher};
use crate::registry::{RegistryOptions, RegistryServer};

pub const PUBLIC_REPOSITORY: &str = "library/demo-app";
pub const PRIVATE_REPOSITORY: &str = "company/app";
pub const PRIVATE_USERNAME: &str = "demo";

pub struct DemoRegistries {
    pub public: RegistryServer,
    pub private: RegistryServer,
    pub password: String,
}

/// Starts both registries, pushes sample images, and writes `DIR/env` (shell syntax) with
/// PUBLIC_URL, PRIVATE_URL, PRIVATE_USERNAME and PRIVATE_PASSWORD.
pub async fn start(dir: &Path) -> anyhow::Result<DemoRegistries> {
    let password = format!("demo-{:016x}", rand::random::<u64>());
    let public = RegistryServer::start(RegistryOptions::plain()).await?;
    let private =
        RegistryServer::start(RegistryOptions::htpasswd(PRIVATE_USERNAME, &password)).await?;

    let p = Pusher::new(&public, None)?;
    let mut last = None;
    for (i, tag) in ["1.0", "1.1", "1.9", "1.10"].iter().enumerate() {
        let spec = ImageSpec::new(Format::Oci, 100 + i as u64, &[40_000 + i * 1000, 3_000]);
        last = Some(p.push_image(PUBLIC_REPOSITORY, Some(tag), &spec).await?);
    }
    p.tag(
        PUBLIC_REPOSITORY,
        "latest",
        &last.context("no image pushed")?.digest,
    )
    .await?;
    let amd = ImageSpec::new(Format::Oci, 200, &[50_000]);
    let arm = ImageSpec::new(Format::Oci, 201, &[48_000]).platform("linux", "arm64", Some("v8"));
    let amd_p = p.push_image(PUBLIC_REPOSITORY, None, &amd).await?;
    let arm_p = p.push_image(PUBLIC_REPOSITORY, None, &arm).await?;
    p.push_index(
        PUBLIC_REPOSITORY,
        Some("2.0"),
        Format::Oci,
        &[(&amd, &amd_p), (&arm, &arm_p)],
        true,
    )
    .await?;

    let q = Pusher::new(&private, Some((PRIVATE_USERNAME, &password)))?;
    for (i, tag) in ["1.0", "1.1", "2.0"].iter().enumerate() {
        let spec = ImageSpec::new(Format::Docker, 300 + i as u64, &[70_000, 9_000 + i]);
        q.push_image(PRIVATE_REPOSITORY, Some(tag), &spec).await?;
    }

    let env = format!(
        "PUBLIC_URL={}\nPUBLIC_REPOSITORY={PUBLIC_REPOSITORY}\nPRIVATE_URL={}\nPRIVATE_REPOSITORY={PRIVATE_REPOSITORY}\nPRIVATE_USERNAME={PRIVATE_USERNAME}\nPRIVATE_PASSWORD={password}\n",
        public.url, private.url
    );
    std::fs::write(dir.join("env"), env)
        .with_context(|| format!("writing {}/env", dir.display()))?;
    Ok(DemoRegistries {
        public,
        private,
        password,
    })
}
