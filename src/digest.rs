//! Content digests (`sha256:<hex>`) and stream adapters that hash while data flows (in the style of tough):
//! a reader that fails at end of stream when the content does not match the expected digest.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

/// A sha256 content digest. Only sha256 is accepted: it is what OCI registries and `sha256sum` use.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// From 64 lower-case hex characters (no `sha256:` prefix).
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::Malformed(hex.to_string()));
        }
        Ok(Digest { hex: hex.to_string() })
    }

    pub fn of_bytes(bytes: &[u8]) -> Self {
        Digest { hex: hex::encode(Sha256::digest(bytes)) }
    }

    /// Hash a whole file, streaming.
    pub fn of_file(path: &std::path::Path) -> io::Result<(Self, u64)> {
        let mut f = fs_err::File::open(path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0u64;
        loop {
            let k = f.read(&mut buf)?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
        }
        Ok((Digest { hex: hex::encode(h.finalize()) }, n))
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Relative path of a blob in an OCI image layout: `blobs/sha256/<hex>`.
    pub fn blob_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("malformed sha256 digest {0:?}: expected 64 lower-case hex characters")]
    Malformed(String),
    #[error("unsupported digest algorithm in {0:?}: only sha256 is supported")]
    Algorithm(String),
}

impl FromStr for Digest {
    type Err = DigestError;
    /// Parses `sha256:<hex>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Digest::from_hex(hex),
            Some(_) => Err(DigestError::Algorithm(s.to_string())),
            None => Err(DigestError::Malformed(s.to_string())),
        }
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 with a byte count.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finish(self) -> (Digest, u64) {
        (Digest { hex: hex::encode(self.inner.finalize()) }, self.len)
    }
}

/// A reader that hashes everything read through it. With an expectation, reading to the end fails with
/// `io::ErrorKind::InvalidData` (wrapping a [`Mismatch`]) when the size or digest differs, so a consumer that
/// reads to EOF cannot miss a corrupted stream.
pub struct HashingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expect: Option<(Digest, Option<u64>)>,
    result: Option<(Digest, u64)>,
}

#[derive(Debug, thiserror::Error)]
#[error("content mismatch: expected {expected} ({expected_size}), got {actual} ({actual_size} bytes)")]
pub struct Mismatch {
    pub expected: Digest,
    pub expected_size: String,
    pub actual: Digest,
    pub actual_size: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Some(Hasher::new()), expect: None, result: None }
    }
    /// Fail at end of stream unless the content has this digest (and size, when given).
    pub fn expecting(inner: R, digest: Digest, size: Option<u64>) -> Self {
        HashingReader { inner, hasher: Some(Hasher::new()), expect: Some((digest, size)), result: None }
    }
    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        match (&self.hasher, &self.result) {
            (Some(h), _) => h.len(),
            (None, Some((_, n))) => *n,
            _ => 0,
        }
    }
    /// The digest and size, once the stream has been read to its end.
    pub fn result(&self) -> Option<&(Digest, u64)> {
        self.result.as_ref()
    }
    /// Finish hashing (reading nothing more) and return digest and size.
    pub fn finish(mut self) -> (Digest, u64) {
        match self.result.take() {
            Some(r) => r,
            None => self.hasher.take().unwrap_or_default().finish(),
        }
    }
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            if n > 0 {
                h.update(&buf[..n]);
                if let Some((d, Some(size))) = &self.expect {
                    if h.len() > *size {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("content of {d} is longer than the expected {size} bytes"),
                        ));
                    }
                }
            } else if !buf.is_empty() {
                let (digest, len) = self.hasher.take().unwrap_or_default().finish();
                self.result = Some((digest.clone(), len));
                if let Some((want, size)) = &self.expect {
                    if &digest != want || size.is_some_and(|s| s != len) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            Mismatch {
                                expected: want.clone(),
                                expected_size: size.map_or("any size".into(), |s| format!("{s} bytes")),
                                actual: digest,
                                actual_size: len,
                            },
                        ));
                    }
                }
            }
        }
        Ok(n)
    }
}

/// A writer that hashes everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Hasher::new() }
    }
    pub fn finish(self) -> (W, Digest, u64) {
        let (d, n) = self.hasher.finish();
        (self.inner, d, n)
    }
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_and_prints() {
        let d: Digest = format!("sha256:{HELLO}").parse().unwrap();
        assert_eq!(d.to_string(), format!("sha256:{HELLO}"));
        assert_eq!(d, Digest::of_bytes(b"hello"));
        assert!("sha512:abcd".parse::<Digest>().is_err());
        assert!("sha256:ABCD".parse::<Digest>().is_err());
        assert!(Digest::from_hex(&HELLO.to_uppercase()).is_err());
    }

    #[test]
    fn hashing_reader_accepts_match_and_rejects_mismatch() {
        let d = Digest::of_bytes(b"hello");
        let mut ok = HashingReader::expecting(&b"hello"[..], d.clone(), Some(5));
        let mut s = String::new();
        ok.read_to_string(&mut s).unwrap();
        assert_eq!(ok.result().unwrap().0, d);

        let mut bad = HashingReader::expecting(&b"hellO"[..], d.clone(), Some(5));
        let err = bad.read_to_string(&mut String::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("content mismatch"), "{err}");

        let mut long = HashingReader::expecting(&b"hello!"[..], d, Some(5));
        assert!(long.read_to_end(&mut Vec::new()).is_err());
    }
}
