//! The window's commands: each unpacks its arguments, calls the device engine once, and returns the
//! engine's view or its `ErrorView`. No decisions are made here, and no lock: the engine keeps its
//! own state so a check never waits behind a sync, a sign-in or another command.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cpis_device::views::{
    CheckView, EmergencyNumbersView, ErrorView, SearchView, StatusView, SyncProgress, SyncSummary,
};
use cpis_device::{CheckRequest, Device, SearchInput};
use tauri::{AppHandle, Emitter, State};
use uuid::Uuid;
use zeroize::Zeroize;

use crate::managed::{self, ManagedConfig, ManagedConfigError, ManagedEnrolmentView};

/// The event the UI's progress bar listens to.
pub const SYNC_PROGRESS_EVENT: &str = "sync-progress";

/// The engine, shared by the commands and the background sync.
pub struct AppState {
    pub device: Arc<Device>,
}

/// The organisation's settings for enrolment, read once at start.
pub struct ManagedState {
    pub path: PathBuf,
    pub config: Result<Option<ManagedConfig>, ManagedConfigError>,
    /// The file's enrolment code has been sent since the app started (it works only once).
    pub code_tried: AtomicBool,
}

type CmdResult<T> = Result<T, ErrorView>;

fn invalid_input(e: managed::ManagedEnrolError) -> ErrorView {
    ErrorView {
        code: "invalid_input".into(),
        message: e.to_string(),
        attempts_left: None,
        retry_after_secs: None,
    }
}

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
    managed: State<'_, ManagedState>,
    central_url: String,
    code: String,
) -> CmdResult<StatusView> {
    managed::typed_address_allowed(managed.config.as_ref().ok().and_then(Option::as_ref))
        .map_err(invalid_input)?;
    state
        .device
        .enrol(&central_url, &code)
        .await
        .map_err(|e| e.view())
}

/// What the enrol screen shows: the organisation's central address, whether the app enrols by
/// itself, or why the managed configuration file could not be used. Never the code.
#[tauri::command]
pub async fn managed_enrolment(
    state: State<'_, AppState>,
    managed: State<'_, ManagedState>,
) -> CmdResult<ManagedEnrolmentView> {
    Ok(managed::enrolment_view(
        &managed.path,
        &managed.config,
        state.device.status().enrolled,
        managed.code_tried.load(Ordering::SeqCst),
    ))
}

/// Enrols with the central address set by the organisation: with the code typed, or (no code
/// given) with the file's own code, once per start.
#[tauri::command]
pub async fn enrol_managed(
    state: State<'_, AppState>,
    managed: State<'_, ManagedState>,
    code: Option<String>,
) -> CmdResult<StatusView> {
    let config = managed.config.as_ref().ok().and_then(Option::as_ref);
    let by_itself = code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .is_none();
    let tried = if by_itself {
        managed.code_tried.swap(true, Ordering::SeqCst)
    } else {
        managed.code_tried.load(Ordering::SeqCst)
    };
    let (central_url, code) =
        managed::enrolment_request(config, code.as_deref(), tried).map_err(invalid_input)?;
    let result = state.device.enrol(&central_url, &code).await;
    match &result {
        Ok(_) => tracing::info!(
            by_itself,
            "enrolled with the central address set by the organisation"
        ),
        // The error's code only: its message may carry the address from the file.
        Err(e) => tracing::warn!(
            by_itself,
            error = %e.view().code,
            "enrolment with the central address set by the organisation failed"
        ),
    }
    result.map_err(|e| e.view())
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

/// The clinician is still there: restarts the engine's idle limit (the screen calls this on use
/// and from its "Stay signed in" warning).
#[tauri::command]
pub async fn keep_alive(state: State<'_, AppState>) -> CmdResult<()> {
    state.device.keep_alive().map_err(|e| e.view())
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

/// Search by name and date of birth: the fields as typed, validated by the engine (an error
/// names the field). Optional fields arrive empty or absent.
#[tauri::command]
#[allow(clippy::too_many_arguments)]
pub async fn search_patient(
    state: State<'_, AppState>,
    family_name: String,
    date_of_birth: String,
    given_name: Option<String>,
    sex: Option<String>,
    postcode_district: Option<String>,
    case_reference: Option<String>,
) -> CmdResult<SearchView> {
    let present = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
    let input = SearchInput {
        family_name,
        date_of_birth,
        given_name: present(given_name),
        sex: present(sex),
        postcode_district: present(postcode_district),
        case_reference: present(case_reference),
        cache_only: false,
    };
    state.device.search(&input).await.map_err(|e| e.view())
}

/// The clinician confirms possible match `candidate` (1-based): that person's check.
#[tauri::command]
pub async fn choose_candidate(
    state: State<'_, AppState>,
    search_id: Uuid,
    candidate: usize,
) -> CmdResult<CheckView> {
    state
        .device
        .choose_candidate(search_id, candidate)
        .map_err(|e| e.view())
}

/// "None of these": the no-match answer, recorded in the audit.
#[tauri::command]
pub async fn none_of_these(state: State<'_, AppState>, search_id: Uuid) -> CmdResult<SearchView> {
    state.device.none_of_these(search_id).map_err(|e| e.view())
}

/// The region's LAs and their emergency duty numbers: shown on the locked screens, so no sign-in.
#[tauri::command]
pub async fn emergency_numbers(state: State<'_, AppState>) -> CmdResult<EmergencyNumbersView> {
    state.device.emergency_numbers().map_err(|e| e.view())
}

#[tauri::command]
pub async fn sync_now(app: AppHandle, state: State<'_, AppState>) -> CmdResult<SyncSummary> {
    let progress = move |p: SyncProgress| emit_progress(&app, p);
    state.device.sync(&progress).await.map_err(|e| e.view())
}
