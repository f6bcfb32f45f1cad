//! The ONLINE side, `airgap build` on a connected packaging machine: the bundle [`manifest`] (what a bundle
//! holds), [`fetch`] (resolve every image and file, download what the cache lacks, assemble the bundle's
//! content for `bundle::write`), [`pipeline`] (the image blobs downloaded while the bundle is written), [`delta`] (a delta bundle against an earlier build's lock file), [`files`] (plain URL downloads checked by sha256) and the [`lock`] file
//! that pins a rebuild, [`mirror`] (package urls relative to a distribution mirror chosen at build time), and
//! the [`closure`] check (every image the bundle's Kubernetes needs is in it).
//!
//! Imports: `oci` (references, platforms, pulling), `transfer` (retries, the download cache), `bundle`
//! (the format it writes), `kube` (kubeadm's images), `node` (the component names a manifest may give), `yaml_lines` and the base
//! modules. Nothing but `cli` uses `build`.

pub mod closure;
pub mod delta;
pub mod fetch;
pub mod files;
pub mod lock;
pub mod manifest;
pub mod mirror;
pub mod pipeline;
