//! Shared test harness code.

pub mod bundle;
