//! Make a bundle with one large pseudo-random layer, for `scripts/bench-memory.sh`.
//!
//! Usage: cargo run --example bench_bundle -- DIR SIZE_MIB [SPLIT_SIZE]
//! Writes DIR/keys/airgap.{key,pub}, DIR/cache/* and DIR/out/bench-1.0.0.tar.zst(.minisig).

use airgap::bundle::format::{ImageEntry, RootDoc, SCHEMA};
use airgap::bundle::write::{write_bundle, BlobSource, BundleContent, WriteOptions};
use airgap::digest::{Digest, Hasher};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        anyhow::bail!("usage: bench_bundle DIR SIZE_MIB [SPLIT_SIZE]");
    }
    let dir = PathBuf::from(&args[1]);
    let mib: u64 = args[2].parse()?;
    let split = args.get(3).map(|s| airgap::bundle::split::parse_size(s)).transpose()?;
    let keys = match airgap::sign::generate_keypair(&dir.join("keys"), None) {
        Ok(k) => k.secret,
        Err(_) => dir.join("keys/airgap.key"),
    };
    let sk = airgap::sign::load_secret_key(&keys, None)?;
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache)?;

    // The layer: pseudo-random (incompressible) bytes, generated and hashed in 1 MiB chunks.
    let t = Instant::now();
    let layer_tmp = cache.join("layer.tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&layer_tmp)?);
    let mut h = Hasher::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for w in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&chunk)?;
        h.update(&chunk);
    }
    f.flush()?;
    drop(f);
    let (layer, layer_size) = h.finish();
    let layer_path = cache.join(layer.hex());
    std::fs::rename(&layer_tmp, &layer_path)?;
    eprintln!("generated a {mib} MiB layer in {:.1}s", t.elapsed().as_secs_f64());

    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cfg = Digest::of_bytes(config);
    std::fs::write(cache.join(cfg.hex()), config)?;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{layer_size}}}]}}"#,
        config.len()
    );
    let m = Digest::of_bytes(manifest.as_bytes());
    std::fs::write(cache.join(m.hex()), &manifest)?;
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"bench.local/big:1"}}}}]}}"#,
        manifest.len()
    );
    let blob = |d: &Digest, size: u64| BlobSource { digest: d.clone(), size, path: cache.join(d.hex()) };
    let content = BundleContent {
        root: RootDoc {
            schema: SCHEMA.into(),
            name: "bench".into(),
            version: "1.0.0".into(),
            base: None,
            platforms: vec!["linux/amd64".into()],
            kubernetes: None,
            images: vec![ImageEntry {
                reference: "bench.local/big:1".into(),
                digest: m.clone(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: layer_size + manifest.len() as u64 + config.len() as u64,
                platforms: vec!["linux/amd64".into()],
            }],
            files: vec![],
            packages: vec![],
            sha256sums: String::new(),
            sizes: Default::default(),
        },
        index_json: index.into_bytes(),
        blobs: vec![blob(&layer, layer_size), blob(&cfg, config.len() as u64), blob(&m, manifest.len() as u64)],
        files: vec![],
    };
    let t = Instant::now();
    let w = write_bundle(&content, &sk, &WriteOptions { out_dir: dir.join("out"), split_size: split, zstd_workers: 2 })?;
    eprintln!("wrote {} ({} bytes, {} parts) in {:.1}s", w.archive.display(), w.size, w.parts.len(), t.elapsed().as_secs_f64());
    println!("{}", if w.parts.is_empty() { w.archive.display().to_string() } else { w.parts[0].display().to_string() });
    Ok(())
}
