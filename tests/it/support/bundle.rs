//! Test bundles: small bundles made from local content with the real writer and a keygen'd key, and crafted
//! (tampered, malicious) archives signed with the same key so that only the targeted check fails.

#![allow(dead_code)]

use airgap::bundle::format::{FileEntry, ImageEntry, PackageEntry, RootDoc, SCHEMA};
use airgap::bundle::write::{self, BlobSource, BundleContent, FileSource, WriteOptions, Written};
use airgap::digest::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The real `airgap` binary.
pub fn airgap() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_airgap"));
    c.env("NO_COLOR", "1").env_remove("RUST_LOG");
    c
}

/// Run and return (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let o: Output = cmd.output().expect("failed to run command");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Deterministic pseudo-random bytes (xorshift), so digests are stable across runs.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A temp dir with a key pair and a content cache.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub secret: PathBuf,
    pub public: PathBuf,
    pub key_id: String,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = airgap::sign::generate_keypair(&dir.path().join("keys"), None).unwrap();
        Fixture { secret: keys.secret, public: keys.public, key_id: keys.key_id, dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn sk(&self) -> minisign::SecretKey {
        airgap::sign::load_secret_key(&self.secret, None).unwrap()
    }

    /// A bundle content: one image (index.json, manifest, config, two layers), three files (one executable,
    /// one with a path longer than 100 bytes), one package. `layer_size` sets the size of the big layer.
    pub fn content(&self, layer_size: usize) -> BundleContent {
        let cache = self.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let mut blobs = Vec::new();
        let mut add_blob = |data: &[u8]| -> (Digest, u64) {
            let d = Digest::of_bytes(data);
            let p = cache.join(d.hex());
            std::fs::write(&p, data).unwrap();
            blobs.push(BlobSource { digest: d.clone(), size: data.len() as u64, path: p });
            (d, data.len() as u64)
        };
        let (l1, l1s) = add_blob(&pseudo_random(layer_size, 1));
        let (l2, l2s) = add_blob(b"small layer\n");
        let (cfg, cfgs) = add_blob(br#"{"architecture":"amd64","os":"linux"}"#);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":{cfgs}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{l1}","size":{l1s}}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{l2}","size":{l2s}}}]}}"#
        );
        let (m, ms) = add_blob(manifest.as_bytes());
        let index_json = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":{ms},"annotations":{{"org.opencontainers.image.ref.name":"registry.local/pause:3.10"}}}}]}}"#
        )
        .into_bytes();

        let mut files = Vec::new();
        let mut file_entries = Vec::new();
        let mut packages = Vec::new();
        let long = format!("manifests/{}/deep.yaml", "very-long-directory-name".repeat(5));
        let specs: Vec<(String, Vec<u8>, u32)> = vec![
            ("bin/kubeadm".into(), pseudo_random(50_000, 2), 0o755),
            ("manifests/flannel.yaml".into(), b"kind: DaemonSet\n".to_vec(), 0o644),
            (long, b"deep: true\n".to_vec(), 0o644),
            ("packages/debian-12/keepalived_2.2.7_amd64.deb".into(), pseudo_random(3000, 3), 0o644),
        ];
        for (path, data, mode) in specs {
            let d = Digest::of_bytes(&data);
            let src = cache.join(format!("file-{}", d.hex()));
            std::fs::write(&src, &data).unwrap();
            files.push(FileSource { path: path.clone(), sha256: d.clone(), size: data.len() as u64, mode, source: src });
            let url = format!("http://127.0.0.1:1/{path}");
            if path.starts_with("packages/") {
                packages.push(PackageEntry {
                    os: "debian-12".into(),
                    name: "keepalived".into(),
                    path,
                    url,
                    sha256: d.hex().into(),
                    size: data.len() as u64,
                });
            } else {
                file_entries.push(FileEntry { path, url, sha256: d.hex().into(), size: data.len() as u64, mode, install: None, platform: None, manifest: None });
            }
        }
        let root = RootDoc {
            schema: SCHEMA.into(),
            name: "testbundle".into(),
            version: "1.0.0".into(),
            base: None,
            platforms: vec!["linux/amd64".into()],
            kubernetes: None,
            images: vec![ImageEntry {
                reference: "registry.local/pause:3.10".into(),
                digest: m,
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: ms + cfgs + l1s + l2s,
                platforms: vec!["linux/amd64".into()],
            }],
            files: file_entries,
            packages,
            sha256sums: String::new(),
            sizes: Default::default(),
        };
        BundleContent { root, index_json, blobs, files }
    }

    /// Write `content` into `out` (under the fixture dir).
    pub fn write(&self, content: &BundleContent, out: &str, split: Option<u64>, workers: u32) -> Written {
        let opts = WriteOptions { out_dir: self.path().join(out), split_size: split, zstd_workers: workers };
        write::write_bundle(content, &self.sk(), &opts).unwrap()
    }
}

