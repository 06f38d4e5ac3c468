//! The device's FHIR door: the national CP-IS API's CareTeam and AuditEvent searches served on the
//! loopback interface only, so an electronic patient record on the same tablet asks this device
//! exactly as it asks the national service, and gets an answer offline. It owns the door's settings
//! (the port, `fhir-door.json` in the data directory), its per-install bearer token (`fhir-door.token`,
//! 0600, readable only by the device's OS user) and the HTTP server. Answers come from the engine's
//! own check and open-alert use case, so the visibility rules, the local audit record and the queued
//! access event are the app's: an unscheduled CareTeam read is the opening of the alert.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use cpis_core::crypto::hazmat;
use cpis_core::fhir::{
    self, BundleFrame, FhirError, RawHeaders, SearchResource, Subject, TeamLa, TeamPlan,
};
use cpis_core::plan::PlanKind;
use cpis_core::wire::AccessHistoryEntry;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::views::{CheckOutcome, CheckView, NotificationState, Source};
use crate::{CheckRequest, Device};

/// The door's port when the settings name none.
pub const DEFAULT_PORT: u16 = 8760;
pub const SETTINGS_FILE: &str = "fhir-door.json";
pub const TOKEN_FILE: &str = "fhir-door.token";

#[derive(Debug, thiserror::Error)]
pub enum DoorError {
    #[error("the FHIR door's {what} at {path} cannot be used: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the FHIR door could not listen on 127.0.0.1:{port}: {reason}")]
    Listen { port: u16, reason: String },
}

/// The door's settings, kept in the device's data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoorSettings {
    pub port: u16,
}

impl Default for DoorSettings {
    fn default() -> Self {
        Self { port: DEFAULT_PORT }
    }
}

fn file_error(what: &'static str, path: &Path, reason: impl ToString) -> DoorError {
    DoorError::File {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

pub fn load_settings(data_dir: &Path) -> Result<DoorSettings, DoorError> {
    let path = data_dir.join(SETTINGS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| file_error("settings", &path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DoorSettings::default()),
        Err(e) => Err(file_error("settings", &path, e)),
    }
}

pub fn save_settings(data_dir: &Path, settings: &DoorSettings) -> Result<(), DoorError> {
    let path = data_dir.join(SETTINGS_FILE);
    let text = serde_json::to_string_pretty(settings).expect("settings serialise");
    std::fs::write(&path, text).map_err(|e| file_error("settings", &path, e))
}

/// The per-install token: read, or made on first use in a file only the device's OS user can read.
/// A token file others can read is refused (it would let any local user read the flags).
pub fn door_token(data_dir: &Path) -> Result<String, DoorError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::metadata(&path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(file_error(
                    "token file",
                    &path,
                    "other users can read it; it must be 0600 (delete it to have a new one made)",
                ));
            }
            let token =
                std::fs::read_to_string(&path).map_err(|e| file_error("token file", &path, e))?;
            let token = token.trim().to_string();
            if token.len() < 32 {
                return Err(file_error("token file", &path, "it holds no token"));
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                hazmat::random_bytes::<32>().as_ref(),
            );
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| file_error("token file", &path, e))?;
            file.write_all(token.as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(|e| file_error("token file", &path, e))?;
            Ok(token)
        }
        Err(e) => Err(file_error("token file", &path, e)),
    }
}

/// How long a TraceID is remembered: a client retrying within it is not a second look.
const RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Clone)]
struct DoorState {
    device: Arc<Device>,
    /// SHA-256 of the token: compared by hash so the comparison's timing says nothing of the token.
    token_hash: [u8; 32],
    /// Unscheduled reads already taken as accesses, by hash of TraceID and NHS number, with when:
    /// a retried request (same TraceID) opens the record again without queueing a second access.
    accesses: Arc<std::sync::Mutex<HashMap<[u8; 32], std::time::Instant>>>,
}

fn access_key(trace_id: &str, nhs: &cpis_core::NhsNumber) -> [u8; 32] {
    hazmat::sha256(format!("{trace_id}\n{}", nhs.as_digits()).as_bytes())
}

