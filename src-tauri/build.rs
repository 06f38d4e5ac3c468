//! Build script: makes sure the screens are built, generates the ACL for exactly the app's commands,
//! and reads the product's configuration from tauri.conf.json at the repository root.
use std::path::Path;
use std::process::Command;

/// The only commands the window may call. Keep in step with `commands.rs` and the capability file.
const COMMANDS: &[&str] = &[
    "app_status",
    "enrol",
    "managed_enrolment",
    "enrol_managed",
    "sign_in",
    "sign_out",
    "check_patient",
    "open_alert",
    "search_patient",
    "choose_candidate",
    "none_of_these",
    "sync_now",
    "keep_alive",
    "emergency_numbers",
];

fn run(cmd: &mut Command) -> bool {
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

/// The window's assets are embedded at compile time, so a build from a fresh clone (e.g. a
/// workspace-wide clippy) builds the UI first rather than failing.
fn ensure_ui_built() {
    if Path::new("../ui/dist/index.html").exists() {
        return;
    }
    println!("cargo:warning=ui/dist is missing: building the screens (npm --prefix ui ci && npm --prefix ui run build)");
    let installed = Path::new("../ui/node_modules/nhsuk-frontend").exists()
        || run(Command::new("npm").args([
            "--prefix",
            "../ui",
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]));
    if !installed || !run(Command::new("node").arg("../ui/build.mjs")) {
        panic!(
            "ui/dist is missing and could not be built here: run \
             `npm --prefix ui ci && npm --prefix ui run build` from the repository root"
        );
    }
}

fn main() {
    println!("cargo:rerun-if-changed=../ui/dist");
    ensure_ui_built();
    let attributes = tauri_build::Attributes::new()
        .config_path("../tauri.conf.json")
        .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    tauri_build::try_build(attributes).expect("tauri build step failed");
}
