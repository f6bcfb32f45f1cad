//! The names the registry serves images under.
//!
//! An image `HOST/PATH:TAG` is served as `PATH:TAG`, so that kubeadm's `imageRepository: <vip>:5000` and
//! manifests rewritten to the VIP find it. Docker Hub images follow Docker's normalization: `nginx` is
//! `docker.io/library/nginx`, `bitnami/redis` is `docker.io/bitnami/redis`; `index.docker.io` and
//! `registry-1.docker.io` are `docker.io`.
//!
//! References are read by THE image reference parser, `oci::reference`: `PATH` is its `repository`, `HOST`
//! its `registry`. This module names what the registry uses of it.

pub use crate::oci::reference::{normalize_host, ImageRef};
