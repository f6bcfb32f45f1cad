//! Shared test harness code.

pub mod lab;

/// The airgap binary built for these tests.
pub fn airgap() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_airgap"))
}

/// The repository root.
pub fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
