//! The deploy side of a node's facts: run `airgap node facts --json` on the node (see `node::facts` for what is
//! gathered there), measure the node's clock against this machine's, and sum up what the steps need to know
//! about a node ([`Target`]).

use crate::install::ssh::{Stdin, Transport};
use crate::node::facts::Facts;
use anyhow::{Context, Result};
use std::net::Ipv4Addr;

/// What a node is, from its facts: which of the bundle's files it takes (OS, platform) and where its VIPs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub family: crate::node::OsFamily,
    /// Its OS tags, most specific first (`debian-12.5`, `debian-12`...).
    pub os_tags: Vec<String>,
    /// `linux/amd64`...
    pub platform: String,
    /// The interface that holds the node's inventory address (`None`: the address is on none of them).
    pub interface: Option<String>,
}

impl Target {
    /// The target of the node whose inventory address is `address`.
    pub fn from_facts(f: &Facts, address: Ipv4Addr) -> Target {
        let (family, os_tags) = crate::node::packages::os_tags_for(&f.os_id, &f.os_like, &f.os_version);
        Target {
            family,
            os_tags,
            platform: crate::install::kit::platform_of_machine(&f.arch),
            interface: f.interface_holding(address).map(String::from),
        }
    }
}

/// The `airgap node facts` command line, asking about the file systems of `disks` (`PATH=LISTED`, see
/// `node::facts::disk`).
pub fn facts_cmd(disks: &[String]) -> Vec<String> {
    let mut argv = crate::install::node_cmd(&["facts", "--json"]);
    for d in disks {
        argv.extend(["--disk".to_string(), d.clone()]);
    }
    argv
}

/// Facts of one node (with the file systems of `disks`) and the clock offset against this machine (ms,
/// node minus local midpoint).
pub fn fetch(t: &dyn Transport, disks: &[String]) -> Result<(Facts, i64)> {
    fetch_with(t, &facts_cmd(disks))
}

/// [`fetch`] with a `facts` command line of the caller's (e.g. [`facts_cmd`] + `--block PATH`).
pub fn fetch_with(t: &dyn Transport, argv: &[String]) -> Result<(Facts, i64)> {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    };
    let t0 = now();
    let out = t.run(argv, Stdin::Null)?;
    let t1 = now();
    if !out.success() {
        anyhow::bail!("failed to gather facts on {}: {}", t.node(), out.reason());
    }
    let f: Facts = serde_json::from_slice(&out.stdout).with_context(|| format!("malformed facts from {}", t.node()))?;
    // the facts are taken right after the process starts: most of the round trip is before it
    let offset = f.time_ms - (t0 + (t1 - t0) / 2);
    Ok((f, offset))
}

