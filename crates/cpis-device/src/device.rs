//! The device facade the app and the CLI drive: enrol, sign in, check, open an alert, sync, status,
//! and the region's emergency numbers (readable without a sign-in).
//! It owns the signed-in session (the unlocked cache keys), the central client and recent checks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use cpis_core::access::{Accessor, FoundBy};
use cpis_core::plan::VisibilityRules;
use cpis_core::search::{self, SearchQuery, Tiered};
use cpis_core::store::{
    AuditEntry, CacheKeys, DeviceStore, Enrolment, SearchAudit, StagedIndex, StoreError, VaultError,
};
use cpis_core::vault::FeedKey;
use cpis_core::wire::{LiveCheckRequest, LiveCheckResponse, UserProfile};
use cpis_core::wire::{LiveSearchCandidate, LiveSearchRequest, LiveSearchResponse};
use cpis_core::{NhsNumber, Region};

use crate::check::{self, ResultContext, Shown};
use crate::client::{CentralClient, ClientError};
use crate::sync::{self, RoundStop, SyncError};
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
    /// A signed-in user who has not used the device for this long is signed out by the engine
    /// itself, whatever the screen does (the screen warns a minute before its own, shorter, limit).
    pub idle_sign_out: Duration,
    /// How long the local audit log and delivered events are kept; older ones are removed when the
    /// device opens and before every sync round.
    pub retention: chrono::Duration,
}

/// The retention when nobody sets one.
pub const DEFAULT_RETENTION: chrono::Duration = chrono::Duration::days(90);

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
            idle_sign_out: Duration::from_secs(6 * 60),
            retention: DEFAULT_RETENTION,
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
    /// Answer from this device's copy alone, without asking the central (benchmarks, support).
    pub cache_only: bool,
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
    #[error(
        "the sync was stopped by a sign-in, sign-out or revocation; it starts again on its own"
    )]
    Interrupted,
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
            SyncError::Interrupted => Self::Interrupted,
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
                Self::Store(StoreError::EmergencyNumbers(_)) => "emergency_numbers_untrusted",
                Self::Vault(_) | Self::Store(_) => "internal",
                Self::Offline(_) => "offline",
                Self::Refused(_) => "refused",
                Self::SignInRefused => "wrong_pin",
                Self::EnrolmentRefused(_) => "enrolment_refused",
                Self::Revoked(_) => "revoked",
                Self::Untrusted(_) => "untrusted",
                Self::InvalidInput(_) => "invalid_input",
                Self::Interrupted => "interrupted",
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
    /// The region's feed key, which opens the feed's pages; `None` until an online sign-in has
    /// delivered one to this device.
    feed_key: Option<FeedKey>,
}

struct RecentCheck {
    nhs: NhsNumber,
    /// The record the check showed, kept so that opening the alert opens exactly it.
    shown: Option<Shown>,
    pregnant: bool,
    case_reference: Option<String>,
    scheduled: bool,
    /// How the clinician found the person: the access event tells the LA.
    found_by: FoundBy,
}

/// A search's possible matches, kept so that confirming one opens exactly the record shown.
struct RecentSearch {
    query: SearchQuery,
    candidates: Vec<Shown>,
    case_reference: Option<String>,
}

/// What a search by name and date of birth was given, as typed.
#[derive(Debug, Clone, Default)]
pub struct SearchInput {
    pub family_name: String,
    /// YYYY-MM-DD.
    pub date_of_birth: String,
    pub given_name: Option<String>,
    pub sex: Option<String>,
    pub postcode_district: Option<String>,
    pub case_reference: Option<String>,
    /// Answer from this device's copy alone (benchmarks, support).
    pub cache_only: bool,
}

/// How many answered checks are remembered for opening their alert: a clinician opens the alert of
/// one of the last few checks, never of hundreds ago.
const RECENT_CHECKS: usize = 32;

/// The engine's shared state: read on every check, changed by sign-in, sync and enrolment. Behind a
/// short lock that is never held across a network wait or a store call.
#[derive(Default)]
struct State {
    enrolment: Option<Arc<Enrolment>>,
    client: Option<Arc<CentralClient>>,
    session: Option<Arc<Session>>,
    lease_expires_at: Option<DateTime<Utc>>,
    /// When the signed-in user last used the device (a check, an alert, a search, keep-alive).
    last_activity: Option<DateTime<Utc>>,
    /// Why the engine ended the last session itself (idle), said until the next sign-in.
    signed_out_because: Option<String>,
    /// When the cache was last brought up to date: changed only by a pull.
    last_sync: Option<DateTime<Utc>>,
    /// The last probe's or request's verdict; `None` until one is made.
    online: Option<bool>,
    recent: HashMap<Uuid, RecentCheck>,
    recent_order: std::collections::VecDeque<Uuid>,
    searches: HashMap<Uuid, RecentSearch>,
    search_order: std::collections::VecDeque<Uuid>,
}

/// How long an answered check's audit record may wait before the writer takes it: the check only
/// appends to a list (no wake-up, no system call on the answer's path), and the writer writes what has
/// gathered. A crash (power cut, SIGKILL) can lose the audit records of checks answered in about the
/// last this-long; queued access events are unaffected (written durably before an alert opens).
const AUDIT_GATHER: Duration = Duration::from_millis(20);

#[derive(Default)]
struct AuditPending {
    records: Vec<(Arc<Session>, AuditEntry)>,
    queued: u64,
    written: u64,
    closing: bool,
}

/// Audit records of answered checks on their way to the sealed audit log.
#[derive(Default)]
struct AuditQueue {
    pending: StdMutex<AuditPending>,
    /// Wakes the writer early (flush, close) and tells flushers what has been written.
    changed: std::sync::Condvar,
}

