//! The device facade the app and the CLI drive: enrol, sign in, check, open an alert, sync, status.
//! It owns the signed-in session (the unlocked cache keys), the central client and recent checks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use cpis_core::access::Accessor;
use cpis_core::plan::VisibilityRules;
use cpis_core::store::{AuditEntry, CacheKeys, DeviceStore, Enrolment, StoreError, VaultError};
use cpis_core::wire::{LiveCheckRequest, LiveCheckResponse, LiveOutcome, UserProfile};
use cpis_core::{NhsNumber, Region};

use crate::check::{self, ResultContext};
use crate::client::{CentralClient, ClientError};
use crate::sync::{self, SyncError};
use crate::views::*;

#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub data_dir: PathBuf,
    /// How long a live check may take before the cache answers alone.
    pub live_check_deadline: Duration,
    /// Past this data age a result is marked stale.
    pub stale_after: Duration,
    pub visibility: VisibilityRules,
    /// Operations per feed page asked of the central.
    pub page_limit: u32,
    /// Bounds each request to the central (sync pages, event batches).
    pub request_timeout: Duration,
    /// Added to the system clock: lets tests run the device with its clock fast or slow.
    pub clock_offset: chrono::Duration,
}

impl DeviceConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            live_check_deadline: Duration::from_millis(1500),
            stale_after: Duration::from_secs(24 * 3600),
            visibility: VisibilityRules::default(),
            page_limit: sync::PAGE_LIMIT,
            request_timeout: Duration::from_secs(20),
            clock_offset: chrono::Duration::zero(),
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
    /// The caller declares a scheduled access (the national API's `IsUnscheduledAccessEvent:
    /// false`): opening shows the details without notifying.
    pub scheduled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "this device is not enrolled: enrol it with the central's address and a one-time code"
    )]
    NotEnrolled,
    #[error("sign in first")]
    NotSignedIn,
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the central service cannot be reached: {0}")]
    Offline(String),
    #[error("the central refused: {0}")]
    Refused(String),
    #[error("the user id or PIN is not right")]
    SignInRefused,
    #[error("enrolment was refused: {0}")]
    EnrolmentRefused(String),
    #[error("this device has been revoked by the central and its copy has been wiped: {0}")]
    Revoked(String),
    #[error("the central sent data this device cannot trust; nothing was changed: {0}")]
    Untrusted(String),
    #[error("{0}")]
    InvalidInput(String),
}

impl From<ClientError> for DeviceError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Transient(m) => Self::Offline(m),
            ClientError::Refused { message, .. } => Self::Refused(message),
            ClientError::Revoked(m) => Self::Revoked(m),
        }
    }
}

impl From<SyncError> for DeviceError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Client(c) => c.into(),
            SyncError::Rejected(m) => Self::Untrusted(m),
            SyncError::Store(s) => Self::Store(s),
        }
    }
}

impl DeviceError {
    pub fn view(&self) -> ErrorView {
        let mut view = ErrorView {
            code: match self {
                Self::NotEnrolled => "not_enrolled",
                Self::NotSignedIn => "not_signed_in",
                Self::Vault(VaultError::WrongPin { .. }) => "wrong_pin",
                Self::Vault(VaultError::LockedOut) => "locked_out",
                Self::Vault(VaultError::TooSoon { .. }) => "too_soon",
                Self::Vault(VaultError::LeaseExpired { .. }) => "lease_expired",
                Self::Vault(VaultError::NoLocalUnlock) => "no_local_unlock",
                Self::Vault(_) | Self::Store(_) => "internal",
                Self::Offline(_) => "offline",
                Self::Refused(_) => "refused",
                Self::SignInRefused => "wrong_pin",
                Self::EnrolmentRefused(_) => "enrolment_refused",
                Self::Revoked(_) => "revoked",
                Self::Untrusted(_) => "untrusted",
                Self::InvalidInput(_) => "invalid_input",
            }
            .to_string(),
            message: self.to_string(),
            attempts_left: None,
            retry_after_secs: None,
        };
        match self {
            Self::Vault(VaultError::WrongPin { attempts_left }) => {
                view.attempts_left = Some(*attempts_left)
            }
            Self::Vault(VaultError::TooSoon { retry_after_secs }) => {
                view.retry_after_secs = Some(*retry_after_secs)
            }
            _ => {}
        }
        view
    }
}

