//! Uploading a bundle's blobs while the bundle is still being read (`airgap push BUNDLE`).
//!
//! The verifying reader ([`crate::bundle::read`]) checks the signed root document and `SHA256SUMS` before it
//! hands out any entry, and checks every entry's sha256 against `SHA256SUMS` as it streams: once the staging
//! sink has copied a blob to its end without an error, that blob's bytes are ones the signature covers. Such
//! a blob can go to the registry while later entries are still being read. The registry only makes an image
//! visible when its manifest is PUT, and manifests are sent only after the WHOLE bundle verified (the
//! archive's signature included, [`super::push`]): a bundle that turns out damaged or tampered with later in
//! the stream leaves at most some verified blobs on the registry that no manifest references (invisible; the
//! registry's garbage collection removes them), and never bytes the signature did not cover.
//!
//! A blob goes to the first repository known to need it. That takes its manifest (and, for a multi-arch
//! image, its index), which may come after it in the bundle (entries are sorted by digest): [`Planner`]
//! follows the signed root document's images through the manifests as they arrive, and hands out each
//! config and layer once both the blob and a repository for it are known. The rest (mounts into further
//! repositories, whatever was not uploaded early) is done by [`super::push`] after the read, which skips
//! what [`Early`] records.

use super::client::{BlobOutcome, RegistryClient};
use super::{AnyManifest, PushOptions, Target, MAX_MANIFEST};
use crate::digest::Digest;
use crate::oci::reference::ImageRef;
use crate::transfer::retry::retry;
use futures::channel::mpsc::UnboundedSender;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A verified blob ready to upload into `repo`, staged at `path`.
#[derive(Debug, Clone)]
pub struct Job {
    pub digest: Digest,
    pub size: u64,
    pub repo: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A manifest or an index: read (once staged) to learn what it references; PUT only at the end.
    Manifest,
    /// A config or a layer: uploaded.
    Blob,
}

/// Follows which repository needs which blob while the bundle's entries arrive (in the reader's thread), and
/// sends a [`Job`] for each config and layer once it is staged and verified and a repository for it is known.
pub struct Planner {
    target: Target,
    tx: UnboundedSender<Job>,
    /// Staged (verified) blobs: size, file.
    staged: HashMap<Digest, (u64, PathBuf)>,
    /// Digests known to be needed: kind, repositories.
    wants: HashMap<Digest, (Kind, Vec<String>)>,
    /// Blobs handed out (to their first repository).
    sent: HashSet<Digest>,
}

impl Planner {
    pub fn new(target: Target, tx: UnboundedSender<Job>) -> Planner {
        Planner { target, tx, staged: HashMap::new(), wants: HashMap::new(), sent: HashSet::new() }
    }

    /// The images of the verified root document: each top-level manifest or index and its repository.
    pub fn start<'a>(&mut self, images: impl IntoIterator<Item = (&'a str, &'a Digest)>) {
        for (reference, digest) in images {
            // an unparsable reference is reported by the push after the read
            if let Ok(image) = ImageRef::parse(reference) {
                let repo = self.target.repository(&image);
                self.want(digest, Kind::Manifest, &repo);
            }
        }
    }

    /// A blob was staged at `path` and its bytes matched their digest.
    pub fn verified(&mut self, digest: Digest, size: u64, path: PathBuf) {
        self.staged.insert(digest.clone(), (size, path));
        if let Some((kind, repos)) = self.wants.get(&digest).cloned() {
            for repo in repos {
                self.ready(&digest, kind, &repo);
            }
        }
    }

    fn want(&mut self, digest: &Digest, kind: Kind, repo: &str) {
        let e = self.wants.entry(digest.clone()).or_insert((kind, Vec::new()));
        if e.1.iter().any(|r| r == repo) {
            return;
        }
        e.1.push(repo.to_string());
        let kind = e.0;
        if self.staged.contains_key(digest) {
            self.ready(digest, kind, repo);
        }
    }

    /// `digest` is staged and needed in `repo`.
    fn ready(&mut self, digest: &Digest, kind: Kind, repo: &str) {
        let Some((size, path)) = self.staged.get(digest).cloned() else { return };
        match kind {
            Kind::Manifest => {
                // a manifest that cannot be read or parsed here is reported by the push after the read
                let Some(m) = read_manifest(&path) else { return };
                if let Some(children) = &m.manifests {
                    for c in children {
                        self.want(&c.digest, Kind::Manifest, repo);
                    }
                } else {
                    for b in m.config.iter().chain(&m.layers) {
                        self.want(&b.digest, Kind::Blob, repo);
                    }
                }
            }
            Kind::Blob => {
                if self.sent.insert(digest.clone()) {
                    // the receiver gone (the uploads stopped) only means no more early uploads
                    let _ = self.tx.unbounded_send(Job { digest: digest.clone(), size, repo: repo.to_string(), path });
                }
            }
        }
    }
}

