//! The one integration test binary: `cargo test --test it [module::]`.

mod support;

mod inventory;
mod lab;
mod plan;
