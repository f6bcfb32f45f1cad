//! The one integration test binary: real daemons and stock tools, started by the harness in `support`.

mod support;

mod build;
mod bundle;
mod defaults;
mod delta;
mod fault;
mod harness;
mod hostile;
mod infra;
mod inventory;
mod lab;
mod layout;
mod manifest;
mod packages;
mod plan;
mod registry;
mod ssh;
mod standins;
mod token;
