//! What the device shows: the check result, the status, sync progress and errors, as serialisable
//! views shared by the app's screens and the `cpis device ... --json` output.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use cpis_core::wire::AccessHistoryEntry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    RecordFound,
    NoRecord,
    InvalidNhsNumber,
    /// The cache cannot be opened (lease expired, not signed in, wiped): phone the LA emergency duty team.
    Locked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// This device's encrypted copy.
    Cache,
    /// The central service, live.
    Central,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    /// Recorded on this device; will reach the LA when the device reconnects.
    Queued,
    /// The central has it: the LA is being told.
    Delivered,
    /// This user and setting read silently: nothing is sent.
    NotSent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonView {
    pub family_name: String,
    pub given_names: String,
    pub date_of_birth: NaiveDate,
    pub local_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    /// CPPI, LACI or UCPI.
    pub kind: String,
    pub kind_in_words: String,
    pub start: NaiveDate,
    /// `None`: open.
    pub end: Option<NaiveDate>,
    /// For an unborn plan: the expected date of delivery.
    pub due: Option<NaiveDate>,
    /// `current`, `not_started`, `ended` or `due_passed`.
    pub status: String,
    /// The status in words, with its UK dates: "Current", "Starts on 3 Jan 2027", "Ended on
    /// 1 Mar 2026; shown until 1 Mar 2027", "Due date passed on 2 Nov 2026; shown until 30 Nov 2026".
    pub status_text: String,
    pub ended_on: Option<NaiveDate>,
    /// For an ended plan (or an unborn plan past its due date): the last day it is shown.
    pub shown_until: Option<NaiveDate>,
    /// The local authority holding this plan, with its numbers; `None` when its contact details
    /// have not reached this device.
    pub local_authority: Option<LocalAuthorityView>,
    /// The holding LA's ODS code, always present.
    pub local_authority_ods: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalAuthorityView {
    pub ods: String,
    pub name: String,
    pub emergency_phone: String,
    pub office_phone: Option<String>,
}

/// The region's local authorities and their public numbers, as kept for a device whose copy cannot
/// be opened: shown without a sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyNumbersView {
    pub region: Option<String>,
    /// When the central signed the list; `None` when none has reached this device yet.
    pub generated_at: Option<DateTime<Utc>>,
    /// In name order.
    pub local_authorities: Vec<LocalAuthorityView>,
}

/// The answer to a check, before or after the alert is opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckView {
    /// Identifies this check so the alert can be opened from it.
    pub check_id: Uuid,
    pub outcome: CheckOutcome,
    /// 3-3-4 form, when valid.
    pub nhs_number: Option<String>,
    /// Why the number is invalid or the cache is locked.
    pub reason: Option<String>,
    pub source: Source,
    pub data_as_of: Option<DateTime<Utc>>,
    pub data_age_seconds: Option<i64>,
    pub stale: bool,
    pub opened: bool,
    /// Whether opening the alert tells the child's LA (unscheduled setting and a B0107 user).
    pub notifies: bool,
    pub notification: Option<NotificationState>,
    /// The access event's id when opening queued one (the LA's receivers de-duplicate on it).
    pub event_id: Option<Uuid>,
    /// Only once the alert is opened.
    pub person: Option<PersonView>,
    /// Only once the alert is opened.
    pub plans: Vec<PlanView>,
    /// The local authority whose plan started most recently (the first to phone).
    pub local_authority: Option<LocalAuthorityView>,
    /// Every local authority holding a plan shown, the first as `local_authority`: each is told
    /// when the alert is opened in a notifying setting.
    pub local_authorities: Vec<LocalAuthorityView>,
    pub access_history: Vec<AccessHistoryEntry>,
    /// What the check could not see. Always present on a miss.
    pub caveats: Vec<String>,
    /// The headline sentence, e.g. "No CP-IS record found for this NHS number".
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub activity: String,
    /// Whether this user, in this device's setting, notifies when opening an alert.
    pub notifies: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterView {
    pub event_id: Uuid,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    pub enrolled: bool,
    pub device_id: Option<Uuid>,
    pub region: Option<String>,
    pub org_name: Option<String>,
    pub setting: Option<String>,
    pub central_url: Option<String>,
    pub online: bool,
    pub signed_in_user: Option<UserView>,
    /// True when the cache cannot be opened (not signed in, lease expired, wiped).
    pub locked: bool,
    pub cached_flags: u64,
    pub cursor: u64,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub data_age_seconds: Option<i64>,
    pub stale: bool,
    pub queued_events: u64,
    pub oldest_queued_age_seconds: Option<i64>,
    pub dead_letters: Vec<DeadLetterView>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Why the device was wiped, when the central revoked it.
    pub wiped_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPhase {
    Pull,
    Push,
    Done,
}

/// Emitted as sync goes, for the app's progress bar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncProgress {
    pub phase: SyncPhase,
    pub pages: u64,
    pub records: u64,
    pub bytes: u64,
    /// The central's newest seq for this region, when known: progress = cursor / head.
    pub cursor: u64,
    pub head: u64,
    pub events_sent: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncSummary {
    pub pages: u64,
    pub records: u64,
    pub bytes: u64,
    pub cursor: u64,
    pub events_delivered: u64,
    pub events_dead: u64,
    pub events_queued: u64,
    /// Set when pulling was skipped (e.g. locked: push still ran).
    pub pull_skipped: Option<String>,
}

/// An error the app and the CLI can show and act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorView {
    /// e.g. `wrong_pin`, `locked_out`, `too_soon`, `lease_expired`, `offline`, `not_enrolled`,
    /// `enrolment_refused`, `revoked`, `invalid_input`, `internal`.
    pub code: String,
    pub message: String,
    pub attempts_left: Option<u32>,
    pub retry_after_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchOutcome {
    /// Exactly one person matches: the answer is that person's check.
    Match,
    /// Up to five cards to confirm from; no plan details until one is confirmed.
    PossibleMatches,
    /// More than five: ask for more details, show nobody.
    TooMany,
    NoMatch,
    /// The cache cannot be opened (lease expired, not signed in, wiped).
    Locked,
}

/// One person a search found, as a card: who, and what matched and differed. No plans, no LA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateView {
    /// 1-based: the number the clinician confirms.
    pub candidate: usize,
    pub family_name: String,
    pub given_names: String,
    pub date_of_birth: NaiveDate,
    /// In words, e.g. "Family name: sounds alike, spelt differently".
    pub matched: Vec<String>,
    pub differed: Vec<String>,
    /// The same, field by field.
    pub how: cpis_core::search::CandidateMatch,
}

