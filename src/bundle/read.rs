//! Reading a bundle: signature check, then one streaming pass over every entry, checking each against
//! `SHA256SUMS` (pinned by the root document) and rejecting missing, extra and duplicate entries, unsafe paths
//! and links. `verify`, `unpack` and the registry's `load` are all consumers of this one reader.
//!
//! CONTRACT (used by `verify`, `unpack`, `inspect`, `load`):
//! - `BundleSource::open(path)` accepts `X.tar.zst`, `X.tar.zst.000` or the base name of split parts.
//! - An [`EntrySink`] receives the verified root document, then every entry after `SHA256SUMS` in archive
//!   order. The reader hashes what the sink reads; if the sink does not read an entry to its end, the reader
//!   drains and hashes the rest. Any failure (from the reader or the sink) aborts the whole read with an error;
//!   the sink must then discard what it staged (nothing it did may look complete).

use crate::bundle::format::RootDoc;
use std::io::Read;

/// Receives a bundle's content while it is verified.
pub trait EntrySink {
    /// The root document, already checked against the schema (its trust is only final when the read returns Ok).
    fn root(&mut self, _root: &RootDoc) -> anyhow::Result<()> {
        Ok(())
    }
    /// One entry (path relative to the bundle root, e.g. `images/blobs/sha256/<hex>`, `files/bin/kubeadm`).
    fn entry(&mut self, path: &str, size: u64, mode: u32, data: &mut dyn Read) -> anyhow::Result<()>;
}

/// A sink that reads nothing: for `verify`.
pub struct NullSink;

impl EntrySink for NullSink {
    fn entry(&mut self, _path: &str, _size: u64, _mode: u32, _data: &mut dyn Read) -> anyhow::Result<()> {
        Ok(())
    }
}
