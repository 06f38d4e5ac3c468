//! The HTTP protocol between devices, local authorities and the central: request and response bodies,
//! the signed region-feed page, and sealed access events. Both sides use these types, so the contract
//! lives in one place.
//!
//! Endpoints (all JSON unless stated; errors are `ApiError` with a 4xx/5xx status):
//! - `POST /v1/enrol` `EnrolRequest` -> `EnrolResponse` (no auth; the one-time code is the credential)
//! - `POST /v1/auth/challenge` `ChallengeRequest` -> `ChallengeResponse`
//! - `POST /v1/auth/token` `TokenRequest` -> `TokenResponse`; later device calls send `Authorization: Bearer`
//! - `POST /v1/login` `LoginRequest` -> `LoginResponse` (device token; user id and PIN): the lease, a
//!   user session and the region's feed key
//! - `POST /v1/logout` (no body) -> 204 (device token and user session; ends the session)
//! - `POST /v1/lease` (no body) -> `LeaseRenewal` (device token; extends the lease without the lease key)
//! - `GET  /v1/feed?after=N&limit=M` -> `SignedPage` (device token; the device's own region only;
//!   sealed to the region's feed key, so the device's key alone reads nobody)
//! - `GET  /v1/emergency-numbers` -> `SignedDirectory` (device token, no user; the device's own region)
//! - `POST /v1/events` `EventBatch` -> `EventBatchResult` (device token; idempotent on event id)
//! - `POST /v1/check` `LiveCheckRequest` -> `LiveCheckResponse` (device token and user session)
//! - `POST /v1/search` `LiveSearchRequest` -> `LiveSearchResponse` (device token and user session)
//! - `GET  /v1/status` -> `CentralStatus` (no auth; the device's connectivity probe)
//! - `GET  /v1/la/{ods}/notifications?after=N` -> `NotificationPage` (LA token, own LA only)
//! - `POST /v1/la/{ods}/upload` (text/csv body) -> `UploadReport` (LA token, own LA only)

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::{AccessEvent, FoundBy};
use crate::crypto::{hazmat, CryptoError};
use crate::la::{LocalAuthority, OdsCode, Region};
use crate::nhs::NhsNumber;
use crate::plan::FlagRecord;
use crate::search::{SearchQuery, TierKind};
use crate::setting::{Activity, CareSetting};
use crate::vault::FeedKey;

/// The header carrying a user session beside the device's bearer token.
pub const USER_SESSION_HEADER: &str = "x-cpis-user-session";

