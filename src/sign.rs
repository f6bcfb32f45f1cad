//! Signing and verifying bundles with minisign keys and signatures (the formats of the stock `minisign` tool).
//!
//! Keys: `airgap.key` (secret, minisign format, no password unless one is given) and `airgap.pub`.
//! Signatures are prehashed (BLAKE2b-512 of the file, algorithm `ED`), so `minisign -Vm FILE -p airgap.pub`
//! accepts them. Signing is deterministic: the trusted comment carries no timestamp and the ed25519 signature
//! is computed without random noise, so the same bytes and key always give the same `.minisig` (the minisign
//! crate adds noise to every signature, hence `ed25519-compact` for the signing step itself). Verification is
//! the minisign crate's.

use crate::error::HintExt;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use minisign::{PublicKey, SecretKey, SignatureBox};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// File name of the secret key written by `airgap keygen`.
pub const SECRET_KEY_FILE: &str = "airgap.key";
/// File name of the public key written by `airgap keygen`.
pub const PUBLIC_KEY_FILE: &str = "airgap.pub";
/// Suffix of a signature file.
pub const SIG_SUFFIX: &str = ".minisig";
/// Length of a prehash (BLAKE2b-512).
pub const PREHASH_BYTES: usize = 64;

/// The key files `generate_keypair` wrote.
#[derive(Debug, Clone)]
pub struct GeneratedKeys {
    pub secret: PathBuf,
    pub public: PathBuf,
    /// The key ID as minisign prints it (16 upper-case hex digits).
    pub key_id: String,
}

/// Create `airgap.key` and `airgap.pub` in `out_dir` (created if missing). Never overwrites an existing key.
/// With a password, the secret key is encrypted (scrypt, as minisign does); without, it is stored unencrypted.
/// Never prompts.
pub fn generate_keypair(out_dir: &Path, password: Option<&str>) -> Result<GeneratedKeys> {
    let secret = out_dir.join(SECRET_KEY_FILE);
    let public = out_dir.join(PUBLIC_KEY_FILE);
    for p in [&secret, &public] {
        if p.symlink_metadata().is_ok() {
            return Err(anyhow!("{} already exists", p.display()))
                .context("refusing to overwrite an existing key")
                .hint("keep the existing key (bundles signed with it stay verifiable), or choose another --out-dir");
        }
    }
    fs_err::create_dir_all(out_dir).context("failed to create the key directory")?;
    let kp = match password {
        Some(pw) => minisign::KeyPair::generate_encrypted_keypair(Some(pw.to_string())),
        None => minisign::KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(|e| anyhow!("{e}"))
    .context("failed to generate a key pair")?;
    let key_id = key_id(kp.pk.keynum());
    let comment = if password.is_some() {
        format!("airgap encrypted secret key {key_id}")
    } else {
        format!("airgap secret key {key_id} (no password)")
    };
    let sk_box = kp.sk.to_box(Some(&comment)).map_err(|e| anyhow!("{e}"))?;
    let pk_box = kp.pk.to_box().map_err(|e| anyhow!("{e}"))?;
    create_new_file(&secret, &sk_box.to_bytes(), 0o600)?;
    if let Err(e) = create_new_file(&public, &pk_box.to_bytes(), 0o644) {
        let _ = fs_err::remove_file(&secret);
        return Err(e);
    }
    crate::fsutil::sync_dir(out_dir);
    Ok(GeneratedKeys { secret, public, key_id })
}

fn create_new_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    let mut f = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    // exactly `mode`, whatever the umask (a 077 umask made the public key 0600)
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// The password in a password file: its first line, without the line ending.
pub fn read_password_file(path: &Path) -> Result<String> {
    let text = fs_err::read_to_string(path).context("failed to read the password file")?;
    let pw = text.lines().next().unwrap_or("").to_string();
    if pw.is_empty() {
        return Err(anyhow!("the password file {} is empty", path.display()))
            .hint("write the password on the first line of the file");
    }
    Ok(pw)
}

/// Load a minisign secret key. An encrypted key needs its password; without one this fails (never prompts).
pub fn load_secret_key(path: &Path, password: Option<&str>) -> Result<SecretKey> {
    let text = fs_err::read_to_string(path)
        .context("failed to read the secret key")
        .hint("create a key pair with `airgap keygen --out-dir DIR` and pass DIR/airgap.key")?;
    let ctx = || format!("failed to load the secret key {}", path.display());
    let sk_box = minisign::SecretKeyBox::from_string(&text).map_err(|e| anyhow!("{e}")).with_context(ctx)?;
    let encrypted = secret_key_is_encrypted(&text);
    let sk = match (encrypted, password) {
        (false, _) => SecretKey::from_unencrypted_box(sk_box).map_err(|e| anyhow!("{}", lower(&e.to_string()))),
        (true, Some(pw)) => SecretKey::from_box(sk_box, Some(pw.to_string())).map_err(|e| anyhow!("{}", lower(&e.to_string()))),
        (true, None) => {
            return Err(anyhow!("the secret key {} is protected by a password", path.display()))
                .hint("pass --password-file FILE with the password on its first line");
        }
    };
    sk.with_context(ctx)
}

/// Whether a secret key box holds an encrypted key (its KDF algorithm is not `\0\0`).
fn secret_key_is_encrypted(box_text: &str) -> bool {
    let Some(b64) = box_text.lines().nth(1) else { return false };
    match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
        Ok(bytes) if bytes.len() >= 4 => bytes[2..4] != [0, 0],
        _ => false,
    }
}

