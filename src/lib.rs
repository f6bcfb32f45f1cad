//! airgap: package a Kubernetes HA cluster into one signed bundle on a connected machine, then verify it,
//! serve its images and bootstrap the cluster over SSH at a site with no internet.
//!
//! The CLI layer (`cli`, one thin file per subcommand) calls the modules named after domain nouns:
//!
//! - online side: [`build`] (manifest, downloads, lock file) over [`oci`] (THE image reference parser,
//!   platforms, pulling) and [`transfer`] (retries, the download cache);
//! - the bundle: [`bundle`] (format, writer, the one verifying reader, split, unpack) and [`sign`];
//! - the site registry: [`registry`] (store, catalog, load, server); [`push`] (a bundle's or store's images
//!   into the site's own registry);
//! - the site: [`site`] (the inventory and its validation), with [`yaml_lines`] (THE YAML line locator,
//!   shared with the manifest);
//! - Kubernetes: [`kube`] (typed mirrors of the kubeadm / kubelet / kube-proxy configuration APIs, the
//!   kubeadm config renderer, the PKI made before `kubeadm init`, kubeadm's image list per release);
//! - DEPLOY SIDE: [`install`] (Step / Action / Ctx, engine, journal, plan output, SSH; `install::steps`
//!   one file per step; `install::config` the site model and its config files);
//! - NODE SIDE: [`node`] (what `airgap node ...` runs on a node: files, system, packages, components,
//!   services, docker, checks, facts), which depends only on `digest`, `fsutil` and `error`;
//! - base: [`digest`], [`fsutil`], [`error`], [`output`].
//!
//! Imports between these modules never form a cycle (checked by the `layout` integration test, which also
//! keeps every source file under 600 lines).

pub mod build;
pub mod bundle;
pub mod cli;
pub mod digest;
pub mod error;
pub mod fsutil;
pub mod install;
pub mod kube;
pub mod node;
pub mod oci;
pub mod output;
pub mod push;
pub mod registry;
pub mod sign;
pub mod site;
pub mod transfer;
pub mod yaml_lines;
