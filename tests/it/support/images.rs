//! Test images made from scratch (no internet): an OCI image layout with one image per call, single- or
//! multi-platform, OCI or Docker schema 2 media types, layers of deterministic pseudo-random content.
//! Push them to a `Registry` with `Registry::push_layout`.

use airgap::digest::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Platforms (`linux/amd64`, `linux/arm64`, `linux/arm/v7`...). One platform and `index == false` gives a
    /// plain manifest; otherwise an index / manifest list.
    pub platforms: Vec<String>,
    pub index: bool,
    pub format: Format,
    /// Layer sizes in bytes (content before compression), per platform.
    pub layers: Vec<usize>,
    /// A layer (of this size) identical in every image made with the same `shared_seed`: to test blob sharing.
    pub shared_layer: Option<(u64, usize)>,
    /// gzip layers (with the stock `gzip -n`); otherwise uncompressed tar layers.
    pub gzip: bool,
    /// Seed for the pseudo-random content (different seeds, different blobs).
    pub seed: u64,
}

impl ImageSpec {
    pub fn multi(platforms: &[&str], seed: u64) -> Self {
        ImageSpec {
            platforms: platforms.iter().map(|s| s.to_string()).collect(),
            index: true,
            format: Format::Oci,
            layers: vec![4096, 70_000],
            shared_layer: None,
            gzip: true,
            seed,
        }
    }
    pub fn single(seed: u64) -> Self {
        ImageSpec { platforms: vec!["linux/amd64".into()], index: false, ..Self::multi(&[], seed) }
    }
}

/// What was made.
#[derive(Debug, Clone)]
pub struct MadeImage {
    pub layout: PathBuf,
    pub tag: String,
    /// Digest and media type of the top-level manifest or index.
    pub digest: Digest,
    pub media_type: String,
    /// Per platform: (platform, manifest digest).
    pub manifests: Vec<(String, Digest)>,
    /// Every blob (top-level included) with its size.
    pub blobs: Vec<(Digest, u64)>,
}

struct Layout {
    dir: PathBuf,
    blobs: Vec<(Digest, u64)>,
}

impl Layout {
    fn put(&mut self, bytes: &[u8]) -> (Digest, u64) {
        let d = Digest::of_bytes(bytes);
        let p = self.dir.join("blobs/sha256").join(d.hex());
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(&p, bytes).unwrap();
        if !self.blobs.iter().any(|(x, _)| x == &d) {
            self.blobs.push((d.clone(), bytes.len() as u64));
        }
        (d, bytes.len() as u64)
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), incompressible like real binaries.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A layer tar holding one file of `size` pseudo-random bytes plus a small text file naming the seed.
fn layer_tar(seed: u64, size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let note = format!("airgap test layer seed={seed}\n");
    for (name, data) in [(format!("data/blob-{seed}.bin"), pseudo_random(seed, size)), (format!("etc/layer-{seed}"), note.into_bytes())] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip").args(["-n", "-1", "-c"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn split_platform(p: &str) -> (String, String, Option<String>) {
    let mut it = p.split('/');
    let os = it.next().unwrap().to_string();
    let arch = it.next().unwrap().to_string();
    (os, arch, it.next().map(str::to_string))
}

/// Make an image in the OCI layout at `layout` (created or extended) under `tag`.
pub fn make_image(layout: &Path, tag: &str, spec: &ImageSpec) -> MadeImage {
    let mut l = Layout { dir: layout.to_path_buf(), blobs: Vec::new() };
    fs_err::create_dir_all(layout).unwrap();
    fs_err::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let (mt_manifest, mt_index, mt_config, mt_layer) = match (spec.format, spec.gzip) {
        (Format::Oci, true) => (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (Format::Oci, false) => (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (Format::Docker, _) => (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
    };
    let gz = spec.gzip || spec.format == Format::Docker;
    let mut manifests = Vec::new();
    let mut descs = Vec::new();
    for (pi, platform) in spec.platforms.iter().enumerate() {
        let (os, arch, variant) = split_platform(platform);
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        let mut sizes: Vec<(u64, usize)> = Vec::new();
        if let Some((s, n)) = spec.shared_layer {
            sizes.push((s, n));
        }
        for (li, n) in spec.layers.iter().enumerate() {
            sizes.push((spec.seed * 1000 + pi as u64 * 100 + li as u64, *n));
        }
        for (seed, n) in sizes {
            let tar = layer_tar(seed, n);
            diff_ids.push(Digest::of_bytes(&tar).to_string());
            let blob = if gz { gzip(&tar) } else { tar };
            let (d, size) = l.put(&blob);
            layers.push(serde_json::json!({"mediaType": mt_layer, "digest": d.to_string(), "size": size}));
        }
        let mut config = serde_json::json!({
            "architecture": arch, "os": os,
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/true"], "Labels": {"airgap.test.seed": spec.seed.to_string()}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if let Some(v) = &variant {
            config["variant"] = serde_json::json!(v);
        }
        let (cd, cs) = l.put(&serde_json::to_vec(&config).unwrap());
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": mt_manifest,
            "config": {"mediaType": mt_config, "digest": cd.to_string(), "size": cs},
            "layers": layers,
        });
        let (md, ms) = l.put(&serde_json::to_vec_pretty(&manifest).unwrap());
        let mut plat = serde_json::json!({"architecture": arch, "os": os});
        if let Some(v) = &variant {
            plat["variant"] = serde_json::json!(v);
        }
        descs.push(serde_json::json!({"mediaType": mt_manifest, "digest": md.to_string(), "size": ms, "platform": plat}));
        manifests.push((platform.clone(), md));
    }
    let (digest, size, media_type) = if spec.index || spec.platforms.len() > 1 {
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": mt_index, "manifests": descs});
        let (d, s) = l.put(&serde_json::to_vec_pretty(&index).unwrap());
        (d, s, mt_index.to_string())
    } else {
        let d = manifests[0].1.clone();
        let s = l.blobs.iter().find(|(x, _)| x == &d).unwrap().1;
        (d, s, mt_manifest.to_string())
    };
    // Add (or replace) the tag in the layout's index.json.
    let index_path = layout.join("index.json");
    let mut top: serde_json::Value = fs_err::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({"schemaVersion": 2, "manifests": []}));
    let list = top["manifests"].as_array_mut().unwrap();
    list.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
    list.push(serde_json::json!({
        "mediaType": media_type, "digest": digest.to_string(), "size": size,
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    fs_err::write(&index_path, serde_json::to_vec_pretty(&top).unwrap()).unwrap();
    MadeImage { layout: layout.to_path_buf(), tag: tag.to_string(), digest, media_type, manifests, blobs: l.blobs }
}
