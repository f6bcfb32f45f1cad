//! Blob files on disk, read off the async workers and streamed with a bounded buffer.
//!
//! No memory map: a map of a file that shrinks under it faults on the missing pages (SIGBUS for any read from
//! user space, EFAULT when the kernel copies from it into a socket), and a fresh map of a truncated file just
//! serves its remaining bytes as if they were the blob. Instead a blob is read with `pread` into chunks of
//! [`CHUNK`] bytes on tokio's blocking pool, one chunk ahead of the one hyper is writing, so a download holds
//! at most two chunks whatever the blob's size; a short read or an I/O error ends that one response (hyper
//! then closes its connection, so the client sees a truncated body, never a wrong one) and is logged.
//!
//! Checks: a blob whose size on disk differs from the size its manifests give it is refused before the first
//! byte. A blob's content is hashed while it is sent whole for the first time (per file: device, inode, size,
//! mtime, ctime; one download at a time hashes a blob); a blob that does not match its digest has its last
//! chunk withheld and is refused from then on, one that matches is not hashed again. Small blobs (and
//! manifests) are read whole and checked on every request.

use super::{BlobStore, FileStamp, Opened, Verdict};
use crate::digest::{Digest, Hasher};
use crate::registry::catalog::Index;
use crate::registry::gc;
use crate::registry::store::Store;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Size of the chunks a blob is read and sent in.
pub const CHUNK: usize = 512 * 1024;
/// Blobs up to this size are read whole (and checked) when opened.
pub const SMALL: u64 = 64 * 1024;

/// What the server answers from: the catalog's lookup tables and the size every reachable blob must have.
struct Snapshot {
    index: Arc<Index>,
    sizes: HashMap<Digest, u64>,
}

/// The real store: blob files on disk, the catalog reloaded when `catalog.json` changes.
pub struct FsBlobStore {
    store: Store,
    snapshot: RwLock<Arc<Snapshot>>,
    stamp: Mutex<Option<(u64, i64, i64, u64)>>,
    verdicts: Mutex<HashMap<Digest, (FileStamp, Verdict)>>,
    /// Blobs a download is hashing right now.
    checking: Mutex<HashSet<Digest>>,
}

impl FsBlobStore {
    pub fn open(store: Store) -> anyhow::Result<FsBlobStore> {
        let s = FsBlobStore {
            store,
            snapshot: RwLock::new(Arc::new(Snapshot { index: Arc::new(Index::default()), sizes: HashMap::new() })),
            stamp: Mutex::new(None),
            verdicts: Mutex::new(HashMap::new()),
            checking: Mutex::new(HashSet::new()),
        };
        s.reload_if_changed()?;
        Ok(s)
    }

