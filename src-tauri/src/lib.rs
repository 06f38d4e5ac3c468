//! CP-IS Field app shell: opens the device engine, registers the window's commands, and keeps the
//! background sync running. Business rules live in `cpis-device`; this crate only connects them.
mod commands;
pub mod managed;

use std::path::PathBuf;
use std::sync::Arc;

use cpis_device::{Device, DeviceConfig};
use tauri::Manager;

pub use commands::{AppState, ManagedState, SYNC_PROGRESS_EVENT};

/// Where the encrypted device store lives: `CPIS_DEVICE_DIR` when set (tests, kiosks), otherwise
/// the platform's per-user data directory for this app.
fn data_dir(app: &tauri::App) -> Result<PathBuf, Box<dyn std::error::Error>> {
    if let Some(dir) = std::env::var_os("CPIS_DEVICE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(app.path().app_data_dir()?)
}

/// Reads the organisation's managed configuration. A bad file is reported (naming it, never quoting
/// it) and the app starts as an unmanaged device; the enrol screen shows the problem.
fn read_managed_config() -> ManagedState {
    let path = managed::config_path(std::env::var_os(managed::PATH_ENV));
    let config = managed::parse_managed_config(&path, std::fs::read_to_string(&path));
    match &config {
        Ok(Some(c)) => tracing::info!(
            path = %path.display(),
            enrolment_code = c.has_enrolment_code(),
            "managed configuration read: the central address is set by the organisation"
        ),
        Ok(None) => tracing::debug!(path = %path.display(), "no managed configuration"),
        Err(e) => tracing::warn!(error = %e, "managed configuration not used"),
    }
    ManagedState {
        path,
        config,
        code_tried: std::sync::atomic::AtomicBool::new(false),
    }
}

/// The FHIR door: the national CP-IS API's CareTeam and AuditEvent reads on 127.0.0.1 (port in the
/// data directory's settings, per-install 0600 token), so clinical software on this device can ask
/// the signed-in engine, offline too. A door that cannot open is logged; the app runs on without it.
fn open_fhir_door(device: Arc<Device>, dir: PathBuf) {
    use cpis_device::fhir_door;
    tauri::async_runtime::spawn(async move {
        let opened = async {
            let settings = fhir_door::load_settings(&dir)?;
            let token = fhir_door::door_token(&dir)?;
            fhir_door::serve(device, &token, settings.port).await
        }
        .await;
        match opened {
            Ok(door) => {
                tracing::info!(url = %door.base_url(), "FHIR door open on this device");
                // Open for as long as the app runs.
                std::future::pending::<()>().await;
                door.shutdown().await;
            }
            Err(e) => tracing::warn!(error = %e, "the FHIR door did not open"),
        }
    });
}

pub fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    tauri::Builder::default()
        .setup(|app| {
            let dir = data_dir(app)?;
            // 0700 from the start: the device secret and store go in it.
            cpis_core::store::create_private_dir(&dir)?;
            tracing::info!(dir = %dir.display(), "opening the device store");
            let device = Arc::new(Device::open(DeviceConfig::new(dir.clone()))?);
            open_fhir_door(device.clone(), dir);
            app.manage(AppState {
                device: device.clone(),
            });
            app.manage(read_managed_config());
            let handle = app.handle().clone();
            let on_progress = Arc::new(move |p| commands::emit_progress(&handle, p));
            // The engine's loop uses tokio::spawn, so it must start inside Tauri's runtime.
            tauri::async_runtime::spawn(async move {
                let task = cpis_device::spawn_background_sync(device, on_progress);
                if let Err(e) = task.await {
                    tracing::error!(error = %e, "background sync stopped");
                }
            });
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::app_status,
            commands::enrol,
            commands::managed_enrolment,
            commands::enrol_managed,
            commands::sign_in,
            commands::sign_out,
            commands::check_patient,
            commands::open_alert,
            commands::search_patient,
            commands::choose_candidate,
            commands::none_of_these,
            commands::sync_now,
            commands::keep_alive,
            commands::emergency_numbers,
        ])
        .run(tauri::generate_context!("../tauri.conf.json"))
        .expect("the CP-IS Field window could not start");
}