/// Largest page the central serves and the device accepts.
pub const MAX_PAGE_OPS: u32 = 5_000;
/// Largest access-event batch the central takes in one request.
pub const MAX_EVENT_BATCH: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// A stable code, e.g. `unauthorised`, `device_revoked`, `wrong_region`, `bad_request`.
    pub error: String,
    /// What was wrong, in words a support engineer can act on. Never personal data.
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolRequest {
    pub code: String,
    /// Base64 of the device's raw 32-byte Ed25519 public key.
    pub device_public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolResponse {
    pub device_id: Uuid,
    pub region: Region,
    pub org_ods: OdsCode,
    pub org_name: String,
    pub setting: CareSetting,
    /// Base64 of the central's Ed25519 public key that signs feed pages: pinned by the device.
    pub central_signing_key: String,
    /// Base64 of the central's X25519 public key that access events are sealed to.
    pub central_sealing_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChallengeRequest {
    pub device_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// Base64 of 32 random bytes; single use, short-lived.
    pub challenge: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRequest {
    pub device_id: Uuid,
    pub challenge: String,
    /// Base64 Ed25519 signature over `auth_message(device_id, challenge)`.
    pub signature: String,
}

/// What a device signs to prove it holds its enrolled key.
pub fn auth_message(device_id: Uuid, challenge: &str) -> Vec<u8> {
    format!("cpis-field/auth/v1\n{device_id}\n{challenge}").into_bytes()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// `Debug` shows the user id only: a request logged or in a panic message never shows the PIN.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub user_id: String,
    pub pin: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user_id", &self.user_id)
            .field("pin", &"***")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    pub id: String,
    pub name: String,
    /// The role shown in access history, e.g. "Paramedic".
    pub role: String,
    pub activity: Activity,
    pub org_ods: OdsCode,
}

/// How long the device may use its cache without contact. `lease_key` is a component of the key
/// that unlocks the cache, so an expired lease cannot be extended by the device alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// Whole seconds (the central truncates before computing `mac`).
    pub expires_at: DateTime<Utc>,
    /// Base64 of 32 bytes. Constant per device (made at enrolment), never sent again after login.
    pub lease_key: String,
    /// Base64 of `HMAC-SHA256(lease_key, lease_mac_message(device_id, expires_at))`: proves the expiry
    /// came from the central, so the device cannot move it without the lease key.
    pub mac: String,
}

/// `POST /v1/lease`: a new expiry for the lease, with its MAC under the lease key the device already
/// holds. The key itself is not sent again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRenewal {
    pub expires_at: DateTime<Utc>,
    pub mac: String,
}

/// What the lease MAC covers: the device and the expiry in whole seconds, RFC 3339 with `Z`.
pub fn lease_mac_message(device_id: Uuid, expires_at: DateTime<Utc>) -> Vec<u8> {
    format!(
        "cpis-field/lease/v1:{device_id}:{}",
        expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
    .into_bytes()
}

/// The answer to an online sign-in. `Debug` hides the session token and the feed key.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    pub user: UserProfile,
    pub lease: Lease,
    /// Sent in `USER_SESSION_HEADER` with the device's token on every call that answers with a
    /// person's details; valid only with this device's token.
    pub user_session: UserSessionGrant,
    /// The region's feed key, which opens the feed's pages.
    pub feed_key: FeedKeyGrant,
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("user", &self.user.id)
            .field("lease_expires_at", &self.lease.expires_at)
            .field("user_session_expires_at", &self.user_session.expires_at)
            .field("feed_key", &self.feed_key.id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct UserSessionGrant {
    pub token: String,
    /// The hard end; the session also ends after `idle_minutes` without use.
    pub expires_at: DateTime<Utc>,
    pub idle_minutes: u32,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct FeedKeyGrant {
    pub id: String,
    /// Base64 of 32 bytes.
    pub key: String,
}

/// One change to a region's flags, in the order the central assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedOp {
    pub seq: u64,
    #[serde(flatten)]
    pub change: FeedChange,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FeedChange {
    PutLa { la: LocalAuthority },
    RemoveLa { ods: OdsCode },
    PutFlag { record: FlagRecord },
    RemoveFlag { nhs_number: NhsNumber },
}

/// A page of a region's feed: the changes with `after < seq <= last`, in seq order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPage {
    pub region: Region,
    /// The cursor this page continues from; a device applies it only when it equals its own cursor.
    pub after: u64,
    /// The cursor after this page (`after` when the page is empty).
    pub last: u64,
    /// The newest seq of this region at the central when the page was made.
    pub head: u64,
    pub has_more: bool,
    pub generated_at: DateTime<Utc>,
    pub ops: Vec<FeedOp>,
}

/// A feed page as signed: the page's JSON sealed (AES-256-GCM) to the region's feed key, with its
/// place in the feed in the clear so a device with nobody signed in can still keep it for later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedFeedPage {
    pub region: Region,
    pub after: u64,
    pub last: u64,
    pub head: u64,
    pub has_more: bool,
    /// Which generation of the region's feed key it is sealed to.
    pub key_id: String,
    /// Base64 of `nonce || ciphertext || tag`.
    pub sealed: String,
}

/// A feed page as sent: the exact JSON bytes of a `SealedFeedPage`, base64, and the central's
/// Ed25519 signature over them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedPage {
    pub body: String,
    pub signature: String,
}

const PAGE_CONTEXT: &[u8] = b"cpis-field/feed-page/v2\n";

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("the page is not valid base64 or JSON: {0}")]
    Malformed(String),
    #[error("the page's signature does not match the central key pinned at enrolment")]
    BadSignature,
    #[error("the page is sealed to feed key {page} and this device holds {held}: sign in online to receive the region's current key")]
    OtherFeedKey { page: String, held: String },
    #[error("the page does not open with the region's feed key, or its contents differ from its envelope")]
    Unopenable,
}

