//! The two secrets kubeadm's bootstrap rests on, done as upstream does them:
//! - the cluster-info ConfigMap carries, per bootstrap token, a detached JWS (HS256, key = the token's
//!   secret, `kid` = its id) over the kubeconfig it holds (k8s.io/cluster-bootstrap/token/jws): a joining
//!   node that knows the token can tell the ConfigMap was not forged;
//! - `upload-certs` encrypts every shared certificate and key with AES-256-GCM under the certificate key
//!   (cmd/kubeadm/app/util/crypto: a random 12-byte nonce prepended to the sealed data), so a wrong key
//!   fails with Go's `cipher: message authentication failed`.

use base64::Engine as _;
use ring::aead;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `header..signature` over `payload`.
pub fn jws_detached(token_id: &str, token_secret: &str, payload: &str) -> String {
    let header = B64URL.encode(format!(r#"{{"alg":"HS256","kid":"{token_id}"}}"#));
    let signing_input = format!("{header}.{}", B64URL.encode(payload));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_secret.as_bytes());
    let sig = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{header}..{}", B64URL.encode(sig.as_ref()))
}

/// Whether `jws` is the detached signature of `payload` by token `id.secret`.
pub fn jws_valid(jws: &str, payload: &str, token_id: &str, token_secret: &str) -> bool {
    // compare by recomputing: same header layout, so the whole string must match
    let Some((header, sig)) = jws.split_once("..") else { return false };
    let Ok(h) = B64URL.decode(header) else { return false };
    let Ok(h) = serde_json::from_slice::<serde_json::Value>(&h) else { return false };
    if h["alg"] != "HS256" || h["kid"] != token_id {
        return false;
    }
    let Ok(sig) = B64URL.decode(sig) else { return false };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_secret.as_bytes());
    ring::hmac::verify(&key, format!("{header}.{}", B64URL.encode(payload)).as_bytes(), &sig).is_ok()
}

fn key(hex_key: &str) -> Result<aead::LessSafeKey, String> {
    let k = hex::decode(hex_key).map_err(|e| format!("error decoding certificate key: {e}"))?;
    let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, &k).map_err(|_| format!("crypto/aes: invalid key size {}", k.len()))?;
    Ok(aead::LessSafeKey::new(unbound))
}

pub fn encrypt(hex_key: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let k = key(hex_key)?;
    let mut nonce = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).map_err(|_| "no randomness".to_string())?;
    let mut buf = data.to_vec();
    k.seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::empty(), &mut buf).map_err(|_| "seal".to_string())?;
    let mut out = nonce.to_vec();
    out.extend(buf);
    Ok(out)
}

pub fn decrypt(hex_key: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    let k = key(hex_key)?;
    if data.len() < 12 {
        return Err("size of data is less than the nonce".into());
    }
    let (nonce, sealed) = data.split_at(12);
    let mut buf = sealed.to_vec();
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_string())?;
    let plain = k.open_in_place(nonce, aead::Aad::empty(), &mut buf).map_err(|_| "cipher: message authentication failed".to_string())?;
    Ok(plain.to_vec())
}
