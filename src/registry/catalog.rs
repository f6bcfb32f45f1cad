//! The store's catalog (`STORE/catalog.json`): which images the store holds, under which names, and the media
//! type of every manifest; plus the in-memory lookup tables the server answers from.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub const CATALOG_VERSION: u32 = 1;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_V1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Catalog {
    pub version: u32,
    /// Incremented by every load that changed the store; images remember the load that last touched them.
    pub generation: u64,
    pub bundles: Vec<BundleRecord>,
    /// Sorted by (name, host, tag, digest).
    pub images: Vec<ImageRecord>,
    /// Every manifest and index the store holds (top-level and per platform).
    pub manifests: BTreeMap<Digest, ManifestRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BundleRecord {
    pub name: String,
    pub version: String,
    /// sha256 of the bundle's `SHA256SUMS` (pinned by its signed root document): the bundle's identity.
    pub sha256sums: String,
    /// sha256 (hex) of the bundle's root document (`airgap.json`), which a delta names as its base. Absent
    /// in records of loads by older airgap versions (loading the bundle again records it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_sha256: Option<String>,
    pub generation: u64,
    pub images: usize,
}

impl BundleRecord {
    pub fn label(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    /// The served repository name (`PATH`, Docker Hub official images as `library/NAME`).
    pub name: String,
    /// The upstream host the image came from (`registry.k8s.io`, `docker.io`...).
    pub host: String,
    pub tag: Option<String>,
    /// The reference as the bundle wrote it.
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
    /// Bytes of every blob of the image present in the store (manifests, configs, layers; each once).
    pub size: u64,
    pub platforms: Vec<String>,
    /// Bundles (`name-version`) that provided this image.
    pub bundles: Vec<String>,
    /// The load generation that last set this tag.
    pub generation: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestRecord {
    pub media_type: String,
    pub size: u64,
}

/// The media type of a manifest: its own `mediaType` field, otherwise inferred from its structure.
pub fn manifest_media_type(json: &serde_json::Value) -> Option<String> {
    if let Some(mt) = json.get("mediaType").and_then(|v| v.as_str()) {
        return Some(mt.to_string());
    }
    if json.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Some(DOCKER_V1_SIGNED.to_string());
    }
    if json.get("manifests").is_some_and(|m| m.is_array()) {
        return Some(OCI_INDEX.to_string());
    }
    if json.get("config").is_some_and(|c| c.is_object()) {
        return Some(OCI_MANIFEST.to_string());
    }
    None
}

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// The lookup tables the server answers from, built once per catalog (re)load.
#[derive(Debug, Default)]
pub struct Index {
    pub catalog: Catalog,
    /// name → host → tag → digest
    tags: BTreeMap<String, BTreeMap<String, BTreeMap<String, Digest>>>,
    /// name → host → newest generation of that (name, host)
    newest: HashMap<String, Vec<(String, u64)>>,
}

/// How a manifest request resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHit {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// The upstream host chosen when several provide the name.
    pub host: Option<String>,
}

impl Index {
    pub fn new(catalog: Catalog) -> Index {
        let mut tags: BTreeMap<String, BTreeMap<String, BTreeMap<String, Digest>>> = BTreeMap::new();
        let mut newest: HashMap<String, Vec<(String, u64)>> = HashMap::new();
        for img in &catalog.images {
            let hosts = tags.entry(img.name.clone()).or_default();
            let t = hosts.entry(img.host.clone()).or_default();
            if let Some(tag) = &img.tag {
                t.insert(tag.clone(), img.digest.clone());
            }
            let n = newest.entry(img.name.clone()).or_default();
            match n.iter_mut().find(|(h, _)| h == &img.host) {
                Some((_, g)) => *g = (*g).max(img.generation),
                None => n.push((img.host.clone(), img.generation)),
            }
        }
        for v in newest.values_mut() {
            // Most recently loaded first; ties broken by host name so the choice is deterministic.
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        }
        Index { catalog, tags, newest }
    }

    pub fn image_count(&self) -> usize {
        self.catalog.images.len()
    }

    pub fn has_name(&self, name: &str) -> bool {
        self.tags.contains_key(name)
    }

    /// The hosts providing `name`, best first: the `ns` host when it provides it, then the most recently loaded.
    fn hosts_for(&self, name: &str, ns: Option<&str>) -> Vec<&str> {
        let Some(list) = self.newest.get(name) else { return Vec::new() };
        let mut out: Vec<&str> = Vec::new();
        if let Some(ns) = ns {
            if let Some((h, _)) = list.iter().find(|(h, _)| h == ns) {
                out.push(h);
            }
        }
        for (h, _) in list {
            if !out.contains(&h.as_str()) {
                out.push(h);
            }
        }
        out
    }

