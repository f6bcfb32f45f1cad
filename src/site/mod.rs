//! The site as the operator describes it: the inventory (`site.yaml`: cluster, SSH access, nodes, VIPs,
//! subnets, NFS, Redis, preflight thresholds), its parsing ([`inventory`]) and its semantic validation
//! ([`validate`]), every problem with its line.
//!
//! Imports: `error` and `yaml_lines` only. The deploy side (`install`) reads the inventory; what the
//! infrastructure templates need from it is `install::config::Site`.

pub mod inventory;
pub mod registry;
pub mod validate;
