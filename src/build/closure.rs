//! The image closure check of `airgap build`: a site has no internet, so every image the cluster will pull
//! must be in the bundle. The images wanted are
//! - kubeadm's, for the manifest's `kubernetes.version` (`kube::images`: apiserver, controller-manager,
//!   scheduler, proxy, CoreDNS, pause, etcd at the tags that kubeadm release pins), and
//! - every `image:` of every container (`containers`, `initContainers`, `ephemeralContainers`) of every
//!   object in every bundled Kubernetes manifest (`files[].manifest`), whatever its kind: the walk looks for
//!   container lists anywhere in each object, so Pods, workloads, CronJobs, `List`s and custom resources
//!   that embed pod templates are all covered.
//!
//! A wanted reference is in the bundle when `images:` has the same repository (normalized: `nginx` is
//! `docker.io/library/nginx`) with the same tag or, for a digest-pinned reference (`repo:tag@sha256:...`),
//! with exactly that digest: the registry then serves those very bytes. The check reads only the manifest
//! and the downloaded manifest files: it needs no network.

use crate::build::manifest::{FileSpec, Manifest};
use crate::error::HintExt;
use crate::oci::reference::ImageRef;
use anyhow::{anyhow, Result};
use serde::Deserialize;
use serde_yaml_ng::Value;

/// One image reference a bundle needs, and who needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub reference: String,
    /// `FILE:LINE (Kind namespace/name, container C)` or `m.yaml:4 (kubeadm v1.36.3)`.
    pub by: String,
}

/// The images a Kubernetes manifest's objects reference, in document order; `file` names it in `by`.
pub fn images_in(text: &str, file: &str) -> Result<Vec<Wanted>> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut cursor = 0usize;
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc = Value::deserialize(de).map_err(|e| anyhow!("{file}: document {} is not valid YAML: {e}", i + 1))?;
        let mut found = Vec::new();
        walk_object(&doc, &mut found);
        for (object, container, image) in found {
            let line = line_of_image(&lines, &image, &mut cursor);
            out.push(Wanted { reference: image, by: format!("{file}:{line} ({object}, container {container})") });
        }
    }
    Ok(out)
}

/// An object (or a `List`'s items): collect (object, container, image) of every container list inside it.
fn walk_object(v: &Value, out: &mut Vec<(String, String, String)>) {
    if let Some(items) = v.get("items").and_then(Value::as_sequence).filter(|_| v.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List"))) {
        for item in items {
            walk_object(item, out);
        }
        return;
    }
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let kind = s(v.get("kind"));
    let meta = v.get("metadata");
    let (ns, name) = (s(meta.and_then(|m| m.get("namespace"))), s(meta.and_then(|m| m.get("name"))));
    let object = match (kind.is_empty(), ns.is_empty()) {
        (true, _) => "an object without kind".to_string(),
        (false, true) => format!("{kind} {name}"),
        (false, false) => format!("{kind} {ns}/{name}"),
    };
    walk_value(v, &object, out);
}

fn walk_value(v: &Value, object: &str, out: &mut Vec<(String, String, String)>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let is_list = matches!(k.as_str(), Some("containers" | "initContainers" | "ephemeralContainers"));
                if let (true, Some(seq)) = (is_list, child.as_sequence()) {
                    for c in seq {
                        if let Some(image) = c.get("image").and_then(Value::as_str) {
                            let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
                            out.push((object.to_string(), name.to_string(), image.to_string()));
                        }
                    }
                }
                walk_value(child, object, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|c| walk_value(c, object, out)),
        Value::Tagged(t) => walk_value(&t.value, object, out),
        _ => {}
    }
}

/// The 1-based line of the next `image: REF` at or after `cursor` (then from the start); 1 when not found
/// (flow style).
fn line_of_image(lines: &[&str], image: &str, cursor: &mut usize) -> usize {
    let is_it = |l: &&str| {
        let t = l.trim_start().trim_start_matches("- ").trim_start();
        t.strip_prefix("image:").is_some_and(|v| {
            let v = v.split(" #").next().unwrap_or("").trim();
            v.trim_matches(|c| c == '"' || c == '\'') == image
        })
    };
    let found = lines.iter().skip(*cursor).position(is_it).map(|i| i + *cursor).or_else(|| lines.iter().position(is_it));
    match found {
        Some(i) => {
            *cursor = i + 1;
            i + 1
        }
        None => 1,
    }
}

/// Is `wanted` among the bundle's images?
fn satisfied(wanted: &ImageRef, have: &[ImageRef]) -> bool {
    have.iter().any(|h| {
        h.registry == wanted.registry
            && h.repository == wanted.repository
            && match &wanted.digest {
                Some(d) => h.digest.as_ref() == Some(d),
                None => h.tag == wanted.tag,
            }
    })
}

/// Everything the bundle needs: kubeadm's images for `kubernetes.version`, then every bundled Kubernetes
/// manifest's (`manifests`: each manifest file with its text).
pub fn wanted(m: &Manifest, manifest_file: &str, manifests: &[(&FileSpec, String)]) -> Result<Vec<Wanted>> {
    let mut out = Vec::new();
    if let Some(k) = &m.kubernetes {
        let set = crate::kube::images::images_for(&k.version)?;
        for r in set.upstream() {
            out.push(Wanted { reference: r, by: format!("{manifest_file}:{} (kubeadm {})", k.line, k.version) });
        }
    }
    for (f, text) in manifests {
        for mut w in images_in(text, &f.path)? {
            w.by = format!("{}, bundled by {manifest_file}:{}", w.by, f.line);
            out.push(w);
        }
    }
    Ok(out)
}

