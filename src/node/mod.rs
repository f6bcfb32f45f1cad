//! The NODE SIDE: what `airgap node ...` runs ON a node, as root, when `airgap install` asks it to over SSH
//! (see `cli::node` for the subcommands). Each module is one concept of a node's state:
//!
//! - [`files`]: files written atomically and only when different, managed blocks, streamed copies checked by
//!   sha256 (`check-file`, `write-file`, `receive`);
//! - [`system`]: hostname, swap, kernel modules, sysctl;
//! - [`packages`]: offline OS package installation from the bundle's packages (dpkg / rpm);
//! - [`components`]: the bundle's static binaries (containerd, runc, CNI plugins, crictl, kubeadm...);
//! - [`service`]: systemd services restarted only when their configuration changed;
//! - [`docker`]: docker's `daemon.json` pointed at the site registry;
//! - [`redis`] (over [`resp`]): the masters' Redis cluster (create, layout, sync, failover after a reboot);
//! - [`housekeeping`]: container log cleanup and cutting, keepalived's delayed start, systemd chores;
//! - [`checks`]: TCP / HTTP checks (keepalived's health checks, "the daemon answers");
//! - [`facts`]: what preflight needs to know about the node.
//!
//! Imports go one way: this module uses only `digest`, `fsutil` and `error`; the deploy side (`install`) uses
//! it (paths on the nodes, facts, component names), never the reverse. Nothing here knows about SSH,
//! inventories or bundles: the node gets every input on its command line, checked by sha256.

pub mod checks;
pub mod components;
pub mod docker;
pub mod facts;
pub mod files;
pub mod housekeeping;
pub mod packages;
pub mod redis;
pub mod resp;
pub mod service;
pub mod system;

use serde::Serialize;

/// Where airgap puts itself on every node: `install` copies this binary there, every node command and the
/// rendered units and keepalived scripts run it from there.
pub const BIN: &str = "/opt/airgap/bin/airgap";

/// Which OS family a node belongs to: decides package format, paths and service user names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OsFamily {
    Debian,
    Rhel,
}
