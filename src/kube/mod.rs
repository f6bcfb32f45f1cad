//! The Kubernetes domain: what the kubeadm-based install needs to know about Kubernetes itself.
//!
//! - [`kubeadm_api`]: typed mirrors of the configuration APIs kubeadm reads (`kubeadm.k8s.io/v1beta4`,
//!   `kubelet.config.k8s.io/v1beta1`, `kubeproxy.config.k8s.io/v1alpha1`), a strict multi-document parser
//!   and the kubeadm API version to use for a Kubernetes version.
//! - [`kubeadm_config`]: renders the `kubeadm init` / `kubeadm join` configuration files of a site, with
//!   the secrets either real (the file written 0600 on the node) or masked (plan / dry-run output).
//! - [`pki`]: bootstrap tokens, certificate keys, the cluster CA made before `kubeadm init` (so the joins'
//!   `caCertHashes` is known up front), the CA public-key pin, and certificate inspection.
//! - [`certs`]: `airgap certs check`: kubeadm's 14 certificates of a master judged against a warning window.
//! - [`images`]: the images kubeadm pulls for a Kubernetes version, upstream and under the site registry.
//! - [`manifests`]: the bundled flannel and ingress manifests edited for the site (pod subnet, interfaces,
//!   the ingress controller as a DaemonSet on the masters).
//! - [`nfs_provisioner`]: the NFS provisioner's manifests patched with the site's NFS server and path.
//!
//! This module depends on `crate::digest`, `crate::error` and external crates only: the install steps
//! use it, it uses nothing of them.

pub mod certs;
pub mod duration;
pub mod images;
pub mod kubeadm_api;
pub mod kubeadm_config;
pub mod manifests;
pub mod nfs_provisioner;
pub mod pki;
pub mod version;

pub use duration::Duration;
pub use version::Version;

/// Everything that can go wrong in this module. Each message says what is wrong and, where there is
/// one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?} is not a Kubernetes version: expected vMAJOR.MINOR.PATCH, e.g. v1.35.2")]
    BadVersion(String),

    #[error("Kubernetes {version} is not supported by {what}: supported are {supported}")]
    Unsupported { version: Version, what: &'static str, supported: String },

    #[error("{0:?} is not a duration: expected Go's duration syntax, e.g. 4m0s, 24h, 1.5s, 300ms")]
    BadDuration(String),

    #[error("kubeadm configuration document {index} is not valid YAML")]
    Yaml {
        index: usize,
        #[source]
        source: serde_yaml_ng::Error,
    },

    #[error("kubeadm configuration document {index} has no {field}: every document needs apiVersion and kind")]
    MissingTypeMeta { index: usize, field: &'static str },

    #[error("kubeadm configuration document {index}: unknown apiVersion/kind {api_version}/{kind}; known are {known}")]
    UnknownKind { index: usize, api_version: String, kind: String, known: String },

    #[error("kubeadm configuration document {index} ({kind}): at `{path}`: {message}")]
    Field { index: usize, kind: String, path: String, message: String },

    #[error("kubeadm configuration document {index} ({kind}): `{field}` exists only from Kubernetes {since} on, not in {version}")]
    TooNew { index: usize, kind: String, field: &'static str, since: Version, version: Version },

    #[error("{0}")]
    Invalid(String),

    #[error("cannot serialize the kubeadm configuration")]
    Serialize(#[source] serde_yaml_ng::Error),

    #[error("{what}")]
    Pki {
        what: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn pki(what: impl Into<String>) -> Self {
        Error::Pki { what: what.into(), source: None }
    }

    pub(crate) fn pki_from(what: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Pki { what: what.into(), source: Some(Box::new(source)) }
    }
}
