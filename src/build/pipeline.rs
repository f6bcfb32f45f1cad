//! Downloading image blobs while the bundle is written. Every digest and size a bundle holds is known once
//! the images are resolved (their manifests give them) and the files are downloaded, so the writer can start
//! then: [`PendingBlobs::download`] fetches the blobs the cache lacks in the order the bundle holds them,
//! `--jobs` at a time, and the writer waits at each blob until [`Arrivals`] says it is in the cache (and
//! re-hashes it as it writes it, as it does every cached blob). A failed download fails the write; a failed
//! write stops further downloads.

use crate::digest::Digest;
use crate::oci::pull::Puller;
use crate::oci::reference::ImageRef;
use crate::transfer::cache::Cache;
use anyhow::{anyhow, Result};
use futures::{StreamExt, TryStreamExt};
use std::collections::HashSet;
use std::sync::{Condvar, Mutex};

/// Which blobs are still on their way, for the writer to wait on.
#[derive(Default)]
pub struct Arrivals {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    pending: HashSet<Digest>,
    /// Why the downloads stopped (the writer's error names it).
    failed: Option<String>,
    /// The writer gave up: start no further download.
    cancelled: bool,
}

impl Arrivals {
    pub fn new(pending: impl IntoIterator<Item = Digest>) -> Arrivals {
        Arrivals { state: Mutex::new(State { pending: pending.into_iter().collect(), ..State::default() }), cv: Condvar::new() }
    }

    fn arrived(&self, d: &Digest) {
        self.state.lock().unwrap().pending.remove(d);
        self.cv.notify_all();
    }

    /// The downloads failed: every wait for a blob still pending fails.
    pub fn fail(&self, why: String) {
        self.state.lock().unwrap().failed.get_or_insert(why);
        self.cv.notify_all();
    }

    /// The writer failed: no further download is started.
    pub fn cancel(&self) {
        self.state.lock().unwrap().cancelled = true;
    }

    fn cancelled(&self) -> bool {
        self.state.lock().unwrap().cancelled
    }

    /// Block until `d` is in the cache (at once when it is not being downloaded).
    pub fn wait(&self, d: &Digest) -> Result<()> {
        let mut st = self.state.lock().unwrap();
        loop {
            if !st.pending.contains(d) {
                return Ok(());
            }
            if let Some(why) = &st.failed {
                return Err(anyhow!("blob {d} was not downloaded: {why}"));
            }
            st = self.cv.wait(st).unwrap();
        }
    }
}

/// The image blobs the cache lacks, in the order the bundle holds them (by digest).
pub struct PendingBlobs {
    pub(super) puller: Puller,
    pub(super) cache: Cache,
    pub(super) jobs: usize,
    /// digest, size, an image to pull it from
    pub(super) blobs: Vec<(Digest, u64, ImageRef)>,
}

impl PendingBlobs {
    pub fn digests(&self) -> impl Iterator<Item = Digest> + '_ {
        self.blobs.iter().map(|(d, _, _)| d.clone())
    }

    /// Download every blob into the cache, telling `arrivals` of each; returns the bytes downloaded. On a
    /// failure, `arrivals` fails too (the writer stops at the next blob it lacks).
    pub async fn download(&self, arrivals: &Arrivals) -> Result<u64> {
        let r = futures::stream::iter(&self.blobs)
            .map(|(d, size, image)| async move {
                if arrivals.cancelled() {
                    return Err(anyhow!("the bundle could not be written"));
                }
                self.puller.blob(image, d, *size, &self.cache, None).await?;
                arrivals.arrived(d);
                Ok(*size)
            })
            .buffer_unordered(self.jobs.max(1))
            .try_fold(0u64, |a, n| async move { Ok(a + n) })
            .await;
        if let Err(e) = &r {
            arrivals.fail(format!("{e:#}"));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_waits_for_pending_blobs_only_and_fails_with_the_downloads() {
        let (a, b, c) = (Digest::of_bytes(b"a"), Digest::of_bytes(b"b"), Digest::of_bytes(b"c"));
        let arrivals = Arrivals::new([a.clone(), b.clone()]);
        arrivals.wait(&c).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| arrivals.wait(&a));
            arrivals.arrived(&a);
            waiter.join().unwrap().unwrap();
            let waiter = s.spawn(|| arrivals.wait(&b));
            arrivals.fail("HTTP 500".into());
            let e = waiter.join().unwrap().unwrap_err().to_string();
            assert!(e.contains(&b.to_string()) && e.contains("HTTP 500"), "{e}");
        });
        assert!(!arrivals.cancelled());
        arrivals.cancel();
        assert!(arrivals.cancelled());
    }
}