fn page_aad(region: &Region, after: u64, last: u64, key_id: &str) -> Vec<u8> {
    format!(
        "{}{region}\n{after}\n{last}\n{key_id}",
        String::from_utf8_lossy(PAGE_CONTEXT)
    )
    .into_bytes()
}

impl SignedPage {
    /// Seals `page` to the region's feed key, then signs the sealed envelope.
    pub fn seal_and_sign(
        page: &FeedPage,
        feed_key: &FeedKey,
        signing_pkcs8: &[u8],
    ) -> Result<Self, CryptoError> {
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(page).expect("a feed page always serialises"),
        );
        let aad = page_aad(&page.region, page.after, page.last, feed_key.id());
        let envelope = SealedFeedPage {
            region: page.region.clone(),
            after: page.after,
            last: page.last,
            head: page.head,
            has_more: page.has_more,
            key_id: feed_key.id().to_string(),
            sealed: B64.encode(feed_key.seal(&aad, &plain)),
        };
        let (body, signature) = sign_json(PAGE_CONTEXT, &envelope, signing_pkcs8)?;
        Ok(Self { body, signature })
    }

    /// Verifies the signature against the pinned key, then decodes the envelope. Nothing is decoded
    /// before it verifies.
    pub fn verify(&self, pinned_public: &[u8]) -> Result<SealedFeedPage, PageError> {
        verify_json(PAGE_CONTEXT, &self.body, &self.signature, pinned_public).map_err(|e| match e {
            Unverified::Malformed(m) => PageError::Malformed(m),
            Unverified::BadSignature => PageError::BadSignature,
        })
    }

    /// Verifies, then opens with the region's feed key.
    pub fn open(&self, pinned_public: &[u8], feed_key: &FeedKey) -> Result<FeedPage, PageError> {
        self.verify(pinned_public)?.open(feed_key)
    }
}

impl SealedFeedPage {
    /// Opens the page; its contents must agree with the envelope that was signed.
    pub fn open(&self, feed_key: &FeedKey) -> Result<FeedPage, PageError> {
        if self.key_id != feed_key.id() {
            return Err(PageError::OtherFeedKey {
                page: self.key_id.clone(),
                held: feed_key.id().to_string(),
            });
        }
        let sealed = B64
            .decode(&self.sealed)
            .map_err(|e| PageError::Malformed(e.to_string()))?;
        let aad = page_aad(&self.region, self.after, self.last, &self.key_id);
        let plain = feed_key
            .open(&aad, &sealed)
            .map_err(|_| PageError::Unopenable)?;
        let page: FeedPage =
            serde_json::from_slice(&plain).map_err(|e| PageError::Malformed(e.to_string()))?;
        if page.region != self.region
            || page.after != self.after
            || page.last != self.last
            || page.head != self.head
            || page.has_more != self.has_more
        {
            return Err(PageError::Unopenable);
        }
        Ok(page)
    }
}

enum Unverified {
    Malformed(String),
    BadSignature,
}

