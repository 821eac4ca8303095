//! registry-operator: scans Docker/OCI registries and records every tag's digest and size.
//!
//! `registry` is the cluster-free scan core; `api` holds the `Registry` custom resource;
//! `controller` is the thin Kubernetes shell that calls the core.

pub mod api;
pub mod cli;
pub mod controller;
pub mod latest;
pub mod registry;
pub mod status;
pub mod webhook;