impl DoorState {
    /// Claims this TraceID's read of this person as the access: false when it was already taken
    /// (within the retry window), or is being taken by a copy of the same request right now.
    fn claim_access(&self, key: [u8; 32]) -> bool {
        let now = std::time::Instant::now();
        let mut seen = self.accesses.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, at| now.duration_since(*at) < RETRY_WINDOW);
        seen.insert(key, now).is_none()
    }

    /// Gives a claim back when no access was recorded (a locked copy), so a retry still records it.
    fn release_access(&self, key: &[u8; 32]) {
        self.accesses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// A door serving in this process.
pub struct RunningDoor {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningDoor {
    /// The FHIR base, e.g. `http://127.0.0.1:8760/fhir/R4`.
    pub fn base_url(&self) -> String {
        format!("http://{}/fhir/R4", self.addr)
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

/// Serves the door on `127.0.0.1:port` (0 picks a free port) over a signed-in engine. Only the
/// loopback address: the door is for software on this device, never the network.
pub async fn serve(device: Arc<Device>, token: &str, port: u16) -> Result<RunningDoor, DoorError> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|e| DoorError::Listen {
            port,
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| DoorError::Listen {
        port,
        reason: e.to_string(),
    })?;
    let app = router(DoorState {
        device,
        token_hash: hazmat::sha256(token.as_bytes()),
        accesses: Arc::default(),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, "FHIR door serving");
    Ok(RunningDoor { addr, stop, server })
}

fn router(state: DoorState) -> Router {
    let fhir_routes = Router::new()
        .route("/metadata", get(metadata))
        .route("/CareTeam", get(care_team))
        .route("/AuditEvent", get(audit_event))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    Router::new()
        .nest("/fhir/R4", fhir_routes)
        .fallback(not_found)
}

fn raw_headers(h: &HeaderMap) -> RawHeaders {
    RawHeaders::read(|name| {
        h.get(name)
            .map(|v| v.to_str().map(str::to_string).map_err(|_| ()))
    })
}

fn respond(status: StatusCode, body: &Value, request: &HeaderMap) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fhir::FHIR_JSON),
    );
    for name in [fhir::HEADER_TRACE_ID, fhir::HEADER_REQUEST_ID] {
        if let Some(v) = request.get(name) {
            headers.insert(HeaderName::from_static(name), v.clone());
        }
    }
    response
}

fn refusal(error: &FhirError, request: &HeaderMap) -> Response {
    tracing::warn!(status = error.status, code = error.spine_code.unwrap_or(error.issue_code), reason = %error.diagnostics, "FHIR door request refused");
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    respond(status, &fhir::operation_outcome(error), request)
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}/fhir/R4")
}

async fn metadata(headers: HeaderMap) -> Response {
    let description = fhir::ServerDescription {
        base_url: base_url(&headers),
        software: "CP-IS Field device",
        version: env!("CARGO_PKG_VERSION"),
        description: "CP-IS Field device: this device's copy of its region's flags, answered offline; plans as CareTeam, access history (online only) as AuditEvent.".into(),
        who_looked: fhir::WHO_LOOKED_DEVICE,
    };
    respond(
        StatusCode::OK,
        &fhir::capability_statement(&description, Utc::now()),
        &headers,
    )
}

type QueryResult = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

async fn care_team(
    State(s): State<DoorState>,
    headers: HeaderMap,
    uri: Uri,
    query: QueryResult,
) -> Response {
    search(s, SearchResource::CareTeam, headers, uri, query).await
}

async fn audit_event(
    State(s): State<DoorState>,
    headers: HeaderMap,
    uri: Uri,
    query: QueryResult,
) -> Response {
    search(s, SearchResource::AuditEvent, headers, uri, query).await
}

async fn search(
    s: DoorState,
    resource: SearchResource,
    headers: HeaderMap,
    uri: Uri,
    query: QueryResult,
) -> Response {
    let result = async {
        let token = fhir::bearer_token(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )?;
        if hazmat::sha256(token.as_bytes()) != s.token_hash {
            return Err(FhirError::unauthenticated(
                "the bearer token is not this device's FHIR door token",
            ));
        }
        let checked = fhir::parse_headers(&raw_headers(&headers))?;
        let Query(params) = query.map_err(|_| {
            FhirError::invalid_search("the query string is not valid URL-encoded parameters")
        })?;
        let q = fhir::parse_search(resource, &params)?;
        // Both searches open the record to read its details; only an unscheduled CareTeam read is
        // the access that notifies (the AuditEvent search reads the history, it is not a new look).
        // The access is claimed before the read, so two copies of one retried request cannot both
        // be first, and no lock is held while the engine may wait on the central.
        let key = access_key(&checked.trace_id, &q.nhs);
        let wants_access = resource == SearchResource::CareTeam && checked.unscheduled;
        let claimed = wants_access && s.claim_access(key);
        let request = CheckRequest {
            open: true,
            scheduled: !claimed,
            ..Default::default()
        };
        let view = s.device.check(&q.nhs.as_digits(), request).await;
        if claimed && view.event_id.is_none() {
            s.release_access(&key);
        }
        let base = base_url(&headers);
        let mut frame = BundleFrame {
            self_url: format!(
                "{base}/{}{}",
                resource.name(),
                uri.query().map(|q| format!("?{q}")).unwrap_or_default()
            ),
            base_url: base,
            last_updated: view.data_as_of,
            warnings: vec![],
        };
        let (matches, includes) = answer(resource, &q, &view, &mut frame)?;
        Ok(fhir::searchset(&frame, matches, includes))
    }
    .await;
    match result {
        Ok(bundle) => respond(StatusCode::OK, &bundle, &headers),
        Err(e) => refusal(&e, &headers),
    }
}

