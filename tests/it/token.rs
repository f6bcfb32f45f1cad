//! The anonymous bearer-token flow (Docker Hub style) against the real docker-registry configured with
//! `auth: token`: a tiny token server in the test issues RS256 JWTs (x5c header, signed with the stock
//! `openssl`) whose certificate is the registry's `rootcertbundle`.

use crate::build::{extract_and_check, ok, skopeo_raw_digest, Env};
use crate::support::registry::{Mode, Registry};
use crate::support::fileserver::FileServer;
use crate::support::{free_port, run_ok, wait_for_port, ChildGuard};
use base64::Engine;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ISSUER: &str = "airgap-test-issuer";
const SERVICE: &str = "airgap-test-registry";

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Serve tokens for any `scope=repository:NAME:ACTIONS` (pull only) at `http://ADDR/token`.
fn token_server(dir: &Path, issued: Arc<AtomicUsize>) -> String {
    token_server_for(dir, issued, None)
}

/// [`token_server`]; with `user` (name, password), as Harbor's token service: a request without these basic
/// credentials gets 401, and the token grants every action asked for (push too).
pub fn token_server_for(dir: &Path, issued: Arc<AtomicUsize>, user: Option<(String, String)>) -> String {
    let key = dir.join("token.key");
    let cert = dir.join("token.pem");
    run_ok(Command::new("openssl").args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=airgap token issuer"]).arg("-keyout").arg(&key).arg("-out").arg(&cert));
    let der = run_ok(Command::new("openssl").args(["x509", "-outform", "der", "-in"]).arg(&cert)).stdout;
    let x5c = base64::engine::general_purpose::STANDARD.encode(der);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut authorization = String::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.strip_prefix("Authorization: ").or_else(|| h.strip_prefix("authorization: ")) {
                    authorization = v.trim().to_string();
                }
            }
            if let Some((u, p)) = &user {
                let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")));
                if authorization != want {
                    let _ = write!(conn, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
            }
            let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let query = target.split_once('?').map(|x| x.1).unwrap_or("");
            let mut access = Vec::new();
            for kv in query.split('&') {
                if let Some(scope) = kv.strip_prefix("scope=") {
                    let scope = scope.replace("%3A", ":").replace("%2F", "/").replace("%2C", ",");
                    let parts: Vec<&str> = scope.split(':').collect();
                    if parts.len() == 3 && parts[0] == "repository" {
                        let actions: Vec<&str> = if user.is_some() { parts[2].split(',').collect() } else { vec!["pull"] };
                        access.push(serde_json::json!({"type": "repository", "name": parts[1], "actions": actions}));
                    }
                }
            }
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
            let claims = serde_json::json!({"iss": ISSUER, "sub": "", "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", issued.load(Ordering::SeqCst)), "access": access});
            let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
            let mut child = Command::new("openssl").args(["dgst", "-sha256", "-sign"]).arg(&key).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
            child.stdin.take().unwrap().write_all(signing_input.as_bytes()).unwrap();
            let sig = child.wait_with_output().unwrap().stdout;
            let token = format!("{signing_input}.{}", b64url(&sig));
            issued.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300, "issued_at": "2026-01-01T00:00:00Z"}).to_string();
            let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    addr
}

pub struct TokenRegistry {
    pub addr: String,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

/// A docker-registry with `auth: token` serving the storage at `data`.
pub fn start_token_registry(token_addr: &str, cert: &Path, data: &Path) -> TokenRegistry {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\nauth:\n  token:\n    realm: http://{token_addr}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        data.display(),
        cert.display()
    );
    fs_err::write(dir.path().join("config.yml"), cfg).unwrap();
    let log = fs_err::File::create(dir.path().join("registry.log")).unwrap();
    let child = Command::new("docker-registry").arg("serve").arg(dir.path().join("config.yml")).stdin(Stdio::null()).stdout(log.try_clone().unwrap().into_parts().0).stderr(log.into_parts().0).spawn().unwrap();
    wait_for_port(&addr, Duration::from_secs(10));
    TokenRegistry { addr, _child: ChildGuard(child), _dir: dir }
}

#[test]
fn anonymous_bearer_token_flow() {
    let env = Env::new();
    // Seed a plain registry with the harness, stop it, and serve its storage with token auth.
    let mut seed = Registry::start(Mode::Plain);
    env.push(&seed);
    seed.stop();
    let tdir = tempfile::tempdir().unwrap();
    let issued = Arc::new(AtomicUsize::new(0));
    let token_addr = token_server(tdir.path(), issued.clone());
    let reg = start_token_registry(&token_addr, &tdir.path().join("token.pem"), &seed.dir.path().join("data"));
    // Without a token the registry refuses: the flow is really exercised.
    let code = run_ok(Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]).arg(format!("http://{}/v2/test/multi/manifests/1", reg.addr))).stdout;
    assert_eq!(String::from_utf8_lossy(&code), "401");

    let fs = FileServer::start(&env.files);
    let m = env.manifest(&reg.addr, &format!("http://{}", fs.addr), "[linux/amd64, linux/arm64]", "");
    let out = env.tmp.path().join("out");
    ok(&env.build(&m, &out, &env.tmp.path().join("cache"), &["--insecure-registry", &reg.addr]));
    assert!(issued.load(Ordering::SeqCst) >= 3, "one token per repository at least");
    let root = env.tmp.path().join("x");
    extract_and_check(&out.join("demo-1.0.0-1.tar.zst"), &root);
    assert_eq!(skopeo_raw_digest(&root, &format!("{}/library/docker:2", reg.addr)), env.docker.digest.to_string());
    assert_eq!(skopeo_raw_digest(&root, &format!("{}/test/multi:1", reg.addr)), env.multi.digest.to_string());
}
