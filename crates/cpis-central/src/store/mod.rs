//! The central's storage: one async `Store` trait, with an embedded SQLite implementation (the
//! default) and a PostgreSQL one. Business rules live in `service`; a store persists what it is
//! given, each method in one transaction, so both implementations behave the same.

pub mod migrations;
pub mod pg_tls;
pub mod postgres;
pub mod sqlite;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use cpis_core::plan::VisibilityRules;
use cpis_core::search::{SearchQuery, TierKind};
use cpis_core::wire::{FeedOp, Notification};
use cpis_core::{
    AccessEvent, Activity, CareSetting, FlagRecord, LocalAuthority, NhsNumber, OdsCode, Region,
};
use serde::Serialize;
use uuid::Uuid;
use zeroize::Zeroizing;

pub use pg_tls::{DatabaseTls, PgConnectError};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("database URL '{0}' is not understood: use sqlite:PATH or postgres://...")]
    BadUrl(String),
    #[error("migration {name} differs from the one applied to this database (checksum changed); shipped migrations must never be edited")]
    MigrationChanged { name: String },
    #[error("no local authority with ODS code {0}")]
    UnknownLa(OdsCode),
    #[error("another upload for this local authority landed while this one was being decided")]
    UploadRaced,
    #[error("stored data does not decode: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Connection(#[from] PgConnectError),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(e.to_string())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Database(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Corrupt(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The central's long-lived keys. Not `Clone`-happy in logs: `Debug` is redacted.
pub struct StoredKeys {
    pub signing_pkcs8: Zeroizing<Vec<u8>>,
    pub sealing_secret: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for StoredKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoredKeys(***)")
    }
}

/// A local authority as the central keeps it: the public record plus where notifications go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaRecord {
    pub la: LocalAuthority,
    pub webhook_url: Option<String>,
}

/// What `upsert_la` should do with the webhook URL.
#[derive(Debug, Clone)]
pub enum WebhookChange {
    Keep,
    Set(Option<String>),
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionRecord {
    pub region: Region,
    pub lease_hours: u32,
}

/// What an LA's upload comes to (decided by `upload_decision`), for the store to apply in one
/// transaction: that LA's own records to store and to delete. The store then republishes each
/// person touched, merged across every LA that holds them.
#[derive(Debug, Clone)]
pub struct UploadOps {
    pub puts: Vec<FlagRecord>,
    pub removes: Vec<NhsNumber>,
    /// The LA's last upload time the decision was based on: if another upload landed since, the
    /// store refuses with `UploadRaced` and the service decides again.
    pub based_on: Option<DateTime<Utc>>,
}

/// A slice of a region's feed, read in one transaction.
#[derive(Debug, Clone)]
pub struct FeedSlice {
    pub ops: Vec<FeedOp>,
    pub head: u64,
    pub has_more: bool,
}

#[derive(Debug, Clone)]
pub struct NewEnrolment {
    pub code_hash: String,
    pub region: Region,
    pub org_ods: OdsCode,
    pub org_name: String,
    pub setting: CareSetting,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Why an enrolment code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolRefusal {
    Unknown,
    Used,
    Expired,
}

pub struct NewDevice {
    pub id: Uuid,
    pub public_key: [u8; 32],
    pub lease_key: Zeroizing<[u8; 32]>,
    pub enrolled_at: DateTime<Utc>,
}

/// How far a session's idle end may lag behind its last use: a live check reads the session and
/// writes it only about once a minute, not on every call.
pub const SESSION_IDLE_SLACK: chrono::Duration = chrono::Duration::minutes(1);

/// A user session as stored: the token only as its SHA-256.
#[derive(Debug, Clone)]
pub struct UserSessionRow {
    pub token_hash: String,
    pub device_id: Uuid,
    pub user_id: String,
    pub idle_until: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// An enrolled device. The lease key never appears in `Debug`.
#[derive(Clone)]
pub struct DeviceRecord {
    pub id: Uuid,
    pub public_key: Vec<u8>,
    pub region: Region,
    pub org_ods: OdsCode,
    pub org_name: String,
    pub setting: CareSetting,
    pub lease_key: Zeroizing<Vec<u8>>,
    pub enrolled_at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for DeviceRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceRecord")
            .field("id", &self.id)
            .field("region", &self.region)
            .field("org_ods", &self.org_ods)
            .field("setting", &self.setting)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// One live check as the central answered it: which device and user asked, when, and whether a
/// record was found. Kept against the person asked about (see migration 0002_live_lookups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveLookup {
    pub at: DateTime<Utc>,
    pub device_id: Uuid,
    pub user_id: String,
    pub found: bool,
    /// Set when the person was returned by a search by name and date of birth (the search's id
    /// in `searches`), not looked up by NHS number.
    pub search_id: Option<i64>,
}

/// One search by name and date of birth as the central answered it (migration 0005_name_search).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveSearch {
    /// Set once stored.
    pub id: Option<i64>,
    pub at: DateTime<Utc>,
    pub device_id: Uuid,
    pub user_id: String,
    pub query: SearchQuery,
    pub outcome: TierKind,
    /// How many people matched at all.
    pub candidates: usize,
}

/// A client system registered for the FHIR facade: its accesses are recorded under this
/// organisation and care setting. The token is held only as a hash, never in this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FhirClientRecord {
    pub client_id: Uuid,
    pub org_ods: OdsCode,
    pub org_name: String,
    pub setting: CareSetting,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A device as the admin's `devices` listing shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceSummary {
    pub device_id: Uuid,
    pub region: Region,
    pub org_ods: OdsCode,
    pub org_name: String,
    pub setting: CareSetting,
    pub enrolled_at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
    pub revoked: bool,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&DeviceRecord> for DeviceSummary {
    fn from(d: &DeviceRecord) -> Self {
        Self {
            device_id: d.id,
            region: d.region.clone(),
            org_ods: d.org_ods.clone(),
            org_name: d.org_name.clone(),
            setting: d.setting,
            enrolled_at: d.enrolled_at,
            last_seen: d.last_seen,
            revoked: d.revoked_at.is_some(),
            revoked_at: d.revoked_at,
        }
    }
}

/// A user who can sign in on a device of their organisation. The PIN is held only as a PBKDF2 hash.
#[derive(Clone)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    pub activity: Activity,
    pub org_ods: OdsCode,
    pub pin_salt: Vec<u8>,
    pub pin_hash: Vec<u8>,
    pub pin_iterations: u32,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("org_ods", &self.org_ods)
            .finish_non_exhaustive()
    }
}

