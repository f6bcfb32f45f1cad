//! The NFS provisioner's manifests (kubernetes-sigs' nfs-subdir-external-provisioner `deploy/`: RBAC, the
//! Deployment, the StorageClass) patched for a site: its NFS server and path (the Deployment's `NFS_SERVER` /
//! `NFS_PATH` and its `nfs:` volume), the image the bundle carries, and a label on the StorageClass carrying
//! the hash of what was applied (so that a check can tell "applied with this content"). The StorageClass is
//! made the cluster's default.
//!
//! The documents come out in the order kubectl must apply them: everything else, the Deployment, then the
//! StorageClass last (its label then means that every earlier document was applied).

use crate::digest::Digest;
use serde_yaml_ng::{Mapping, Value};

/// The label on the StorageClass: the first 40 hex digits of the sha256 of the patched manifests (labels
/// hold at most 63 characters).
pub const HASH_LABEL: &str = "airgap.io/manifest-sha256";
/// The default-class annotation Kubernetes reads.
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// What the manifests are patched with.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The NFS server (the NFS VIP).
    pub server: &'a str,
    /// The exported path.
    pub path: &'a str,
    /// The provisioner's image as the bundle carries it (replaces the Deployment's), if any.
    pub image: Option<&'a str>,
}

/// The patched manifests, one multi-document YAML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patched {
    pub yaml: String,
    /// The name of the StorageClass.
    pub class: String,
    /// The value of [`HASH_LABEL`] on it.
    pub hash: String,
}

fn err(msg: impl Into<String>) -> crate::kube::Error {
    crate::kube::Error::Invalid(msg.into())
}

fn get<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn get_mut<'v>(v: &'v mut Value, path: &[&str]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |v, k| v.get_mut(*k))
}

fn kind(v: &Value) -> &str {
    v.get("kind").and_then(Value::as_str).unwrap_or("")
}

/// A mapping at `path` under `v` (made when missing).
fn mapping_at<'v>(v: &'v mut Value, path: &[&str]) -> crate::kube::Result<&'v mut Mapping> {
    let mut cur = v;
    for k in path {
        let m = cur.as_mapping_mut().ok_or_else(|| err(format!("`{}` is not a mapping", path.join("."))))?;
        cur = m.entry(Value::String((*k).into())).or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    cur.as_mapping_mut().ok_or_else(|| err(format!("`{}` is not a mapping", path.join("."))))
}

/// Point the Deployment at `t`: every container's `NFS_SERVER` / `NFS_PATH`, every `nfs:` volume, the image.
fn patch_deployment(d: &mut Value, t: &Target) -> crate::kube::Result<()> {
    let name = get(d, &["metadata", "name"]).and_then(Value::as_str).unwrap_or("?").to_string();
    let spec = get_mut(d, &["spec", "template", "spec"]).ok_or_else(|| err(format!("Deployment {name} has no spec.template.spec")))?;
    let (mut server_env, mut path_env, mut volumes) = (0, 0, 0);
    if let Some(containers) = spec.get_mut("containers").and_then(Value::as_sequence_mut) {
        for c in containers {
            if let (Some(image), Some(m)) = (t.image, c.as_mapping_mut()) {
                m.insert("image".into(), image.into());
            }
            for e in c.get_mut("env").and_then(Value::as_sequence_mut).into_iter().flatten() {
                let value = match e.get("name").and_then(Value::as_str) {
                    Some("NFS_SERVER") => {
                        server_env += 1;
                        t.server
                    }
                    Some("NFS_PATH") => {
                        path_env += 1;
                        t.path
                    }
                    _ => continue,
                };
                if let Some(m) = e.as_mapping_mut() {
                    m.insert("value".into(), value.into());
                }
            }
        }
    }
    for v in spec.get_mut("volumes").and_then(Value::as_sequence_mut).into_iter().flatten() {
        if let Some(nfs) = v.get_mut("nfs").and_then(Value::as_mapping_mut) {
            nfs.insert("server".into(), t.server.into());
            nfs.insert("path".into(), t.path.into());
            volumes += 1;
        }
    }
    if server_env == 0 || path_env == 0 || volumes == 0 {
        return Err(err(format!(
            "Deployment {name} is not the NFS provisioner's: it needs the env NFS_SERVER and NFS_PATH and an nfs: volume (found {server_env}, {path_env}, {volumes})"
        )));
    }
    Ok(())
}