/// The answer to a search by name and date of birth. A `match` serialises as the check answer of
/// the person found (the same fields, `outcome: "match"`), plus `search_id`, `found_by` and
/// `matched`; the other outcomes as `search_id`, `outcome`, `message`, `candidates`, `caveats` and
/// the data's source and age.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchView {
    pub search_id: Uuid,
    pub outcome: SearchOutcome,
    pub message: String,
    pub reason: Option<String>,
    pub source: Source,
    pub data_as_of: Option<DateTime<Utc>>,
    pub data_age_seconds: Option<i64>,
    pub stale: bool,
    /// For `possible_matches`: the cards, at most five.
    pub candidates: Vec<CandidateView>,
    /// For `match`: the person found, as a card (what matched).
    pub matched: Option<CandidateView>,
    /// For `match`: the check answer of the person found; opening it is `open_alert(check_id)`.
    pub answer: Option<CheckView>,
    pub caveats: Vec<String>,
}

#[derive(Serialize)]
struct SearchFields<'a> {
    search_id: Uuid,
    outcome: SearchOutcome,
    message: &'a str,
    reason: &'a Option<String>,
    source: Source,
    data_as_of: Option<DateTime<Utc>>,
    data_age_seconds: Option<i64>,
    stale: bool,
    candidates: &'a [CandidateView],
    caveats: &'a [String],
}

impl Serialize for SearchView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let value = match &self.answer {
            Some(answer) => {
                let mut v = serde_json::to_value(answer).map_err(S::Error::custom)?;
                let obj = v.as_object_mut().expect("a check answer is an object");
                obj.insert("outcome".into(), serde_json::json!("match"));
                obj.insert("search_id".into(), serde_json::json!(self.search_id));
                obj.insert(
                    "found_by".into(),
                    serde_json::json!("name_and_date_of_birth"),
                );
                obj.insert(
                    "matched".into(),
                    serde_json::to_value(&self.matched).map_err(S::Error::custom)?,
                );
                obj.insert("candidates".into(), serde_json::json!([]));
                v
            }
            None => serde_json::to_value(SearchFields {
                search_id: self.search_id,
                outcome: self.outcome,
                message: &self.message,
                reason: &self.reason,
                source: self.source,
                data_as_of: self.data_as_of,
                data_age_seconds: self.data_age_seconds,
                stale: self.stale,
                candidates: &self.candidates,
                caveats: &self.caveats,
            })
            .map_err(S::Error::custom)?,
        };
        value.serialize(serializer)
    }
}
