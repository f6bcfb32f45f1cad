//! The built-in registry: a content-addressed store loaded from bundles, served over the OCI distribution API.
//!
//! - [`store`]: the store on disk and the all-or-nothing load transaction.
//! - [`catalog`]: `catalog.json` and the lookup tables the server answers from.
//! - [`names`]: the names images are served under (references parsed by `oci::reference`).
//! - [`delta`]: what loading a delta bundle checks (its base in the store, its release complete).
//! - [`gc`]: what the catalog reaches, and `airgap gc` (free the blobs of moved tags).
//! - [`load`]: `airgap load`, an [`crate::bundle::read::EntrySink`] over the bundle reader.
//! - [`server`]: the pull API (axum), a handler over the [`server::BlobStore`] trait.

pub mod catalog;
pub mod delta;
pub mod gc;
pub mod load;
pub mod names;
pub mod server;
pub mod store;
