//! The window's commands: each unpacks its arguments, calls the device engine once, and returns the
//! engine's view or its `ErrorView`. No decisions are made here, and no lock: the engine keeps its
//! own state so a check never waits behind a sync, a sign-in or another command.
use std::sync::Arc;

use cpis_device::views::{CheckView, ErrorView, StatusView, SyncProgress, SyncSummary};
use cpis_device::{CheckRequest, Device};
use tauri::{AppHandle, Emitter, State};
use uuid::Uuid;
use zeroize::Zeroize;

/// The event the UI's progress bar listens to.
pub const SYNC_PROGRESS_EVENT: &str = "sync-progress";

/// The engine, shared by the commands and the background sync.
pub struct AppState {
    pub device: Arc<Device>,
}

type CmdResult<T> = Result<T, ErrorView>;

/// Sends a progress update to every window; a closed window is not an error.
pub fn emit_progress(app: &AppHandle, progress: SyncProgress) {
    if let Err(e) = app.emit(SYNC_PROGRESS_EVENT, progress) {
        tracing::debug!(error = %e, "sync progress not delivered to the window");
    }
}

#[tauri::command]
pub async fn app_status(state: State<'_, AppState>) -> CmdResult<StatusView> {
    Ok(state.device.status())
}

#[tauri::command]
pub async fn enrol(
    state: State<'_, AppState>,
    central_url: String,
    code: String,
) -> CmdResult<StatusView> {
    state
        .device
        .enrol(&central_url, &code)
        .await
        .map_err(|e| e.view())
}

#[tauri::command]
pub async fn sign_in(
    state: State<'_, AppState>,
    user_id: String,
    mut pin: String,
) -> CmdResult<StatusView> {
    let result = state.device.sign_in(&user_id, &pin).await;
    // The PIN is wiped from this copy as soon as the engine has it.
    pin.zeroize();
    result.map_err(|e| e.view())
}

#[tauri::command]
pub async fn sign_out(state: State<'_, AppState>) -> CmdResult<()> {
    state.device.sign_out();
    Ok(())
}

#[tauri::command]
pub async fn check_patient(
    state: State<'_, AppState>,
    nhs_number: String,
    pregnant: bool,
    case_reference: Option<String>,
) -> CmdResult<CheckView> {
    let request = CheckRequest {
        open: false,
        pregnant,
        case_reference: case_reference.filter(|r| !r.trim().is_empty()),
        ..Default::default()
    };
    Ok(state.device.check(&nhs_number, request).await)
}

#[tauri::command]
pub async fn open_alert(state: State<'_, AppState>, check_id: Uuid) -> CmdResult<CheckView> {
    state
        .device
        .open_alert(check_id)
        .await
        .map_err(|e| e.view())
}

#[tauri::command]
pub async fn sync_now(app: AppHandle, state: State<'_, AppState>) -> CmdResult<SyncSummary> {
    let progress = move |p: SyncProgress| emit_progress(&app, p);
    state.device.sync(&progress).await.map_err(|e| e.view())
}
