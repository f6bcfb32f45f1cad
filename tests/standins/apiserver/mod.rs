//! `standin-apiserver`: the daemon `kubeadm init` and every control-plane `kubeadm join` start
//! (`systemd-run --unit=standin-apiserver`) on `<advertise address>:6443`, serving TLS with a certificate
//! signed by the cluster CA and verifying client certificates against it.
//!
//! State: the apiserver started by `kubeadm init` HOLDS the cluster state (objects, tokens, the uploaded
//! certificates, nodes and their heartbeats) in `/var/lib/etcd/standin-state.json` on its node. The
//! apiservers of the other control-plane nodes PROXY every request to it (`--upstream`), passing the
//! client's identity the way kube-apiserver's front proxy does (X-Remote-User / X-Remote-Group, trusted
//! only from the proxy's own client certificate), so every control-plane node answers the same. Chosen
//! for simplicity: the cluster stays readable and writable through any master while the first one runs;
//! it does not survive losing the first master (a real etcd cluster would).

mod routes;
pub mod state;
pub mod views;

use crate::common::{self, fail, Context, Ctx, R};
use crate::flags::{self, flag, Kind};
use crate::net::{self, Request, Response};
use crate::pki;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Where the holder keeps the state.
pub const STATE_FILE: &str = "/var/lib/etcd/standin-state.json";
/// The identity a proxying apiserver presents to the holder (kubeadm's apiserver-kubelet-client cert).
pub const PROXY_CN: &str = "kube-apiserver-kubelet-client";

const SPECS: &[flags::Spec] = &[
    flag("advertise-address", Kind::Str),
    flag("secure-port", Kind::Int),
    flag("tls-cert-file", Kind::Str),
    flag("tls-private-key-file", Kind::Str),
    flag("client-ca-file", Kind::Str),
    flag("state-file", Kind::Str),
    flag("cluster-signing-cert-file", Kind::Str),
    flag("cluster-signing-key-file", Kind::Str),
    flag("upstream", Kind::Str),
    flag("proxy-client-cert-file", Kind::Str),
    flag("proxy-client-key-file", Kind::Str),
];

pub fn main(ctx: &Ctx, args: &[String]) -> R<()> {
    let argv: Vec<String> = std::iter::once("standin-apiserver".to_string()).chain(args.iter().cloned()).collect();
    common::record_call(ctx, "standin-apiserver", &argv, None, None);
    let f = flags::parse(args, SPECS).map_err(|e| fail(format!("Error: {e}")))?;
    let need = |n: &str| f.str(n).map(str::to_string).ok_or_else(|| fail(format!("Error: --{n} is required")));
    let addr = need("advertise-address")?;
    let port: u16 = f.str("secure-port").unwrap_or("6443").parse().ctx("bad --secure-port")?;
    let read = |n: &str| -> R<String> {
        let p = need(n)?;
        ctx.read(&p).ctx(format!("failed to read --{n} {p}"))
    };
    let (cert, key, client_ca) = (read("tls-cert-file")?, read("tls-private-key-file")?, read("client-ca-file")?);
    let tls = pki::server_tls(&cert, &key, Some(&client_ca))?;
    // kube-apiserver's --bind-address defaults to 0.0.0.0; under a sandbox root several nodes share the
    // machine, so each binds its own address
    let bind = if ctx.sandboxed() { addr.clone() } else { "0.0.0.0".to_string() };
    let listener = TcpListener::bind((bind.as_str(), port))
        .map_err(|e| fail(format!("failed to create listener: failed to listen on {bind}:{port}: listen tcp {bind}:{port}: bind: {e}")))?;
    let handler: net::Handler = match f.str("upstream") {
        Some(up) => {
            let client = pki::client_tls(Some(&client_ca), Some((&read("proxy-client-cert-file")?, &read("proxy-client-key-file")?)))?;
            let up = up.trim_end_matches('/').to_string();
            Arc::new(move |req, peer| proxy(&up, &client, req, peer))
        }
        None => {
            let state_file = ctx.path(f.str("state-file").unwrap_or(STATE_FILE));
            let ca = pki::Ca::load(&read("cluster-signing-cert-file")?, &read("cluster-signing-key-file")?)?;
            let mut st = state::State::load(&state_file);
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                if st.get("", "Namespace", "", ns).is_none() {
                    st.put(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}), ctx.now());
                }
            }
            st.save(&state_file);
            let holder = Arc::new(routes::Holder {
                ctx: ctx.clone(),
                state: Mutex::new(st),
                state_file,
                ca,
                version: ctx.version(),
            });
            Arc::new(move |req, peer| holder.handle(req, peer))
        }
    };
    eprintln!("standin-apiserver: serving on https://{addr}:{port}");
    net::serve(listener, Some(tls), handler);
    Ok(())
}

/// Forward a request to the state holder, with the caller's identity.
fn proxy(upstream: &str, tls: &Arc<rustls::ClientConfig>, req: Request, peer: &net::Peer) -> Response {
    let mut fwd = Request::new(&req.method, "");
    fwd.body = req.body;
    for (k, v) in &req.headers {
        let lower = k.to_ascii_lowercase();
        if ["content-type", "authorization", "accept"].contains(&lower.as_str()) {
            fwd.headers.push((k.clone(), v.clone()));
        }
    }
    if let Some((user, groups)) = peer.certs.first().and_then(|c| pki::identity(c)) {
        fwd.headers.push(("X-Remote-User".into(), user));
        fwd.headers.push(("X-Remote-Group".into(), groups.join(",")));
    }
    let url = format!("{upstream}{}", req.target);
    match net::request(&url, &net::Tls::Config(tls.clone()), fwd, std::time::Duration::from_secs(15)) {
        Ok(r) => r,
        Err(e) => routes::status(503, "ServiceUnavailable", &format!("etcdserver: request timed out (the stand-in's state holder is unreachable: {e})")),
    }
}
