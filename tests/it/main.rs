//! The one integration test binary: real daemons and stock tools, started by the harness in `support`.

mod support;
mod harness;
mod registry;
mod bundle;
mod manifest;
mod build;
mod infra;