/// JSON of `value`, base64, and the Ed25519 signature over `context` followed by the JSON bytes.
/// The context keeps a signature made for one kind of document from passing for another.
fn sign_json<T: Serialize>(
    context: &[u8],
    value: &T,
    signing_pkcs8: &[u8],
) -> Result<(String, String), CryptoError> {
    let body = serde_json::to_vec(value).expect("a wire document always serialises");
    let mut message = context.to_vec();
    message.extend_from_slice(&body);
    let signature = hazmat::ed25519_sign(signing_pkcs8, &message)?;
    Ok((B64.encode(body), B64.encode(signature)))
}

fn verify_json<T: serde::de::DeserializeOwned>(
    context: &[u8],
    body: &str,
    signature: &str,
    pinned_public: &[u8],
) -> Result<T, Unverified> {
    let body = B64
        .decode(body)
        .map_err(|e| Unverified::Malformed(e.to_string()))?;
    let signature = B64
        .decode(signature)
        .map_err(|e| Unverified::Malformed(e.to_string()))?;
    let mut message = context.to_vec();
    message.extend_from_slice(&body);
    hazmat::ed25519_verify(pinned_public, &message, &signature)
        .map_err(|_| Unverified::BadSignature)?;
    serde_json::from_slice(&body).map_err(|e| Unverified::Malformed(e.to_string()))
}

/// One local authority's public numbers: what a clinician phones when the device's copy cannot be
/// opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyContact {
    pub ods: OdsCode,
    pub name: String,
    pub emergency_phone: String,
    pub office_phone: Option<String>,
}

impl From<&LocalAuthority> for EmergencyContact {
    fn from(la: &LocalAuthority) -> Self {
        Self {
            ods: la.ods.clone(),
            name: la.name.clone(),
            emergency_phone: la.emergency_phone.clone(),
            office_phone: la.office_phone.clone(),
        }
    }
}

/// The region's local authorities and their public numbers. Nothing in it is personal, so the
/// device keeps it outside the PIN-locked cache: it is what a locked device can still show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyDirectory {
    pub region: Region,
    pub generated_at: DateTime<Utc>,
    /// In name order.
    pub local_authorities: Vec<EmergencyContact>,
}

/// An emergency directory as sent and as kept on the device: the exact JSON bytes, base64, and the
/// central's Ed25519 signature over them, so a copy edited at rest is refused when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDirectory {
    pub body: String,
    pub signature: String,
}

const DIRECTORY_CONTEXT: &[u8] = b"cpis-field/emergency-numbers/v1\n";

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("the emergency numbers are not valid base64 or JSON: {0}")]
    Malformed(String),
    #[error("the emergency numbers' signature does not match the central key pinned at enrolment: they have been altered")]
    BadSignature,
}

impl SignedDirectory {
    pub fn sign(directory: &EmergencyDirectory, signing_pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let (body, signature) = sign_json(DIRECTORY_CONTEXT, directory, signing_pkcs8)?;
        Ok(Self { body, signature })
    }

    /// Verifies the signature against the pinned key, then decodes. Nothing is decoded before it verifies.
    pub fn verify(&self, pinned_public: &[u8]) -> Result<EmergencyDirectory, DirectoryError> {
        verify_json(
            DIRECTORY_CONTEXT,
            &self.body,
            &self.signature,
            pinned_public,
        )
        .map_err(|e| match e {
            Unverified::Malformed(m) => DirectoryError::Malformed(m),
            Unverified::BadSignature => DirectoryError::BadSignature,
        })
    }
}

/// An access event sealed to the central's X25519 key. The id and device sequence travel in clear
/// for idempotency and ordering; everything else only the central can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedEvent {
    pub id: Uuid,
    pub device_seq: u64,
    /// Base64 of `hazmat::seal_to(central_sealing_key, event_aad(id), json(AccessEvent))`.
    pub sealed: String,
}

pub fn event_aad(id: Uuid) -> Vec<u8> {
    format!("cpis-field/access-event/v1:{id}").into_bytes()
}