/// The engine behind the app and the CLI. Every method takes `&self`: the app shares one `Device`
/// between its window's commands and the background sync, and no call waits for another's network
/// round trip. Three SQLite connections on the same WAL file keep the paths apart: `reader` for the
/// check's lookups, `writer` for what a clinician's action writes, `syncer` for the sync (held for a
/// whole round, network waits included, and by nothing a check needs).
pub struct Device {
    config: DeviceConfig,
    reader: Arc<StdMutex<DeviceStore>>,
    writer: Arc<StdMutex<DeviceStore>>,
    syncer: tokio::sync::Mutex<DeviceStore>,
    state: RwLock<State>,
    wake: Arc<Notify>,
    round_stop: RoundStop,
    /// Where a first download's staged people sit: the sync keeps it, checks seek with it.
    staged: StagedIndex,
    audit: Arc<AuditQueue>,
    audit_thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Device {
    fn drop(&mut self) {
        // Every check answered before this point has its audit record written before the store closes.
        lock(&self.audit.pending).closing = true;
        self.audit.changed.notify_all();
        if let Some(t) = self.audit_thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes the sealed audit records of checks off the answer's path, in order, on its own thread,
/// through the checks' own connection: another connection's commit would make SQLite drop that
/// connection's page cache, and the next check would pay to reload it. The write never waits for
/// the sync's transaction: when the database is busy the batch waits for the next round.
fn spawn_audit_writer(
    reader: Arc<StdMutex<DeviceStore>>,
    queue: Arc<AuditQueue>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("cpis-audit".into())
        .spawn(move || {
            let mut pending = lock(&queue.pending);
            loop {
                if pending.records.is_empty() {
                    if pending.closing {
                        break;
                    }
                    pending = queue
                        .changed
                        .wait_timeout(pending, AUDIT_GATHER)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    continue;
                }
                let mut batch = std::mem::take(&mut pending.records);
                drop(pending);
                let entries: Vec<_> = batch.iter().map(|(s, e)| (&s.keys, e)).collect();
                let written = lock(&reader).try_record_checks(&entries);
                drop(entries);
                pending = lock(&queue.pending);
                match written {
                    Ok(true) => {}
                    Ok(false) => {
                        // The sync is writing: keep the batch, in order, for the next round.
                        batch.append(&mut pending.records);
                        pending.records = batch;
                        pending = queue
                            .changed
                            .wait_timeout(pending, AUDIT_GATHER)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not write the local audit records")
                    }
                }
                pending.written += batch.len() as u64;
                queue.changed.notify_all();
            }
        })
        .expect("the audit writer thread starts")
}

/// A search's card for one person: names and date of birth, what matched and what differed.
fn card(
    candidate: usize,
    record: &cpis_core::FlagRecord,
    how: search::CandidateMatch,
) -> CandidateView {
    CandidateView {
        candidate,
        family_name: record.family_name.clone(),
        given_names: record.given_names.clone(),
        date_of_birth: record.date_of_birth,
        matched: how.matched_words(),
        differed: how.differed_words(),
        how,
    }
}

fn search_locked(
    search_id: Uuid,
    reason: String,
    data_as_of: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> SearchView {
    SearchView {
        search_id,
        outcome: SearchOutcome::Locked,
        message: "This device's copy cannot be opened".into(),
        reason: Some(reason),
        source: Source::Cache,
        data_as_of,
        data_age_seconds: check::data_age(now, data_as_of),
        stale: true,
        candidates: vec![],
        matched: None,
        answer: None,
        caveats: vec![check::LOCKED_ADVICE.to_string()],
    }
}

/// TLS for every central that is not on this machine: over plain HTTP a hostile network could read
/// the enrolment code, swap the central's keys at enrolment, or fake a revocation.
pub fn central_url_allowed(url: &str) -> bool {
    // Judged on the parsed URL, as the HTTP client will read it: `http://localhost:80@elsewhere`
    // goes to `elsewhere`. A user name or password in the address is never wanted.
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return false;
    }
    let Some(host) = parsed.host_str() else {
        return false;
    };
    match parsed.scheme() {
        "https" => true,
        "http" => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

/// Removes audit entries and delivered events past the retention. A failure is logged and the
/// next round tries again: it must not stop a sync or the app opening.
fn apply_retention(store: &mut DeviceStore, config: &DeviceConfig) {
    let before = Utc::now() + config.clock_offset - config.retention;
    match store.apply_retention(before) {
        Ok((0, 0)) => {}
        Ok((audit, delivered)) => {
            tracing::info!(
                audit,
                delivered,
                "removed audit entries and delivered events past retention"
            )
        }
        Err(e) => tracing::warn!(error = %e, "could not apply the retention"),
    }
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
        let reader = DeviceStore::open(&config.data_dir)?;
        reader.tune_for_lookups()?;
        let writer = Arc::new(StdMutex::new(DeviceStore::open(&config.data_dir)?));
        let mut syncer = DeviceStore::open(&config.data_dir)?;
        apply_retention(&mut syncer, &config);
        let enrolment = reader.enrolment()?;
        let staged = StagedIndex::default();
        reader.load_staged_index(&staged)?;
        let state = State {
            client: enrolment.as_ref().map(|e| {
                Arc::new(CentralClient::with_timeout(
                    &e.central_url,
                    config.request_timeout,
                ))
            }),
            enrolment: enrolment.map(Arc::new),
            last_sync: reader.last_sync_at()?,
            ..State::default()
        };
        let audit = Arc::new(AuditQueue::default());
        let reader = Arc::new(StdMutex::new(reader));
        let audit_thread = spawn_audit_writer(reader.clone(), audit.clone());
        Ok(Self {
            config,
            reader,
            writer,
            syncer: tokio::sync::Mutex::new(syncer),
            state: RwLock::new(state),
            wake: Arc::new(Notify::new()),
            round_stop: RoundStop::default(),
            staged,
            audit,
            audit_thread: Some(audit_thread),
        })
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The check path's connection, for tests, support tools and benchmarks (reads only).
    pub fn store(&self) -> std::sync::MutexGuard<'_, DeviceStore> {
        lock(&self.reader)
    }

    /// Waits until every audit record of a check answered so far is written.
    pub fn flush_audit(&self) {
        let mut pending = lock(&self.audit.pending);
        let target = pending.queued;
        self.audit.changed.notify_all();
        while pending.written < target {
            pending = self
                .audit
                .changed
                .wait(pending)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The local audit log, oldest first (written in the background: flushed first).
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>, DeviceError> {
        self.flush_audit();
        let session = self
            .read_state()
            .session
            .clone()
            .ok_or(DeviceError::NotSignedIn)?;
        Ok(lock(&self.reader).audit_entries(&session.keys)?)
    }

    pub fn is_signed_in(&self) -> bool {
        self.read_state().session.is_some()
    }

    fn enrolment(&self) -> Result<Arc<Enrolment>, DeviceError> {
        self.read_state()
            .enrolment
            .clone()
            .ok_or(DeviceError::NotEnrolled)
    }

    fn client(&self) -> Result<Arc<CentralClient>, DeviceError> {
        self.read_state()
            .client
            .clone()
            .ok_or(DeviceError::NotEnrolled)
    }

    fn set_online(&self, online: bool) {
        self.write_state().online = Some(online);
    }

    pub async fn enrol(&self, central_url: &str, code: &str) -> Result<StatusView, DeviceError> {
        if self.read_state().enrolment.is_some() {
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
        let public = lock(&self.reader).device_public_key()?;
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
        lock(&self.writer).enrol(&enrolment)?;
        {
            let mut state = self.write_state();
            state.enrolment = Some(Arc::new(enrolment));
            state.client = Some(Arc::new(client));
            state.online = Some(true);
        }
        // The region's numbers come at once, so a device taken out before anyone signs in on it
        // has them; a failure here is mended by the next sync round.
        match self.authenticated().await {
            Ok(client) => match client.emergency_numbers().await {
                Ok(signed) => {
                    if let Err(e) = lock(&self.writer).keep_emergency_numbers(&signed) {
                        tracing::error!(error = %e, "the central's emergency numbers were refused");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "emergency numbers not fetched at enrolment"),
            },
            Err(e) => tracing::warn!(error = %e, "emergency numbers not fetched at enrolment"),
        }
        Ok(self.status())
    }

    /// The region's local authorities and their emergency duty and office numbers, as last
    /// received from the central. Needs no sign-in: it is what a locked device, or one whose lease
    /// has run out, shows beside the instruction to phone. The kept copy is checked against the
    /// central's signature on every read, and an altered one is refused rather than shown.
    pub fn emergency_numbers(&self) -> Result<EmergencyNumbersView, DeviceError> {
        let enrolment = self.enrolment()?;
        let directory = lock(&self.reader).emergency_numbers()?;
        Ok(match directory {
            Some(d) => EmergencyNumbersView {
                region: Some(d.region.to_string()),
                generated_at: Some(d.generated_at),
                local_authorities: d
                    .local_authorities
                    .into_iter()
                    .map(|la| LocalAuthorityView {
                        ods: la.ods.to_string(),
                        name: la.name,
                        emergency_phone: la.emergency_phone,
                        office_phone: la.office_phone,
                    })
                    .collect(),
            },
            None => EmergencyNumbersView {
                region: Some(enrolment.region.to_string()),
                generated_at: None,
                local_authorities: Vec::new(),
            },
        })
    }

    /// Fetches the region's emergency numbers and keeps them when they verify. Only a revocation
    /// stops the round: the outbox must still be pushed whatever happens here.
    async fn refresh_emergency_numbers(
        &self,
        store: &mut DeviceStore,
        client: &CentralClient,
        ticket: sync::Ticket<'_>,
    ) -> Result<(), DeviceError> {
        match ticket.run(client.emergency_numbers()).await? {
            Ok(signed) => match store.keep_emergency_numbers(&signed) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!("an older emergency directory arrived; the newer one is kept")
                }
                Err(e) => {
                    tracing::error!(error = %e, "the central's emergency numbers were refused")
                }
            },
            Err(ClientError::Revoked(r)) => return Err(DeviceError::Revoked(r)),
            Err(e) => tracing::warn!(error = %e, "emergency numbers not fetched"),
        }
        Ok(())
    }

    /// Authenticates the device when its client holds no token. No lock is held while it waits.
    async fn authenticated(&self) -> Result<Arc<CentralClient>, DeviceError> {
        let enrolment = self.enrolment()?;
        let client = self.client()?;
        if !client.is_authenticated() {
            let result = self.authenticate(&client, enrolment.device_id).await;
            self.set_online(!matches!(result, Err(ClientError::Transient(_))));
            if let Err(ClientError::Revoked(reason)) = result {
                return Err(self.revoked(reason).await);
            }
            result?;
        }
        Ok(client)
    }

    async fn authenticate(
        &self,
        client: &CentralClient,
        device_id: Uuid,
    ) -> Result<(), ClientError> {
        let challenge = client.challenge(device_id).await?;
        let signature = lock(&self.reader)
            .sign(&cpis_core::wire::auth_message(device_id, &challenge))
            .map_err(|e| ClientError::Refused {
                status: 0,
                code: "device_key".into(),
                message: e.to_string(),
            })?;
        client.exchange_token(device_id, challenge, signature).await
    }

    /// The central has revoked this device: stop any sync round, then hand in and wipe.
    async fn revoked(&self, reason: String) -> DeviceError {
        self.forget_session();
        self.round_stop.stop();
        let mut store = self.syncer.lock().await;
        self.revoked_with(&mut store, reason).await
    }

    /// First hand in the access events recorded before the revocation (the central still takes
    /// those), then wipe the cache and keys. Whatever the central would not take stays visible as a
    /// dead letter rather than vanishing.
    async fn revoked_with(&self, store: &mut DeviceStore, reason: String) -> DeviceError {
        self.forget_session();
        let now = self.now();
        let client = self.read_state().client.clone();
        if let Some(client) = client.filter(|c| c.is_authenticated()) {
            // A fresh ticket: this hand-in is the last thing the device does, nothing stops it.
            match sync::push(store, &client, now, true, self.round_stop.ticket()).await {
                Ok(t) => tracing::info!(
                    delivered = t.delivered,
                    "queued events handed in before the wipe"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "queued events could not be handed in before the wipe")
                }
            }
        }
        if let Ok(queued) = store.queued_events(usize::MAX) {
            for e in queued {
                let _ = store.mark_dead(e.id, "device revoked before delivery");
            }
        }
        let _ = store.wipe(true);
        let _ = store.load_staged_index(&self.staged);
        self.write_state().last_sync = None;
        let _ = store.set_meta("wiped_reason", &reason);
        tracing::warn!("device revoked by the central; local copy wiped");
        DeviceError::Revoked(reason)
    }

    fn forget_session(&self) {
        let mut state = self.write_state();
        if state.session.is_some() {
            if let Some(client) = state.client.clone() {
                // The central ends the user session too, so a copy of this device's memory is no
                // use after sign-out. Taken now, so a quick sign-in again keeps its new session.
                // Best effort: unsent, it ends on its own when idle.
                let taken = client.take_user_session();
                if let (Some(session), Ok(runtime)) = (taken, tokio::runtime::Handle::try_current())
                {
                    runtime.spawn(async move {
                        if let Err(e) = client.logout(&session).await {
                            tracing::info!(error = %e, "sign-out not confirmed by the central");
                        }
                    });
                }
            }
        }
        state.session = None;
        state.lease_expires_at = None;
        state.recent.clear();
        state.recent_order.clear();
        state.searches.clear();
        state.search_order.clear();
    }

    /// Signs in online when the central answers (setting up the offline unlock and the lease),
    /// otherwise offline with this device's unlock for the user.
    pub async fn sign_in(&self, user_id: &str, pin: &str) -> Result<StatusView, DeviceError> {
        let user_id = user_id.trim();
        if user_id.is_empty() || pin.is_empty() {
            return Err(DeviceError::InvalidInput(
                "enter your user id and PIN".into(),
            ));
        }
        self.enrolment()?;
        // The central paused this user's online sign-in (too many attempts, perhaps elsewhere): the
        // device's own unlock may still open its copy; if not, the pause is what the user is told.
        let mut paused = None;
        let online = match self.authenticated().await {
            Ok(client) => match client.login(user_id, pin).await {
                Ok(login) => Some(login),
                Err(ClientError::Transient(_)) => None,
                Err(ClientError::Refused { code, message, .. }) if code == "too_many_attempts" => {
                    paused = Some(message);
                    None
                }
                Err(ClientError::Revoked(r)) => return Err(self.revoked(r).await),
                Err(ClientError::Refused { code, .. }) if code == "sign_in_refused" => {
                    return Err(DeviceError::SignInRefused)
                }
                Err(e) => return Err(e.into()),
            },
            Err(DeviceError::Offline(_)) => None,
            Err(e) => return Err(e),
        };
        let unlocked = match online {
            Some(login) => {
                let lease_key = decode_key(&login.lease.lease_key, "lease key")?;
                let mac = decode_key(&login.lease.mac, "lease MAC")?;
                // A new lease key starts a fresh cache under new keys: no page fetched under the old
                // keys may land after that, so the sync round stops and this runs on its connection.
                self.round_stop.stop();
                let mut store = self.syncer.lock().await;
                let unlocked = store.login_online(
                    &login.user,
                    pin,
                    &lease_key,
                    login.lease.expires_at,
                    &mac,
                )?;
                let feed_key = FeedKey::from_base64(&login.feed_key.id, &login.feed_key.key)
                    .map_err(|e| {
                        DeviceError::Untrusted(format!("the sign-in answer's feed key: {e}"))
                    })?;
                store.keep_feed_key(&unlocked.keys, &feed_key)?;
                // New keys start an empty cache: nothing staged any more.
                store.load_staged_index(&self.staged)?;
                self.write_state().last_sync = store.last_sync_at()?;
                if let Ok(client) = self.client() {
                    client.set_user_session(Some(login.user_session.token.clone()));
                }
                (unlocked, Some(feed_key))
            }
            None => {
                let mut store = lock(&self.writer);
                let unlocked = match store.unlock(user_id, pin, self.now()) {
                    Err(VaultError::NoLocalUnlock) if paused.is_some() => {
                        return Err(DeviceError::Refused(paused.unwrap_or_default()))
                    }
                    other => other?,
                };
                // Signed in without the central: no user session, so live checks wait for the
                // next online sign-in; the feed key kept at the last one still opens new pages.
                let feed_key = store.feed_key(&unlocked.keys)?;
                if let Ok(client) = self.client() {
                    client.set_user_session(None);
                }
                (unlocked, feed_key)
            }
        };
        let (unlocked, feed_key) = unlocked;
        {
            let mut state = self.write_state();
            state.session = Some(Arc::new(Session {
                keys: unlocked.keys,
                user: unlocked.user,
                feed_key,
            }));
            state.lease_expires_at = Some(unlocked.lease_expires_at);
            state.last_activity = Some(self.now());
            state.signed_out_because = None;
            state.recent.clear();
            state.recent_order.clear();
            state.searches.clear();
            state.search_order.clear();
        }
        // A copy cached before search existed gets its date-of-birth index now that the keys are
        // open; a search still reads unindexed rows, so a failure here only costs speed.
        let session = self.read_state().session.clone();
        if let Some(session) = session {
            if let Err(e) = lock(&self.writer).index_dates_of_birth(&session.keys) {
                tracing::error!(error = %e, "could not index dates of birth for search");
            }
            // Updates downloaded while nobody was signed in open now, with or without a link. A
            // sync round under way applies them itself.
            if let Ok(mut store) = self.syncer.try_lock() {
                if let Err(e) = self.apply_kept_pages(&mut store, &session, self.now()) {
                    tracing::warn!(error = %e, "kept updates could not be applied");
                }
            }
        }
        self.wake.notify_one();
        Ok(self.status())
    }

    pub fn sign_out(&self) {
        self.forget_session();
        self.write_state().signed_out_because = None;
        // The pull must not go on with the keys of someone who has signed out.
        self.round_stop.stop();
    }

    /// Whether the central would answer a live check: an online sign-in gave a user session.
    fn holds_user_session(&self) -> bool {
        self.read_state()
            .client
            .as_ref()
            .is_some_and(|c| c.has_user_session())
    }

    fn accessor(&self, enrolment: &Enrolment, session: &Session) -> Accessor {
        Accessor {
            user_id: session.user.id.clone(),
            role: session.user.role.clone(),
            activity: session.user.activity,
            org_ods: enrolment.org_ods.clone(),
            org_name: enrolment.org_name.clone(),
            setting: enrolment.setting,
        }
    }

    /// The signed-in session, unless its lease has run out (then it is dropped: the cache must not
    /// open past the lease).
    fn session_valid(&self, now: DateTime<Utc>) -> Result<Arc<Session>, String> {
        let idle_limit =
            chrono::Duration::from_std(self.config.idle_sign_out).unwrap_or(chrono::Duration::MAX);
        let idle = {
            let state = self.read_state();
            state.session.is_some() && state.last_activity.is_some_and(|at| now - at > idle_limit)
        };
        if idle {
            self.forget_session();
            let why = format!(
                "Signed out because this device was not used for {} minutes. Sign in again.",
                idle_limit.num_minutes().max(1)
            );
            self.write_state().signed_out_because = Some(why.clone());
            return Err(why);
        }
        {
            let state = self.read_state();
            match (&state.session, state.lease_expires_at) {
                (None, _) => {
                    return Err(state
                        .signed_out_because
                        .clone()
                        .unwrap_or_else(|| "Sign in to open this device's copy.".into()))
                }
                (Some(s), Some(until)) if now <= until => return Ok(s.clone()),
                _ => {}
            }
        }
        let expired = self.write_state().lease_expires_at;
        self.forget_session();
        Err(format!(
            "This device has not been in contact with the central service since its access ran out{}. Connect to the network and sign in again.",
            expired
                .map(|e| format!(" on {}", cpis_core::ukdate::uk_time_text(e)))
                .unwrap_or_default()
        ))
    }

    /// The session for something the signed-in user did: valid, and counted as use (so the idle
    /// limit restarts). Reading the status never counts.
    fn session_in_use(&self, now: DateTime<Utc>) -> Result<Arc<Session>, String> {
        let session = self.session_valid(now)?;
        self.write_state().last_activity = Some(now);
        Ok(session)
    }

    /// The user is still there (the screen's "Stay signed in", or activity on the screen): the
    /// engine's idle limit restarts. Refused once the session has already ended.
    pub fn keep_alive(&self) -> Result<(), DeviceError> {
        self.session_in_use(self.now())
            .map(|_| ())
            .map_err(|_| DeviceError::NotSignedIn)
    }

    fn remember(&self, check_id: Uuid, check: RecentCheck) {
        let mut state = self.write_state();
        state.recent.insert(check_id, check);
        state.recent_order.push_back(check_id);
        while state.recent_order.len() > RECENT_CHECKS {
            if let Some(old) = state.recent_order.pop_front() {
                state.recent.remove(&old);
            }
        }
    }

    /// Hands an audit record to the audit writer: the answer does not wait for the write.
    fn audit(&self, session: &Arc<Session>, entry: AuditEntry) {
        let mut pending = lock(&self.audit.pending);
        pending.records.push((session.clone(), entry));
        pending.queued += 1;
    }

    /// Checks an NHS number: the cache answers at once; when the central answers within the
    /// deadline, one rule set (`check::decide`) settles what is shown. Never errors: every failure
    /// becomes an honest view. Takes no lock held across a network wait.
    pub async fn check(&self, nhs_input: &str, request: CheckRequest) -> CheckView {
        let check_id = Uuid::now_v7();
        let now = self.now();
        let nhs = match NhsNumber::parse(nhs_input) {
            Ok(n) => n,
            Err(e) => return check::invalid(check_id, e.to_string()),
        };
        let (enrolment, last_sync) = {
            let state = self.read_state();
            (state.enrolment.clone(), state.last_sync)
        };
        let session = match self.session_in_use(now) {
            Ok(s) => s,
            Err(reason) => return check::locked(check_id, reason, last_sync, now),
        };
        let Some(enrolment) = enrolment else {
            return check::locked(check_id, DeviceError::NotEnrolled.to_string(), None, now);
        };
        // Whether opening would notify, without building the accessor the check does not need.
        let notifies =
            cpis_core::setting::opening_notifies(enrolment.setting, session.user.activity)
                && !request.scheduled;
        let today = cpis_core::ukdate::uk_today(now);
        let rules = self.config.visibility;

        // The cache first: it always answers, on its own connection, whatever the sync is doing.
        let cached = match lock(&self.reader).lookup_indexed(&session.keys, &nhs, &self.staged) {
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
        let held = cached.map(|(record, las)| Shown {
            source: Source::Cache,
            data_as_of: last_sync,
            record,
            las,
            history: vec![],
        });

        // Then the central, live, under a short deadline, unless it is known to be unreachable.
        let live = if request.cache_only {
            None
        } else {
            let req = LiveCheckRequest {
                nhs_number: nhs,
                unscheduled: false,
                access_event: None,
            };
            match self.ask_central(&req).await {
                Ok(live) => live,
                Err(revoked) => return check::locked(check_id, revoked.to_string(), None, now),
            }
        };
        let decision = check::decide(&nhs, held, last_sync, live, today, &rules);
        if decision.live_refused {
            tracing::warn!(
                "the central's live answer was about another NHS number and was refused"
            );
        }
        let ctx = ResultContext {
            check_id,
            now,
            source: decision.source,
            data_as_of: decision.data_as_of,
            stale_after_secs: self.config.stale_after.as_secs() as i64,
            notifies,
        };
        self.audit(
            &session,
            AuditEntry {
                at: now,
                user_id: session.user.id.clone(),
                nhs_number: Some(nhs),
                outcome: if decision.record.is_some() {
                    "record_found"
                } else {
                    "no_record"
                }
                .to_string(),
                source: decision.audit_source().to_string(),
                search: None,
            },
        );
        let mut view = match &decision.record {
            None => ctx.miss(nhs.to_string()),
            Some(shown) => ctx.found(
                nhs.to_string(),
                &shown.record,
                &shown.las,
                vec![],
                false,
                &rules,
            ),
        };
        view.caveats.extend(decision.caveats.iter().cloned());
        if !request.cache_only
            && !self.holds_user_session()
            && self.read_state().online != Some(false)
        {
            view.caveats.push(
                "The national register was not asked: this sign-in has no session with the central service (it was made without a connection, or has ended there). Sign out and in again while connected to ask it.".into(),
            );
        }
        if request.pregnant && decision.record.is_none() {
            view.caveats.push(
                "Unborn child protection plans are held on the pregnant woman's own NHS number: this was that check.".into(),
            );
        }
        let found = decision.record.is_some();
        // Only a found record has an alert to open.
        if found {
            self.remember(
                check_id,
                RecentCheck {
                    nhs,
                    shown: decision.record,
                    pregnant: request.pregnant,
                    case_reference: request.case_reference.clone(),
                    scheduled: request.scheduled,
                    found_by: FoundBy::NhsNumber,
                },
            );
        }
        if found && request.open {
            return self.open_alert(check_id).await.unwrap_or(view);
        }
        view
    }

    /// The live check under one short deadline (authentication included), unless the central is
    /// known to be unreachable. `None` when it does not answer in time (the device's copy answers
    /// instead); an error only when the device was revoked, and then it has already handed in its
    /// events and wiped itself.
    async fn ask_central(
        &self,
        req: &LiveCheckRequest,
    ) -> Result<Option<LiveCheckResponse>, DeviceError> {
        self.ask_central_with(
            |client, deadline| async move { client.live_check(req, deadline).await },
        )
        .await
    }

    /// One live call under the live deadline, authentication included; see `ask_central`.
    async fn ask_central_with<T, F, Fut>(&self, call: F) -> Result<Option<T>, DeviceError>
    where
        F: FnOnce(Arc<CentralClient>, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let (online, client) = {
            let state = self.read_state();
            (state.online, state.client.clone())
        };
        let Some(client) = client else {
            return Ok(None);
        };
        if online == Some(false) {
            return Ok(None);
        }
        if !client.has_user_session() {
            // Signed in offline: the central answers a person's details only to an online sign-in.
            return Ok(None);
        }
        let deadline = self.config.live_check_deadline;
        let attempt = async {
            if !client.is_authenticated() {
                let device_id = self.enrolment().map_err(|_| None)?.device_id;
                self.authenticate(&client, device_id).await.map_err(Some)?;
            }
            call(client.clone(), deadline).await.map_err(Some)
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(Ok(answer)) => {
                self.set_online(true);
                Ok(Some(answer))
            }
            Ok(Err(Some(ClientError::Revoked(reason)))) => Err(self.revoked(reason).await),
            Ok(Err(Some(e))) => {
                self.set_online(!e.is_transient());
                match &e {
                    // The user session ended at the central: the client has dropped it, and the
                    // device token is still good.
                    ClientError::Refused { code, .. } if code == "user_session_required" => {}
                    ClientError::Refused { status: 401, .. } => client.forget_token(),
                    _ => {}
                }
                tracing::info!("live call unavailable, the cache answers");
                Ok(None)
            }
            Ok(Err(None)) => Ok(None),
            Err(_elapsed) => {
                // Too slow to wait for: the background probe says when the link is back.
                self.set_online(false);
                self.wake.notify_one();
                tracing::info!("live call past its deadline, the cache answers");
                Ok(None)
            }
        }
    }

    /// Opens the alert of the record a check showed: shows its details and, where the user and
    /// setting notify, queues the access event durably before trying to deliver it at once. Opens
    /// the record the check showed even when the link has gone since.
    pub async fn open_alert(&self, check_id: Uuid) -> Result<CheckView, DeviceError> {
        let now = self.now();
        let (nhs, shown, pregnant, case_reference, scheduled, found_by) = {
            let state = self.read_state();
            let recent = state.recent.get(&check_id).ok_or_else(|| {
                DeviceError::InvalidInput(
                    "that check is no longer open: check the number again".into(),
                )
            })?;
            (
                recent.nhs,
                recent.shown.clone(),
                recent.pregnant,
                recent.case_reference.clone(),
                recent.scheduled,
                recent.found_by,
            )
        };
        let shown = shown.ok_or_else(|| {
            DeviceError::InvalidInput("there is no record to open for that check".into())
        })?;
        let session = self
            .session_in_use(now)
            .map_err(|_| DeviceError::NotSignedIn)?;
        let enrolment = self.enrolment()?;
        let accessor = self.accessor(&enrolment, &session);
        let notifies = accessor.notifies() && !scheduled;
        let rules = self.config.visibility;
        let today = cpis_core::ukdate::uk_today(now);

        // Record the access first, durably: a notification recorded offline is still a notification.
        // Kept as the sealed envelope the outbox holds: the live call sends that same envelope.
        let event = if notifies {
            let (_, sealed) = lock(&self.writer).enqueue_access_sealed(
                nhs,
                accessor.clone(),
                case_reference,
                found_by,
                now,
            )?;
            Some(sealed)
        } else {
            None
        };
        self.wake.notify_one();

        // Deliver at once when the central answers, with the live record and access history.
        let req = LiveCheckRequest {
            nhs_number: nhs,
            unscheduled: notifies,
            access_event: event.clone(),
        };
        let live = self.ask_central(&req).await?;
        if let (Some(answer), Some(e)) = (&live, &event) {
            if answer.access_recorded {
                lock(&self.writer).mark_delivered(&[e.id], now)?;
            }
        }
        let shown_as_of = shown.data_as_of;
        let decision = check::decide(&nhs, Some(shown), shown_as_of, live, today, &rules);
        let shown = decision
            .record
            .as_ref()
            .expect("a held record is always shown");
        self.audit(
            &session,
            AuditEntry {
                at: now,
                user_id: accessor.user_id.clone(),
                nhs_number: Some(nhs),
                outcome: "alert_opened".into(),
                source: decision.audit_source().to_string(),
                search: None,
            },
        );
        let ctx = ResultContext {
            check_id,
            now,
            source: decision.source,
            data_as_of: decision.data_as_of,
            stale_after_secs: self.config.stale_after.as_secs() as i64,
            notifies,
        };
        let mut view = ctx.found(
            nhs.to_string(),
            &shown.record,
            &shown.las,
            shown.history.clone(),
            true,
            &rules,
        );
        view.caveats.extend(decision.caveats.iter().cloned());
        if decision.source == Source::Cache {
            view.caveats.push(
                "Access history comes from the central service and is shown when this device is connected.".into(),
            );
        }
        if found_by == FoundBy::NameAndDateOfBirth {
            view.caveats.push(
                "Found by name and date of birth, not by a verified NHS number: make sure this is your patient.".into(),
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
            Some(e) => match lock(&self.reader).event_state(e.id)?.as_deref() {
                Some("delivered") => NotificationState::Delivered,
                _ => NotificationState::Queued,
            },
        });
        Ok(view)
    }

    /// Searches by name and date of birth. This device's copy answers at once through its
    /// date-of-birth index; when the central answers within the live deadline its search over the
    /// whole register is joined in (a live "too many" stands; otherwise the people both found are
    /// tiered together, so a record the central no longer holds is never hidden). One rule,
    /// `search::tier`, decides the tier. Bad input is an error naming the field; every search is
    /// audited.
    pub async fn search(&self, input: &SearchInput) -> Result<SearchView, DeviceError> {
        let search_id = Uuid::now_v7();
        let now = self.now();
        let today = cpis_core::ukdate::uk_today(now);
        let query = SearchQuery::parse(
            &input.family_name,
            &input.date_of_birth,
            input.given_name.as_deref(),
            input.sex.as_deref(),
            input.postcode_district.as_deref(),
            today,
        )
        .map_err(|e| DeviceError::InvalidInput(e.to_string()))?;
        let (enrolment, last_sync) = {
            let state = self.read_state();
            (state.enrolment.clone(), state.last_sync)
        };
        let session = match self.session_in_use(now) {
            Ok(s) => s,
            Err(reason) => return Ok(search_locked(search_id, reason, last_sync, now)),
        };
        let Some(enrolment) = enrolment else {
            return Ok(search_locked(
                search_id,
                DeviceError::NotEnrolled.to_string(),
                None,
                now,
            ));
        };
        let accessor = self.accessor(&enrolment, &session);
        let rules = self.config.visibility;
        let dates = search::candidate_dates(query.date_of_birth);

        let held: Vec<Shown> = {
            let store = lock(&self.reader);
            let found = match store.born_on(&session.keys, &dates) {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(error = %e, "cache search failed");
                    return Ok(search_locked(
                        search_id,
                        format!("This device's copy could not be read: {e}"),
                        last_sync,
                        now,
                    ));
                }
            };
            let mut held = Vec::new();
            for record in found.into_iter().filter(|r| !r.is_expired(today, &rules)) {
                let mut las = Vec::new();
                for ods in record.holders() {
                    las.extend(store.local_authority(&session.keys, &ods)?);
                }
                held.push(Shown {
                    source: Source::Cache,
                    data_as_of: last_sync,
                    record,
                    las,
                    history: vec![],
                });
            }
            held
        };

        let live: Option<LiveSearchResponse> = if input.cache_only {
            None
        } else {
            let req = LiveSearchRequest {
                query: query.clone(),
            };
            match self
                .ask_central_with(|client, deadline| {
                    let req = &req;
                    async move { client.live_search(req, deadline).await }
                })
                .await
            {
                Ok(live) => live,
                Err(revoked) => {
                    return Ok(search_locked(search_id, revoked.to_string(), None, now))
                }
            }
        };
        let (source, data_as_of) = match &live {
            Some(_) => (Source::Central, Some(now)),
            None => (Source::Cache, last_sync),
        };
        let (people, tiered) = match live {
            Some(answer) if answer.outcome == search::TierKind::TooMany => (
                vec![],
                Tiered::TooMany {
                    candidates: answer.total,
                },
            ),
            live => {
                let fresher: Vec<Shown> = live
                    .map(|a| a.candidates)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| !c.record.is_expired(today, &rules))
                    .map(|c: LiveSearchCandidate| Shown {
                        source: Source::Central,
                        data_as_of: Some(c.as_of),
                        record: c.record,
                        las: if c.local_authorities.is_empty() {
                            c.local_authority.into_iter().collect()
                        } else {
                            c.local_authorities
                        },
                        history: vec![],
                    })
                    .collect();
                let mut people: Vec<Shown> = held
                    .into_iter()
                    .filter(|h| {
                        !fresher
                            .iter()
                            .any(|f| f.record.nhs_number == h.record.nhs_number)
                    })
                    .collect();
                people.extend(fresher);
                let records: Vec<_> = people.iter().map(|p| p.record.clone()).collect();
                let tiered = search::tier(&query, &records);
                (people, tiered)
            }
        };

        let audit = |nhs: Option<NhsNumber>, step: &str, candidates: usize| AuditEntry {
            at: now,
            user_id: accessor.user_id.clone(),
            nhs_number: nhs,
            outcome: format!("search_{step}"),
            source: match source {
                Source::Cache => "cache",
                Source::Central => "central",
            }
            .to_string(),
            search: Some(SearchAudit {
                search_id,
                entered: query.clone(),
                candidates,
                step: step.to_string(),
            }),
        };
        let stale_after_secs = self.config.stale_after.as_secs() as i64;
        let age = check::data_age(now, data_as_of);
        let mut view = SearchView {
            search_id,
            outcome: SearchOutcome::NoMatch,
            message: String::new(),
            reason: None,
            source,
            data_as_of,
            data_age_seconds: age,
            stale: age.map(|a| a > stale_after_secs).unwrap_or(true),
            candidates: vec![],
            matched: None,
            answer: None,
            caveats: vec![],
        };
        match tiered {
            Tiered::Match { index, how } => {
                let shown = people[index].clone();
                let nhs = shown.record.nhs_number;
                self.audit(&session, audit(Some(nhs), "match", 1));
                let (answer, _) = self.found_by_search(
                    &session,
                    &enrolment,
                    shown.clone(),
                    input.case_reference.clone(),
                    now,
                );
                view.outcome = SearchOutcome::Match;
                view.message = check::SEARCH_MATCH_MESSAGE.into();
                view.matched = Some(card(1, &shown.record, how));
                view.source = answer.source;
                view.data_as_of = answer.data_as_of;
                view.data_age_seconds = answer.data_age_seconds;
                view.stale = answer.stale;
                view.answer = Some(answer);
            }
            Tiered::PossibleMatches(list) => {
                self.audit(&session, audit(None, "possible_matches", list.len()));
                view.outcome = SearchOutcome::PossibleMatches;
                view.message = check::SEARCH_POSSIBLE_MESSAGE.into();
                view.candidates = list
                    .iter()
                    .enumerate()
                    .map(|(k, (i, how))| card(k + 1, &people[*i].record, *how))
                    .collect();
                view.caveats = vec![check::SEARCH_CONFIRM_CAVEAT.into()];
                let candidates = list.iter().map(|(i, _)| people[*i].clone()).collect();
                self.remember_search(
                    search_id,
                    RecentSearch {
                        query: query.clone(),
                        candidates,
                        case_reference: input.case_reference.clone(),
                    },
                );
            }
            Tiered::TooMany { candidates } => {
                self.audit(&session, audit(None, "too_many", candidates));
                view.outcome = SearchOutcome::TooMany;
                view.message = check::SEARCH_TOO_MANY_MESSAGE.into();
                view.caveats = vec![check::SEARCH_TOO_MANY_ADVICE.into()];
            }
            Tiered::NoMatch => {
                self.audit(&session, audit(None, "no_match", 0));
                view.outcome = SearchOutcome::NoMatch;
                view.message = check::SEARCH_MISS_MESSAGE.into();
                view.caveats = check::search_miss_caveats(source, data_as_of);
            }
        }
        Ok(view)
    }

    /// The clinician confirms that possible match `candidate` (1-based) is their patient: the
    /// answer is that person's check, exactly as if their NHS number had been checked; opening it
    /// is `open_alert`. Audited with the choice.
    pub fn choose_candidate(
        &self,
        search_id: Uuid,
        candidate: usize,
    ) -> Result<CheckView, DeviceError> {
        let now = self.now();
        let (shown, query, case_reference, count) = {
            let state = self.read_state();
            let recent = state.searches.get(&search_id).ok_or_else(|| {
                DeviceError::InvalidInput("that search is no longer open: search again".into())
            })?;
            let shown = candidate
                .checked_sub(1)
                .and_then(|i| recent.candidates.get(i))
                .cloned()
                .ok_or_else(|| {
                    DeviceError::InvalidInput(format!(
                        "candidate: choose a number from 1 to {}",
                        recent.candidates.len()
                    ))
                })?;
            (
                shown,
                recent.query.clone(),
                recent.case_reference.clone(),
                recent.candidates.len(),
            )
        };
        let session = self
            .session_in_use(now)
            .map_err(|_| DeviceError::NotSignedIn)?;
        let enrolment = self.enrolment()?;
        let nhs = shown.record.nhs_number;
        self.audit(
            &session,
            AuditEntry {
                at: now,
                user_id: session.user.id.clone(),
                nhs_number: Some(nhs),
                outcome: "search_chosen".into(),
                source: match shown.source {
                    Source::Cache => "cache",
                    Source::Central => "central",
                }
                .into(),
                search: Some(SearchAudit {
                    search_id,
                    entered: query,
                    candidates: count,
                    step: "chosen".into(),
                }),
            },
        );
        self.write_state().searches.remove(&search_id);
        let (view, _) = self.found_by_search(&session, &enrolment, shown, case_reference, now);
        Ok(view)
    }

    /// "None of these": the clinician says no card is their patient. Audited; the answer is the
    /// no-match answer with its caveats.
    pub fn none_of_these(&self, search_id: Uuid) -> Result<SearchView, DeviceError> {
        let now = self.now();
        let recent = self
            .write_state()
            .searches
            .remove(&search_id)
            .ok_or_else(|| {
                DeviceError::InvalidInput("that search is no longer open: search again".into())
            })?;
        let session = self
            .session_in_use(now)
            .map_err(|_| DeviceError::NotSignedIn)?;
        let source = recent
            .candidates
            .first()
            .map(|c| c.source)
            .unwrap_or(Source::Cache);
        let data_as_of = match source {
            Source::Central => Some(now),
            Source::Cache => self.read_state().last_sync,
        };
        self.audit(
            &session,
            AuditEntry {
                at: now,
                user_id: session.user.id.clone(),
                nhs_number: None,
                outcome: "search_none_of_these".into(),
                source: "clinician".into(),
                search: Some(SearchAudit {
                    search_id,
                    entered: recent.query,
                    candidates: recent.candidates.len(),
                    step: "none_of_these".into(),
                }),
            },
        );
        let age = check::data_age(now, data_as_of);
        Ok(SearchView {
            search_id,
            outcome: SearchOutcome::NoMatch,
            message: check::SEARCH_MISS_MESSAGE.into(),
            reason: None,
            source,
            data_as_of,
            data_age_seconds: age,
            stale: age
                .map(|a| a > self.config.stale_after.as_secs() as i64)
                .unwrap_or(true),
            candidates: vec![],
            matched: None,
            answer: None,
            caveats: check::search_miss_caveats(source, data_as_of),
        })
    }

    /// The check answer of a person found by a search, remembered so that `open_alert` opens
    /// exactly this record and tells the LA how the person was found.
    fn found_by_search(
        &self,
        session: &Arc<Session>,
        enrolment: &Enrolment,
        shown: Shown,
        case_reference: Option<String>,
        now: DateTime<Utc>,
    ) -> (CheckView, Uuid) {
        let check_id = Uuid::now_v7();
        let accessor = self.accessor(enrolment, session);
        let ctx = ResultContext {
            check_id,
            now,
            source: shown.source,
            data_as_of: shown.data_as_of,
            stale_after_secs: self.config.stale_after.as_secs() as i64,
            notifies: accessor.notifies(),
        };
        let nhs = shown.record.nhs_number;
        let mut view = ctx.found(
            nhs.to_string(),
            &shown.record,
            &shown.las,
            vec![],
            false,
            &self.config.visibility,
        );
        view.caveats.push(
            "Found by name and date of birth, not by a verified NHS number: make sure this is your patient.".into(),
        );
        self.remember(
            check_id,
            RecentCheck {
                nhs,
                shown: Some(shown),
                pregnant: false,
                case_reference,
                scheduled: false,
                found_by: FoundBy::NameAndDateOfBirth,
            },
        );
        (view, check_id)
    }

    fn remember_search(&self, search_id: Uuid, search: RecentSearch) {
        let mut state = self.write_state();
        state.searches.insert(search_id, search);
        state.search_order.push_back(search_id);
        while state.search_order.len() > RECENT_CHECKS {
            if let Some(old) = state.search_order.pop_front() {
                state.searches.remove(&old);
            }
        }
    }

    /// Pull then push, on the sync's own connection. Pulling needs the signed-in session's keys;
    /// pushing does not (events are sealed to the central), so a locked device still delivers its
    /// outbox. A round in progress makes this wait for it; checks never do.
    pub async fn sync(
        &self,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncSummary, DeviceError> {
        let mut store = self.syncer.lock().await;
        // Offline too: retention does not wait for a signal.
        apply_retention(&mut store, &self.config);
        let ticket = self.round_stop.ticket();
        let result = self.sync_round(&mut store, progress, ticket).await;
        // A pull applies pages even when a later one fails: what was applied counts.
        if let Ok(at) = store.last_sync_at() {
            self.write_state().last_sync = at;
        }
        match result {
            Err(DeviceError::Revoked(reason)) => Err(self.revoked_with(&mut store, reason).await),
            other => other,
        }
    }

    async fn sync_round(
        &self,
        store: &mut DeviceStore,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
        ticket: sync::Ticket<'_>,
    ) -> Result<SyncSummary, DeviceError> {
        let enrolment = self.enrolment()?;
        let now = self.now();
        let client = match ticket.run(self.authenticated_for_sync()).await? {
            Ok(c) => c,
            Err(e) => {
                if matches!(e, DeviceError::Offline(_)) {
                    self.set_online(false);
                }
                return Err(e);
            }
        };
        self.set_online(true);
        let mut summary = SyncSummary {
            pages: 0,
            records: 0,
            bytes: 0,
            cursor: store.cursor()?,
            events_delivered: 0,
            events_dead: 0,
            events_queued: 0,
            pull_skipped: None,
        };
        // Any contact renews the lease.
        match ticket.run(client.renew_lease()).await? {
            Ok(renewal) => {
                let mac = decode_key(&renewal.mac, "lease MAC")?;
                store.renew_lease(renewal.expires_at, &mac)?;
                let mut state = self.write_state();
                if state.session.is_some() {
                    state.lease_expires_at = Some(renewal.expires_at);
                }
            }
            Err(ClientError::Revoked(r)) => return Err(DeviceError::Revoked(r)),
            Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
        }
        // Needs only the device token, so a round with nobody signed in keeps them current too.
        self.refresh_emergency_numbers(store, &client, ticket)
            .await?;
        let session = self.read_state().session.clone();
        let session = session.and_then(|s| {
            if s.feed_key.is_none() {
                summary.pull_skipped = Some(
                    "sign in while online once to receive the key that opens the region's updates"
                        .into(),
                );
                None
            } else {
                Some(s)
            }
        });
        if let Some(session) = &session {
            // What was downloaded while nobody was signed in goes in first, with no download. A
            // failure here must not hold up the push: the pull below downloads afresh.
            if let Err(e) = self.apply_kept_pages(store, session, now) {
                tracing::warn!(error = %e, "kept updates could not be applied");
            }
        }
        let pull_result = match session {
            Some(session) => Some(
                sync::pull(
                    store,
                    sync::Pull {
                        client: &client,
                        keys: &session.keys,
                        feed_key: session.feed_key.as_ref().expect("checked just above"),
                        enrolment: &enrolment,
                        now,
                        page_limit: self.config.page_limit,
                        progress,
                        ticket,
                        staged: &self.staged,
                    },
                )
                .await,
            ),
            None => {
                if summary.pull_skipped.is_none() {
                    // Nobody signed in: download anyway, kept sealed until the next sign-in opens it.
                    let kept = match sync::fetch_sealed(
                        store,
                        &client,
                        &enrolment,
                        self.config.page_limit,
                        ticket,
                    )
                    .await
                    {
                        Ok(kept) => kept,
                        Err(SyncError::Interrupted) => return Err(DeviceError::Interrupted),
                        Err(SyncError::Client(ClientError::Revoked(r))) => {
                            return Err(DeviceError::Revoked(r))
                        }
                        Err(e) => {
                            self.note_client_failure(&client, &e);
                            tracing::info!(error = %e, "updates could not be downloaded for later");
                            0
                        }
                    };
                    summary.pull_skipped = Some(if kept > 0 {
                        format!("{kept} page(s) of updates downloaded sealed: they are applied at the next sign-in")
                    } else {
                        "sign in to update this device's copy".into()
                    });
                }
                None
            }
        };
        if let Ok(at) = store.last_sync_at() {
            self.write_state().last_sync = at;
        }
        // Push even when the pull failed: notifications must not wait on the read path.
        let push_result = match pull_result {
            Some(Err(SyncError::Interrupted)) => Err(SyncError::Interrupted),
            _ => sync::push(store, &client, now, true, ticket).await,
        };
        if let Some(result) = pull_result {
            match result {
                Ok(t) => {
                    summary.pages = t.pages;
                    summary.records = t.records;
                    summary.bytes = t.bytes;
                    summary.cursor = t.cursor;
                }
                Err(e) => {
                    self.note_client_failure(&client, &e);
                    return Err(e.into());
                }
            }
        }
        match push_result {
            Ok(t) => {
                summary.events_delivered = t.delivered;
                summary.events_dead = t.dead;
            }
            Err(e) => {
                self.note_client_failure(&client, &e);
                return Err(e.into());
            }
        }
        summary.events_queued = store.outbox_summary()?.queued;
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

    /// Applies the pages kept sealed while nobody was signed in, with the signed-in user's keys.
    fn apply_kept_pages(
        &self,
        store: &mut DeviceStore,
        session: &Session,
        now: DateTime<Utc>,
    ) -> Result<(), DeviceError> {
        let (Some(feed_key), Ok(enrolment)) = (&session.feed_key, self.enrolment()) else {
            return Ok(());
        };
        if store.sealed_pages_end()?.is_none() {
            return Ok(());
        }
        let records = sync::apply_sealed(
            store,
            &session.keys,
            feed_key,
            &enrolment,
            now,
            &self.staged,
        )?;
        tracing::info!(records, "updates downloaded before sign-in applied");
        self.write_state().last_sync = store.last_sync_at()?;
        Ok(())
    }

    /// Authentication for a sync round: a revocation is reported, not handled here, because the
    /// round already holds the sync connection the hand-in needs.
    async fn authenticated_for_sync(&self) -> Result<Arc<CentralClient>, DeviceError> {
        let enrolment = self.enrolment()?;
        let client = self.client()?;
        if !client.is_authenticated() {
            let result = self.authenticate(&client, enrolment.device_id).await;
            self.set_online(!matches!(result, Err(ClientError::Transient(_))));
            result?;
        }
        Ok(client)
    }

    fn note_client_failure(&self, client: &CentralClient, e: &SyncError) {
        if let SyncError::Client(c) = e {
            if c.is_transient() {
                self.set_online(false);
            }
            if let ClientError::Refused { status: 401, .. } = c {
                // The token expired: authenticate afresh next time.
                client.forget_token();
            }
        }
    }

    /// Asks the central whether it answers and keeps the verdict for `status`.
    pub async fn probe(&self) -> bool {
        let Ok(client) = self.client() else {
            return false;
        };
        let reachable = client.probe().await;
        self.set_online(reachable);
        reachable
    }

    /// One background round: probe, then deliver due events and pull when signed in. Returns
    /// whether it reached the central.
    pub async fn background_round(&self, progress: &(dyn Fn(SyncProgress) + Send + Sync)) -> bool {
        if self.read_state().enrolment.is_none() {
            return false;
        }
        if !self.probe().await {
            return false;
        }
        match self.sync(progress).await {
            Ok(_) => true,
            Err(e) => {
                tracing::info!(error = %e, "background sync round did not finish");
                false
            }
        }
    }

    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// What the status screen shows. Reads the last connectivity verdict (the background probe
    /// keeps it current); never waits on the network or on a sync in progress.
    pub fn status(&self) -> StatusView {
        let now = self.now();
        let locked = self.session_valid(now).is_err();
        let (enrolment, online, last_sync_at, session, lease) = {
            let state = self.read_state();
            (
                state.enrolment.clone(),
                state.online.unwrap_or(false),
                state.last_sync,
                state.session.clone(),
                state.lease_expires_at,
            )
        };
        let age = check::data_age(now, last_sync_at);
        let store = lock(&self.reader);
        let outbox = store.outbox_summary().ok();
        let user = session.as_ref().map(|s| UserView {
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
            cached_flags: store.flag_count().unwrap_or(0),
            cursor: store.cursor().unwrap_or(0),
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
            lease_expires_at: lease.or_else(|| store.lease_expires_at().ok().flatten()),
            wiped_reason: store.get_meta("wiped_reason").ok().flatten(),
        }
    }

    /// The region this device is enrolled in.
    pub fn region(&self) -> Option<Region> {
        self.read_state()
            .enrolment
            .as_ref()
            .map(|e| e.region.clone())
    }

    /// SHA-256 of the cached region (flags and LAs), comparable with the central's region digest.
    pub fn cache_digest(&self) -> Result<String, DeviceError> {
        let session = self
            .read_state()
            .session
            .clone()
            .ok_or(DeviceError::NotSignedIn)?;
        Ok(lock(&self.reader).cache_digest(&session.keys)?)
    }
}

/// Keeps the outbox draining and the cache fresh without waiting for a user action: at start, on a
/// timer (30 s when healthy), with capped jittered backoff while the central is unreachable, and at
/// once when a new event is queued or the central becomes reachable again. The round runs beside
/// the clinician's commands, never in front of them.
pub fn spawn_background_sync(
    device: Arc<Device>,
    on_progress: Arc<dyn Fn(SyncProgress) + Send + Sync>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let wake = device.wake_handle();
        let mut failures: u32 = 0;
        loop {
            let ok = device.background_round(&*on_progress).await;
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

    #[tokio::test]
    async fn delivered_events_past_the_retention_go_when_the_device_opens_and_before_each_sync() {
        use super::{Device, DeviceConfig};
        use chrono::Utc;
        use cpis_core::store::{DeviceStore, Enrolment};
        use cpis_core::{Accessor, Activity, CareSetting, NhsNumber, OdsCode, Region};
        let dir = tempfile::tempdir().unwrap();
        let org = OdsCode::parse("RX1").unwrap();
        let old = Utc::now() - chrono::Duration::days(100);
        let deliver_old = |store: &mut DeviceStore, i: u32| {
            let accessor = Accessor {
                user_id: "para1".into(),
                role: "Paramedic".into(),
                activity: Activity::B0107,
                org_ods: org.clone(),
                org_name: "Synthetic Trust".into(),
                setting: CareSetting::Ambulance,
            };
            let e = store
                .enqueue_access(NhsNumber::test_range(i), accessor, None, old)
                .unwrap();
            store.mark_delivered(&[e.id], old).unwrap();
        };
        let delivered = || {
            DeviceStore::open(dir.path())
                .unwrap()
                .outbox_summary()
                .unwrap()
                .delivered
        };
        {
            let mut store = DeviceStore::open(dir.path()).unwrap();
            store
                .enrol(&Enrolment {
                    device_id: uuid::Uuid::now_v7(),
                    region: Region::parse("north").unwrap(),
                    org_ods: org.clone(),
                    org_name: "Synthetic Trust".into(),
                    setting: CareSetting::Ambulance,
                    // Nothing listens there: the sync round below finds the central unreachable.
                    central_url: "http://127.0.0.1:9".into(),
                    central_signing_key: [7; 32],
                    central_sealing_key: [9; 32],
                })
                .unwrap();
            deliver_old(&mut store, 1);
        }
        assert_eq!(delivered(), 1);
        let device = Device::open(DeviceConfig::new(dir.path())).unwrap();
        assert_eq!(delivered(), 0);
        deliver_old(&mut DeviceStore::open(dir.path()).unwrap(), 2);
        assert_eq!(delivered(), 1);
        let _offline = device.sync(&|_| {}).await;
        assert_eq!(delivered(), 0);
    }

    #[test]
    fn plain_http_is_judged_on_the_parsed_url_and_a_user_name_is_refused() {
        for bad in [
            "http://localhost:80@elsewhere.example",
            "http://[::1]@elsewhere.example",
            "http://127.0.0.1@elsewhere.example:8750",
            "https://user@central.example.org",
            "https://user:secret@central.example.org",
            "http://user@127.0.0.1:8750",
        ] {
            assert!(!central_url_allowed(bad), "{bad}");
        }
    }
}
