//! A client of the stand-in apiserver, configured the way client-go configures itself from a kubeconfig:
//! the server's certificate verified against the embedded CA, a client certificate or a bearer token.

use crate::common::R;
use crate::net::{self, Request, Tls};
use crate::pki::{self, Auth, KubeConfig};
use serde_json::Value;
use std::time::Duration;

pub struct Client {
    pub server: String,
    tls: Tls,
    bearer: Option<String>,
    pub timeout: Duration,
}

/// An HTTP answer: status and JSON body (`Null` when not JSON).
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The apiserver's `Status.message`, or the status code.
    pub fn message(&self) -> String {
        self.body.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("the server responded with status {}", self.status))
    }

    pub fn reason(&self) -> &str {
        self.body.get("reason").and_then(Value::as_str).unwrap_or("")
    }
}

impl Client {
    pub fn new(server: &str, ca_pem: Option<&str>, auth: &Auth) -> R<Client> {
        let identity = match auth {
            Auth::Cert(c, k) => Some((c.as_str(), k.as_str())),
            _ => None,
        };
        let tls = if server.starts_with("https://") { Tls::Config(pki::client_tls(ca_pem, identity)?) } else { Tls::Plain };
        let bearer = match auth {
            Auth::Token(t) => Some(t.clone()),
            _ => None,
        };
        Ok(Client { server: server.trim_end_matches('/').to_string(), tls, bearer, timeout: Duration::from_secs(10) })
    }

    pub fn from_kubeconfig(kc: &KubeConfig) -> R<Client> {
        if kc.ca_pem.is_none() && kc.server.starts_with("https://") {
            // client-go would use the system roots, which never hold the cluster CA
            return Client::new(&kc.server, Some(""), &kc.auth).or_else(|_| Client::new(&kc.server, None, &kc.auth));
        }
        Client::new(&kc.server, kc.ca_pem.as_deref(), &kc.auth)
    }

    /// One call; a transport failure is `Err` with Go's wording.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Answer, String> {
        let mut req = Request::new(method, path).header("Accept", "application/json").header("User-Agent", "k8s-standin");
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = &self.bearer {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let url = format!("{}{}", self.server, path);
        let resp = net::request(&url, &self.tls, Request { target: String::new(), ..req }, self.timeout)?;
        let body = resp.value();
        Ok(Answer { status: resp.status, body })
    }

    pub fn get(&self, path: &str) -> Result<Answer, String> {
        self.call("GET", path, None)
    }
}