/// One access event to store, with the notifications the service decided it brings (their `seq`
/// is set by the store).
#[derive(Debug, Clone)]
pub struct EventIntake {
    pub event: AccessEvent,
    pub notifications: Vec<(OdsCode, Notification)>,
}

/// What became of one event offered to `ingest_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    Stored,
    AlreadyStored,
}

/// A notification waiting for its LA's webhook, claimed by one instance until `claimed_until`.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub la: OdsCode,
    pub seq: u64,
    pub attempts: u32,
    pub webhook_url: String,
    pub notification: Notification,
    /// The claim this delivery was handed out under: its outcome is recorded only with it.
    pub claim: Uuid,
    pub claimed_until: DateTime<Utc>,
}

/// Webhook delivery backlog, for monitoring: counts over LAs that have a webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryBacklog {
    pub pending: u64,
    pub failed: u64,
    /// When the oldest notification still waiting for delivery was made.
    pub oldest_pending: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    Delivered {
        at: DateTime<Utc>,
    },
    Retry {
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: String,
    },
    GaveUp {
        attempts: u32,
        error: String,
    },
}

/// An LA upload as it arrives: which LA, which of its tokens (a prefix of the token's hash, enough
/// to tell tokens apart, not to find one), and when.
#[derive(Debug, Clone)]
pub struct NewLaUpload {
    pub la: OdsCode,
    pub token_ref: String,
    pub received_at: DateTime<Utc>,
}

/// What came of an upload: `accepted`, `refused` (with the refusal's code) or `failed`.
#[derive(Debug, Clone)]
pub struct LaUploadOutcome {
    pub outcome: &'static str,
    pub rows: Option<u64>,
    /// Counts or a refusal code; never a row's contents.
    pub detail: Option<String>,
}

/// One LA upload as the audit trail keeps it. `outcome` is `started` (no outcome recorded),
/// `accepted`, `refused`, `failed` or `rate_limited`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaUploadRecord {
    pub id: i64,
    pub la: OdsCode,
    pub token_ref: String,
    pub received_at: DateTime<Utc>,
    pub rows: Option<u64>,
    pub outcome: String,
    pub detail: Option<String>,
}

