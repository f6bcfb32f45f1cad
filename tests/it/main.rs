//! The one integration test binary: real daemons and stock tools, started by the harness in `support`.

mod support;

mod build;
mod certs;
mod closure;
mod containerd_config;
mod bundle;
mod defaults;
mod delta;
mod external;
mod fault;
mod harness;
mod hostile;
mod infra;
mod inventory;
mod kube;
mod lab;
mod layout;
mod manifest;
mod nfs;
mod packages;
mod plan;
mod push;
mod redis;
mod registry;
mod scripts;
mod shared_lab;
mod ssh;
mod standins;
mod token;
