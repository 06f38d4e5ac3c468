//! Shared helpers for the end-to-end, fault and kill tests: a fault-injecting HTTP proxy that sits
//! between a device and the central on loopback, and small utilities for temporary directories and
//! the `cpis` binary.

pub mod proxy;

use std::path::PathBuf;

/// The `cpis` binary built for this test run (cargo builds workspace binaries before integration tests
/// only for their own package, so build it on first use).
pub fn cpis_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug").join("cpis");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "cpis-cli"])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the cpis binary failed");
    });
    bin
}