/// Load a minisign public key file (`airgap.pub` or any minisign `.pub`).
pub fn load_public_key(path: &Path) -> Result<PublicKey> {
    let text = fs_err::read_to_string(path)
        .context("failed to read the public key")
        .hint("pass the airgap.pub written by `airgap keygen` next to the key that signed the bundle")?;
    let pk_box = minisign::PublicKeyBox::from_string(&text)
        .and_then(|b| b.into_public_key())
        .or_else(|_| PublicKey::from_base64(text.trim()))
        .map_err(|e| anyhow!("{}", lower(&e.to_string())))
        .with_context(|| format!("{} is not a minisign public key", path.display()))?;
    Ok(pk_box)
}

/// The public key matching a secret key.
pub fn public_key_of(sk: &SecretKey) -> Result<PublicKey> {
    PublicKey::from_secret_key(sk).map_err(|e| anyhow!("{e}"))
}

/// A key ID as minisign prints it: the 8-byte key number as a little-endian u64, 16 upper-case hex digits.
pub fn key_id(keynum: &[u8]) -> String {
    let mut b = [0u8; 8];
    let n = keynum.len().min(8);
    b[..n].copy_from_slice(&keynum[..n]);
    format!("{:016X}", u64::from_le_bytes(b))
}

/// Path of the signature of `path`: `path` + `.minisig`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(SIG_SUFFIX);
    PathBuf::from(s)
}

/// Streaming BLAKE2b-512, the prehash of a minisign `ED` signature. Also a `Write` sink.
pub struct Prehasher(blake2b_simd::State);

impl Default for Prehasher {
    fn default() -> Self {
        Prehasher(blake2b_simd::Params::new().hash_length(PREHASH_BYTES).to_state())
    }
}

impl Prehasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn finish(&self) -> [u8; PREHASH_BYTES] {
        let mut out = [0u8; PREHASH_BYTES];
        out.copy_from_slice(self.0.finalize().as_bytes());
        out
    }
}

