//! The central's use cases, shared by the HTTP API and the admin commands: enrolment and device
//! authentication, user sign-in and leases, the signed region feed, access-event intake, the live
//! check with access history, LA uploads and notifications. Refusals are `ApiFailure`s.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Duration, NaiveDate, SubsecRound, Utc};
use cpis_core::crypto::hazmat;
use cpis_core::plan::VisibilityRules;
use cpis_core::search::{self, SearchQuery, Sex, Tiered};
use cpis_core::vault::FeedKey;
use cpis_core::wire::{
    self, AccessHistoryEntry, ChallengeRequest, ChallengeResponse, EnrolRequest, EnrolResponse,
    EventBatch, EventBatchResult, EventResult, EventStatus, FeedKeyGrant, FeedPage, Lease,
    LeaseRenewal, LiveCheckRequest, LiveCheckResponse, LiveOutcome, LiveSearchCandidate,
    LiveSearchRequest, LiveSearchResponse, LoginRequest, LoginResponse, Notification,
    NotificationPage, SealedEvent, SignedDirectory, SignedPage, TokenRequest, TokenResponse,
    UploadReport, UserSessionGrant,
};
use cpis_core::{
    AccessEvent, Activity, CareSetting, FlagRecord, LocalAuthority, NhsNumber, OdsCode, Region,
};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::auth::{self, PinAuthenticator, SignInError, UserAuthenticator};
use crate::error::ApiFailure;
use crate::store::{
    DeviceRecord, EnrolRefusal, EventIntake, Ingested, LiveLookup, LiveSearch, NewDevice,
    NewEnrolment, Store, StoreError, StoredKeys, UploadOps, UserRecord, UserSessionRow,
    WebhookChange,
};
use crate::{upload, upload_decision};
use cpis_core::ukdate::uk_today;

/// How long a device bearer token lives.
pub const TOKEN_LIFETIME: Duration = Duration::hours(1);
/// How long an authentication challenge may be answered.
pub const CHALLENGE_LIFETIME: Duration = Duration::minutes(5);
/// How long a one-time enrolment code stays usable.
pub const ENROLMENT_CODE_LIFETIME: Duration = Duration::hours(24);
/// A region's lease when nobody has set one.
pub const DEFAULT_LEASE_HOURS: u32 = 72;
/// Access history shown with a record.
pub const ACCESS_HISTORY_LEN: usize = 25;
/// Sign-in attempts in a row (wrong PINs, or any refusal) before a user's online sign-in pauses, and
/// for how long: the window the store counts them in.
pub const SIGN_IN_FAILURE_LIMIT: u32 = 5;
pub const SIGN_IN_PAUSE: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// The role an LA is shown for an access by a user the central does not hold at the device's
/// organisation.
pub const UNKNOWN_USER_ROLE: &str = "unknown user";
/// How often a device's last contact is written at most.
pub const CONTACT_INTERVAL: Duration = Duration::minutes(1);
/// Default and largest feed page.
pub const DEFAULT_PAGE_OPS: u32 = 1_000;
/// A user session ends after this long without a call that uses it (the device signs its user
/// out sooner, after its own idle limit)...
pub const USER_SESSION_IDLE: Duration = Duration::minutes(15);
/// ...and at this long after sign-in whatever happens: a long shift signs in again.
pub const USER_SESSION_LIFETIME: Duration = Duration::hours(12);
/// The generation of the regions' feed keys. A new generation (a new derivation context) would
/// be sent to each device at its next online sign-in.
const FEED_KEY_GENERATION: &str = "v1";
const FEED_KEY_SALT: &[u8] = b"cpis-field/feed-key/v1";

/// The central's signing (Ed25519) and sealing (X25519) keys. `Debug` is redacted.
pub struct CentralKeys {
    signing_pkcs8: Zeroizing<Vec<u8>>,
    sealing_secret: Zeroizing<[u8; 32]>,
    pub signing_public: [u8; 32],
    pub sealing_public: [u8; 32],
}

impl fmt::Debug for CentralKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CentralKeys")
            .field("signing_public", &B64.encode(self.signing_public))
            .finish_non_exhaustive()
    }
}

impl CentralKeys {
    /// The keys stored in the database, made and stored on first start.
    pub async fn load_or_create(store: &dyn Store) -> Result<Self, StoreError> {
        let fresh = StoredKeys {
            signing_pkcs8: hazmat::ed25519_generate(),
            sealing_secret: hazmat::x25519_generate(),
        };
        let stored = store.central_keys(fresh).await?;
        let signing_public = hazmat::ed25519_public(&stored.signing_pkcs8).map_err(|_| {
            StoreError::Corrupt("the stored signing key is not a valid Ed25519 key".into())
        })?;
        let sealing_public = hazmat::x25519_public(&stored.sealing_secret);
        Ok(Self {
            signing_pkcs8: stored.signing_pkcs8,
            sealing_secret: stored.sealing_secret,
            signing_public,
            sealing_public,
        })
    }

    /// Seals a page to its region's feed key and signs it.
    pub fn sign_page(&self, page: &FeedPage) -> SignedPage {
        SignedPage::seal_and_sign(page, &self.feed_key(&page.region), &self.signing_pkcs8)
            .expect("the stored signing key was checked at load")
    }

