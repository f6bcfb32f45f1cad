//! With the site's own registry (inventory `registry.external`): every node reaches it (a TCP connection from
//! the node, `airgap node check-tcp`), and it holds every image of the bundle under the name the nodes will
//! ask for (`HOST/PREFIX/PATH:TAG` with the bundle's digest; checked from here with the registry's CA and the
//! inventory's credentials, as `airgap push` put them).

use super::Report;
use crate::install::ssh::{Stdin, Transport};
use crate::install::{node_cmd, Ctx};
use crate::oci::reference::ImageRef;
use crate::push::client::{ClientOptions, RegistryClient};
use crate::push::Target;
use crate::site::inventory::Node;
use anyhow::{Context, Result};

/// The check's name in `preflight.ignore`.
pub const CHECK: &str = "registry";

pub(super) fn check(ctx: &Ctx, pending: &[(&Node, &dyn Transport)], report: &mut Report) {
    let Some(ext) = ctx.inv.registry.external() else { return };
    let addr = if ext.host.contains(':') { ext.host.clone() } else { format!("{}:443", ext.host) };
    let reached: Vec<(String, Result<()>)> = std::thread::scope(|s| {
        let hs: Vec<_> = pending
            .iter()
            .map(|(n, t)| {
                let addr = addr.clone();
                (n.name.clone(), s.spawn(move || reach(*t, &addr)))
            })
            .collect();
        hs.into_iter().map(|(n, h)| (n, h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("panicked"))))).collect()
    });
    for (node, r) in reached {
        if let Err(e) = r {
            report.add(&node, CHECK, format!("cannot reach the site registry {addr} (registry.external): {e:#}"));
        }
    }
    if let Some(kit) = ctx.kit {
        let refs: Vec<(String, crate::digest::Digest)> = kit.root().images.iter().map(|i| (i.reference.clone(), i.digest.clone())).collect();
        if let Err(e) = images_present(ctx, &refs) {
            report.add("registry", CHECK, format!("{e:#}"));
        }
    }
}

fn reach(t: &dyn Transport, addr: &str) -> Result<()> {
    let out = t.run(&node_cmd(&["check-tcp", addr, "--timeout-ms", "3000"]), Stdin::Null)?;
    if !out.success() {
        anyhow::bail!("{}", out.reason());
    }
    Ok(())
}

/// Every image of the bundle is on the registry with the bundle's digest.
fn images_present(ctx: &Ctx, refs: &[(String, crate::digest::Digest)]) -> Result<()> {
    let cfg = &ctx.inv.registry;
    let target = Target::parse(cfg.external.as_deref().unwrap_or_default())?;
    let ca_pems = match &cfg.ca_file {
        Some(f) => vec![fs_err::read(f).context("failed to read registry.ca_file")?],
        None => vec![],
    };
    let opts = ClientOptions { insecure: false, ca_pems, basic: cfg.credentials()? };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = RegistryClient::connect(&target.host, &opts).await?;
        let mut missing = Vec::new();
        for (reference, digest) in refs {
            let image = ImageRef::parse(reference)?;
            let repo = target.repository(&image);
            let tag_or_digest = image.tag.clone().unwrap_or_else(|| digest.to_string());
            match client.manifest_digest(&repo, &tag_or_digest).await? {
                Some(d) if &d == digest => {}
                Some(d) => missing.push(format!("{} is {d}, the bundle's is {digest}", target.reference(&image))),
                None => missing.push(format!("{} is missing", target.reference(&image))),
            }
        }
        if !missing.is_empty() {
            anyhow::bail!(
                "the site registry lacks {} of the bundle's {} images: {} (push the bundle there first: airgap push BUNDLE --pubkey PUB --to {})",
                missing.len(),
                refs.len(),
                missing.join("; "),
                cfg.external.as_deref().unwrap_or_default()
            );
        }
        Ok(())
    })
}