/// Patch the provisioner's manifests (`docs`: the texts of its YAML files, each one or more documents).
pub fn patch(docs: &[&str], t: &Target) -> crate::kube::Result<Patched> {
    let mut objects: Vec<Value> = Vec::new();
    for text in docs {
        for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let v = <Value as serde::Deserialize>::deserialize(de).map_err(|source| crate::kube::Error::Yaml { index: i, source })?;
            if !v.is_null() {
                objects.push(v);
            }
        }
    }
    let deployments = objects.iter().filter(|o| kind(o) == "Deployment").count();
    let classes = objects.iter().filter(|o| kind(o) == "StorageClass").count();
    if deployments != 1 || classes != 1 {
        return Err(err(format!("the NFS provisioner's manifests must hold one Deployment and one StorageClass, not {deployments} and {classes}")));
    }
    for o in objects.iter_mut().filter(|o| kind(o) == "Deployment") {
        patch_deployment(o, t)?;
    }
    // kubectl applies in order: the StorageClass last
    objects.sort_by_key(|o| match kind(o) {
        "Deployment" => 1,
        "StorageClass" => 2,
        _ => 0,
    });
    let class = objects.last().expect("one StorageClass");
    let class_name = get(class, &["metadata", "name"]).and_then(Value::as_str).ok_or_else(|| err("the StorageClass has no metadata.name"))?.to_string();
    mapping_at(objects.last_mut().expect("one StorageClass"), &["metadata", "annotations"])?.insert(DEFAULT_CLASS.into(), "true".into());
    let body = render(&objects)?;
    let hash = Digest::of_bytes(body.as_bytes()).hex()[..40].to_string();
    mapping_at(objects.last_mut().expect("one StorageClass"), &["metadata", "labels"])?.insert(HASH_LABEL.into(), hash.clone().into());
    Ok(Patched { yaml: render(&objects)?, class: class_name, hash })
}

fn render(objects: &[Value]) -> crate::kube::Result<String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(o).map_err(crate::kube::Error::Serialize)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // the shape of the provisioner's deploy/ files (written for this test)
    const RBAC: &str = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: nfs-client-provisioner\n  namespace: default\n---\nkind: ClusterRole\napiVersion: rbac.authorization.k8s.io/v1\nmetadata:\n  name: runner\nrules: []\n";
    const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: nfs-client-provisioner\nspec:\n  template:\n    spec:\n      containers:\n        - name: p\n          image: example.org/old:1\n          env:\n            - name: PROVISIONER_NAME\n              value: k8s-sigs.io/nfs-subdir-external-provisioner\n            - name: NFS_SERVER\n              value: 192.0.2.1\n            - name: NFS_PATH\n              value: /x\n      volumes:\n        - name: root\n          nfs:\n            server: 192.0.2.1\n            path: /x\n";
    const CLASS: &str = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: nfs-client\nprovisioner: k8s-sigs.io/nfs-subdir-external-provisioner\n";

    #[test]
    fn the_server_path_and_image_are_the_sites_and_the_class_comes_last() {
        let t = Target { server: "10.20.0.150", path: "/opt/mnt/volumes", image: Some("registry.k8s.io/sig-storage/nfs-subdir-external-provisioner:v4.0.2") };
        let p = patch(&[CLASS, DEPLOYMENT, RBAC], &t).unwrap();
        assert_eq!(p.class, "nfs-client");
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&p.yaml).map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap()).collect();
        assert_eq!(docs.iter().map(kind).collect::<Vec<_>>(), ["ServiceAccount", "ClusterRole", "Deployment", "StorageClass"]);
        let yaml = &p.yaml;
        assert!(!yaml.contains("192.0.2.1") && !yaml.contains("old:1"), "{yaml}");
        let spec = get(&docs[2], &["spec", "template", "spec"]).unwrap();
        assert_eq!(get(spec, &["volumes"]).unwrap()[0]["nfs"]["server"], "10.20.0.150");
        assert_eq!(get(spec, &["containers"]).unwrap()[0]["env"][2]["value"], "/opt/mnt/volumes");
        assert_eq!(get(spec, &["containers"]).unwrap()[0]["image"], t.image.unwrap());
        assert_eq!(get(&docs[3], &["metadata", "labels", HASH_LABEL]).unwrap().as_str(), Some(p.hash.as_str()));
        assert_eq!(get(&docs[3], &["metadata", "annotations", DEFAULT_CLASS]).unwrap(), "true");
        // the same input, the same output; another path, another hash
        assert_eq!(patch(&[CLASS, DEPLOYMENT, RBAC], &t).unwrap(), p);
        assert_ne!(patch(&[CLASS, DEPLOYMENT, RBAC], &Target { path: "/srv", ..t.clone() }).unwrap().hash, p.hash);
    }

    #[test]
    fn manifests_that_are_not_the_provisioners_are_refused() {
        let t = Target { server: "10.20.0.150", path: "/v", image: None };
        assert!(patch(&[DEPLOYMENT], &t).unwrap_err().to_string().contains("one Deployment and one StorageClass, not 1 and 0"));
        let no_env = DEPLOYMENT.replace("NFS_SERVER", "OTHER");
        let e = patch(&[&no_env, CLASS], &t).unwrap_err().to_string();
        assert!(e.contains("Deployment nfs-client-provisioner is not the NFS provisioner's") && e.contains("(found 0, 1, 1)"), "{e}");
        assert!(patch(&["kind: [", CLASS], &t).is_err());
    }
}
