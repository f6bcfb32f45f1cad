//! kubeadm's ImagePull preflight check ("[preflight] Pulling images required for setting up a Kubernetes
//! cluster"): every image of `kubeadm config images list` for the configuration is pulled from its
//! registry. The node has no container runtime here, so the stand-in does what a pull does on the wire:
//! the manifest GET (the platform's manifest when it is an index) and a HEAD of every blob, over plain
//! HTTP (the site registry's scheme in containerd's hosts.toml). A missing image fails naming it.

use super::preflight::Checks;
use crate::net::{self, Request, Tls};
use airgap::oci::reference::ImageRef;
use std::time::Duration;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        "x86_64" => "amd64",
        other => other,
    }
}

fn get(base: &str, path: &str, method: &str) -> Result<net::Response, String> {
    let url = format!("{base}{path}");
    let r = net::request(&url, &Tls::Plain, Request::new(method, "").header("Accept", ACCEPT), Duration::from_secs(15))?;
    if r.status == 200 {
        Ok(r)
    } else {
        let code = r.value()["errors"][0]["code"].as_str().map(|c| format!(" ({c})")).unwrap_or_default();
        Err(format!("{method} {url}: {} {}{code}", r.status, if r.status == 404 { "Not Found" } else { "error" }))
    }
}

/// Pull one image: `Ok(digest)` of what the reference resolves to.
pub fn pull(reference: &str) -> Result<String, String> {
    let r = ImageRef::parse(reference).map_err(|e| format!("invalid image reference: {e}"))?;
    let base = format!("http://{}", r.host_as_written());
    let repo = &r.repository;
    let what = r.digest.as_ref().map(|d| d.to_string()).or(r.tag.clone()).unwrap_or_else(|| "latest".into());
    let resp = get(&base, &format!("/v2/{repo}/manifests/{what}"), "GET")?;
    let digest = resp.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("docker-content-digest")).map(|(_, v)| v.clone()).unwrap_or_default();
    let mut manifest = resp.value();
    if let Some(children) = manifest["manifests"].as_array() {
        let child = children
            .iter()
            .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch())
            .ok_or_else(|| format!("no match for platform in manifest: not found (linux/{})", arch()))?;
        let d = child["digest"].as_str().unwrap_or("");
        manifest = get(&base, &format!("/v2/{repo}/manifests/{d}"), "GET")?.value();
    }
    let blobs = std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().into_iter().flatten());
    for b in blobs {
        let d = b["digest"].as_str().ok_or("manifest without blobs")?;
        get(&base, &format!("/v2/{repo}/blobs/{d}"), "HEAD")?;
    }
    Ok(digest)
}

/// The ImagePull check over `images`.
pub fn pull_all(checks: &mut Checks, images: &[String], policy: Option<&str>) {
    if policy == Some("Never") {
        return;
    }
    println!("[preflight] Pulling images required for setting up a Kubernetes cluster");
    println!("[preflight] This might take a minute or two, depending on the speed of your internet connection");
    for image in images {
        if let Err(e) = pull(image) {
            checks.error("ImagePull", format!("failed to pull image {image}: {e}"));
        }
    }
}
