//! The device facade the app and the CLI drive: enrol, sign in, check, open an alert, sync, status.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::views::*;

#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub data_dir: PathBuf,
    /// How long a live check may take before the cache answers alone.
    pub live_check_deadline: Duration,
    /// Past this data age a result is marked stale.
    pub stale_after: Duration,
}

impl DeviceConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            live_check_deadline: Duration::from_millis(1500),
            stale_after: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CheckRequest {
    /// Open the alert at once (queues the notification where the user and setting notify).
    pub open: bool,
    /// Checking a pregnant woman on her own number (unborn child plan).
    pub pregnant: bool,
    pub case_reference: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0}")]
    Other(String),
}

impl DeviceError {
    pub fn view(&self) -> ErrorView {
        ErrorView {
            code: "internal".into(),
            message: self.to_string(),
            attempts_left: None,
            retry_after_secs: None,
        }
    }
}

pub struct Device {
    _config: DeviceConfig,
}

impl Device {
    pub fn open(config: DeviceConfig) -> Result<Self, DeviceError> {
        Ok(Self { _config: config })
    }
    pub async fn enrol(&mut self, _central_url: &str, _code: &str) -> Result<StatusView, DeviceError> {
        todo!()
    }
    pub async fn sign_in(&mut self, _user_id: &str, _pin: &str) -> Result<StatusView, DeviceError> {
        todo!()
    }
    pub fn sign_out(&mut self) {}
    pub async fn check(&mut self, _nhs_input: &str, _request: CheckRequest) -> CheckView {
        todo!()
    }
    pub async fn open_alert(&mut self, _check_id: Uuid) -> Result<CheckView, DeviceError> {
        todo!()
    }
    pub async fn sync(
        &mut self,
        _progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncSummary, DeviceError> {
        todo!()
    }
    pub async fn status(&mut self) -> StatusView {
        todo!()
    }
}

/// Keeps the outbox draining and the cache fresh without waiting for a user action: at start, on a
/// timer with backoff, and when the central becomes reachable again.
pub fn spawn_background_sync(
    _device: Arc<tokio::sync::Mutex<Device>>,
    _on_progress: Arc<dyn Fn(SyncProgress) + Send + Sync>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {})
}