/// The central's storage. Each method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for logs and test names.
    fn backend(&self) -> &'static str;

    /// The central's keys: those stored, or `fresh` stored now when there are none yet.
    async fn central_keys(&self, fresh: StoredKeys) -> StoreResult<StoredKeys>;

    // Regions and local authorities.

    /// Creates or updates an LA (creating its region on first use). When the LA moves region its
    /// record and its people are removed from the old region's feed and put in the new one.
    async fn upsert_la(
        &self,
        la: &LocalAuthority,
        webhook: WebhookChange,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn set_lease_hours(
        &self,
        region: &Region,
        hours: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn region(&self, region: &Region) -> StoreResult<Option<RegionRecord>>;
    async fn regions(&self) -> StoreResult<Vec<RegionRecord>>;
    async fn local_authority(&self, ods: &OdsCode) -> StoreResult<Option<LaRecord>>;
    async fn local_authorities(&self) -> StoreResult<Vec<LaRecord>>;

    // The register and the region feeds.

    /// One LA's own records (its plans only), with its last upload time.
    async fn la_records(
        &self,
        la: &OdsCode,
    ) -> StoreResult<(Vec<FlagRecord>, Option<DateTime<Utc>>)>;
    /// Applies an upload's operations for `la` and records the upload time. Returns how many people
    /// the LA holds afterwards.
    async fn apply_upload(
        &self,
        la: &OdsCode,
        ops: UploadOps,
        now: DateTime<Utc>,
    ) -> StoreResult<usize>;
    /// Loads LAs and flags in one transaction, for demo data: fast, and replaces any person present.
    async fn bulk_load(
        &self,
        las: Vec<LocalAuthority>,
        flags: Vec<FlagRecord>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn flag(&self, nhs: &NhsNumber) -> StoreResult<Option<FlagRecord>>;
    /// When the LA's last upload was accepted (`apply_upload` and `bulk_load` keep it).
    async fn la_last_upload(&self, ods: &OdsCode) -> StoreResult<Option<DateTime<Utc>>>;
    async fn flag_count(&self) -> StoreResult<u64>;
    /// Turns every record with nothing left to show into a removal. Returns how many.
    async fn expire_flags(
        &self,
        today: NaiveDate,
        rules: VisibilityRules,
        now: DateTime<Utc>,
    ) -> StoreResult<usize>;
    /// The region's operations with `seq > after`, in seq order, at most `limit`.
    async fn feed_page(&self, region: &Region, after: u64, limit: u32) -> StoreResult<FeedSlice>;
    /// The region's live content as a device holds it: flags and LAs currently put.
    async fn region_content(
        &self,
        region: &Region,
    ) -> StoreResult<(Vec<FlagRecord>, Vec<LocalAuthority>)>;

    // Enrolment, devices, device authentication.

    async fn create_enrolment(&self, enrolment: NewEnrolment) -> StoreResult<()>;
    /// Uses the code (once) and registers the device, in one transaction.
    async fn redeem_enrolment(
        &self,
        code_hash: &str,
        device: NewDevice,
        now: DateTime<Utc>,
    ) -> StoreResult<Result<DeviceRecord, EnrolRefusal>>;
    async fn device(&self, id: Uuid) -> StoreResult<Option<DeviceRecord>>;
    async fn devices(&self) -> StoreResult<Vec<DeviceRecord>>;
    /// Revokes a device. Its tokens stay until they expire, so its next call is told it is revoked
    /// (403 `device_revoked`) rather than merely unauthenticated. False when there is no such device.
    async fn revoke_device(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Records contact from a device at `now`, only when its stored last contact is before
    /// `unless_since` (or unknown): a conditional write, so frequent calls from any number of
    /// instances write at most once per interval. True when it wrote.
    async fn touch_device(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        unless_since: DateTime<Utc>,
    ) -> StoreResult<bool>;
    async fn create_challenge(
        &self,
        device: Uuid,
        challenge: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Removes and returns a challenge (single use, whatever happens next).
    async fn take_challenge(&self, challenge: &str) -> StoreResult<Option<(Uuid, DateTime<Utc>)>>;
    async fn create_device_token(
        &self,
        token_hash: &str,
        device: Uuid,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn device_for_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Uuid>>;
    /// Opens a user session on a device and ends every other session of that device: one user is
    /// signed in on a device at a time.
    async fn open_user_session(&self, session: &UserSessionRow) -> StoreResult<()>;
    /// The user of a live session of `device` (neither idle past `idle_until` nor past its end),
    /// moving its idle end to `idle_until_new` (never past its hard end) when that is more than
    /// `SESSION_IDLE_SLACK` later than it stands, so most calls only read. `None` for a session
    /// unknown, ended, or opened on another device.
    async fn use_user_session(
        &self,
        token_hash: &str,
        device: Uuid,
        now: DateTime<Utc>,
        idle_until_new: DateTime<Utc>,
    ) -> StoreResult<Option<String>>;
    /// Ends a session of `device` (sign-out). True when there was one.
    async fn end_user_session(&self, token_hash: &str, device: Uuid) -> StoreResult<bool>;

    // Users and LA credentials.

    async fn upsert_user(&self, user: &UserRecord, now: DateTime<Utc>) -> StoreResult<()>;
    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    /// Counts one online sign-in attempt for a user (by the hash of its id) and returns the attempts
    /// in its window, this one included, in one statement: a window that started at or before
    /// `window_cutoff` starts again at one at `now`. Rows of ended windows are deleted, so the table
    /// holds only users tried within one window.
    async fn take_sign_in_attempt(
        &self,
        user_hash: &str,
        now: DateTime<Utc>,
        window_cutoff: DateTime<Utc>,
    ) -> StoreResult<u32>;
    /// Forgets a user's attempts after a sign-in that succeeded.
    async fn clear_sign_in_attempts(&self, user_hash: &str) -> StoreResult<()>;
    async fn create_la_token(
        &self,
        token_hash: &str,
        la: &OdsCode,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The LA of a token that is neither expired nor revoked at `now`.
    async fn la_for_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<OdsCode>>;
    /// Revokes every token of the LA not yet revoked and ends its inbox sessions; how many tokens.
    async fn revoke_la_tokens(&self, la: &OdsCode, now: DateTime<Utc>) -> StoreResult<u64>;

    // The LA inbox page's sessions.

    /// Stores a new inbox session (by the hash of its id), opened with the token of `token_hash`;
    /// sessions that have ended are deleted.
    async fn create_inbox_session(
        &self,
        session_hash: &str,
        la: &OdsCode,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The LA of a session that has not ended and whose token is still valid at `now`.
    async fn inbox_session(
        &self,
        session_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<OdsCode>>;
    async fn end_inbox_session(&self, session_hash: &str) -> StoreResult<()>;

    // The LA upload audit trail, which is also the per-LA upload rate limit.

    /// Records an upload arriving, unless the LA already has `limit` uploads recorded since
    /// `window_cutoff` (rate-limited ones not counted): then the refusal is recorded instead and
    /// `None` returned. Count and record are one transaction, serialised per LA, so concurrent
    /// uploads on several centrals cannot all pass.
    async fn begin_la_upload(
        &self,
        upload: &NewLaUpload,
        window_cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Option<i64>>;
    /// Records what came of an upload begun with `begin_la_upload`.
    async fn finish_la_upload(&self, id: i64, outcome: &LaUploadOutcome) -> StoreResult<()>;
    /// The newest uploads first, of one LA or of all.
    async fn la_uploads(
        &self,
        la: Option<&OdsCode>,
        limit: u32,
    ) -> StoreResult<Vec<LaUploadRecord>>;

    // FHIR client systems.

    async fn create_fhir_client(
        &self,
        client: &FhirClientRecord,
        token_hash: &str,
    ) -> StoreResult<()>;
    /// The client a token belongs to, revoked or not (the caller tells the two apart).
    async fn fhir_client_for_token(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<FhirClientRecord>>;
    async fn fhir_clients(&self) -> StoreResult<Vec<FhirClientRecord>>;
    /// Revokes a client (its token stops working at once). False when there is no such client.
    async fn revoke_fhir_client(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool>;

    // Access events and notifications.

    /// Stores each event once (by id). For a newly stored event, adds its notifications (one per LA
    /// the service decided to tell, each given that LA's next sequence number) in the same
    /// transaction; an event already stored adds none.
    async fn ingest_events(
        &self,
        events: Vec<EventIntake>,
        received_at: DateTime<Utc>,
    ) -> StoreResult<Vec<Ingested>>;
    /// A person's accesses from unscheduled settings, newest (device time) first, at most `limit`.
    async fn unscheduled_accesses(
        &self,
        nhs: &NhsNumber,
        limit: u32,
    ) -> StoreResult<Vec<AccessEvent>>;
    async fn event_count(&self) -> StoreResult<u64>;
    /// Records one live check (found or not) against the person asked about.
    async fn record_lookup(&self, nhs: &NhsNumber, lookup: &LiveLookup) -> StoreResult<()>;
    /// The register's people born on one of `dates`: a search's candidates.
    async fn flags_born_on(&self, dates: &[NaiveDate]) -> StoreResult<Vec<FlagRecord>>;
    /// Records one search and, against each person it returned, a lookup marked with the search.
    async fn record_search(&self, search: &LiveSearch, returned: &[NhsNumber]) -> StoreResult<()>;
    /// The latest searches, newest first, at most `limit`.
    async fn searches(&self, limit: u32) -> StoreResult<Vec<LiveSearch>>;
    /// Who asked the central about this person, newest first, at most `limit`.
    async fn lookups_of(&self, nhs: &NhsNumber, limit: u32) -> StoreResult<Vec<LiveLookup>>;
    /// An LA's notifications with `seq > after`, in order, at most `limit`.
    async fn notification_page(
        &self,
        la: &OdsCode,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<Notification>>;
    /// All of an LA's notifications with `seq > after`, in order.
    async fn notifications(&self, la: &OdsCode, after: u64) -> StoreResult<Vec<Notification>> {
        let mut all = Vec::new();
        let mut cursor = after;
        loop {
            let page = self.notification_page(la, cursor, 1_000).await?;
            match page.last() {
                Some(last) => cursor = last.seq,
                None => return Ok(all),
            }
            all.extend(page);
        }
    }
    async fn notification_count(&self) -> StoreResult<u64>;
    /// Claims up to `limit` deliveries due at `now` (oldest first) that nobody holds a live claim
    /// on, until `claim_until`, in one atomic step: two instances calling at once never get the same
    /// one, and a claim left by a crashed instance is taken over once it lapses.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<PendingDelivery>>;
    /// Records a claimed delivery's outcome and releases the claim. False (nothing written) when the
    /// claim lapsed and another instance took the delivery over, or it is no longer pending.
    async fn record_delivery(
        &self,
        delivery: &PendingDelivery,
        outcome: DeliveryOutcome,
    ) -> StoreResult<bool>;
    /// Pending and failed webhook deliveries and the age of the oldest pending one.
    async fn delivery_backlog(&self) -> StoreResult<DeliveryBacklog>;
    /// Each region's feed head (its highest sequence number; 0 for an empty feed).
    async fn feed_heads(&self) -> StoreResult<Vec<(Region, u64)>>;
    /// Migrations this binary knows that the database has not applied (the store answering at all
    /// also shows it is reachable).
    async fn missing_migrations(&self) -> StoreResult<Vec<&'static str>>;
    /// Delivery state of one notification, for tests and the admin: (state, attempts).
    async fn delivery_state(&self, event_id: Uuid) -> StoreResult<Option<(String, u32)>>;

    /// The SHA-256 digest of the region's live content, as the device computes over its cache.
    async fn region_digest(&self, region: &Region) -> StoreResult<String> {
        let (flags, las) = self.region_content(region).await?;
        Ok(crate::digest::region_digest(&flags, &las))
    }
}

/// Opens the store a database URL names (`sqlite:PATH` or `postgres://...`) and applies migrations.
pub async fn open_store(db_url: &str) -> StoreResult<Arc<dyn Store>> {
    open_store_with(db_url, &DatabaseTls::default()).await
}

/// As `open_store`, with the operator's TLS options for a PostgreSQL database.
pub async fn open_store_with(db_url: &str, tls: &DatabaseTls) -> StoreResult<Arc<dyn Store>> {
    if let Some(path) = db_url.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        Ok(Arc::new(SqliteStore::open(path).await?))
    } else if db_url.starts_with("postgres://") || db_url.starts_with("postgresql://") {
        Ok(Arc::new(
            PostgresStore::connect_with(db_url, None, tls).await?,
        ))
    } else {
        Err(StoreError::BadUrl(pg_tls::without_password(db_url)))
    }
}

/// The feed key of a flagged person and of an LA.
pub(crate) fn flag_key(nhs: &NhsNumber) -> String {
    format!("flag:{}", nhs.as_digits())
}

pub(crate) fn la_key(ods: &OdsCode) -> String {
    format!("la:{ods}")
}