impl Write for Prehasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A deterministic minisign signature (the text of a `.minisig` file) over data whose BLAKE2b-512 is `prehash`.
pub fn sign_prehashed(sk: &SecretKey, prehash: &[u8; PREHASH_BYTES], trusted_comment: &str) -> Result<String> {
    if sk.is_encrypted() {
        bail!("the secret key is still encrypted");
    }
    if trusted_comment.contains(['\n', '\r']) {
        bail!("a trusted comment must be one line");
    }
    // SecretKey::to_bytes: sig_alg(2) kdf_alg(2) chk_alg(2) salt(32) opslimit(8) memlimit(8) keynum(8) sk(64) chk(32)
    let raw = sk.to_bytes();
    if raw.len() < 126 {
        bail!("the secret key is malformed ({} bytes)", raw.len());
    }
    let keynum = &raw[54..62];
    let ed_sk = ed25519_compact::SecretKey::from_slice(&raw[62..126])
        .map_err(|e| anyhow!("the secret key is malformed: {e}"))?;
    let sig = ed_sk.sign(prehash, None);
    let mut sig_and_comment = sig.as_ref().to_vec();
    sig_and_comment.extend_from_slice(trusted_comment.as_bytes());
    let global = ed_sk.sign(&sig_and_comment, None);

    let mut sig_line = Vec::with_capacity(74);
    sig_line.extend_from_slice(b"ED");
    sig_line.extend_from_slice(keynum);
    sig_line.extend_from_slice(sig.as_ref());
    let b64 = &base64::engine::general_purpose::STANDARD;
    let text = format!(
        "untrusted comment: signature from airgap secret key {}\n{}\ntrusted comment: {}\n{}\n",
        key_id(keynum),
        b64.encode(&sig_line),
        trusted_comment,
        b64.encode(global.as_ref())
    );
    // Self-check with the minisign crate's verifier: a key whose public half does not match fails here.
    let pk = public_key_of(sk)?;
    let sbox = SignatureBox::from_string(&text).map_err(|e| anyhow!("{e}"))?;
    check_prehashed(&pk, &sbox, prehash).context("the signature just made does not verify (corrupted secret key?)")?;
    Ok(text)
}

/// Sign a file (streamed) and write `<file>.minisig` atomically. Returns the signature path.
pub fn sign_file(sk: &SecretKey, path: &Path, trusted_comment: &str) -> Result<PathBuf> {
    let mut f = fs_err::File::open(path)?;
    let mut h = Prehasher::new();
    io::copy(&mut f, &mut h).with_context(|| format!("failed to read {}", path.display()))?;
    let text = sign_prehashed(sk, &h.finish(), trusted_comment)?;
    let sig = signature_path(path);
    crate::fsutil::atomic_write(&sig, text.as_bytes(), crate::fsutil::Mode::Set(0o644))?;
    Ok(sig)
}

/// Read the signature of `signed` (`<signed>.minisig`), with a clear error when it is missing.
pub fn read_signature(signed: &Path) -> Result<SignatureBox> {
    let sig_path = signature_path(signed);
    let text = match fs_err::read_to_string(&sig_path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(anyhow!("the signature {} is missing", sig_path.display())).with_hint(|| {
                format!(
                    "copy {} from the packaging machine next to the bundle; a bundle is never trusted without its signature",
                    sig_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
                )
            });
        }
        Err(e) => return Err(e).context("failed to read the signature"),
    };
    SignatureBox::from_string(&text)
        .map_err(|e| anyhow!("{}", lower(&e.to_string())))
        .with_context(|| format!("{} is not a minisign signature", sig_path.display()))
}

/// Key ID of the key that made a signature.
pub fn signature_key_id(sig: &SignatureBox) -> String {
    key_id(sig.keynum())
}

/// Fail unless `sig` was made by the key `pk` (compares key IDs only: cheap, do it before hashing anything).
pub fn check_signer(sig: &SignatureBox, pk: &PublicKey, what: &Path) -> Result<()> {
    if sig.keynum() != pk.keynum() {
        return Err(anyhow!(
            "{} is signed by key ID {}, but the public key given is {}",
            what.display(),
            key_id(sig.keynum()),
            key_id(pk.keynum())
        ))
        .hint("pass the airgap.pub that belongs to the key the bundle was built with (`airgap inspect` shows the signing key ID)");
    }
    if !sig.is_prehashed() {
        bail!("{} has a legacy (non-prehashed) minisign signature, which airgap does not accept", what.display());
    }
    Ok(())
}