    /// A region's feed key: derived from the central's own sealing secret, so every instance over
    /// one store holds the same key with nothing more to store, and no region's key opens another's
    /// pages.
    pub fn feed_key(&self, region: &Region) -> FeedKey {
        FeedKey::new(
            FEED_KEY_GENERATION,
            hazmat::hkdf_sha256(
                FEED_KEY_SALT,
                self.sealing_secret.as_ref(),
                region.as_str().as_bytes(),
            ),
        )
    }

    pub fn sign_directory(&self, directory: &wire::EmergencyDirectory) -> SignedDirectory {
        SignedDirectory::sign(directory, &self.signing_pkcs8)
            .expect("the stored signing key was checked at load")
    }

    pub fn open_event(&self, sealed: &SealedEvent) -> Result<AccessEvent, String> {
        sealed.open(&self.sealing_secret)
    }
}

/// The lease MAC: `HMAC-SHA256(lease_key, wire::lease_mac_message(device, expires_at))`, base64.
pub fn lease_mac(lease_key: &[u8], device: Uuid, expires_at: DateTime<Utc>) -> String {
    B64.encode(hazmat::hmac_sha256(
        lease_key,
        &wire::lease_mac_message(device, expires_at),
    ))
}

/// Who is told of a notifying access: every LA holding a plan the clinician could see, on the UK
/// date the device recorded or the date the central received it (a child who moved is known to
/// both LAs). A person on the register with no plan visible on either date still tells the LA the
/// record names: an extra notification costs a social worker a minute, a missing one can cost a
/// child.
pub fn las_to_tell(
    record: &FlagRecord,
    event: &AccessEvent,
    received_at: DateTime<Utc>,
    rules: &VisibilityRules,
) -> Vec<OdsCode> {
    let days = [uk_today(event.device_time), uk_today(received_at)];
    let mut out: Vec<OdsCode> = Vec::new();
    for la in record.holders() {
        let visible = record.plans.iter().any(|p| {
            p.holder(record) == &la && days.iter().any(|d| p.visibility(*d, rules).is_shown())
        });
        if visible {
            out.push(la);
        }
    }
    if out.is_empty() {
        out.push(record.local_authority.clone());
    }
    out
}

/// The notification an LA receives for a notifying access to one of its people.
pub fn notification_for(
    event: &AccessEvent,
    record: &FlagRecord,
    seq: u64,
    received_at: DateTime<Utc>,
) -> Notification {
    Notification {
        seq,
        event_id: event.id,
        nhs_number: event.nhs_number,
        family_name: record.family_name.clone(),
        given_names: record.given_names.clone(),
        date_of_birth: record.date_of_birth,
        seen_at: event.device_time,
        received_at,
        org_ods: event.accessor.org_ods.clone(),
        org_name: event.accessor.org_name.clone(),
        setting: event.accessor.setting,
        role: event.accessor.role.clone(),
        user_id: event.accessor.user_id.clone(),
        case_reference: event.case_reference.clone(),
        found_by: event.found_by,
    }
}

/// Access history from a person's unscheduled accesses (given newest first), as the national rule
/// has it: the *first* access by a user is listed, and that user's further accesses within 24 hours
/// of it are not; newest first, at most 25 entries.
pub fn access_history(events: &[AccessEvent]) -> Vec<AccessHistoryEntry> {
    let mut oldest_first: Vec<&AccessEvent> = events.iter().collect();
    oldest_first.sort_by_key(|e| e.device_time);
    let mut listed: HashMap<&str, DateTime<Utc>> = HashMap::new();
    let mut out = Vec::new();
    for e in oldest_first {
        if let Some(first) = listed.get(e.accessor.user_id.as_str()) {
            if e.device_time - *first < Duration::hours(24) {
                continue;
            }
        }
        listed.insert(&e.accessor.user_id, e.device_time);
        out.push(AccessHistoryEntry {
            at: e.device_time,
            org_ods: e.accessor.org_ods.clone(),
            org_name: e.accessor.org_name.clone(),
            role: e.accessor.role.clone(),
            setting: e.accessor.setting,
        });
    }
    out.reverse();
    out.truncate(ACCESS_HISTORY_LEN);
    out
}

/// A record as the clinician may see it today: only visible plans, or nothing.
pub fn visible_record(
    record: FlagRecord,
    today: NaiveDate,
    rules: &VisibilityRules,
) -> Option<FlagRecord> {
    let plans: Vec<_> = record
        .visible_plans(today, rules)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    if plans.is_empty() {
        None
    } else {
        Some(FlagRecord { plans, ..record })
    }
}

/// A new one-time enrolment code, as created by the admin.
#[derive(Debug, Clone)]
pub struct EnrolmentCode {
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

/// The central service: a store, its keys, and how users sign in.
#[derive(Clone)]
pub struct Central {
    pub store: Arc<dyn Store>,
    pub keys: Arc<CentralKeys>,
    users: Arc<dyn UserAuthenticator>,
    pub rules: VisibilityRules,
}

impl Central {
    /// A central over `store`, with users signing in by PIN.
    pub async fn new(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let users = Arc::new(PinAuthenticator::new(store.clone()));
        Self::with_authenticator(store, users).await
    }

    pub async fn with_authenticator(
        store: Arc<dyn Store>,
        users: Arc<dyn UserAuthenticator>,
    ) -> Result<Self, StoreError> {
        let keys = Arc::new(CentralKeys::load_or_create(store.as_ref()).await?);
        Ok(Self {
            store,
            keys,
            users,
            rules: VisibilityRules::default(),
        })
    }

