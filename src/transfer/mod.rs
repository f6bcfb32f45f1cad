//! Downloads, shared by `oci::pull` (registry blobs and manifests) and `build` (plain URL files): [`retry`]
//! (exponential backoff for transient failures), [`stream`] (one attempt streamed into a staged cache entry)
//! and the content-addressed [`cache`] they land in.
//!
//! Imports: `digest` only; `oci` and `build` use it (it sits below both, so neither needs the other's
//! internals).

pub mod cache;
pub mod retry;
pub mod stream;