    /// Resolve `name` + tag or digest. With `ns` naming a host that provides `name`, only that host's tags are
    /// used; otherwise the most recently loaded host that has the tag.
    pub fn resolve_manifest(&self, name: &str, ns: Option<&str>, reference: &str) -> Option<ManifestHit> {
        let hosts = self.tags.get(name)?;
        if let Ok(d) = reference.parse::<Digest>() {
            let m = self.catalog.manifests.get(&d)?;
            return Some(ManifestHit { digest: d, media_type: m.media_type.clone(), size: m.size, host: None });
        }
        let ns_provides = ns.is_some_and(|h| hosts.contains_key(h));
        for host in self.hosts_for(name, ns) {
            if ns_provides && Some(host) != ns {
                break;
            }
            if let Some(d) = hosts.get(host).and_then(|t| t.get(reference)) {
                let m = self.catalog.manifests.get(d)?;
                let many = hosts.len() > 1;
                return Some(ManifestHit {
                    digest: d.clone(),
                    media_type: m.media_type.clone(),
                    size: m.size,
                    host: many.then(|| host.to_string()),
                });
            }
        }
        None
    }

    /// Tags of `name` in lexical order: of the `ns` host when it provides the name, otherwise of every host.
    pub fn tags(&self, name: &str, ns: Option<&str>) -> Option<Vec<String>> {
        let hosts = self.tags.get(name)?;
        if let Some(t) = ns.and_then(|h| hosts.get(h)) {
            return Some(t.keys().cloned().collect());
        }
        let all: BTreeSet<&String> = hosts.values().flat_map(|t| t.keys()).collect();
        Some(all.into_iter().cloned().collect())
    }

    pub fn repositories(&self) -> Vec<String> {
        self.tags.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(name: &str, host: &str, tag: &str, d: &Digest, generation: u64) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            host: host.into(),
            tag: Some(tag.into()),
            reference: format!("{host}/{name}:{tag}"),
            digest: d.clone(),
            media_type: OCI_MANIFEST.into(),
            size: 1,
            platforms: vec![],
            bundles: vec![],
            generation,
        }
    }

    #[test]
    fn ns_chooses_host_and_newest_wins_otherwise() {
        let a = Digest::of_bytes(b"a");
        let b = Digest::of_bytes(b"b");
        let mut c = Catalog { version: CATALOG_VERSION, ..Default::default() };
        c.images.push(img("x/app", "one.example", "1", &a, 1));
        c.images.push(img("x/app", "two.example", "1", &b, 2));
        c.images.push(img("x/app", "one.example", "only-one", &a, 1));
        for d in [&a, &b] {
            c.manifests.insert(d.clone(), ManifestRecord { media_type: OCI_MANIFEST.into(), size: 1 });
        }
        let i = Index::new(c);
        assert_eq!(i.resolve_manifest("x/app", Some("one.example"), "1").unwrap().digest, a);
        assert_eq!(i.resolve_manifest("x/app", Some("two.example"), "1").unwrap().digest, b);
        assert_eq!(i.resolve_manifest("x/app", None, "1").unwrap().digest, b);
        assert_eq!(i.resolve_manifest("x/app", None, "only-one").unwrap().digest, a);
        assert!(i.resolve_manifest("x/app", Some("two.example"), "only-one").is_none());
        assert_eq!(i.resolve_manifest("x/app", Some("unknown.example"), "only-one").unwrap().digest, a);
        assert_eq!(i.tags("x/app", None).unwrap(), vec!["1", "only-one"]);
        assert_eq!(i.tags("x/app", Some("two.example")).unwrap(), vec!["1"]);
        assert!(i.resolve_manifest("y", None, "1").is_none());
    }

    #[test]
    fn infers_media_types() {
        let j = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(manifest_media_type(&j(r#"{"schemaVersion":2,"manifests":[]}"#)).unwrap(), OCI_INDEX);
        assert_eq!(manifest_media_type(&j(r#"{"schemaVersion":2,"config":{}}"#)).unwrap(), OCI_MANIFEST);
        assert_eq!(manifest_media_type(&j(&format!(r#"{{"mediaType":"{DOCKER_LIST}"}}"#))).unwrap(), DOCKER_LIST);
        assert!(manifest_media_type(&j("{}")).is_none());
    }
}
