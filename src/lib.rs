//! airgap: package a Kubernetes HA cluster into one signed bundle on a connected machine, then verify it,
//! serve its images and bootstrap the cluster over SSH at a site with no internet.
//!
//! The CLI layer (`cli`) is thin; the logic lives in modules named after domain nouns.

pub mod bundle;
pub mod cache;
pub mod cli;
pub mod digest;
pub mod error;
pub mod fetch;
pub mod fsutil;
pub mod infra;
pub mod inventory;
pub mod kube;
pub mod manifest;
pub mod oci;
pub mod output;
pub mod registry;
pub mod sign;
pub mod ssh;
pub mod steps;