struct Session {
    keys: CacheKeys,
    user: UserProfile,
    lease_expires_at: DateTime<Utc>,
}

struct RecentCheck {
    nhs: NhsNumber,
    found: bool,
    pregnant: bool,
    case_reference: Option<String>,
    scheduled: bool,
}

pub struct Device {
    config: DeviceConfig,
    store: DeviceStore,
    client: Option<CentralClient>,
    session: Option<Session>,
    recent: HashMap<Uuid, RecentCheck>,
    online: Option<bool>,
    wake: Arc<Notify>,
    /// Kept in memory: read on every check, changed only by enrolment.
    enrolment: Option<Enrolment>,
    /// When the cache was last brought up to date, kept in memory: changed only by a pull.
    last_sync: Option<DateTime<Utc>>,
}

/// TLS for every central that is not on this machine: over plain HTTP a hostile network could read
/// the enrolment code, swap the central's keys at enrolment, or fake a revocation.
fn central_url_allowed(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    matches!(host, "127.0.0.1" | "::1" | "localhost")
}

fn decode_key(b64: &str, what: &str) -> Result<[u8; 32], DeviceError> {
    B64.decode(b64)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
        .ok_or_else(|| DeviceError::Refused(format!("the central sent a malformed {what}")))
}

impl Device {
    /// The device's wall clock (the system clock plus any configured offset).
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.config.clock_offset
    }

    pub fn open(config: DeviceConfig) -> Result<Self, DeviceError> {
        let store = DeviceStore::open(&config.data_dir)?;
        let enrolment = store.enrolment()?;
        let last_sync = store.last_sync_at()?;
        let client = store
            .enrolment()?
            .map(|e| CentralClient::with_timeout(&e.central_url, config.request_timeout));
        Ok(Self {
            config,
            store,
            client,
            session: None,
            recent: HashMap::new(),
            online: None,
            wake: Arc::new(Notify::new()),
            enrolment,
            last_sync,
        })
    }

    /// Direct access for tests, support tools and benchmarks.
    pub fn store(&self) -> &DeviceStore {
        &self.store
    }

    pub fn is_signed_in(&self) -> bool {
        self.session.is_some()
    }

    fn enrolment(&self) -> Result<Enrolment, DeviceError> {
        self.enrolment.clone().ok_or(DeviceError::NotEnrolled)
    }

    pub async fn enrol(
        &mut self,
        central_url: &str,
        code: &str,
    ) -> Result<StatusView, DeviceError> {
        if self.enrolment.is_some() {
            return Err(DeviceError::InvalidInput(
                "this device is already enrolled".into(),
            ));
        }
        let url = central_url.trim();
        if !central_url_allowed(url) {
            return Err(DeviceError::InvalidInput(
                "the central's address must start with https:// (plain http:// only for this machine: 127.0.0.1, ::1 or localhost)".into(),
            ));
        }
        let client = CentralClient::with_timeout(url, self.config.request_timeout);
        let public = self.store.device_public_key()?;
        let response = client.enrol(code, &public).await.map_err(|e| match e {
            ClientError::Refused { message, .. } => DeviceError::EnrolmentRefused(message),
            other => other.into(),
        })?;
        let enrolment = Enrolment {
            device_id: response.device_id,
            region: response.region,
            org_ods: response.org_ods,
            org_name: response.org_name,
            setting: response.setting,
            central_url: client.base_url().to_string(),
            central_signing_key: decode_key(&response.central_signing_key, "signing key")?,
            central_sealing_key: decode_key(&response.central_sealing_key, "sealing key")?,
        };
        self.store.enrol(&enrolment)?;
        self.enrolment = Some(enrolment);
        self.client = Some(client);
        self.online = Some(true);
        Ok(self.status().await)
    }

    async fn authenticated(&mut self) -> Result<(), DeviceError> {
        let enrolment = self.enrolment()?;
        let authenticated = self
            .client
            .as_ref()
            .ok_or(DeviceError::NotEnrolled)?
            .is_authenticated();
        if !authenticated {
            let result = self.authenticate(enrolment.device_id).await;
            self.online = Some(!matches!(result, Err(ClientError::Transient(_))));
            if let Err(ClientError::Revoked(reason)) = result {
                return Err(self.revoked(reason).await);
            }
            result?;
        }
        Ok(())
    }

    async fn authenticate(&mut self, device_id: Uuid) -> Result<(), ClientError> {
        let client = self.client.as_ref().expect("enrolled");
        let challenge = client.challenge(device_id).await?;
        let signature = self
            .store
            .sign(&cpis_core::wire::auth_message(device_id, &challenge))
            .map_err(|e| ClientError::Refused {
                status: 0,
                code: "device_key".into(),
                message: e.to_string(),
            })?;
        let client = self.client.as_mut().expect("enrolled");
        client.exchange_token(device_id, challenge, signature).await
    }

    /// The central has revoked this device. First hand in the access events recorded before the
    /// revocation (the central still takes those), then wipe the cache and keys. Whatever the central
    /// would not take stays visible as a dead letter rather than vanishing.
    async fn revoked(&mut self, reason: String) -> DeviceError {
        self.session = None;
        self.recent.clear();
        let now = self.now();
        if let Some(client) = self.client.as_ref().filter(|c| c.is_authenticated()) {
            match sync::push(&mut self.store, client, now, true).await {
                Ok(t) => tracing::info!(
                    delivered = t.delivered,
                    "queued events handed in before the wipe"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "queued events could not be handed in before the wipe")
                }
            }
        }
        if let Ok(queued) = self.store.queued_events(usize::MAX) {
            for e in queued {
                let _ = self.store.mark_dead(e.id, "device revoked before delivery");
            }
        }
        let _ = self.store.wipe(true);
        self.last_sync = None;
        let _ = self.store.set_meta("wiped_reason", &reason);
        tracing::warn!("device revoked by the central; local copy wiped");
        DeviceError::Revoked(reason)
    }

    /// Signs in online when the central answers (setting up the offline unlock and the lease),
    /// otherwise offline with this device's unlock for the user.
    pub async fn sign_in(&mut self, user_id: &str, pin: &str) -> Result<StatusView, DeviceError> {
        let user_id = user_id.trim();
        if user_id.is_empty() || pin.is_empty() {
            return Err(DeviceError::InvalidInput(
                "enter your user id and PIN".into(),
            ));
        }
        self.enrolment()?;
        let online = match self.authenticated().await {
            Ok(()) => {
                let client = self.client.as_ref().expect("enrolled");
                match client.login(user_id, pin).await {
                    Ok(login) => Some(login),
                    Err(ClientError::Transient(_)) => None,
                    Err(ClientError::Revoked(r)) => return Err(self.revoked(r).await),
                    Err(ClientError::Refused { code, .. }) if code == "sign_in_refused" => {
                        return Err(DeviceError::SignInRefused)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(DeviceError::Offline(_)) => None,
            Err(e) => return Err(e),
        };
        let unlocked = match online {
            Some(login) => {
                let lease_key = decode_key(&login.lease.lease_key, "lease key")?;
                let mac = decode_key(&login.lease.mac, "lease MAC")?;
                self.store.login_online(
                    &login.user,
                    pin,
                    &lease_key,
                    login.lease.expires_at,
                    &mac,
                )?
            }
            None => self.store.unlock(user_id, pin, self.now())?,
        };
        // An online sign-in with a new lease key starts a fresh cache.
        self.last_sync = self.store.last_sync_at()?;
        self.session = Some(Session {
            keys: unlocked.keys,
            user: unlocked.user,
            lease_expires_at: unlocked.lease_expires_at,
        });
        self.wake.notify_one();
        Ok(self.status().await)
    }

    pub fn sign_out(&mut self) {
        self.session = None;
        self.recent.clear();
    }

    fn accessor(&self, enrolment: &Enrolment) -> Option<Accessor> {
        self.session.as_ref().map(|s| Accessor {
            user_id: s.user.id.clone(),
            role: s.user.role.clone(),
            activity: s.user.activity,
            org_ods: enrolment.org_ods.clone(),
            org_name: enrolment.org_name.clone(),
            setting: enrolment.setting,
        })
    }

    /// Drops the session when its lease has run out: the cache must not open past the lease.
    fn session_valid(&mut self, now: DateTime<Utc>) -> Result<(), String> {
        match &self.session {
            None => Err("Sign in to open this device's copy.".into()),
            Some(s) if now > s.lease_expires_at => {
                let expired = s.lease_expires_at;
                self.session = None;
                Err(format!(
                    "This device has not been in contact with the central service since its access ran out on {}. Connect to the network and sign in again.",
                    expired.format("%d %b %Y at %H:%M UTC")
                ))
            }
            Some(_) => Ok(()),
        }
    }

    /// Checks an NHS number: the cache answers at once; when the central answers within the
    /// deadline its answer is used instead. Never errors: every failure becomes an honest view.
    pub async fn check(&mut self, nhs_input: &str, request: CheckRequest) -> CheckView {
        let check_id = Uuid::now_v7();
        let now = self.now();
        let nhs = match NhsNumber::parse(nhs_input) {
            Ok(n) => n,
            Err(e) => return check::invalid(check_id, e.to_string()),
        };
        let last_sync = self.last_sync;
        if let Err(reason) = self.session_valid(now) {
            return check::locked(check_id, reason, last_sync, now);
        }
        let enrolment = match self.enrolment() {
            Ok(e) => e,
            Err(e) => return check::locked(check_id, e.to_string(), None, now),
        };
        let accessor = self.accessor(&enrolment).expect("signed in");
        let notifies = accessor.notifies() && !request.scheduled;
        let today = now.date_naive();
        let rules = self.config.visibility;

        // The cache first: it always answers.
        let session = self.session.as_ref().expect("signed in");
        let cached = match self.store.lookup(&session.keys, &nhs) {
            Ok(found) => found.filter(|(record, _)| !record.is_expired(today, &rules)),
            Err(e) => {
                tracing::error!(error = %e, "cache lookup failed");
                return check::locked(
                    check_id,
                    format!("This device's copy could not be read: {e}"),
                    last_sync,
                    now,
                );
            }
        };

        // Then the central, live, under a short deadline, unless it is known to be unreachable.
        let req = LiveCheckRequest {
            nhs_number: nhs,
            user_id: accessor.user_id.clone(),
            unscheduled: false,
            access_event: None,
        };
        let live = match self.ask_central(&req).await {
            Ok(live) => live,
            Err(revoked) => return check::locked(check_id, revoked.to_string(), None, now),
        };

        let (source, as_of, record, la, history) = match live {
            Some(answer) => {
                let record = match answer.outcome {
                    LiveOutcome::RecordFound => answer.record,
                    LiveOutcome::NoRecord => None,
                }
                .filter(|r| !r.is_expired(today, &rules));
                (
                    Source::Central,
                    Some(answer.as_of),
                    record,
                    answer.local_authority,
                    answer.access_history,
                )
            }
            None => {
                let (record, la) = match cached {
                    Some((r, la)) => (Some(r), la),
                    None => (None, None),
                };
                (Source::Cache, last_sync, record, la, vec![])
            }
        };
        let ctx = ResultContext {
            check_id,
            now,
            source,
            data_as_of: as_of,
            stale_after_secs: self.config.stale_after.as_secs() as i64,
            notifies,
        };
        let outcome = if record.is_some() {
            "record_found"
        } else {
            "no_record"
        };
        let audit = AuditEntry {
            at: now,
            user_id: accessor.user_id.clone(),
            nhs_number: nhs,
            outcome: outcome.to_string(),
            source: match source {
                Source::Cache => "cache",
                Source::Central => "central",
            }
            .to_string(),
        };
        let session = self.session.as_ref().expect("signed in");
        if let Err(e) = self.store.record_check(&session.keys, &audit) {
            tracing::error!(error = %e, "could not write the local audit record");
        }
        self.recent.insert(
            check_id,
            RecentCheck {
                nhs,
                found: record.is_some(),
                pregnant: request.pregnant,
                case_reference: request.case_reference.clone(),
                scheduled: request.scheduled,
            },
        );
        let mut view = match &record {
            None => ctx.miss(nhs.to_string()),
            Some(r) => ctx.found(nhs.to_string(), r, la.as_ref(), history, false, &rules),
        };
        if request.pregnant && record.is_none() {
            view.caveats.push(
                "Unborn child protection plans are held on the pregnant woman's own NHS number: this was that check.".into(),
            );
        }
        if record.is_some() && request.open {
            return self.open_alert(check_id).await.unwrap_or(view);
        }
        view
    }

    /// The live check under the short deadline, unless the central is known to be unreachable. `None`
    /// when it does not answer (the cache answers instead); an error only when the device was revoked,
    /// and then it has already handed in its events and wiped itself.
    async fn ask_central(
        &mut self,
        req: &LiveCheckRequest,
    ) -> Result<Option<LiveCheckResponse>, DeviceError> {
        if self.online == Some(false) || !self.authenticated_quick().await {
            return Ok(None);
        }
        let client = self.client.as_ref().expect("enrolled");
        match client
            .live_check(req, self.config.live_check_deadline)
            .await
        {
            Ok(answer) => {
                self.online = Some(true);
                Ok(Some(answer))
            }
            Err(ClientError::Revoked(reason)) => Err(self.revoked(reason).await),
            Err(e) => {
                self.online = Some(!e.is_transient());
                tracing::info!("live check unavailable, the cache answers");
                Ok(None)
            }
        }
    }

    /// Fast authentication for the check path: a fresh process authenticates once; failures mark offline.
    async fn authenticated_quick(&mut self) -> bool {
        match self.client.as_ref() {
            None => false,
            Some(c) if c.is_authenticated() => true,
            Some(_) => {
                let result =
                    tokio::time::timeout(self.config.live_check_deadline, self.authenticated())
                        .await;
                match result {
                    Ok(Ok(())) => true,
                    _ => {
                        self.online = Some(false);
                        false
                    }
                }
            }
        }
    }

    /// Opens the alert of a record found by `check_id`: shows the details and, where the user and
    /// setting notify, queues the access event durably before trying to deliver it at once.
    pub async fn open_alert(&mut self, check_id: Uuid) -> Result<CheckView, DeviceError> {
        let now = self.now();
        let recent = self.recent.get(&check_id).ok_or_else(|| {
            DeviceError::InvalidInput("that check is no longer open: check the number again".into())
        })?;
        if !recent.found {
            return Err(DeviceError::InvalidInput(
                "there is no record to open for that check".into(),
            ));
        }
        let (nhs, pregnant, case_reference, scheduled) = (
            recent.nhs,
            recent.pregnant,
            recent.case_reference.clone(),
            recent.scheduled,
        );
        self.session_valid(now)
            .map_err(|_| DeviceError::NotSignedIn)?;
        let enrolment = self.enrolment()?;
        let accessor = self.accessor(&enrolment).ok_or(DeviceError::NotSignedIn)?;
        let notifies = accessor.notifies() && !scheduled;
        let rules = self.config.visibility;
        let today = now.date_naive();

        // Record the access first, durably: a notification recorded offline is still a notification.
        // Kept as the sealed envelope the outbox holds: the live call sends that same envelope.
        let event = if notifies {
            let (_, sealed) =
                self.store
                    .enqueue_access_sealed(nhs, accessor.clone(), case_reference, now)?;
            Some(sealed)
        } else {
            None
        };
        self.wake.notify_one();

        // Deliver at once when the central answers, with the live record and access history.
        let req = LiveCheckRequest {
            nhs_number: nhs,
            user_id: accessor.user_id.clone(),
            unscheduled: notifies,
            access_event: event.clone(),
        };
        let live = self.ask_central(&req).await?;
        if let (Some(answer), Some(e)) = (&live, &event) {
            if answer.access_recorded {
                self.store.mark_delivered(&[e.id], now)?;
            }
        }
        let session = self.session.as_ref().ok_or(DeviceError::NotSignedIn)?;
        let (source, as_of, record, la, history) = match live {
            Some(answer) if answer.outcome == LiveOutcome::RecordFound => (
                Source::Central,
                Some(answer.as_of),
                answer.record,
                answer.local_authority,
                answer.access_history,
            ),
            _ => {
                let (record, la) = match self.store.lookup(&session.keys, &nhs)? {
                    Some((r, la)) => (Some(r), la),
                    None => (None, None),
                };
                (Source::Cache, self.last_sync, record, la, vec![])
            }
        };
        let record = record
            .filter(|r| !r.is_expired(today, &rules))
            .ok_or_else(|| DeviceError::InvalidInput("the record is no longer shown".into()))?;
        let _ = self.store.record_check(
            &session.keys,
            &AuditEntry {
                at: now,
                user_id: accessor.user_id.clone(),
                nhs_number: nhs,
                outcome: "alert_opened".into(),
                source: format!("{source:?}").to_lowercase(),
            },
        );
        let ctx = ResultContext {
            check_id,
            now,
            source,
            data_as_of: as_of,
            stale_after_secs: self.config.stale_after.as_secs() as i64,
            notifies,
        };
        let mut view = ctx.found(nhs.to_string(), &record, la.as_ref(), history, true, &rules);
        if source == Source::Cache {
            view.caveats.push(
                "Access history comes from the central service and is shown when this device is connected.".into(),
            );
        }
        if pregnant {
            view.caveats.push(
                "Checked as a pregnant woman: an unborn child plan is held on her own NHS number."
                    .into(),
            );
        }
        view.event_id = event.as_ref().map(|e| e.id);
        view.notification = Some(match &event {
            None => NotificationState::NotSent,
            Some(e) => match self.store.event_state(e.id)?.as_deref() {
                Some("delivered") => NotificationState::Delivered,
                _ => NotificationState::Queued,
            },
        });
        Ok(view)
    }

    /// Pull then push. Pulling needs the signed-in session's keys; pushing does not (events are
    /// sealed to the central), so a locked device still delivers its outbox.
    pub async fn sync(
        &mut self,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncSummary, DeviceError> {
        let enrolment = self.enrolment()?;
        let now = self.now();
        if let Err(e) = self.authenticated().await {
            if matches!(e, DeviceError::Offline(_)) {
                self.online = Some(false);
            }
            return Err(e);
        }
        self.online = Some(true);
        let mut summary = SyncSummary {
            pages: 0,
            records: 0,
            bytes: 0,
            cursor: self.store.cursor()?,
            events_delivered: 0,
            events_dead: 0,
            events_queued: 0,
            pull_skipped: None,
        };
        // Any contact renews the lease.
        let client = self.client.as_ref().expect("enrolled");
        match client.renew_lease().await {
            Ok(renewal) => {
                let mac = decode_key(&renewal.mac, "lease MAC")?;
                self.store.renew_lease(renewal.expires_at, &mac)?;
                if let Some(s) = self.session.as_mut() {
                    s.lease_expires_at = renewal.expires_at;
                }
            }
            Err(ClientError::Revoked(r)) => return Err(self.revoked(r).await),
            Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
        }
        let pull_result = match self.session.as_ref() {
            Some(session) => {
                let client = self.client.as_ref().expect("enrolled");
                Some(
                    sync::pull(
                        &mut self.store,
                        client,
                        &session.keys,
                        &enrolment,
                        now,
                        self.config.page_limit,
                        progress,
                    )
                    .await,
                )
            }
            None => {
                summary.pull_skipped = Some("sign in to update this device's copy".into());
                None
            }
        };
        // A pull applies pages even when a later one fails: what was applied counts.
        self.last_sync = self.store.last_sync_at()?;
        // Push even when the pull failed: notifications must not wait on the read path.
        let client = self.client.as_ref().expect("enrolled");
        let push_result = sync::push(&mut self.store, client, now, true).await;
        if let Some(result) = pull_result {
            match result {
                Ok(t) => {
                    summary.pages = t.pages;
                    summary.records = t.records;
                    summary.bytes = t.bytes;
                    summary.cursor = t.cursor;
                }
                Err(SyncError::Client(ClientError::Revoked(r))) => {
                    return Err(self.revoked(r).await)
                }
                Err(e) => {
                    self.note_client_failure(&e);
                    return Err(e.into());
                }
            }
        }
        match push_result {
            Ok(t) => {
                summary.events_delivered = t.delivered;
                summary.events_dead = t.dead;
            }
            Err(SyncError::Client(ClientError::Revoked(r))) => return Err(self.revoked(r).await),
            Err(e) => {
                self.note_client_failure(&e);
                return Err(e.into());
            }
        }
        summary.events_queued = self.store.outbox_summary()?.queued;
        progress(SyncProgress {
            phase: SyncPhase::Done,
            pages: summary.pages,
            records: summary.records,
            bytes: summary.bytes,
            cursor: summary.cursor,
            head: summary.cursor,
            events_sent: summary.events_delivered,
        });
        Ok(summary)
    }

    fn note_client_failure(&mut self, e: &SyncError) {
        if let SyncError::Client(c) = e {
            if c.is_transient() {
                self.online = Some(false);
            }
            if let ClientError::Refused { status: 401, .. } = c {
                // The token expired: authenticate afresh next time.
                if let Some(url) = self.client.as_ref().map(|c| c.base_url().to_string()) {
                    self.client = Some(CentralClient::with_timeout(
                        &url,
                        self.config.request_timeout,
                    ));
                }
            }
        }
    }

    /// One background round: deliver due events, and pull when signed in. Returns whether it reached the central.
    pub async fn background_round(&mut self) -> bool {
        if self.enrolment.is_none() {
            return false;
        }
        let reachable = match self.client.as_ref() {
            Some(c) => c.probe().await,
            None => false,
        };
        self.online = Some(reachable);
        if !reachable {
            return false;
        }
        self.sync(&|_| {}).await.is_ok()
    }

    /// Time until the next queued event is due, for the background timer.
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub async fn status(&mut self) -> StatusView {
        let enrolment = self.enrolment.clone();
        let online = match (&enrolment, self.client.as_ref()) {
            (Some(_), Some(c)) => c.probe().await,
            _ => false,
        };
        self.online = Some(online);
        let now = self.now();
        let last_sync_at = self.store.last_sync_at().ok().flatten();
        let age = check::data_age(now, last_sync_at);
        let outbox = self.store.outbox_summary().ok();
        let locked = self.session_valid(now).is_err();
        let user = self.session.as_ref().map(|s| UserView {
            id: s.user.id.clone(),
            name: s.user.name.clone(),
            role: s.user.role.clone(),
            activity: s.user.activity.to_string(),
            notifies: enrolment
                .as_ref()
                .map(|e| cpis_core::setting::opening_notifies(e.setting, s.user.activity))
                .unwrap_or(false),
        });
        StatusView {
            enrolled: enrolment.is_some(),
            device_id: enrolment.as_ref().map(|e| e.device_id),
            region: enrolment.as_ref().map(|e| e.region.to_string()),
            org_name: enrolment.as_ref().map(|e| e.org_name.clone()),
            setting: enrolment.as_ref().map(|e| e.setting.to_string()),
            central_url: enrolment.as_ref().map(|e| e.central_url.clone()),
            online,
            signed_in_user: user,
            locked,
            cached_flags: self.store.flag_count().unwrap_or(0),
            cursor: self.store.cursor().unwrap_or(0),
            last_sync_at,
            data_age_seconds: age,
            stale: age
                .map(|a| a > self.config.stale_after.as_secs() as i64)
                .unwrap_or(true),
            queued_events: outbox.as_ref().map(|o| o.queued).unwrap_or(0),
            oldest_queued_age_seconds: outbox
                .as_ref()
                .and_then(|o| o.oldest_queued_at)
                .map(|t| (now - t).num_seconds().max(0)),
            dead_letters: outbox
                .map(|o| {
                    o.dead
                        .into_iter()
                        .map(|d| DeadLetterView {
                            event_id: d.event_id,
                            reason: d.reason,
                            created_at: d.created_at,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            lease_expires_at: self
                .session
                .as_ref()
                .map(|s| s.lease_expires_at)
                .or_else(|| self.store.lease_expires_at().ok().flatten()),
            wiped_reason: self.store.get_meta("wiped_reason").ok().flatten(),
        }
    }

    /// The region this device is enrolled in.
    pub fn region(&self) -> Option<Region> {
        self.enrolment.as_ref().map(|e| e.region.clone())
    }

    /// SHA-256 of the cached region (flags and LAs), comparable with the central's region digest.
    pub fn cache_digest(&self) -> Result<String, DeviceError> {
        let session = self.session.as_ref().ok_or(DeviceError::NotSignedIn)?;
        Ok(self.store.cache_digest(&session.keys)?)
    }
}

/// Keeps the outbox draining and the cache fresh without waiting for a user action: at start, on a
/// timer (30 s when healthy), with capped jittered backoff while the central is unreachable, and at
/// once when a new event is queued or the central becomes reachable again.
pub fn spawn_background_sync(
    device: Arc<tokio::sync::Mutex<Device>>,
    on_progress: Arc<dyn Fn(SyncProgress) + Send + Sync>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let wake = device.lock().await.wake_handle();
        let mut failures: u32 = 0;
        loop {
            let ok = {
                let mut d = device.lock().await;
                let ok = d.background_round().await;
                if ok {
                    // From the store, not `status()`: the round just reached the central, so a
                    // second probe would only repeat it.
                    let cursor = d.store().cursor().unwrap_or(0);
                    on_progress(SyncProgress {
                        phase: SyncPhase::Done,
                        pages: 0,
                        records: d.store().flag_count().unwrap_or(0),
                        bytes: 0,
                        cursor,
                        head: cursor,
                        events_sent: 0,
                    });
                }
                ok
            };
            let wait = if ok {
                failures = 0;
                Duration::from_secs(30)
            } else {
                failures = failures.saturating_add(1);
                // Probe often enough to notice reconnection quickly.
                sync::backoff(failures).min(Duration::from_secs(5))
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::central_url_allowed;

    #[test]
    fn plain_http_is_refused_for_a_central_off_this_machine() {
        for ok in [
            "https://central.example.org",
            "http://127.0.0.1:8750",
            "http://localhost:8750/",
            "http://[::1]:8750",
        ] {
            assert!(central_url_allowed(ok), "{ok}");
        }
        for bad in [
            "http://central.example.org",
            "http://10.0.0.5:8750",
            "ftp://127.0.0.1",
            "127.0.0.1:8750",
            "http://127.0.0.1.evil.example",
        ] {
            assert!(!central_url_allowed(bad), "{bad}");
        }
    }
}