impl SealedEvent {
    pub fn seal(event: &AccessEvent, central_sealing_public: &[u8; 32]) -> Self {
        let json = serde_json::to_vec(event).expect("an event always serialises");
        Self {
            id: event.id,
            device_seq: event.device_seq,
            sealed: B64.encode(hazmat::seal_to(
                central_sealing_public,
                &event_aad(event.id),
                &json,
            )),
        }
    }

    /// Opens with the central's X25519 secret; the id inside must match the id outside.
    pub fn open(&self, central_sealing_secret: &[u8; 32]) -> Result<AccessEvent, String> {
        let sealed = B64
            .decode(&self.sealed)
            .map_err(|_| "sealed payload is not base64".to_string())?;
        let json = hazmat::open_sealed(central_sealing_secret, &event_aad(self.id), &sealed)
            .map_err(|_| {
                "sealed payload does not open: tampered or sealed to another key".to_string()
            })?;
        let event: AccessEvent =
            serde_json::from_slice(&json).map_err(|e| format!("event does not decode: {e}"))?;
        if event.id != self.id || event.device_seq != self.device_seq {
            return Err("the sealed event's id or sequence differs from the envelope".into());
        }
        Ok(event)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventBatch {
    pub events: Vec<SealedEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Stored now.
    Accepted,
    /// Already stored by an earlier delivery: the device treats it as delivered.
    Duplicate,
    /// Refused for good (the reason says why): the device moves it to its dead-letter list.
    Rejected,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventResult {
    pub id: Uuid,
    pub status: EventStatus,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventBatchResult {
    pub results: Vec<EventResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveCheckRequest {
    pub nhs_number: NhsNumber,
    /// The national API's `IsUnscheduledAccessEvent`: whether this access notifies.
    pub unscheduled: bool,
    /// When the access notifies, the event itself (the same id the outbox holds), so the central
    /// records it once whichever path arrives first.
    pub access_event: Option<SealedEvent>,
}

/// One line of a person's access history: who looked, from where, when (the device's time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessHistoryEntry {
    pub at: DateTime<Utc>,
    pub org_ods: OdsCode,
    pub org_name: String,
    pub role: String,
    pub setting: CareSetting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveOutcome {
    RecordFound,
    NoRecord,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveCheckResponse {
    pub outcome: LiveOutcome,
    pub record: Option<FlagRecord>,
    /// The LA whose plan started most recently.
    pub local_authority: Option<LocalAuthority>,
    /// Every LA holding a plan in `record`, `local_authority` first.
    #[serde(default)]
    pub local_authorities: Vec<LocalAuthority>,
    /// The 25 most recent unscheduled accesses, newest first.
    pub access_history: Vec<AccessHistoryEntry>,
    /// Whether the access event in the request was recorded (or had been already).
    pub access_recorded: bool,
    pub as_of: DateTime<Utc>,
}

/// A search by name and date of birth over the central's whole register.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveSearchRequest {
    pub query: SearchQuery,
}

/// One person the central's search returned, as fresh as their LA's last accepted upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveSearchCandidate {
    pub record: FlagRecord,
    pub local_authority: Option<LocalAuthority>,
    /// Every LA holding a plan in `record`, `local_authority` first.
    #[serde(default)]
    pub local_authorities: Vec<LocalAuthority>,
    pub as_of: DateTime<Utc>,
}

/// The central's tier (`search::tier` over its register). People are sent only for a match (one)
/// and possible matches (up to five): "too many" and "no match" carry nobody.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveSearchResponse {
    pub outcome: TierKind,
    pub candidates: Vec<LiveSearchCandidate>,
    /// How many people matched at all.
    pub total: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CentralStatus {
    pub service: String,
    pub version: String,
    pub time: DateTime<Utc>,
}

/// What an LA is told: a flagged child (or mother) was seen in unscheduled care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The LA's own feed position.
    pub seq: u64,
    /// The access event's id: receivers de-duplicate on it.
    pub event_id: Uuid,
    pub nhs_number: NhsNumber,
    pub family_name: String,
    pub given_names: String,
    pub date_of_birth: NaiveDate,
    /// When the clinician looked (the device's time), not when it was sent.
    pub seen_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub org_ods: OdsCode,
    pub org_name: String,
    pub setting: CareSetting,
    pub role: String,
    pub user_id: String,
    pub case_reference: Option<String>,
    /// `name_and_date_of_birth` when the clinician found the person by a search rather than a
    /// verified NHS number; absent from notifications made before search existed.
    #[serde(default)]
    pub found_by: FoundBy,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    /// The cursor to pass as `after` next time.
    pub next: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRowResult {
    /// 1-based line of the file (the header is line 1).
    pub line: usize,
    pub accepted: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadReport {
    pub la: OdsCode,
    pub rows: Vec<UploadRowResult>,
    pub accepted_rows: usize,
    pub rejected_rows: usize,
    /// People stored after the upload.
    pub people: usize,
    /// People whose every plan is gone from the register (a delete date passed, or every plan
    /// ended longer ago than it stays shown). Absence from the file never removes anyone.
    pub removed: usize,
    /// People one of whose plans this upload ended because the file left it out.
    #[serde(default)]
    pub ended: usize,
    /// Per person, what the upload ended, kept or removed and why. People whose record the file
    /// simply put or left unchanged are not listed.
    #[serde(default)]
    pub changes: Vec<PersonChange>,
}

/// What an upload did to one of the uploading LA's own people, beyond storing the rows it gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonChange {
    pub nhs_number: NhsNumber,
    /// The file's lines for this person (none when the file left them out).
    pub lines: Vec<usize>,
    /// `ended`, `kept` or `removed`.
    pub action: String,
    /// The plan kinds concerned (CPPI, LACI, UCPI).
    pub plans: Vec<String>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Plan, PlanKind};

    #[test]
    fn a_login_requests_debug_never_shows_the_pin() {
        let req = LoginRequest {
            user_id: "para1".into(),
            pin: "8642".into(),
        };
        let shown = format!("{req:?} {req:#?}");
        assert!(shown.contains("para1"));
        assert!(!shown.contains("8642"), "{shown}");
    }

    fn page() -> FeedPage {
        FeedPage {
            region: Region::parse("north").unwrap(),
            after: 0,
            last: 1,
            head: 1,
            has_more: false,
            generated_at: Utc::now(),
            ops: vec![FeedOp {
                seq: 1,
                change: FeedChange::PutFlag {
                    record: FlagRecord {
                        nhs_number: NhsNumber::test_range(1),
                        family_name: "Testwood".into(),
                        given_names: "Sam".into(),
                        date_of_birth: NaiveDate::from_ymd_opt(2018, 1, 2).unwrap(),
                        local_id: None,
                        local_authority: OdsCode::parse("X01").unwrap(),
                        plans: vec![Plan {
                            kind: PlanKind::ChildProtection,
                            start: NaiveDate::from_ymd_opt(2025, 1, 2).unwrap(),
                            end: None,
                            due: None,
                            delete: None,
                            local_authority: None,
                        }],
                    },
                },
            }],
        }
    }

    fn feed_key(id: &str) -> FeedKey {
        FeedKey::new(id, hazmat::random_bytes::<32>())
    }

    #[test]
    fn a_signed_page_verifies_only_against_its_key_and_unchanged() {
        let key = hazmat::ed25519_generate();
        let public = hazmat::ed25519_public(&key).unwrap();
        let region_key = feed_key("k1");
        let original = page();
        let signed = SignedPage::seal_and_sign(&original, &region_key, &key).unwrap();
        assert_eq!(signed.open(&public, &region_key).unwrap(), original);

        let other = hazmat::ed25519_public(&hazmat::ed25519_generate()).unwrap();
        assert!(matches!(
            signed.verify(&other),
            Err(PageError::BadSignature)
        ));

        let mut body = B64.decode(&signed.body).unwrap();
        let at = body.iter().position(|b| *b == b'k').unwrap();
        body[at] = b'X';
        let tampered = SignedPage {
            body: B64.encode(body),
            signature: signed.signature.clone(),
        };
        assert!(matches!(
            tampered.verify(&public),
            Err(PageError::BadSignature)
        ));
    }

    #[test]
    fn a_page_is_sealed_to_the_regions_feed_key_and_says_nothing_without_it() {
        let key = hazmat::ed25519_generate();
        let public = hazmat::ed25519_public(&key).unwrap();
        let region_key = feed_key("k1");
        let original = page();
        let signed = SignedPage::seal_and_sign(&original, &region_key, &key).unwrap();

        // The signed bytes carry nobody: no NHS number, name or date of birth.
        let body = String::from_utf8(B64.decode(&signed.body).unwrap()).unwrap();
        let FeedChange::PutFlag { record } = &original.ops[0].change else {
            panic!("the test page puts a flag")
        };
        let digits: String = record
            .nhs_number
            .digits()
            .iter()
            .map(|d| d.to_string())
            .collect();
        for secret in [
            digits.as_str(),
            record.family_name.as_str(),
            &record.date_of_birth.to_string(),
        ] {
            assert!(!body.contains(secret), "the envelope shows {secret}");
        }
        // Anyone can check the signature and the page's place, but only the key opens it.
        let envelope = signed.verify(&public).unwrap();
        assert_eq!((envelope.after, envelope.last), (0, 1));
        let same_id_other_bytes = feed_key("k1");
        assert!(matches!(
            envelope.open(&same_id_other_bytes),
            Err(PageError::Unopenable)
        ));
        assert!(matches!(
            envelope.open(&feed_key("k2")),
            Err(PageError::OtherFeedKey { .. })
        ));
        // An envelope moved to another place in the feed does not open.
        let moved = SealedFeedPage {
            after: 7,
            last: 8,
            ..envelope.clone()
        };
        assert!(matches!(
            moved.open(&region_key),
            Err(PageError::Unopenable)
        ));
        assert_eq!(envelope.open(&region_key).unwrap(), original);
    }

    #[test]
    fn a_signed_directory_verifies_only_unchanged_and_a_page_signature_does_not_pass_for_one() {
        let key = hazmat::ed25519_generate();
        let public = hazmat::ed25519_public(&key).unwrap();
        let directory = EmergencyDirectory {
            region: Region::parse("north").unwrap(),
            generated_at: Utc::now(),
            local_authorities: vec![EmergencyContact {
                ods: OdsCode::parse("X01").unwrap(),
                name: "Testshire".into(),
                emergency_phone: "0300 555 0100".into(),
                office_phone: None,
            }],
        };
        let signed = SignedDirectory::sign(&directory, &key).unwrap();
        assert_eq!(signed.verify(&public).unwrap(), directory);

        let edited = String::from_utf8(B64.decode(&signed.body).unwrap())
            .unwrap()
            .replace("0300 555 0100", "0300 555 0199");
        let tampered = SignedDirectory {
            body: B64.encode(edited),
            signature: signed.signature.clone(),
        };
        assert!(matches!(
            tampered.verify(&public),
            Err(DirectoryError::BadSignature)
        ));

        // The same bytes signed as a feed page are not a directory.
        let (body, signature) = sign_json(PAGE_CONTEXT, &directory, &key).unwrap();
        assert!(matches!(
            SignedDirectory { body, signature }.verify(&public),
            Err(DirectoryError::BadSignature)
        ));
    }

    #[test]
    fn feed_ops_serialise_with_an_op_tag() {
        let json = serde_json::to_value(&page().ops[0]).unwrap();
        assert_eq!(json["op"], "put_flag");
        assert_eq!(json["seq"], 1);
    }
}
