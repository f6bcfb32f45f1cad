//! `airgap load`: the bundle reader verifies while this sink stages the image blobs into the store; the
//! load is committed only when the whole bundle (signature included) verified.

use crate::bundle::format::IMAGES_DIR;
use crate::bundle::read::{self, BundleSource, EntrySink, Head};
use crate::digest::Digest;
use crate::registry::store::{BundleInfo, LoadReport, LoadTx, Store};
use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use minisign::PublicKey;
use std::io::Read;

/// Largest accepted `images/index.json`.
const MAX_INDEX_JSON: u64 = 64 << 20;

/// Stages a bundle's image layout into a [`LoadTx`], committed in `finish` (only once everything verified).
pub struct StoreSink {
    tx: LoadTx,
}

impl EntrySink for StoreSink {
    type Done = LoadReport;

    fn start(&mut self, head: &Head, _meta: &[(&str, &[u8])]) -> Result<()> {
        let root = head.root();
        if let Some(base) = &root.base {
            // before any blob is staged, under the store's lock
            crate::registry::delta::check_base(&self.tx.store().catalog()?, base, self.tx.store().root())?;
        }
        self.tx.set_bundle(BundleInfo {
            name: root.name.clone(),
            version: root.version.clone(),
            sha256sums: root.sha256sums.clone(),
            root_sha256: head.digest().hex().to_string(),
            release: root.base.as_ref().map(|_| root.images.clone()),
        });
        Ok(())
    }

    fn entry(&mut self, path: &str, size: u64, _mode: u32, data: &mut dyn Read) -> Result<()> {
        let Some(rest) = path.strip_prefix(IMAGES_DIR).and_then(|p| p.strip_prefix('/')) else {
            return Ok(()); // files/...: not the registry's (the reader still verifies them)
        };
        if let Some(hex) = rest.strip_prefix("blobs/sha256/") {
            let d = Digest::from_hex(hex).with_context(|| format!("bad blob name {path} in the bundle"))?;
            // The reader checks the bytes against SHA256SUMS and refuses a blob whose name is not its digest
            // (it fails this read at the entry's end on a mismatch), so no second hash here.
            return self.tx.add_blob(&d, size, data, false);
        }
        match rest {
            "index.json" => {
                if size > MAX_INDEX_JSON {
                    bail!("{path} is {size} bytes, too large for an image index");
                }
                let mut buf = Vec::with_capacity(size as usize);
                data.read_to_end(&mut buf).with_context(|| format!("failed to read {path}"))?;
                self.tx.set_index_json(buf);
            }
            "oci-layout" => {}
            other => tracing::debug!("ignoring images/{other} in the bundle"),
        }
        Ok(())
    }

    fn finish(self) -> Result<LoadReport> {
        self.tx.commit().context("failed to add the images to the store")
    }
}

/// What `load` did.
#[derive(Debug)]
pub struct Loaded {
    pub verified: read::Verified,
    pub report: LoadReport,
}

/// Verify `bundle` and add its images to `store`, all or nothing.
pub fn load_bundle(store: &Store, source: &BundleSource, pk: &PublicKey, bar: &ProgressBar) -> Result<Loaded> {
    let tx = store.begin_load()?;
    let (verified, report) = read::read_verified_with_progress(source, pk, StoreSink { tx }, bar)?;
    Ok(Loaded { verified, report })
}
