//! Loading a delta bundle (see `build::delta`): the store must hold its base — the catalog records the sha256 of
//! the root document of every bundle loaded — checked before anything is staged; and once its blobs are
//! staged, every image of the release must be complete (its manifest with the signed digest, every platform
//! the root document lists, every config and layer: in the delta or in the store). Either failure leaves the
//! store as it was.

use crate::bundle::format::{BaseRef, ImageEntry};
use crate::digest::Digest;
use crate::error::HintExt;
use crate::registry::catalog::Catalog;
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Does the store (its `catalog`) hold the bundle `base`? Fails naming the base it needs and what it holds.
pub fn check_base(catalog: &Catalog, base: &BaseRef, store: &Path) -> Result<()> {
    if catalog.bundles.iter().any(|b| b.root_sha256.as_deref() == Some(base.root_sha256.as_str())) {
        return Ok(());
    }
    let held: Vec<String> = catalog.bundles.iter().map(|b| b.label()).collect();
    let same_label = catalog.bundles.iter().any(|b| b.name == base.name && b.version == base.version && b.root_sha256.is_none());
    let err = anyhow!(
        "this is a delta bundle: it needs the store {} to hold its base {}, but the store holds {}",
        store.display(),
        base.describe(),
        if held.is_empty() { "no bundle".to_string() } else { held.join(", ") }
    );
    if same_label {
        return Err(err).hint(format!(
            "the store loaded {}-{} with an older airgap that did not record root documents: load that bundle again (nothing is copied twice), then this delta",
            base.name, base.version
        ));
    }
    Err(err).hint(format!("load the full bundle {}-{} first (`airgap load`), then this delta; or load the full bundle of this release", base.name, base.version))
}

/// Every image of the release (the delta's signed root document) against what the load found: in its
/// `images/index.json` with the same digest, and every listed platform present (in the delta or the store).
pub fn check_complete(release: &[ImageEntry], walked: &BTreeMap<String, (Digest, Vec<String>)>) -> Result<()> {
    for img in release {
        let Some((digest, platforms)) = walked.get(&img.reference) else {
            return Err(anyhow!("image {} of the release is not in the delta's images/index.json", img.reference))
                .hint("the delta bundle is inconsistent: rebuild it");
        };
        if digest != &img.digest {
            return Err(anyhow!("image {}: images/index.json gives {digest}, the signed root document {}", img.reference, img.digest))
                .hint("the delta bundle is inconsistent: rebuild it");
        }
        if let Some(p) = img.platforms.iter().find(|p| !platforms.contains(p)) {
            return Err(anyhow!("image {} ({}): platform {p} is neither in the delta nor in the store", img.reference, img.digest))
                .hint("load the delta into the store that holds its base bundle");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::catalog::BundleRecord;

    fn base() -> BaseRef {
        BaseRef { name: "k8s".into(), version: "1".into(), root_sha256: "a".repeat(64) }
    }

    fn record(root: Option<&str>) -> BundleRecord {
        BundleRecord { name: "k8s".into(), version: "1".into(), sha256sums: "b".repeat(64), root_sha256: root.map(String::from), generation: 1, images: 1 }
    }

    #[test]
    fn the_base_is_found_by_its_root_document_only() {
        let store = Path::new("/srv/store");
        let mut c = Catalog::default();
        let e = check_base(&c, &base(), store).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("this is a delta bundle: it needs the store /srv/store to hold its base k8s 1 (root document sha256:{}), but the store holds no bundle", "a".repeat(64))
        );
        c.bundles.push(record(Some(&"c".repeat(64))));
        assert!(check_base(&c, &base(), store).unwrap_err().to_string().ends_with("but the store holds k8s-1"));
        c.bundles.push(record(None));
        assert!(crate::error::hints(&check_base(&c, &base(), store).unwrap_err())[0].contains("load that bundle again"));
        c.bundles.push(record(Some(&"a".repeat(64))));
        check_base(&c, &base(), store).unwrap();
    }

    #[test]
    fn every_image_and_platform_of_the_release_must_be_there() {
        let d = Digest::of_bytes(b"m");
        let img = ImageEntry { reference: "r/x:1".into(), digest: d.clone(), media_type: "m/t".into(), size: 1, platforms: vec!["linux/amd64".into(), "linux/arm64".into()] };
        let mut walked = BTreeMap::new();
        assert!(check_complete(std::slice::from_ref(&img), &walked).unwrap_err().to_string().contains("not in the delta's images/index.json"));
        walked.insert("r/x:1".to_string(), (Digest::of_bytes(b"other"), img.platforms.clone()));
        assert!(check_complete(std::slice::from_ref(&img), &walked).unwrap_err().to_string().contains("the signed root document"));
        walked.insert("r/x:1".to_string(), (d.clone(), vec!["linux/amd64".into()]));
        assert!(check_complete(std::slice::from_ref(&img), &walked).unwrap_err().to_string().contains("platform linux/arm64 is neither"));
        walked.insert("r/x:1".to_string(), (d, img.platforms.clone()));
        check_complete(&[img], &walked).unwrap();
    }
}
