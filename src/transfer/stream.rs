//! One download attempt streamed into a new cache entry, shared by plain file downloads and registry blobs.

use crate::transfer::cache::{Cache, Staged};
use anyhow::Result;
use futures::{Stream, StreamExt};

/// Stream `chunks` into a new staged cache entry, counting the bytes on `progress`. `check` is called after
/// each chunk with the bytes staged so far (e.g. to stop a body longer than announced).
///
/// Meant to run inside [`retry`](super::retry::retry): when the stream, the disk or `check` fails, `progress`
/// goes back by what this attempt staged (the next attempt counts it again) and the staged file is deleted.
pub async fn stage_stream<B, E>(
    cache: &Cache,
    chunks: impl Stream<Item = std::result::Result<B, E>>,
    progress: Option<&indicatif::ProgressBar>,
    mut check: impl FnMut(u64) -> Result<()>,
) -> Result<Staged>
where
    B: AsRef<[u8]>,
    anyhow::Error: From<E>,
{
    let mut staged = cache.stage()?;
    let mut chunks = std::pin::pin!(chunks);
    let result: Result<()> = async {
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            let chunk = chunk.as_ref();
            staged.write(chunk)?;
            if let Some(p) = progress {
                p.inc(chunk.len() as u64);
            }
            check(staged.len())?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if let Some(p) = progress {
            p.set_position(p.position().saturating_sub(staged.len()));
        }
        return Err(e);
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use std::io::{Error, ErrorKind};

    #[tokio::test]
    async fn a_failed_attempt_takes_its_bytes_off_the_bar() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let bar = indicatif::ProgressBar::hidden();
        bar.set_position(10); // bytes of other downloads

        let cut = stream::iter([
            Ok(b"abc".to_vec()),
            Ok(b"de".to_vec()),
            Err(Error::new(ErrorKind::ConnectionReset, "cut")),
        ]);
        let e = stage_stream(&cache, cut, Some(&bar), |_| Ok(())).await.err().unwrap();
        assert!(crate::transfer::retry::is_transient(&e), "{e:#}");
        assert_eq!(bar.position(), 10);

        let whole = stream::iter([Ok::<_, Error>(b"abc".to_vec()), Ok(b"de".to_vec())]);
        let staged = stage_stream(&cache, whole, Some(&bar), |_| Ok(())).await.unwrap();
        assert_eq!(staged.len(), 5);
        assert_eq!(bar.position(), 15);

        let long = stream::iter([Ok::<_, Error>(b"abc".to_vec()), Ok(b"de".to_vec())]);
        let e = stage_stream(&cache, long, Some(&bar), |n| {
            if n > 4 {
                anyhow::bail!("too long")
            } else {
                Ok(())
            }
        })
        .await
        .err()
        .unwrap();
        assert_eq!(e.to_string(), "too long");
        assert_eq!(bar.position(), 15);
    }
}
