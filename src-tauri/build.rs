//! Build script: generates the ACL for exactly the app's commands and reads the product's
//! configuration from tauri.conf.json at the repository root.
use std::path::Path;

/// The only commands the window may call. Keep in step with `commands.rs` and the capability file.
const COMMANDS: &[&str] = &[
    "app_status",
    "enrol",
    "sign_in",
    "sign_out",
    "check_patient",
    "open_alert",
    "sync_now",
];

fn main() {
    let dist = Path::new("../ui/dist/index.html");
    println!("cargo:rerun-if-changed=../ui/dist");
    if !dist.exists() {
        // The window's assets are embedded at compile time, so the UI must be built first.
        panic!(
            "ui/dist is missing: build the screens first with \
             `npm --prefix ui ci && npm --prefix ui run build` (run from the repository root)"
        );
    }
    let attributes = tauri_build::Attributes::new()
        .config_path("../tauri.conf.json")
        .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    tauri_build::try_build(attributes).expect("tauri build step failed");
}