fn check_prehashed(pk: &PublicKey, sig: &SignatureBox, prehash: &[u8; PREHASH_BYTES]) -> Result<()> {
    // The minisign crate only verifies streams; a prehash is checked with ed25519 directly.
    let pk_bytes = pk.to_bytes();
    let ed_pk = ed25519_compact::PublicKey::from_slice(&pk_bytes[10..42]).map_err(|e| anyhow!("bad public key: {e}"))?;
    let sig_bytes = sig_bytes(sig)?;
    let s = ed25519_compact::Signature::from_slice(&sig_bytes).map_err(|e| anyhow!("bad signature: {e}"))?;
    ed_pk.verify(prehash, &s).map_err(|_| anyhow!("signature verification failed"))?;
    Ok(())
}

fn sig_bytes(sig: &SignatureBox) -> Result<Vec<u8>> {
    // The box's text form carries the signature line (`ED` + keynum + 64-byte signature) in base64.
    let text = sig.to_string();
    let line = text.lines().nth(1).ok_or_else(|| anyhow!("malformed signature"))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(line.trim()).map_err(|e| anyhow!("malformed signature: {e}"))?;
    if raw.len() != 74 {
        bail!("malformed signature ({} bytes)", raw.len());
    }
    Ok(raw[10..].to_vec())
}

/// Largest accepted `.minisig` (a real one is about 300 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 4096;

/// Verify the text of a `.minisig` (e.g. an archive entry) over `data`, made by `pk`. `what` names the signed
/// thing in errors. Returns the parsed signature (its trusted comment is then trusted too).
pub fn verify_bytes(pk: &PublicKey, sig_text: &[u8], data: &[u8], what: &Path) -> Result<SignatureBox> {
    if sig_text.len() > MAX_SIGNATURE_BYTES {
        bail!("the signature of {} is {} bytes, not a minisign signature", what.display(), sig_text.len());
    }
    let text = std::str::from_utf8(sig_text).map_err(|_| anyhow!("the signature of {} is not text", what.display()))?;
    let sig = SignatureBox::from_string(text)
        .map_err(|e| anyhow!("{}", lower(&e.to_string())))
        .with_context(|| format!("the signature of {} is not a minisign signature", what.display()))?;
    verify_reader(pk, &sig, data, what)?;
    Ok(sig)
}

/// Verify a signature over everything `reader` yields (one pass, streamed), with the minisign crate.
pub fn verify_reader<R: Read>(pk: &PublicKey, sig: &SignatureBox, reader: R, what: &Path) -> Result<()> {
    check_signer(sig, pk, what)?;
    minisign::verify(pk, sig, NoSeek(reader), true, false, false).map_err(|e| verify_error(e, what))
}

fn verify_error(e: minisign::PError, what: &Path) -> anyhow::Error {
    match e.kind() {
        minisign::ErrorKind::Io => anyhow!("failed to read {}: {e}", what.display()),
        _ => crate::error::with_hint(
            anyhow!("the signature of {} does not match its content ({})", what.display(), lower(&e.to_string())),
            "the file was modified or damaged after it was signed: copy it again from the packaging machine",
        ),
    }
}

/// Verifies a signature over bytes fed to it chunk by chunk, in a helper thread (the minisign crate's verifier
/// reads a stream; this lets a caller hash the raw bytes it is already reading for another purpose, e.g. while
/// decompressing them, so the disk is read once).
pub struct StreamVerifier {
    tx: Option<SyncSender<Vec<u8>>>,
    handle: Option<JoinHandle<Result<(), minisign::PError>>>,
    what: PathBuf,
}

impl StreamVerifier {
    /// Checks the key ID up front (no thread is started on a mismatch).
    pub fn new(pk: &PublicKey, sig: &SignatureBox, what: &Path) -> Result<Self> {
        check_signer(sig, pk, what)?;
        let (tx, rx) = sync_channel::<Vec<u8>>(16);
        let (pk, sig) = (pk.clone(), sig.clone());
        let handle = std::thread::Builder::new()
            .name("airgap-verify-sig".into())
            .spawn(move || minisign::verify(&pk, &sig, NoSeek(ChanReader { rx, buf: Vec::new(), pos: 0 }), true, false, false))
            .context("failed to start the signature thread")?;
        Ok(StreamVerifier { tx: Some(tx), handle: Some(handle), what: what.to_path_buf() })
    }