/// The resources of a check's view, and the warnings the bundle carries about where they came from.
pub fn answer(
    resource: SearchResource,
    q: &fhir::SearchQuery,
    view: &CheckView,
    frame: &mut BundleFrame,
) -> Result<(Vec<Value>, Vec<Value>), FhirError> {
    match view.outcome {
        CheckOutcome::Locked => {
            return Err(FhirError::unavailable(format!(
                "{} {}",
                view.reason
                    .as_deref()
                    .unwrap_or("this device's copy cannot be opened."),
                crate::check::LOCKED_ADVICE
            )))
        }
        CheckOutcome::InvalidNhsNumber => {
            return Err(FhirError::invalid_search(
                view.reason
                    .clone()
                    .unwrap_or_else(|| "invalid NHS number".into()),
            ))
        }
        CheckOutcome::NoRecord | CheckOutcome::RecordFound => {}
    }
    if view.source == Source::Cache {
        frame.warnings.push(match view.data_as_of {
            Some(at) => format!(
                "Answered from this device's offline copy, last updated {}: changes since then are not shown.{}",
                at.format("%d %b %Y at %H:%M UTC"),
                if view.stale { " The copy is more than a day old (stale)." } else { "" }
            ),
            None => "Answered from this device's offline copy, which has not finished a download from the central service: most records may be missing.".into(),
        });
    }
    if view.outcome == CheckOutcome::NoRecord {
        // What a miss could not see, so a miss never discourages a referral.
        frame.warnings.extend(view.caveats.iter().cloned());
        return Ok((vec![], vec![]));
    }
    if !view.opened {
        return Err(FhirError::unavailable(
            "the record exists but could not be opened on this device; check again",
        ));
    }
    match resource {
        SearchResource::CareTeam => {
            let person = view.person.as_ref().ok_or_else(FhirError::internal)?;
            let subject = Subject::new(q.nhs, &person.given_names, &person.family_name);
            let la = view.local_authority.as_ref().map(|la| TeamLa {
                ods: la.ods.clone(),
                name: la.name.clone(),
                emergency_phone: la.emergency_phone.clone(),
                office_phone: la.office_phone.clone(),
            });
            let mut teams = Vec::new();
            for p in &view.plans {
                let kind = PlanKind::from_code(&p.kind).map_err(|_| FhirError::internal())?;
                let plan = TeamPlan {
                    kind,
                    start: p.start,
                    end: p.end,
                    current: p.status == "current",
                };
                teams.push(fhir::care_team(&subject, &plan, la.as_ref()));
            }
            if view.notification == Some(NotificationState::Queued) {
                frame.warnings.push("This access was recorded on this device and will reach the local authority when it reconnects.".into());
            }
            Ok((teams, vec![]))
        }
        SearchResource::AuditEvent => {
            if view.source == Source::Cache {
                frame.warnings.push("Access history is held by the central service and cannot be shown while this device is offline.".into());
                return Ok((vec![], vec![]));
            }
            Ok(audit_resources(q, &view.access_history))
        }
    }
}

fn audit_resources(
    q: &fhir::SearchQuery,
    history: &[AccessHistoryEntry],
) -> (Vec<Value>, Vec<Value>) {
    let mut events = Vec::new();
    let mut roles: Vec<Value> = Vec::new();
    for entry in history.iter().take(fhir::ACCESS_HISTORY_MAX) {
        let (event, role) = fhir::audit_event(&q.nhs, entry);
        events.push(event);
        if q.include_roles && !roles.iter().any(|r| r["id"] == role["id"]) {
            roles.push(role);
        }
    }
    (events, roles)
}

async fn not_found(headers: HeaderMap) -> Response {
    refusal(
        &FhirError::not_found(
            "not supported: this door answers GET /fhir/R4/metadata, CareTeam and AuditEvent searches",
        ),
        &headers,
    )
}

async fn method_not_allowed(headers: HeaderMap) -> Response {
    refusal(&FhirError::method_not_allowed(), &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_is_made_0600_once_and_a_readable_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let token = door_token(dir.path()).unwrap();
        let path = dir.path().join(TOKEN_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            door_token(dir.path()).unwrap(),
            token,
            "the same token on the next start"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = door_token(dir.path()).unwrap_err().to_string();
        assert!(e.contains("0600"), "{e}");
    }

    #[test]
    fn settings_default_to_the_standard_port_and_keep_a_chosen_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_settings(dir.path()).unwrap().port, DEFAULT_PORT);
        save_settings(dir.path(), &DoorSettings { port: 18_761 }).unwrap();
        assert_eq!(load_settings(dir.path()).unwrap().port, 18_761);
    }
}