/// One crafted tar entry.
#[derive(Clone, Debug)]
pub struct RawEntry {
    pub path: Vec<u8>,
    pub kind: tar::EntryType,
    pub link: Option<Vec<u8>>,
    pub data: Vec<u8>,
    pub mode: u32,
}

impl RawEntry {
    pub fn file(path: &str, data: &[u8]) -> Self {
        RawEntry { path: path.as_bytes().to_vec(), kind: tar::EntryType::Regular, link: None, data: data.to_vec(), mode: 0o644 }
    }
    pub fn link(path: &str, kind: tar::EntryType, target: &str) -> Self {
        RawEntry { path: path.as_bytes().to_vec(), kind, link: Some(target.as_bytes().to_vec()), data: Vec::new(), mode: 0o777 }
    }
    pub fn path_str(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// All entries of a (small) archive, in order.
pub fn entries_of(archive: &Path) -> Vec<RawEntry> {
    let dec = zstd::stream::read::Decoder::new(std::fs::File::open(archive).unwrap()).unwrap();
    let mut ar = tar::Archive::new(dec);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(RawEntry {
            path: e.path_bytes().into_owned(),
            kind: e.header().entry_type(),
            link: e.link_name_bytes().map(|b| b.into_owned()),
            data,
            mode: e.header().mode().unwrap(),
        });
    }
    out
}

/// Write `entries` as a tar+zstd archive at `archive` (raw names: `..` and absolute paths are written as
/// given) and sign it with the fixture's key, exactly as the writer would.
pub fn craft(fx: &Fixture, archive: &Path, entries: &[RawEntry]) {
    let f = std::fs::File::create(archive).unwrap();
    let mut enc = zstd::stream::write::Encoder::new(f, 3).unwrap();
    enc.include_checksum(true).unwrap();
    let mut b = tar::Builder::new(enc);
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        if e.path.len() < 100 {
            let name = &mut h.as_gnu_mut().unwrap().name;
            name[..e.path.len()].copy_from_slice(&e.path);
        } else {
            // GNU long name, as the writer does.
            let mut l = tar::Header::new_gnu();
            l.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
            l.set_entry_type(tar::EntryType::GNULongName);
            l.set_size(e.path.len() as u64 + 1);
            l.set_mode(0o644);
            l.set_mtime(0);
            l.set_cksum();
            let mut p = e.path.clone();
            p.push(0);
            b.append(&l, &p[..]).unwrap();
            let name = &mut h.as_gnu_mut().unwrap().name;
            name.copy_from_slice(&e.path[..100]);
        }
        if let Some(t) = &e.link {
            let ln = &mut h.as_gnu_mut().unwrap().linkname;
            ln[..t.len()].copy_from_slice(t);
        }
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
    let sk = airgap::sign::load_secret_key(&fx.secret, None).unwrap();
    airgap::sign::sign_file(&sk, archive, "airgap bundle crafted").unwrap();
}