    /// Feed the next bytes of the signed data.
    pub fn update(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            // A send error means the thread ended early; `finish` reports why.
            let _ = tx.send(data.to_vec());
        }
    }

    /// End of the data: wait for the verdict.
    pub fn finish(mut self) -> Result<()> {
        drop(self.tx.take());
        let handle = self.handle.take().ok_or_else(|| anyhow!("signature verifier already finished"))?;
        match handle.join() {
            Ok(r) => r.map_err(|e| verify_error(e, &self.what)),
            Err(_) => bail!("the signature verifier thread panicked"),
        }
    }
}

impl Drop for StreamVerifier {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct ChanReader {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// `minisign::verify` wants `Read + Seek` but only seeks to echo the data, which we never ask for.
struct NoSeek<R>(R);

impl<R: Read> Read for NoSeek<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R> Seek for NoSeek<R> {
    fn seek(&mut self, _pos: SeekFrom) -> io::Result<u64> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "stream is not seekable"))
    }
}

/// minisign's messages start with a capital; ours are lower-case.
fn lower(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_deterministically_and_the_crate_verifies() {
        let d = tempfile::tempdir().unwrap();
        let keys = generate_keypair(d.path(), None).unwrap();
        let sk = load_secret_key(&keys.secret, None).unwrap();
        let pk = load_public_key(&keys.public).unwrap();
        assert_eq!(key_id(pk.keynum()), keys.key_id);
        let data = d.path().join("data");
        std::fs::write(&data, b"hello bundle").unwrap();
        let sig = sign_file(&sk, &data, "airgap bundle x 1 data").unwrap();
        let first = std::fs::read(&sig).unwrap();
        sign_file(&sk, &data, "airgap bundle x 1 data").unwrap();
        assert_eq!(first, std::fs::read(&sig).unwrap(), "signature not deterministic");
        let sbox = read_signature(&data).unwrap();
        assert_eq!(sbox.trusted_comment().unwrap(), "airgap bundle x 1 data");
        verify_reader(&pk, &sbox, &b"hello bundle"[..], &data).unwrap();
        assert!(verify_reader(&pk, &sbox, &b"hello bundlE"[..], &data).is_err());

        let mut sv = StreamVerifier::new(&pk, &sbox, &data).unwrap();
        sv.update(b"hello ");
        sv.update(b"bundle");
        sv.finish().unwrap();
        let mut sv = StreamVerifier::new(&pk, &sbox, &data).unwrap();
        sv.update(b"hello");
        assert!(sv.finish().is_err());
    }

    #[test]
    fn never_overwrites_and_needs_password() {
        let d = tempfile::tempdir().unwrap();
        let keys = generate_keypair(d.path(), Some("s3cret")).unwrap();
        let err = generate_keypair(d.path(), None).unwrap_err();
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");
        let err = load_secret_key(&keys.secret, None).unwrap_err();
        assert!(format!("{err:#}").contains("protected by a password"), "{err:#}");
        assert!(load_secret_key(&keys.secret, Some("wrong")).is_err());
        let sk = load_secret_key(&keys.secret, Some("s3cret")).unwrap();
        let h = Prehasher::new().finish();
        sign_prehashed(&sk, &h, "c").unwrap();
    }

    #[test]
    fn wrong_key_is_named() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let k1 = generate_keypair(d1.path(), None).unwrap();
        let k2 = generate_keypair(d2.path(), None).unwrap();
        let sk = load_secret_key(&k1.secret, None).unwrap();
        let data = d1.path().join("data");
        std::fs::write(&data, b"x").unwrap();
        sign_file(&sk, &data, "c").unwrap();
        let sbox = read_signature(&data).unwrap();
        let pk2 = load_public_key(&k2.public).unwrap();
        let err = StreamVerifier::new(&pk2, &sbox, &data).err().unwrap();
        let msg = format!("{err:#}");
        assert!(msg.contains(&format!("signed by key ID {}, but the public key given is {}", k1.key_id, k2.key_id)), "{msg}");
    }
}