fn read_manifest(path: &Path) -> Option<AnyManifest> {
    let f = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    f.take(MAX_MANIFEST + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// What was uploaded early: each blob's repository and outcome.
#[derive(Debug, Default)]
pub struct Early {
    pub done: HashMap<Digest, (String, BlobOutcome)>,
}

/// Upload the jobs `rx` brings, `opts.jobs` at a time, until the reader drops its sender. Never fails: after
/// the first failure (retries included) no further early upload starts, and the push after the read sends
/// what is missing (and reports a failure that persists).
pub async fn upload(rx: futures::channel::mpsc::UnboundedReceiver<Job>, client: &RegistryClient, opts: &PushOptions) -> Early {
    let done = Mutex::new(HashMap::new());
    let stopped = AtomicBool::new(false);
    rx.for_each_concurrent(opts.jobs.max(1), |job| {
        let (done, stopped) = (&done, &stopped);
        async move {
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            let Job { digest: d, size, repo, path } = job;
            let what = format!("pushing blob {d} to {}/{repo}", client.host);
            let r = retry(&what, opts.retry, || async {
                if client.has_blob(&repo, &d).await? {
                    return Ok(BlobOutcome::Present);
                }
                client.put_blob(&repo, &d, size, &path, None).await
            })
            .await;
            match r {
                Ok(outcome) => {
                    done.lock().unwrap().insert(d, (repo, outcome));
                }
                Err(e) => {
                    if !stopped.swap(true, Ordering::Relaxed) {
                        tracing::debug!("no more uploads while reading: {:#}", e.context(what));
                    }
                }
            }
        }
    })
    .await;
    Early { done: done.into_inner().unwrap() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::of_bytes(s.as_bytes())
    }

    #[test]
    fn blobs_go_out_once_their_repository_is_known_whatever_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let stage = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            (Digest::of_bytes(bytes), bytes.len() as u64, p)
        };
        let (layer, cfg) = (d("layer"), d("config"));
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{cfg}","size":6}},"layers":[{{"digest":"{layer}","size":5}}]}}"#
        );
        let (md, ms, mp) = stage("m", manifest.as_bytes());
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{md}","size":{ms}}}]}}"#);
        let (id, is, ip) = stage("i", index.as_bytes());
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let mut p = Planner::new(Target::parse("reg:5000/site").unwrap(), tx);
        p.start([("example.com/a/b:1", &id), ("example.com/c:2", &id)]);
        // the layer first: nobody knows yet where it goes
        p.verified(layer.clone(), 5, dir.path().join("layer"));
        use futures::channel::mpsc::TryRecvError;
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)), "nothing is ready yet");
        p.verified(md, ms, mp);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)), "the manifest's repository is not known before its index");
        p.verified(id, is, ip);
        let job = rx.try_recv().unwrap();
        assert_eq!((job.digest, job.repo.as_str()), (layer, "site/a/b"));
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)), "each blob once (the second repository gets it mounted later)");
        // the config arrives last: out at once
        p.verified(cfg.clone(), 6, dir.path().join("config"));
        assert_eq!(rx.try_recv().unwrap().digest, cfg);
        // a manifest or index itself is never uploaded as a blob
        drop(p);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
    }
}
