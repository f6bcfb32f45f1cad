//! airgap: package a Kubernetes HA cluster into one signed bundle on a connected machine, then verify it,
//! serve its images and bootstrap the cluster over SSH at a site with no internet.
//!
//! The CLI layer (`cli`) is thin; the logic lives in modules named after domain nouns.

pub mod build;
pub mod bundle;
pub mod cli;
pub mod digest;
pub mod error;
pub mod fsutil;
pub mod install;
pub mod node;
pub mod oci;
pub mod output;
pub mod registry;
pub mod sign;
pub mod site;
pub mod transfer;
pub mod yaml_lines;
