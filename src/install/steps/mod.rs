//! The installation steps, one file per step, in the order they run: [`preflight`], [`os_prepare`],
//! [`distribute`], [`runtime`], [`registry`], [`apiserver_lb`], [`nginx`], [`kubelet`], [`kubeadm_init`],
//! [`kubeadm_join`] (the Kubernetes steps share `install::kubeadm`), [`flannel`], [`ingress`] (`ingress-nginx`),
//! [`nfs`], [`redis`], [`housekeeping`]. Each implements
//! [`Step`]: it describes a node's desired state as actions built with the shared builders
//! (`install::copies`, `software`, `services`) and the files rendered by `install::config`.

pub mod apiserver_lb;
pub mod distribute;
pub mod flannel;
pub mod ingress;
pub mod kubeadm_init;
pub mod kubeadm_join;
pub mod kubelet;
pub mod housekeeping;
pub mod nfs;
pub mod nginx;
pub mod os_prepare;
pub mod preflight;
pub mod redis;
pub mod registry;
pub mod runtime;

use super::Step;
use anyhow::Result;

/// Every step, in order.
pub fn all() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(preflight::Preflight),
        Box::new(os_prepare::OsPrepare),
        Box::new(distribute::Distribute),
        Box::new(runtime::Runtime),
        Box::new(registry::Registry),
        Box::new(apiserver_lb::ApiserverLb),
        Box::new(nginx::Nginx),
        Box::new(kubelet::Kubelet),
        Box::new(kubeadm_init::KubeadmInit),
        Box::new(kubeadm_join::KubeadmJoin),
        Box::new(flannel::Flannel),
        Box::new(ingress::IngressNginx),
        Box::new(nfs::Nfs),
        Box::new(redis::Redis),
        Box::new(housekeeping::Housekeeping),
    ]
}

/// The steps selected by `--only a,b` / `--from x` (names checked, order kept).
pub fn select(only: Option<&str>, from: Option<&str>) -> Result<Vec<Box<dyn Step>>> {
    use crate::error::HintExt;
    let all = all();
    let names: Vec<&str> = all.iter().map(|s| s.name()).collect();
    let known = |n: &str| -> Result<()> {
        if names.contains(&n) {
            Ok(())
        } else {
            Err(anyhow::anyhow!("unknown step {n:?}")).with_hint(|| format!("the steps are: {}", names.join(", ")))
        }
    };
    let mut keep = vec![true; all.len()];
    if let Some(f) = from {
        known(f)?;
        let pos = names.iter().position(|n| *n == f).unwrap_or(0);
        keep.iter_mut().take(pos).for_each(|k| *k = false);
    }
    if let Some(o) = only {
        let wanted: Vec<&str> = o.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        for w in &wanted {
            known(w)?;
        }
        for (k, n) in keep.iter_mut().zip(&names) {
            *k = *k && wanted.contains(n);
        }
    }
    Ok(all.into_iter().zip(keep).filter(|(_, k)| *k).map(|(s, _)| s).collect())
}

#[cfg(test)]
mod addons_tests;