/// Fails naming every wanted image the manifest's `images:` lack, and who wants it.
pub fn check(m: &Manifest, manifest_file: &str, manifests: &[(&FileSpec, String)]) -> Result<()> {
    let mut missing: Vec<String> = Vec::new();
    for w in wanted(m, manifest_file, manifests)? {
        let r = ImageRef::parse(&w.reference).map_err(|e| anyhow!("{}: bad image reference {:?}: {e:#}", w.by, w.reference))?;
        if !satisfied(&r, &m.images) {
            let pinned = if r.digest.is_some() { " (digest-pinned: list it with exactly this digest)" } else { "" };
            missing.push(format!("{}{pinned}\n    wanted by {}", w.reference, w.by));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    missing.dedup();
    Err(anyhow!(
        "{manifest_file}: the bundle lacks {} image{} that its contents need (the site has no internet to pull {}):\n  {}",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" },
        if missing.len() == 1 { "it" } else { "them" },
        missing.join("\n  ")
    ))
    .hint(format!("add each reference, exactly as written, under `images:` in {manifest_file}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKLOADS: &str = r#"apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: shop}
    spec:
      template:
        spec:
          initContainers:
            - name: init
              image: busybox:1.36
          containers:
            - name: app
              image: "registry.example/shop/web:2@sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: tick
            image: ghcr.io/x/tick:v1   # the job
---
apiVersion: v1
kind: Pod
metadata: {name: dbg}
spec:
  ephemeralContainers:
    - name: dbg
      image: busybox:1.36
  containers: []
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: x}
spec:
  versions:
    - schema:
        openAPIV3Schema:
          properties:
            containers: {type: array}
"#;

    #[test]
    fn every_container_of_every_kind_with_its_line() {
        let got = images_in(WORKLOADS, "w.yaml").unwrap();
        let got: Vec<(String, String)> = got.into_iter().map(|w| (w.reference, w.by)).collect();
        let sha = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(
            got,
            [
                ("busybox:1.36".to_string(), "w.yaml:12 (Deployment shop/web, container init)".to_string()),
                (format!("registry.example/shop/web:2@{sha}"), "w.yaml:15 (Deployment shop/web, container app)".into()),
                ("ghcr.io/x/tick:v1".into(), "w.yaml:28 (CronJob tick, container tick)".into()),
                ("busybox:1.36".into(), "w.yaml:36 (Pod dbg, container dbg)".into()),
            ]
        );
    }

    fn manifest(images: &[&str]) -> Manifest {
        let mut text = "name: a\nversion: '1'\nkubernetes:\n  version: v1.36.3\nimages:\n".to_string();
        for i in images {
            text.push_str(&format!("  - \"{i}\"\n"));
        }
        text.push_str("files:\n  - url: http://h/w.yaml\n    sha256: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n    path: manifests/w.yaml\n    manifest: other\n");
        crate::build::manifest::parse(&text, "m.yaml").unwrap()
    }

    const KUBEADM: [&str; 7] = [
        "registry.k8s.io/kube-apiserver:v1.36.3",
        "registry.k8s.io/kube-controller-manager:v1.36.3",
        "registry.k8s.io/kube-scheduler:v1.36.3",
        "registry.k8s.io/kube-proxy:v1.36.3",
        "registry.k8s.io/coredns/coredns:v1.14.2",
        "registry.k8s.io/pause:3.10.2",
        "registry.k8s.io/etcd:3.6.8-0",
    ];

    #[test]
    fn a_complete_bundle_passes_and_each_missing_image_is_named_with_its_file_and_line() {
        let sha = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let web = format!("registry.example/shop/web@{sha}");
        let mut all: Vec<&str> = KUBEADM.to_vec();
        all.extend(["docker.io/library/busybox:1.36", &web, "ghcr.io/x/tick:v1"]);
        let m = manifest(&all);
        let files = vec![(&m.files[0], WORKLOADS.to_string())];
        check(&m, "m.yaml", &files).unwrap();

        // the tag of a digest-pinned reference is not enough; etcd and busybox missing
        let mut some: Vec<&str> = KUBEADM.iter().copied().filter(|r| !r.contains("etcd")).collect();
        some.extend(["registry.example/shop/web:2", "ghcr.io/x/tick:v1"]);
        let m = manifest(&some);
        let files = vec![(&m.files[0], WORKLOADS.to_string())];
        let err = check(&m, "m.yaml", &files).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("m.yaml: the bundle lacks 4 images that its contents need"), "{msg}");
        assert!(msg.contains("registry.k8s.io/etcd:3.6.8-0\n    wanted by m.yaml:4 (kubeadm v1.36.3)"), "{msg}");
        let at = format!("bundled by m.yaml:{}", m.files[0].line);
        assert!(msg.contains(&format!("busybox:1.36\n    wanted by manifests/w.yaml:12 (Deployment shop/web, container init), {at}")), "{msg}");
        assert!(msg.contains(&format!("web:2@{sha} (digest-pinned: list it with exactly this digest)\n    wanted by manifests/w.yaml:15 (Deployment shop/web, container app), {at}")), "{msg}");
        assert!(msg.contains(&format!("busybox:1.36\n    wanted by manifests/w.yaml:36 (Pod dbg, container dbg), {at}")), "{msg}");
        assert!(crate::error::hints(&err)[0].contains("under `images:` in m.yaml"));
    }
}