    // ---- administration ----

    pub async fn upsert_la(
        &self,
        la: &LocalAuthority,
        webhook: WebhookChange,
    ) -> Result<(), ApiFailure> {
        la.validate()
            .map_err(|e| ApiFailure::unprocessable("invalid_local_authority", e.to_string()))?;
        if let WebhookChange::Set(Some(url)) = &webhook {
            if let Some(why) = crate::webhook_target::refusal(url) {
                return Err(ApiFailure::unprocessable("invalid_webhook", why));
            }
        }
        Ok(self.store.upsert_la(la, webhook, Utc::now()).await?)
    }

    pub async fn create_enrolment(
        &self,
        region: &Region,
        org_ods: &OdsCode,
        org_name: &str,
        setting: CareSetting,
        valid_for: Duration,
    ) -> Result<EnrolmentCode, ApiFailure> {
        let code = auth::new_enrolment_code();
        let now = Utc::now();
        let expires_at = now + valid_for;
        self.store
            .create_enrolment(NewEnrolment {
                code_hash: auth::secret_hash(&code),
                region: region.clone(),
                org_ods: org_ods.clone(),
                org_name: org_name.to_string(),
                setting,
                created_at: now,
                expires_at,
            })
            .await?;
        Ok(EnrolmentCode { code, expires_at })
    }

    pub async fn add_user(
        &self,
        id: &str,
        name: &str,
        role: &str,
        activity: Activity,
        org_ods: &OdsCode,
        pin: &str,
    ) -> Result<(), ApiFailure> {
        if id.trim().is_empty() || name.trim().is_empty() || role.trim().is_empty() {
            return Err(ApiFailure::unprocessable(
                "invalid_user",
                "user id, name and role must not be empty",
            ));
        }
        if pin.chars().count() < 4 {
            return Err(ApiFailure::unprocessable(
                "invalid_user",
                "the PIN must have at least 4 characters",
            ));
        }
        let (id, name, role, org, pin) = (
            id.to_string(),
            name.to_string(),
            role.to_string(),
            org_ods.clone(),
            pin.to_string(),
        );
        let record = tokio::task::spawn_blocking(move || {
            auth::user_record(&id, &name, &role, activity, org, &pin)
        })
        .await
        .map_err(|_| ApiFailure::internal())?;
        Ok(self.store.upsert_user(&record, Utc::now()).await?)
    }

    /// A new API token for an LA with the default lifetime (shown once; stored hashed).
    pub async fn create_la_token(&self, la: &OdsCode) -> Result<String, ApiFailure> {
        Ok(self
            .issue_la_token(la, crate::la_access::LA_TOKEN_LIFETIME)
            .await?
            .token)
    }

    /// Turns records with nothing left to show into removals.
    pub async fn expire(&self, today: NaiveDate) -> Result<usize, ApiFailure> {
        Ok(self
            .store
            .expire_flags(today, self.rules, Utc::now())
            .await?)
    }

    // ---- enrolment and device authentication ----

