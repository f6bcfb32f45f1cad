//! The bundle: one signed, reproducible `.tar.zst`, optionally split into parts.
//!
//! Layout of the archive (a plain tar, zstd-compressed), in this order:
//! 1. `airgap.json` — the root document ([`format::RootDoc`]): name, version, platforms, image → digest,
//!    file → url + sha256, and the sha256 of `SHA256SUMS`.
//! 2. `airgap.json.minisig` — the root document's own minisign signature (prehashed, by the bundle key): a
//!    reader checks it before parsing anything else (see [`read`]).
//! 3. `SHA256SUMS` — `sha256sum -c` format, sorted by path, covering every entry below (not itself, not
//!    the first two). The root document pins it by sha256, and gives the size of every entry from here on.
//! 4. `images/oci-layout`, `images/index.json`, `images/blobs/sha256/<hex>`... — ONE OCI image layout for all
//!    images, each blob once.
//! 5. `files/<path>` — every file of the manifest (OS packages under `files/packages/<os>/<name>`).
//!
//! Every tar header is fixed: mtime 0, uid/gid 0, empty user/group names, mode 0644 (0755 for files the
//! manifest marks executable), regular files only (no directories, no links). Entries are sorted within each
//! section. zstd parameters are fixed (level, window, workers >= 1), so the same content gives the same bytes.
//!
//! Beside the archive: `<name>-<version>.tar.zst.minisig` (minisign, prehashed, over the whole archive) and, when
//! split, the parts `<file>.000`, `.001`... plus `<file>.parts` (`sha256sum` format, one line per part) and
//! `<file>.parts.minisig`.

//!
//! Modules: `format` (names, root document and its validation), `write` (the writer), `split` (part sizes,
//! parts writer and reader), `source` (a bundle on disk, whole or split), `read` (the one verifying reader:
//! signed head first, then every entry; the `EntrySink` contract), `tar_stream` (the tar stream read raw, with
//! bounds), `unpack` (verify-while-extracting into a directory), `inspect` (summary of the signed head).

pub mod format;
pub mod read;
pub mod source;
pub mod unpack;
pub mod inspect;
pub mod split;
pub mod tar_stream;
pub mod write;