    fn catalog_stamp(&self) -> Option<(u64, i64, i64, u64)> {
        let m = std::fs::metadata(self.store.catalog_path()).ok()?;
        Some((m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
    }

    /// Re-read the catalog when `catalog.json` was replaced (inode, mtime or size changed). Cheap: one stat.
    /// A new catalog is walked through its manifests (see `gc::reach`) for the size of every blob; what the
    /// walk could not read is logged (those images fail their requests; the rest is served).
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let stamp = self.catalog_stamp();
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *last == stamp && stamp.is_some() {
            return Ok(false);
        }
        let catalog = self.store.catalog()?;
        let reach = gc::reach(&self.store, &catalog);
        for p in &reach.problems {
            tracing::error!("the store has a problem (requests that need it fail): {p}");
        }
        let sizes = reach.blobs.into_iter().map(|(d, n)| (d, n.size)).collect();
        let snapshot = Snapshot { index: Arc::new(Index::new(catalog)), sizes };
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        *last = stamp;
        Ok(true)
    }

    /// Re-read the catalog whether or not it changed (SIGHUP).
    pub fn reload(&self) -> anyhow::Result<()> {
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.reload_if_changed().map(|_| ())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl BlobStore for FsBlobStore {
    fn index(&self) -> Arc<Index> {
        self.snapshot().index.clone()
    }

    fn open(&self, digest: &Digest, read_upto: u64) -> io::Result<Option<Opened>> {
        let file = match File::open(self.store.blob_path(digest)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let m = file.metadata()?;
        if !m.is_file() {
            return Err(io::Error::other(format!("{} is not a regular file", self.store.blob_path(digest).display())));
        }
        let stamp = FileStamp { dev: m.dev(), ino: m.ino(), len: m.len(), mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128, ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128 };
        let expected = self.snapshot().sizes.get(digest).copied().filter(|s| *s > 0);
        let mut verdict = match self.verdicts.lock().unwrap_or_else(|e| e.into_inner()).get(digest) {
            Some((s, v)) if *s == stamp => v.clone(),
            _ => Verdict::Unchecked,
        };
        if let (Some(want), Verdict::Unchecked) = (expected, &verdict) {
            if want != m.len() {
                verdict = Verdict::Bad(format!("it has {} bytes on disk, its manifests say {want} (truncated or damaged file)", m.len()));
                self.record(digest, stamp.clone(), verdict.clone());
            }
        }
        let mut data = None;
        if m.len() <= read_upto && !matches!(verdict, Verdict::Bad(_)) {
            let mut buf = Vec::with_capacity(m.len() as usize);
            io::Read::read_to_end(&mut io::Read::take(&file, m.len()), &mut buf)?;
            let actual = Digest::of_bytes(&buf);
            verdict = if buf.len() as u64 != m.len() {
                Verdict::Bad(format!("it ended after {} of {} bytes", buf.len(), m.len()))
            } else if &actual != digest {
                Verdict::Bad(format!("its content is {actual}"))
            } else {
                Verdict::Verified
            };
            self.record(digest, stamp.clone(), verdict.clone());
            data = Some(Bytes::from(buf));
        }
        Ok(Some(Opened { file: Arc::new(file), len: m.len(), stamp, verdict, data }))
    }

    fn record(&self, digest: &Digest, stamp: FileStamp, verdict: Verdict) {
        if let Verdict::Bad(why) = &verdict {
            tracing::error!("blob {digest} in {} fails its check: {why}; requests for it fail until the store is repaired (load the bundle again)", self.store.root().display());
        }
        self.verdicts.lock().unwrap_or_else(|e| e.into_inner()).insert(digest.clone(), (stamp, verdict));
    }

    fn claim_check(&self, digest: &Digest) -> bool {
        self.checking.lock().unwrap_or_else(|e| e.into_inner()).insert(digest.clone())
    }

    fn release_check(&self, digest: &Digest) {
        self.checking.lock().unwrap_or_else(|e| e.into_inner()).remove(digest);
    }
}

/// The body of `bytes start..end` (end exclusive) of an opened blob: chunks read on the blocking pool, one
/// ahead; hashed when the whole unchecked blob is sent (the last chunk is withheld if it does not match).
pub fn stream(
    store: Arc<dyn BlobStore>,
    digest: Digest,
    blob: &Opened,
    start: u64,
    end: u64,
    disk_timeout: Duration,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let whole = start == 0 && end == blob.len;
    let checks = whole && matches!(blob.verdict, Verdict::Unchecked) && store.claim_check(&digest);
    let hasher = checks.then(Hasher::new);
    let reading = Reading {
        ctx: Arc::new(Ctx { store, digest, stamp: blob.stamp.clone(), len: blob.len, disk_timeout, checks }),
        file: blob.file.clone(),
        pos: start,
        end,
        hasher,
        next: None,
    };
    futures::stream::try_unfold(reading, |mut r| async move {
        let task = match r.next.take() {
            Some(t) => t,
            None if r.pos < r.end => r.schedule(),
            None => return Ok(None),
        };
        let (bytes, hasher) = match tokio::time::timeout(r.ctx.disk_timeout, task).await {
            Ok(Ok(Ok(x))) => x,
            Ok(Ok(Err(e))) => return Err(r.ctx.fail(e)),
            Ok(Err(join)) => return Err(r.ctx.fail(io::Error::other(format!("the read task failed: {join}")))),
            Err(_) => return Err(r.ctx.fail(io::Error::new(io::ErrorKind::TimedOut, format!("a read took longer than {:?}", r.ctx.disk_timeout)))),
        };
        r.hasher = hasher;
        if r.pos < r.end {
            r.next = Some(r.schedule());
        } else if let Some(h) = r.hasher.take() {
            let (actual, n) = h.finish();
            if actual != r.ctx.digest {
                let why = format!("its content is {actual} ({n} bytes)");
                r.ctx.store.record(&r.ctx.digest, r.ctx.stamp.clone(), Verdict::Bad(why.clone()));
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("blob {} fails its check: {why}; the download was cut short", r.ctx.digest)));
            }
            r.ctx.store.record(&r.ctx.digest, r.ctx.stamp.clone(), Verdict::Verified);
        }
        Ok(Some((bytes, r)))
    })
}

struct Ctx {
    store: Arc<dyn BlobStore>,
    digest: Digest,
    stamp: FileStamp,
    len: u64,
    disk_timeout: Duration,
    /// This download claimed the hashing of the blob.
    checks: bool,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if self.checks {
            self.store.release_check(&self.digest);
        }
    }
}

impl Ctx {
    fn fail(&self, e: io::Error) -> io::Error {
        tracing::error!("serving blob {} ({} bytes) failed: {e}; that download was cut short", self.digest, self.len);
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.store.record(&self.digest, self.stamp.clone(), Verdict::Bad(e.to_string()));
        }
        e
    }
}

type ReadResult = io::Result<(Bytes, Option<Hasher>)>;

struct Reading {
    ctx: Arc<Ctx>,
    file: Arc<File>,
    /// The next offset to read.
    pos: u64,
    end: u64,
    hasher: Option<Hasher>,
    next: Option<tokio::task::JoinHandle<ReadResult>>,
}

impl Reading {
    /// Read the next chunk on the blocking pool (the hasher travels with it: chunks are read in order).
    fn schedule(&mut self) -> tokio::task::JoinHandle<ReadResult> {
        let n = CHUNK.min((self.end - self.pos) as usize);
        let (file, at, mut hasher) = (self.file.clone(), self.pos, self.hasher.take());
        self.pos += n as u64;
        tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(n);
            let mut got = 0;
            while got < n {
                match file.read_at(&mut buf[got..], at + got as u64) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the file ended at byte {} (truncated on disk?)", at + got as u64),
                        ))
                    }
                    Ok(k) => got += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&buf);
            }
            Ok((buf.freeze(), hasher))
        })
    }
}
