//! Retries with exponential backoff and jitter for transient failures: HTTP 429 and 5xx, connection
//! refused/reset, timeouts, bodies cut short. Anything else (404, 401, a digest mismatch) fails at once.

use anyhow::Result;
use std::future::Future;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total attempts (>= 1).
    pub attempts: u32,
    /// Delay before the first retry; doubled each time (with up to 50% jitter), capped at `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 5, base_delay: Duration::from_millis(250), max_delay: Duration::from_secs(8) }
    }
}

/// An HTTP status from a plain URL download (files, checksum files).
#[derive(Debug, thiserror::Error)]
#[error("{url} answered HTTP {code}")]
pub struct HttpStatus {
    pub code: u16,
    pub url: String,
}

/// Whether an error is worth retrying.
pub fn is_transient(err: &anyhow::Error) -> bool {
    for cause in err.chain() {
        if let Some(s) = cause.downcast_ref::<HttpStatus>() {
            return s.code == 429 || s.code >= 500;
        }
        if let Some(e) = cause.downcast_ref::<oci_client::errors::OciDistributionError>() {
            use oci_client::errors::OciDistributionError as E;
            match e {
                E::ServerError { code, .. } => return *code == 429 || *code >= 500,
                E::RequestError(r) => return reqwest_transient(r),
                E::IoError(io) => return io_transient(io),
                _ => {}
            }
        }
        if let Some(r) = cause.downcast_ref::<reqwest::Error>() {
            return reqwest_transient(r);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io_transient(io) {
                return true;
            }
        }
    }
    false
}

fn reqwest_transient(e: &reqwest::Error) -> bool {
    if let Some(s) = e.status() {
        return s.as_u16() == 429 || s.is_server_error();
    }
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode()
}

fn io_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    if let Some(inner) = e.get_ref() {
        if let Some(r) = inner.downcast_ref::<reqwest::Error>() {
            return reqwest_transient(r);
        }
    }
    matches!(e.kind(), K::ConnectionReset | K::ConnectionAborted | K::ConnectionRefused | K::UnexpectedEof | K::TimedOut | K::BrokenPipe | K::Interrupted)
}

/// Run `f` until it succeeds, fails with a permanent error, or runs out of attempts.
pub async fn retry<T, F, Fut>(what: &str, policy: RetryPolicy, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = policy.base_delay;
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < policy.attempts.max(1) && is_transient(&e) => {
                let jitter = delay.mul_f64(rand::random::<f64>() * 0.5);
                tracing::warn!("{what}: {e:#} (attempt {attempt} of {}, retrying in {:.1}s)", policy.attempts, (delay + jitter).as_secs_f64());
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(policy.max_delay);
                attempt += 1;
            }
            Err(e) => {
                if attempt > 1 {
                    return Err(e.context(format!("gave up after {attempt} attempts")));
                }
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_transient_only() {
        let p = RetryPolicy { attempts: 4, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) };
        let n = AtomicU32::new(0);
        let v = retry("x", p, || async {
            if n.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(anyhow::Error::new(HttpStatus { code: 503, url: "u".into() }))
            } else {
                Ok(7)
            }
        })
        .await
        .unwrap();
        assert_eq!((v, n.load(Ordering::SeqCst)), (7, 3));
        let n = AtomicU32::new(0);
        let e = retry("x", p, || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(anyhow::Error::new(HttpStatus { code: 404, url: "u".into() }))
        })
        .await;
        assert!(e.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 1, "404 must not be retried");
    }
}