    pub async fn enrol(&self, req: EnrolRequest) -> Result<EnrolResponse, ApiFailure> {
        let key = B64
            .decode(req.device_public_key.trim())
            .map_err(|_| ApiFailure::bad_request("device_public_key is not base64"))?;
        let public_key: [u8; 32] = key.as_slice().try_into().map_err(|_| {
            ApiFailure::bad_request("device_public_key must be a raw 32-byte Ed25519 public key")
        })?;
        let code = auth::normalise_enrolment_code(&req.code);
        if code.len() != auth::ENROLMENT_CODE_LEN {
            return Err(ApiFailure::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "enrolment_code_invalid",
                "the enrolment code is not valid",
            ));
        }
        let now = Utc::now();
        let device = NewDevice {
            id: Uuid::now_v7(),
            public_key,
            lease_key: hazmat::random_bytes::<32>(),
            enrolled_at: now,
        };
        let refused = |code: &'static str, msg: &str| {
            ApiFailure::new(axum::http::StatusCode::UNAUTHORIZED, code, msg)
        };
        match self
            .store
            .redeem_enrolment(&auth::secret_hash(&code), device, now)
            .await?
        {
            Ok(d) => {
                tracing::info!(device = %d.id, region = %d.region, org = %d.org_ods, "device enrolled");
                Ok(EnrolResponse {
                    device_id: d.id,
                    region: d.region,
                    org_ods: d.org_ods,
                    org_name: d.org_name,
                    setting: d.setting,
                    central_signing_key: B64.encode(self.keys.signing_public),
                    central_sealing_key: B64.encode(self.keys.sealing_public),
                })
            }
            Err(EnrolRefusal::Unknown) => Err(refused(
                "enrolment_code_invalid",
                "the enrolment code is not valid",
            )),
            Err(EnrolRefusal::Used) => Err(refused(
                "enrolment_code_used",
                "the enrolment code has already been used; ask for a new one",
            )),
            Err(EnrolRefusal::Expired) => Err(refused(
                "enrolment_code_expired",
                "the enrolment code has expired; ask for a new one",
            )),
        }
    }

    async fn known_device(&self, id: Uuid) -> Result<DeviceRecord, ApiFailure> {
        self.store.device(id).await?.ok_or_else(|| {
            ApiFailure::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unknown_device",
                "this device is not enrolled",
            )
        })
    }

    /// Revoked devices may still authenticate: their token opens only the event intake, so access
    /// events they recorded before revocation still reach the LA. Every other call refuses them.
    pub async fn challenge(&self, req: ChallengeRequest) -> Result<ChallengeResponse, ApiFailure> {
        let device = self.known_device(req.device_id).await?;
        let challenge = B64.encode(hazmat::random_bytes::<32>().as_ref());
        self.store
            .create_challenge(device.id, &challenge, Utc::now() + CHALLENGE_LIFETIME)
            .await?;
        Ok(ChallengeResponse { challenge })
    }

    pub async fn token(&self, req: TokenRequest) -> Result<TokenResponse, ApiFailure> {
        let bad = || {
            ApiFailure::unauthorised("the challenge is unknown, expired or already used, or the signature does not verify")
        };
        let taken = self.store.take_challenge(&req.challenge).await?;
        let Some((device_id, expires_at)) = taken else {
            return Err(bad());
        };
        if device_id != req.device_id || expires_at <= Utc::now() {
            return Err(bad());
        }
        let device = self.known_device(device_id).await?;
        let signature = B64.decode(req.signature.trim()).map_err(|_| bad())?;
        hazmat::ed25519_verify(
            &device.public_key,
            &wire::auth_message(device_id, &req.challenge),
            &signature,
        )
        .map_err(|_| bad())?;
        let token = auth::new_token();
        let expires_at = (Utc::now() + TOKEN_LIFETIME).trunc_subsecs(0);
        self.store
            .create_device_token(&auth::secret_hash(&token), device_id, expires_at)
            .await?;
        Ok(TokenResponse { token, expires_at })
    }

    /// The device a bearer token belongs to, refusing expired tokens and revoked devices.
    pub async fn authenticate_device(&self, token: &str) -> Result<DeviceRecord, ApiFailure> {
        let device = self.authenticate_device_for_events(token).await?;
        if device.revoked_at.is_some() {
            return Err(ApiFailure::forbidden(
                "device_revoked",
                "this device has been revoked: wipe its data and enrol again",
            ));
        }
        Ok(device)
    }

    /// The device a bearer token belongs to, revoked or not: only the event intake uses this.
    pub async fn authenticate_device_for_events(
        &self,
        token: &str,
    ) -> Result<DeviceRecord, ApiFailure> {
        let now = Utc::now();
        let id = self
            .store
            .device_for_token(&auth::secret_hash(token), now)
            .await?
            .ok_or_else(|| {
                ApiFailure::unauthorised(
                    "the device token is unknown or expired: authenticate again",
                )
            })?;
        let device = self.known_device(id).await?;
        self.note_contact(&device, now).await;
        Ok(device)
    }

    /// Records that a device made contact, at most once a minute per device (a write each time would
    /// make every read a write). The last contact is the store's, so whichever instance answers
    /// sees the same one; the write is conditional, so instances racing write once.
    async fn note_contact(&self, device: &DeviceRecord, now: DateTime<Utc>) {
        let since = now - CONTACT_INTERVAL;
        if device.last_seen.is_some_and(|seen| seen >= since) {
            return;
        }
        if let Err(e) = self.store.touch_device(device.id, now, since).await {
            crate::metrics::store_error("touch_device");
            tracing::warn!(error = %e, "could not record device contact");
        }
    }

    // ---- users and leases ----

    async fn lease_expiry(&self, device: &DeviceRecord) -> Result<DateTime<Utc>, ApiFailure> {
        let hours = self
            .store
            .region(&device.region)
            .await?
            .map(|r| r.lease_hours)
            .unwrap_or(DEFAULT_LEASE_HOURS);
        Ok((Utc::now() + Duration::hours(i64::from(hours))).trunc_subsecs(0))
    }

    /// Signs a user in on a device. Each attempt is counted in the store before the PIN is tried, in
    /// one statement, so concurrent guesses cannot all pass the check and every central instance
    /// shares the count; past the limit nothing is verified until the window ends. A right PIN for a
    /// user of another organisation is refused exactly like a wrong one and does not clear the count.
    pub async fn login(
        &self,
        device: &DeviceRecord,
        req: LoginRequest,
    ) -> Result<LoginResponse, ApiFailure> {
        let refused = || {
            ApiFailure::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "sign_in_refused",
                "unknown user or wrong PIN",
            )
        };
        // Hashed: a PIN typed into the user id box is not kept in the clear.
        let user_hash = auth::secret_hash(&req.user_id);
        let now = Utc::now();
        let window = Duration::from_std(SIGN_IN_PAUSE).unwrap_or(Duration::minutes(15));
        let attempts = self
            .store
            .take_sign_in_attempt(&user_hash, now, now - window)
            .await?;
        if attempts > SIGN_IN_FAILURE_LIMIT {
            // Decided before any PIN is tried, so it says nothing about this one.
            return Err(ApiFailure::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!(
                    "too many sign-in attempts for this user: try again in up to {} minutes",
                    SIGN_IN_PAUSE.as_secs() / 60
                ),
            ));
        }
        let user = match self.users.sign_in(&req.user_id, &req.pin).await {
            Ok(u) if u.org_ods == device.org_ods => u,
            Ok(_) | Err(SignInError::Refused) => return Err(refused()),
            Err(SignInError::Store(e)) => return Err(e.into()),
        };
        self.store.clear_sign_in_attempts(&user_hash).await?;
        let expires_at = self.lease_expiry(device).await?;
        let mac = lease_mac(&device.lease_key, device.id, expires_at);
        // The session is what opens a person's details online: the device's key alone never does.
        let token = auth::new_token();
        let session_ends = (now + USER_SESSION_LIFETIME).trunc_subsecs(0);
        self.store
            .open_user_session(&UserSessionRow {
                token_hash: auth::secret_hash(&token),
                device_id: device.id,
                user_id: user.id.clone(),
                idle_until: now + USER_SESSION_IDLE,
                expires_at: session_ends,
            })
            .await?;
        let feed_key = self.keys.feed_key(&device.region);
        Ok(LoginResponse {
            user,
            lease: Lease {
                expires_at,
                lease_key: B64.encode(device.lease_key.as_slice()),
                mac,
            },
            user_session: UserSessionGrant {
                token,
                expires_at: session_ends,
                idle_minutes: USER_SESSION_IDLE.num_minutes() as u32,
            },
            feed_key: FeedKeyGrant {
                id: feed_key.id().to_string(),
                key: feed_key.to_base64().to_string(),
            },
        })
    }

    /// The signed-in user of a device's request: a live session opened on this device, its user
    /// still held at the device's organisation. Every call that answers with a person's details
    /// takes its user from here, never from the request's body.
    pub async fn authenticate_user(
        &self,
        device: &DeviceRecord,
        session_token: Option<&str>,
    ) -> Result<UserRecord, ApiFailure> {
        let required = |message: &str| {
            ApiFailure::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "user_session_required",
                message.to_string(),
            )
        };
        let Some(token) = session_token.filter(|t| !t.is_empty()) else {
            return Err(required(
                "this answers with a person's details and needs a signed-in user: sign in with a PIN online",
            ));
        };
        let now = Utc::now();
        let user_id = self
            .store
            .use_user_session(
                &auth::secret_hash(token),
                device.id,
                now,
                now + USER_SESSION_IDLE,
            )
            .await?
            .ok_or_else(|| {
                required("the user session is unknown, ended or of another device: sign in again")
            })?;
        match self.store.user(&user_id).await? {
            Some(user) if user.org_ods == device.org_ods => Ok(user),
            _ => Err(required(
                "the signed-in user is no longer held at this device's organisation: sign in again",
            )),
        }
    }

    /// Sign-out: the session ends at the central, whichever instance answers next.
    pub async fn logout(
        &self,
        device: &DeviceRecord,
        session_token: &str,
    ) -> Result<(), ApiFailure> {
        self.store
            .end_user_session(&auth::secret_hash(session_token), device.id)
            .await?;
        Ok(())
    }

    pub async fn renew_lease(&self, device: &DeviceRecord) -> Result<LeaseRenewal, ApiFailure> {
        let expires_at = self.lease_expiry(device).await?;
        Ok(LeaseRenewal {
            expires_at,
            mac: lease_mac(&device.lease_key, device.id, expires_at),
        })
    }

    // ---- the region feed ----

    /// The device's region feed after `after`, signed.
    pub async fn feed(
        &self,
        device: &DeviceRecord,
        after: u64,
        limit: Option<u32>,
    ) -> Result<SignedPage, ApiFailure> {
        let page = self.feed_page(device, after, limit).await?;
        Ok(self.keys.sign_page(&page))
    }

    /// The device's region feed after `after`, before signing (the HTTP layer tags it first and
    /// signs only what it sends).
    pub async fn feed_page(
        &self,
        device: &DeviceRecord,
        after: u64,
        limit: Option<u32>,
    ) -> Result<FeedPage, ApiFailure> {
        let limit = limit
            .unwrap_or(DEFAULT_PAGE_OPS)
            .clamp(1, wire::MAX_PAGE_OPS);
        let slice = self.store.feed_page(&device.region, after, limit).await?;
        let last = slice.ops.last().map(|o| o.seq).unwrap_or(after);
        let page = FeedPage {
            region: device.region.clone(),
            after,
            last,
            head: slice.head,
            has_more: slice.has_more,
            generated_at: Utc::now(),
            ops: slice.ops,
        };
        Ok(page)
    }

    /// A feed page's entity tag: the same for the same content under the same signing key, whenever
    /// it was generated. Weak, because the signed body differs in its generation time.
    pub fn feed_etag(&self, page: &FeedPage) -> String {
        let content = serde_json::to_vec(&(
            B64.encode(self.keys.signing_public),
            &page.region,
            page.after,
            page.last,
            page.head,
            page.has_more,
            &page.ops,
        ))
        .expect("a feed page serialises");
        // Keyed by the region's feed key: the tag, sent in the clear, says nothing of the page.
        let tag = self.keys.feed_key(&page.region).tag(&content);
        format!("W/\"{}\"", hex::encode(&tag[..16]))
    }

    /// The device's region's local authorities with their public numbers, signed: what the device
    /// shows when its copy cannot be opened. Needs only the device, not a signed-in user.
    pub async fn emergency_numbers(
        &self,
        device: &DeviceRecord,
    ) -> Result<SignedDirectory, ApiFailure> {
        let mut local_authorities: Vec<wire::EmergencyContact> = self
            .store
            .local_authorities()
            .await?
            .iter()
            .filter(|r| r.la.region == device.region)
            .map(|r| wire::EmergencyContact::from(&r.la))
            .collect();
        local_authorities.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.ods.cmp(&b.ods)));
        Ok(self.keys.sign_directory(&wire::EmergencyDirectory {
            region: device.region.clone(),
            generated_at: Utc::now(),
            local_authorities,
        }))
    }

    // ---- access events ----

    /// Opens, checks and stores a batch; each event's result in the batch's order.
    pub async fn ingest(
        &self,
        device: &DeviceRecord,
        batch: EventBatch,
    ) -> Result<EventBatchResult, ApiFailure> {
        if batch.events.len() > wire::MAX_EVENT_BATCH {
            return Err(ApiFailure::too_large(format!(
                "a batch holds at most {} events; this one has {}",
                wire::MAX_EVENT_BATCH,
                batch.events.len()
            )));
        }
        let mut results: Vec<EventResult> = Vec::with_capacity(batch.events.len());
        let mut to_store: Vec<(usize, AccessEvent)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut users: HashMap<String, Option<(String, Activity)>> = HashMap::new();
        for sealed in &batch.events {
            let rejected = |reason: String| EventResult {
                id: sealed.id,
                status: EventStatus::Rejected,
                reason: Some(reason),
            };
            match self.keys.open_event(sealed) {
                Err(reason) => results.push(rejected(reason)),
                Ok(event) if event.device_id != device.id => {
                    results.push(rejected("the event was recorded by another device".into()))
                }
                Ok(event) if device.revoked_at.is_some_and(|at| event.device_time > at) => results
                    .push(rejected(
                        "the event was recorded after the device was revoked".into(),
                    )),
                Ok(event) => {
                    if seen.insert(event.id) {
                        let event = self.attested(device, event, &mut users).await?;
                        to_store.push((results.len(), event));
                    }
                    // A repeat inside one batch is a duplicate of the first; fixed below.
                    results.push(EventResult {
                        id: sealed.id,
                        status: EventStatus::Duplicate,
                        reason: None,
                    });
                }
            }
        }
        let rejected = results
            .iter()
            .filter(|r| r.status == EventStatus::Rejected)
            .count();
        if rejected > 0 {
            tracing::warn!(device = %device.id, rejected, "access events rejected");
        }
        if !to_store.is_empty() {
            let received_at = Utc::now();
            let (positions, events): (Vec<usize>, Vec<AccessEvent>) = to_store.into_iter().unzip();
            let intake = self.event_intake(events, received_at).await?;
            let outcome = self.store.ingest_events(intake, received_at).await?;
            for (pos, ingested) in positions.into_iter().zip(outcome) {
                if ingested == Ingested::Stored {
                    results[pos].status = EventStatus::Accepted;
                }
            }
        }
        Ok(EventBatchResult { results })
    }

    /// Each event with the notifications it brings (`las_to_tell`), ready for the store.
    pub async fn event_intake(
        &self,
        events: Vec<AccessEvent>,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<EventIntake>, StoreError> {
        let mut intake = Vec::with_capacity(events.len());
        for event in events {
            let mut notifications = Vec::new();
            if event.notifies {
                if let Some(record) = self.store.flag(&event.nhs_number).await? {
                    for la in las_to_tell(&record, &event, received_at, &self.rules) {
                        notifications.push((la, notification_for(&event, &record, 0, received_at)));
                    }
                }
            }
            intake.push(EventIntake {
                event,
                notifications,
            });
        }
        Ok(intake)
    }

    /// The central's own account of who looked and where. The organisation and setting come from the
    /// device's enrolment and the role and activity from the central's user record, so a device cannot
    /// silence a notification by claiming a silent setting or activity. A user the central does not
    /// hold at the device's organisation is still recorded (an access is an access) and is taken to
    /// notify where the setting notifies: an extra notification costs a social worker a minute, a
    /// missing one can cost a child.
    async fn attested(
        &self,
        device: &DeviceRecord,
        mut event: AccessEvent,
        users: &mut HashMap<String, Option<(String, Activity)>>,
    ) -> Result<AccessEvent, ApiFailure> {
        let user_id = event.accessor.user_id.clone();
        if !users.contains_key(&user_id) {
            let known = self
                .store
                .user(&user_id)
                .await?
                .filter(|u| u.org_ods == device.org_ods)
                .map(|u| (u.role.clone(), u.activity));
            users.insert(user_id.clone(), known);
        }
        let accessor = &mut event.accessor;
        match users.get(&user_id).cloned().flatten() {
            Some((role, activity)) => {
                accessor.role = role;
                accessor.activity = activity;
            }
            None => {
                tracing::warn!(device = %device.id, "access event from a user not registered at the device's organisation: recorded, and notifies where the setting does");
                accessor.activity = Activity::B0107;
                // The device's text for the role is not shown to the LA as if it were known.
                accessor.role = UNKNOWN_USER_ROLE.to_string();
            }
        }
        accessor.org_ods = device.org_ods.clone();
        accessor.org_name = device.org_name.clone();
        accessor.setting = device.setting;
        event.notifies = accessor.notifies();
        Ok(event)
    }

    // ---- live check ----

    /// `user` is the session's (`authenticate_user`): the lookup is kept against whoever signed in.
    pub async fn live_check(
        &self,
        device: &DeviceRecord,
        user: &UserRecord,
        req: LiveCheckRequest,
    ) -> Result<LiveCheckResponse, ApiFailure> {
        let mut access_recorded = false;
        if let Some(sealed) = req.access_event {
            if sealed.id.is_nil() {
                return Err(ApiFailure::bad_request("the access event has no id"));
            }
            let result = self
                .ingest(
                    device,
                    EventBatch {
                        events: vec![sealed],
                    },
                )
                .await?;
            match result.results.first() {
                Some(r) if r.status != EventStatus::Rejected => access_recorded = true,
                Some(r) => {
                    tracing::warn!(device = %device.id, reason = r.reason.as_deref().unwrap_or(""), "live check's access event rejected")
                }
                None => {}
            }
        }
        let today = uk_today(Utc::now());
        let record = self
            .store
            .flag(&req.nhs_number)
            .await?
            .and_then(|r| visible_record(r, today, &self.rules));
        // Every answered lookup is kept, found or not, silent or not: an insider's online searches
        // leave a trail the information-governance officer can read (`cpis central lookups`).
        self.store
            .record_lookup(
                &req.nhs_number,
                &LiveLookup {
                    at: Utc::now(),
                    device_id: device.id,
                    user_id: user.id.clone(),
                    found: record.is_some(),
                    search_id: None,
                },
            )
            .await?;
        let Some(record) = record else {
            return Ok(LiveCheckResponse {
                outcome: LiveOutcome::NoRecord,
                record: None,
                local_authority: None,
                local_authorities: Vec::new(),
                access_history: Vec::new(),
                access_recorded,
                as_of: Utc::now(),
            });
        };
        let (las, as_of) = self.holders_of(&record).await?;
        let access_history = self.access_history(&req.nhs_number).await?;
        Ok(LiveCheckResponse {
            outcome: LiveOutcome::RecordFound,
            record: Some(record),
            local_authority: las.first().cloned(),
            local_authorities: las,
            access_history,
            access_recorded,
            as_of,
        })
    }

    /// A search by name and date of birth over the whole register: the people born on the date
    /// entered (or with day and month swapped), visible today, tiered by `search::tier` — the
    /// same rule the device applies. People are returned only for a match or possible matches;
    /// every search is kept in the lookup trail.
    pub async fn live_search(
        &self,
        device: &DeviceRecord,
        user: &UserRecord,
        req: LiveSearchRequest,
    ) -> Result<LiveSearchResponse, ApiFailure> {
        // The device validated the query; the central checks it again, naming what is wrong.
        let q = &req.query;
        let query = SearchQuery::parse(
            &q.family_name,
            &q.date_of_birth.format("%Y-%m-%d").to_string(),
            q.given_name.as_deref(),
            q.sex.map(|s| match s {
                Sex::Female => "female",
                Sex::Male => "male",
                Sex::Unknown => "unknown",
            }),
            q.postcode_district.as_deref(),
            uk_today(Utc::now()),
        )
        .map_err(|e| ApiFailure::bad_request(e.to_string()))?;
        let today = uk_today(Utc::now());
        let records: Vec<FlagRecord> = self
            .store
            .flags_born_on(&search::candidate_dates(query.date_of_birth))
            .await?
            .into_iter()
            .filter_map(|r| visible_record(r, today, &self.rules))
            .collect();
        let tiered = search::tier(&query, &records);
        let returned: Vec<&FlagRecord> = match &tiered {
            Tiered::Match { index, .. } => vec![&records[*index]],
            Tiered::PossibleMatches(list) => list.iter().map(|(i, _)| &records[*i]).collect(),
            Tiered::TooMany { .. } | Tiered::NoMatch => vec![],
        };
        self.store
            .record_search(
                &LiveSearch {
                    id: None,
                    at: Utc::now(),
                    device_id: device.id,
                    user_id: user.id.clone(),
                    query: query.clone(),
                    outcome: tiered.kind(),
                    candidates: tiered.candidates(),
                },
                &returned.iter().map(|r| r.nhs_number).collect::<Vec<_>>(),
            )
            .await?;
        let mut candidates = Vec::with_capacity(returned.len());
        for record in returned {
            let (las, as_of) = self.holders_of(record).await?;
            candidates.push(LiveSearchCandidate {
                record: record.clone(),
                local_authority: las.first().cloned(),
                local_authorities: las,
                as_of,
            });
        }
        Ok(LiveSearchResponse {
            outcome: tiered.kind(),
            candidates,
            total: tiered.candidates(),
        })
    }

    /// The LAs holding a record's plans (the record's own first), and how old the record is: as
    /// old as the oldest last accepted upload among them, so the device marks it stale past the
    /// same warning age as its own copy.
    async fn holders_of(
        &self,
        record: &FlagRecord,
    ) -> Result<(Vec<LocalAuthority>, DateTime<Utc>), ApiFailure> {
        let mut las = Vec::new();
        let mut as_of: Option<DateTime<Utc>> = None;
        for ods in record.holders() {
            if let Some(la) = self.store.local_authority(&ods).await? {
                las.push(la.la);
            }
            if let Some(at) = self.store.la_last_upload(&ods).await? {
                as_of = Some(as_of.map_or(at, |a| a.min(at)));
            }
        }
        Ok((las, as_of.unwrap_or_else(Utc::now)))
    }

    pub async fn access_history(
        &self,
        nhs: &NhsNumber,
    ) -> Result<Vec<AccessHistoryEntry>, ApiFailure> {
        // Repeat views by one user collapse, so read well past 25 to fill the list.
        let events = self.store.unscheduled_accesses(nhs, 2_000).await?;
        Ok(access_history(&events))
    }

    // ---- local authorities ----

    pub async fn authenticate_la(&self, token: &str) -> Result<OdsCode, ApiFailure> {
        self.store
            .la_for_token(&auth::secret_hash(token), Utc::now())
            .await?
            .ok_or_else(|| ApiFailure::unauthorised("the LA token is unknown, expired or revoked"))
    }

    pub async fn notifications(
        &self,
        la: &OdsCode,
        after: u64,
        limit: u32,
    ) -> Result<NotificationPage, ApiFailure> {
        let notifications = self
            .store
            .notification_page(la, after, limit.clamp(1, 1_000))
            .await?;
        let next = notifications.last().map(|n| n.seq).unwrap_or(after);
        Ok(NotificationPage {
            notifications,
            next,
        })
    }

    /// Applies an LA upload file (the rule is `upload_decision`). The file is refused whole when
    /// unreadable, or when it would end the open plans of more than 10% of the LA's people without
    /// `allow_large_removal`.
    pub async fn import(
        &self,
        la: &OdsCode,
        bytes: &[u8],
        allow_large_removal: bool,
    ) -> Result<UploadReport, ApiFailure> {
        if self.store.local_authority(la).await?.is_none() {
            return Err(ApiFailure::not_found(format!(
                "no local authority with ODS code {la}"
            )));
        }
        let (la_c, bytes) = (la.clone(), bytes.to_vec());
        let parsed = tokio::task::spawn_blocking(move || {
            upload::parse_upload_on(&la_c, &bytes, uk_today(Utc::now()))
        })
        .await
        .map_err(|_| ApiFailure::internal())?
        .map_err(|e| ApiFailure::unprocessable("invalid_upload_file", e.to_string()))?;
        // Decide from the LA's own records, then apply; if another upload for the LA landed in
        // between, decide again from what it left.
        let mut attempt = 0;
        let (decision, people) = loop {
            attempt += 1;
            let (stored, based_on) = self.store.la_records(la).await?;
            let decision = upload_decision::decide_upload(upload_decision::UploadInput {
                stored: &stored,
                people: &parsed.people,
                keep: &parsed.keep,
                today: uk_today(Utc::now()),
                rules: self.rules,
                allow_large_removal,
            })
            .map_err(|e| ApiFailure::unprocessable("large_removal", e.to_string()))?;
            let ops = UploadOps {
                puts: decision.puts.clone(),
                removes: decision.removes.clone(),
                based_on,
            };
            match self.store.apply_upload(la, ops, Utc::now()).await {
                Ok(people) => break (decision, people),
                Err(StoreError::UploadRaced) if attempt < 3 => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let rows = parsed.rows;
        let accepted_rows = rows.iter().filter(|r| r.accepted).count();
        let removed = decision
            .changes
            .iter()
            .filter(|c| c.action == "removed")
            .count();
        let report = UploadReport {
            la: la.clone(),
            accepted_rows,
            rejected_rows: rows.len() - accepted_rows,
            rows,
            people,
            removed,
            ended: decision.ended,
            changes: decision.changes,
        };
        tracing::info!(
            la = %la,
            accepted = report.accepted_rows,
            rejected = report.rejected_rows,
            removed = report.removed,
            ended = report.ended,
            "upload applied"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpis_core::Accessor;

    fn event(user: &str, hours_ago: i64) -> AccessEvent {
        let mut e = AccessEvent::new(
            Uuid::now_v7(),
            1,
            Utc::now() - Duration::hours(hours_ago),
            0,
            NhsNumber::test_range(1),
            Accessor {
                user_id: user.into(),
                role: "Paramedic".into(),
                activity: Activity::B0107,
                org_ods: OdsCode::parse("RX9").unwrap(),
                org_name: "Synthetic Ambulance Service".into(),
                setting: CareSetting::Ambulance,
            },
            None,
        );
        e.device_seq = hours_ago as u64;
        e
    }

    #[test]
    fn the_access_history_lists_the_first_access_by_a_user_within_24_hours() {
        let events = vec![
            event("a", 1),
            event("b", 2),
            event("a", 5),
            event("a", 24),
            event("a", 30),
        ];
        let history = access_history(&events);
        let hours: Vec<i64> = history
            .iter()
            .map(|h| (Utc::now() - h.at).num_hours())
            .collect();
        // "a" first looked 30 hours ago: that is listed, their look 24 hours ago is not; their look
        // 5 hours ago starts a new day and is listed, the one an hour ago is not.
        assert_eq!(hours, vec![2, 5, 30]);
        let many: Vec<AccessEvent> = (0..40).map(|i| event(&format!("u{i}"), i)).collect();
        assert_eq!(access_history(&many).len(), 25);
    }

    #[test]
    fn lease_mac_covers_device_and_whole_second_expiry() {
        let key = [7u8; 32];
        let device = Uuid::now_v7();
        let t = Utc::now().trunc_subsecs(0);
        let mac = lease_mac(&key, device, t);
        let expected = hazmat::hmac_sha256(
            &key,
            format!(
                "cpis-field/lease/v1:{device}:{}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
            .as_bytes(),
        );
        assert_eq!(mac, B64.encode(expected));
        assert_ne!(mac, lease_mac(&key, Uuid::now_v7(), t));
    }
}
