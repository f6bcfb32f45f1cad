//! The deploy side of a node's facts: run `airgap node facts --json` on the node (see `node::facts` for what is
//! gathered there) and measure the node's clock against this machine's.

use crate::install::ssh::{Stdin, Transport};
use crate::node::facts::Facts;
use anyhow::{Context, Result};

/// Facts of one node and the clock offset against this machine (ms, node minus local midpoint).
pub fn fetch(t: &dyn Transport) -> Result<(Facts, i64)> {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    };
    let t0 = now();
    let out = t.run(&crate::install::node_cmd(&["facts", "--json"]), Stdin::Null)?;
    let t1 = now();
    if !out.success() {
        anyhow::bail!("failed to gather facts on {}: {}", t.node(), out.reason());
    }
    let f: Facts = serde_json::from_slice(&out.stdout).with_context(|| format!("malformed facts from {}", t.node()))?;
    // the facts are taken right after the process starts: most of the round trip is before it
    let offset = f.time_ms - (t0 + (t1 - t0) / 2);
    Ok((f, offset))
}

