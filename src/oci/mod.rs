//! OCI images: [`reference`](mod@reference) (THE image reference parser), [`platform`] (`os/arch[/variant]`), [`pull`]
//! (pulling from registries: tags, digests, multi-arch indexes), [`auth`] (credentials), [`mirror`] (build-time
//! registry mirrors), media types.
//!
//! Imports: `transfer` (retries, the download cache) and the base modules; `build` and `registry` use it.

pub mod auth;
pub mod mirror;
pub mod platform;
pub mod pull;
pub mod reference;

/// Manifest media types we accept, in the `Accept` header order.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}
