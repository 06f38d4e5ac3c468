//! The FHIR R4 shape of the national CP-IS API, as pure functions shared by the central's facade and
//! the device's loopback door: search parameters and headers parsed into a request (or a Spine-coded
//! `OperationOutcome`), and `CareTeam`, `AuditEvent`, `PractitionerRole`, searchset `Bundle` and
//! `CapabilityStatement` resources built from domain values. No I/O: each server fetches, this maps.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::crypto::hazmat;
use crate::nhs::NhsNumber;
use crate::plan::PlanKind;
use crate::wire::AccessHistoryEntry;

pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
pub const SPINE_ERROR_SYSTEM: &str =
    "https://fhir.nhs.uk/CodeSystem/England-SpineErrorOrWarningCode";
pub const SNOMED_SYSTEM: &str = "http://snomed.info/sct";
pub const ROLE_CLASS_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleClass";
pub const LIFECYCLE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";
/// The media type of every response body.
pub const FHIR_JSON: &str = "application/fhir+json";
/// The one `_include` the AuditEvent search takes: each access's PractitionerRole.
pub const AUDIT_INCLUDE: &str =
    "AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED";

/// Request headers, lower case as HTTP/2 and axum spell them.
pub const HEADER_TRACE_ID: &str = "traceid";
pub const HEADER_REQUEST_ID: &str = "x-request-id";
pub const HEADER_UNSCHEDULED: &str = "isunscheduledaccessevent";
/// The acting clinician, when the client system names one (ours: the national API takes them from
/// the smartcard session, which a client of this facade does not have).
pub const HEADER_USER_ID: &str = "x-cpis-user-id";
pub const HEADER_USER_NAME: &str = "x-cpis-user-name";
pub const HEADER_USER_ROLE: &str = "x-cpis-user-role";

/// The most accesses an AuditEvent search returns.
pub const ACCESS_HISTORY_MAX: usize = 25;

/// A refusal, as an HTTP status and an `OperationOutcome` issue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{diagnostics}")]
pub struct FhirError {
    pub status: u16,
    /// The England Spine error code, when one fits.
    pub spine_code: Option<&'static str>,
    /// The FHIR `IssueType` code.
    pub issue_code: &'static str,
    pub diagnostics: String,
}

impl FhirError {
    fn new(status: u16, spine: Option<&'static str>, issue: &'static str, d: String) -> Self {
        Self {
            status,
            spine_code: spine,
            issue_code: issue,
            diagnostics: d,
        }
    }
    /// 400 `INVALID_SEARCH_DATA`: a search parameter (the NHS number above all) is wrong.
    pub fn invalid_search(diagnostics: impl Into<String>) -> Self {
        Self::new(
            400,
            Some("INVALID_SEARCH_DATA"),
            "invalid",
            diagnostics.into(),
        )
    }
    /// 400 `PRECONDITION_FAILED`: a required header is missing or not valid.
    pub fn precondition(diagnostics: impl Into<String>) -> Self {
        Self::new(
            400,
            Some("PRECONDITION_FAILED"),
            "required",
            diagnostics.into(),
        )
    }
    /// 401 `ACCESS_DENIED`: no credentials, or unknown ones.
    pub fn unauthenticated(diagnostics: impl Into<String>) -> Self {
        Self::new(401, Some("ACCESS_DENIED"), "login", diagnostics.into())
    }
    /// 403 `ACCESS_DENIED`: credentials known but refused (revoked).
    pub fn forbidden(diagnostics: impl Into<String>) -> Self {
        Self::new(403, Some("ACCESS_DENIED"), "forbidden", diagnostics.into())
    }
    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        Self::new(404, None, "not-supported", diagnostics.into())
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            None,
            "not-supported",
            "only GET (search and metadata) is supported".into(),
        )
    }
    /// 503: the answer cannot be given now (a locked device copy); safe to retry later.
    pub fn unavailable(diagnostics: impl Into<String>) -> Self {
        Self::new(503, None, "transient", diagnostics.into())
    }
    pub fn internal() -> Self {
        Self::new(
            500,
            None,
            "exception",
            "the request could not be completed; it is safe to retry".into(),
        )
    }
}

/// The two searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchResource {
    CareTeam,
    AuditEvent,
}

impl SearchResource {
    pub fn name(self) -> &'static str {
        match self {
            Self::CareTeam => "CareTeam",
            Self::AuditEvent => "AuditEvent",
        }
    }
}

/// A search, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub nhs: NhsNumber,
    /// AuditEvent only: include each access's PractitionerRole.
    pub include_roles: bool,
}

fn nhs_number(value: &str, parameter: &str) -> Result<NhsNumber, FhirError> {
    NhsNumber::parse(value)
        .map_err(|e| FhirError::invalid_search(format!("{parameter}: invalid NHS number: {e}")))
}

/// Parses a search's query parameters (already percent-decoded, in order). Unknown parameters are
/// refused rather than ignored: a consumer that filters on something unsupported must not think it did.
pub fn parse_search(
    resource: SearchResource,
    params: &[(String, String)],
) -> Result<SearchQuery, FhirError> {
    let mut nhs: Option<NhsNumber> = None;
    let mut include_roles = false;
    for (name, value) in params {
        match name.as_str() {
            "patient:identifier" => {
                let (system, number) = value.split_once('|').ok_or_else(|| {
                    FhirError::invalid_search(format!(
                        "patient:identifier must be {NHS_NUMBER_SYSTEM}|<NHS number>"
                    ))
                })?;
                if system != NHS_NUMBER_SYSTEM {
                    return Err(FhirError::invalid_search(format!(
                        "patient:identifier system must be {NHS_NUMBER_SYSTEM}"
                    )));
                }
                let n = nhs_number(number, "patient:identifier")?;
                if nhs.is_some_and(|earlier| earlier != n) {
                    return Err(FhirError::invalid_search(
                        "the search names two different patients",
                    ));
                }
                nhs = Some(n);
            }
            "patient" => {
                let number = value.strip_prefix("Patient/").unwrap_or(value);
                let n = nhs_number(number, "patient")?;
                if nhs.is_some_and(|earlier| earlier != n) {
                    return Err(FhirError::invalid_search(
                        "the search names two different patients",
                    ));
                }
                nhs = Some(n);
            }
            "_include" if resource == SearchResource::AuditEvent => {
                if value != AUDIT_INCLUDE {
                    return Err(FhirError::invalid_search(format!(
                        "_include: only {AUDIT_INCLUDE} is supported"
                    )));
                }
                include_roles = true;
            }
            "_format" if matches!(value.as_str(), "json" | "application/fhir+json" | "application/json") => {}
            "_format" => {
                return Err(FhirError::invalid_search(
                    "_format: only json is supported",
                ))
            }
            other => {
                return Err(FhirError::invalid_search(format!(
                    "search parameter '{other}' is not supported on {}; see the CapabilityStatement at metadata",
                    resource.name()
                )))
            }
        }
    }
    let nhs = nhs.ok_or_else(|| {
        FhirError::invalid_search(format!(
            "a patient is required: patient:identifier={NHS_NUMBER_SYSTEM}|<NHS number>"
        ))
    })?;
    Ok(SearchQuery { nhs, include_roles })
}

/// The request headers the facade reads, as sent (a value that is not text is passed as `None`
/// by its name in `unreadable`).
#[derive(Debug, Clone, Default)]
pub struct RawHeaders {
    pub trace_id: Option<String>,
    pub request_id: Option<String>,
    pub unscheduled: Option<String>,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub user_role: Option<String>,
    /// Headers present but not visible ASCII/UTF-8 text.
    pub unreadable: Vec<&'static str>,
}

impl RawHeaders {
    /// Reads the facade's headers through `get`: a header's value as text, `Err(())` when it is
    /// present but not text (then it is named in `unreadable`), `None` when absent.
    pub fn read(mut get: impl FnMut(&str) -> Option<Result<String, ()>>) -> Self {
        let mut unreadable = Vec::new();
        let mut read = |name: &str, label: &'static str| match get(name)? {
            Ok(value) => Some(value),
            Err(()) => {
                unreadable.push(label);
                None
            }
        };
        let trace_id = read(HEADER_TRACE_ID, "TraceID");
        let request_id = read(HEADER_REQUEST_ID, "X-Request-ID");
        let unscheduled = read(HEADER_UNSCHEDULED, "IsUnscheduledAccessEvent");
        let user_id = read(HEADER_USER_ID, "X-CPIS-User-Id");
        let user_name = read(HEADER_USER_NAME, "X-CPIS-User-Name");
        let user_role = read(HEADER_USER_ROLE, "X-CPIS-User-Role");
        RawHeaders {
            trace_id,
            request_id,
            unscheduled,
            user_id,
            user_name,
            user_role,
            unreadable,
        }
    }
}

/// The clinician a client system says is acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActingUser {
    pub id: String,
    pub name: Option<String>,
    pub role: String,
}

/// The headers, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaders {
    /// `TraceID`, or `X-Request-ID` when only that is sent.
    pub trace_id: String,
    /// `IsUnscheduledAccessEvent`; absent means unscheduled.
    pub unscheduled: bool,
    pub user: Option<ActingUser>,
}

fn text_header(name: &str, value: &str, max: usize) -> Result<String, FhirError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FhirError::precondition(format!("header {name} is empty")));
    }
    if v.chars().count() > max {
        return Err(FhirError::precondition(format!(
            "header {name} is longer than {max} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(FhirError::precondition(format!(
            "header {name} holds control characters"
        )));
    }
    Ok(v.to_string())
}

/// Checks the headers: a trace id is required (echoed back), `IsUnscheduledAccessEvent` must be
/// `true` or `false` when sent, and a named user needs both an id and a role code.
pub fn parse_headers(raw: &RawHeaders) -> Result<RequestHeaders, FhirError> {
    if let Some(name) = raw.unreadable.first() {
        return Err(FhirError::precondition(format!(
            "header {name} is not readable text"
        )));
    }
    let trace_id = match (&raw.trace_id, &raw.request_id) {
        (Some(t), _) => t,
        (None, Some(r)) => r,
        (None, None) => {
            return Err(FhirError::precondition(
                "a TraceID (or X-Request-ID) header is required",
            ))
        }
    };
    let trace_id = text_header("TraceID", trace_id, 128)?;
    if trace_id.contains(char::is_whitespace) {
        return Err(FhirError::precondition("header TraceID holds spaces"));
    }
    let unscheduled = match raw.unscheduled.as_deref().map(str::trim) {
        None => true,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(FhirError::precondition(
                "header IsUnscheduledAccessEvent must be true or false",
            ))
        }
    };
    let user = match (&raw.user_id, &raw.user_role, &raw.user_name) {
        (None, None, None) => None,
        (Some(id), Some(role), name) => Some(ActingUser {
            id: text_header("X-CPIS-User-Id", id, 64)?,
            role: text_header("X-CPIS-User-Role", role, 64)?,
            name: name
                .as_deref()
                .map(|n| text_header("X-CPIS-User-Name", n, 100))
                .transpose()?,
        }),
        (None, _, _) => {
            return Err(FhirError::precondition(
                "header X-CPIS-User-Id is required when a user is named",
            ))
        }
        (Some(_), None, _) => {
            return Err(FhirError::precondition(
                "header X-CPIS-User-Role is required with X-CPIS-User-Id",
            ))
        }
    };
    Ok(RequestHeaders {
        trace_id,
        unscheduled,
        user,
    })
}

/// The bearer token of an `Authorization` header.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, FhirError> {
    let value = authorization
        .ok_or_else(|| FhirError::unauthenticated("an Authorization: Bearer header is required"))?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            FhirError::unauthenticated("the Authorization header must be Bearer <token>")
        })
}

/// A stable resource id from its parts: hex of a hash, so no NHS number appears in an id.
pub fn resource_id(parts: &[&str]) -> String {
    let joined = parts.join("\u{1f}");
    hex::encode(&hazmat::sha256(joined.as_bytes())[..16])
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// The SNOMED CT concept of a plan kind, from the England ChildProtectionPlan value set.
pub fn plan_category(kind: PlanKind) -> (&'static str, &'static str) {
    match kind {
        PlanKind::ChildProtection => ("342191000000101", "Subject to child protection plan"),
        PlanKind::LookedAfter => ("764841000000100", "Looked after child"),
        PlanKind::UnbornChildProtection => (
            "818901000000100",
            "Unborn child subject to child protection plan",
        ),
    }
}

/// One plan as a CareTeam sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamPlan {
    pub kind: PlanKind,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
    /// False once the plan has ended (still shown inside its window).
    pub current: bool,
}

/// The responsible local authority as a CareTeam names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamLa {
    pub ods: String,
    pub name: String,
    pub emergency_phone: String,
    pub office_phone: Option<String>,
}

/// The person a search is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub nhs: NhsNumber,
    /// "Given FAMILY", as a clinician reads a name.
    pub display: String,
}

impl Subject {
    pub fn new(nhs: NhsNumber, given_names: &str, family_name: &str) -> Self {
        Self {
            nhs,
            display: format!(
                "{} {}",
                given_names.trim(),
                family_name.trim().to_uppercase()
            )
            .trim()
            .to_string(),
        }
    }
}

/// One CareTeam for one plan: category the SNOMED concept, name the LA, telecom the LA's phones
/// (`mobile` the emergency duty team, `work` office hours), period the plan's dates.
pub fn care_team(subject: &Subject, plan: &TeamPlan, la: Option<&TeamLa>) -> Value {
    let (code, display) = plan_category(plan.kind);
    let mut period = json!({ "start": date(plan.start) });
    if let Some(end) = plan.end {
        period["end"] = json!(date(end));
    }
    let mut team = json!({
        "resourceType": "CareTeam",
        "id": resource_id(&["CareTeam", &subject.nhs.as_digits(), plan.kind.code()]),
        "status": if plan.current { "active" } else { "inactive" },
        "category": [{ "coding": [{ "system": SNOMED_SYSTEM, "code": code, "display": display }] }],
        "subject": {
            "identifier": { "system": NHS_NUMBER_SYSTEM, "value": subject.nhs.as_digits() },
            "display": subject.display,
        },
        "period": period,
    });
    match la {
        Some(la) => {
            team["name"] = json!(la.name);
            let mut telecom =
                vec![json!({ "system": "phone", "value": la.emergency_phone, "use": "mobile" })];
            if let Some(office) = &la.office_phone {
                telecom.push(json!({ "system": "phone", "value": office, "use": "work" }));
            }
            team["telecom"] = Value::Array(telecom);
            team["managingOrganization"] = json!([{
                "identifier": { "system": ODS_SYSTEM, "value": la.ods },
                "display": la.name,
            }]);
        }
        None => {
            team["name"] = json!("Responsible local authority (contact details not yet available)");
        }
    }
    team
}

/// One access as an AuditEvent, and the PractitionerRole it refers to for who looked.
pub fn audit_event(nhs: &NhsNumber, entry: &AccessHistoryEntry) -> (Value, Value) {
    let at = instant(entry.at);
    let role_id = resource_id(&[
        "PractitionerRole",
        entry.org_ods.as_str(),
        &entry.role,
        entry.setting.code(),
    ]);
    let event_id = resource_id(&["AuditEvent", &nhs.as_digits(), &at, &role_id]);
    let event = json!({
        "resourceType": "AuditEvent",
        "id": event_id,
        "type": { "system": LIFECYCLE_SYSTEM, "code": "access", "display": "Access/View Record Lifecycle Event" },
        "action": "R",
        "recorded": at,
        "outcome": "0",
        "agent": [
            {
                "type": { "coding": [{ "system": ROLE_CLASS_SYSTEM, "code": "PAT", "display": "patient" }] },
                "who": { "identifier": { "system": NHS_NUMBER_SYSTEM, "value": nhs.as_digits() } },
                "requestor": false
            },
            {
                "type": { "coding": [{ "system": ROLE_CLASS_SYSTEM, "code": "ASSIGNED", "display": "assigned entity" }] },
                "who": { "reference": format!("PractitionerRole/{role_id}") },
                "requestor": true
            }
        ],
        "source": {
            "observer": { "display": "CP-IS Field" },
            "type": [{ "system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server" }]
        },
        "entity": [{
            "what": { "identifier": { "system": NHS_NUMBER_SYSTEM, "value": nhs.as_digits() } },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person" }
        }]
    });
    let role = json!({
        "resourceType": "PractitionerRole",
        "id": role_id,
        "practitioner": { "display": entry.role },
        "organization": {
            "identifier": { "system": ODS_SYSTEM, "value": entry.org_ods.as_str() },
            "display": format!("{} ({})", entry.org_name, entry.org_ods),
        },
        "code": [{ "text": entry.role }],
        "specialty": [{ "text": entry.setting.in_words() }],
    });
    (event, role)
}

/// How a searchset is framed: where it was asked, how fresh its data is, and any warnings.
#[derive(Debug, Clone, Default)]
pub struct BundleFrame {
    /// The FHIR base, e.g. `http://127.0.0.1:8750/fhir/R4`.
    pub base_url: String,
    /// The request's own URL (the `self` link).
    pub self_url: String,
    /// When the data answering was last brought up to date.
    pub last_updated: Option<DateTime<Utc>>,
    /// Warnings, as one OperationOutcome entry with `search.mode` outcome.
    pub warnings: Vec<String>,
}

/// A searchset Bundle: `matches` counted in `total`, `includes` and the warning outcome not.
pub fn searchset(frame: &BundleFrame, matches: Vec<Value>, includes: Vec<Value>) -> Value {
    let total = matches.len();
    let entry = |resource: Value, mode: &str| {
        let full_url = format!(
            "{}/{}/{}",
            frame.base_url,
            resource["resourceType"].as_str().unwrap_or(""),
            resource["id"].as_str().unwrap_or("")
        );
        json!({ "fullUrl": full_url, "resource": resource, "search": { "mode": mode } })
    };
    let mut entries: Vec<Value> = matches.into_iter().map(|r| entry(r, "match")).collect();
    entries.extend(includes.into_iter().map(|r| entry(r, "include")));
    if !frame.warnings.is_empty() {
        let issues: Vec<Value> = frame
            .warnings
            .iter()
            .map(|w| json!({ "severity": "warning", "code": "informational", "diagnostics": w }))
            .collect();
        let outcome = json!({
            "resourceType": "OperationOutcome",
            "id": resource_id(&["OperationOutcome", &frame.self_url]),
            "issue": issues,
        });
        entries.push(entry(outcome, "outcome"));
    }
    let mut meta = json!({});
    if let Some(t) = frame.last_updated {
        meta["lastUpdated"] = json!(instant(t));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "searchset",
        "total": total,
        "link": [{ "relation": "self", "url": frame.self_url }],
        "entry": entries,
    });
    if meta.as_object().is_some_and(|m| !m.is_empty()) {
        bundle["meta"] = meta;
    }
    bundle
}

/// A refusal as an OperationOutcome.
pub fn operation_outcome(error: &FhirError) -> Value {
    let mut issue = json!({
        "severity": "error",
        "code": error.issue_code,
        "diagnostics": error.diagnostics,
    });
    if let Some(code) = error.spine_code {
        issue["details"] = json!({
            "coding": [{ "system": SPINE_ERROR_SYSTEM, "version": "1", "code": code, "display": spine_display(code) }]
        });
    }
    json!({ "resourceType": "OperationOutcome", "issue": [issue] })
}

fn spine_display(code: &str) -> &'static str {
    match code {
        "INVALID_SEARCH_DATA" => "Invalid search data",
        "PRECONDITION_FAILED" => "Precondition failed",
        "ACCESS_DENIED" => "Access denied",
        _ => "",
    }
}

/// What a server says about itself in its CapabilityStatement.
#[derive(Debug, Clone)]
pub struct ServerDescription {
    pub base_url: String,
    pub software: &'static str,
    pub version: &'static str,
    pub description: String,
    /// Who an access is recorded against: the named clinician or the client system (the central),
    /// or the signed-in user (a device's door).
    pub who_looked: &'static str,
}

/// `ServerDescription::who_looked` for the central.
pub const WHO_LOOKED_CENTRAL: &str = "X-CPIS-User-Id, X-CPIS-User-Role (role code) and optionally X-CPIS-User-Name name the acting clinician; without them the access is recorded against the client system.";
/// `ServerDescription::who_looked` for a device's door.
pub const WHO_LOOKED_DEVICE: &str = "The access is recorded against the user signed in on this device; X-CPIS-User-* headers are not used.";

/// The CapabilityStatement: exactly the two searches, their parameters and the one include.
pub fn capability_statement(server: &ServerDescription, now: DateTime<Utc>) -> Value {
    let patient_params = json!([
        { "name": "patient:identifier", "type": "token", "documentation": format!("{NHS_NUMBER_SYSTEM}|<NHS number>") },
        { "name": "patient", "type": "reference", "documentation": "The NHS number alone" }
    ]);
    let headers = format!("Headers: Authorization: Bearer <token> (required); TraceID or X-Request-ID (required, echoed back; a retry with the same TraceID is the same access); IsUnscheduledAccessEvent: true|false (absent means true: a CareTeam search is then the access, recorded in the access history and notifying the responsible local authority; false records neither). {}", server.who_looked);
    json!({
        "resourceType": "CapabilityStatement",
        "id": "cpis-field",
        "status": "active",
        "date": instant(now),
        "kind": "instance",
        "software": { "name": server.software, "version": server.version },
        "implementation": { "description": server.description, "url": server.base_url },
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "documentation": headers,
            "security": {
                "cors": false,
                "description": "Bearer token issued to a registered client system"
            },
            "resource": [
                {
                    "type": "CareTeam",
                    "documentation": "One CareTeam per child protection, looked after or unborn child protection plan shown for the patient",
                    "interaction": [{ "code": "search-type" }],
                    "searchParam": patient_params.clone(),
                },
                {
                    "type": "AuditEvent",
                    "documentation": format!("The patient's access history from unscheduled care: at most {ACCESS_HISTORY_MAX} accesses, newest first"),
                    "interaction": [{ "code": "search-type" }],
                    "searchInclude": [AUDIT_INCLUDE],
                    "searchParam": patient_params,
                }
            ]
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::la::OdsCode;
    use crate::setting::CareSetting;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn search_parameters_table() {
        let nhs = NhsNumber::test_range(1);
        let ident = format!("{NHS_NUMBER_SYSTEM}|{}", nhs.as_digits());
        let bad_check = {
            let mut d = nhs.digits();
            d[9] = (d[9] + 1) % 10;
            d.iter().map(|x| char::from(b'0' + x)).collect::<String>()
        };
        use SearchResource::*;
        // (resource, params, expected: Ok(include) or Err(words in the message))
        type Case = (
            SearchResource,
            Vec<(String, String)>,
            Result<bool, &'static str>,
        );
        let cases: Vec<Case> = vec![
            (CareTeam, p(&[("patient:identifier", &ident)]), Ok(false)),
            (CareTeam, p(&[("patient", &nhs.as_digits())]), Ok(false)),
            (
                CareTeam,
                p(&[("patient", &format!("Patient/{}", nhs.as_digits()))]),
                Ok(false),
            ),
            (
                AuditEvent,
                p(&[("patient:identifier", &ident), ("_include", AUDIT_INCLUDE)]),
                Ok(true),
            ),
            (AuditEvent, p(&[("patient:identifier", &ident)]), Ok(false)),
            (
                CareTeam,
                p(&[("patient:identifier", &ident), ("_format", "json")]),
                Ok(false),
            ),
            (CareTeam, p(&[]), Err("a patient is required")),
            (
                CareTeam,
                p(&[("patient:identifier", &nhs.as_digits())]),
                Err("patient:identifier must be"),
            ),
            (
                CareTeam,
                p(&[(
                    "patient:identifier",
                    &format!("urn:other|{}", nhs.as_digits()),
                )]),
                Err("system must be"),
            ),
            (
                CareTeam,
                p(&[(
                    "patient:identifier",
                    &format!("{NHS_NUMBER_SYSTEM}|{bad_check}"),
                )]),
                Err("invalid NHS number"),
            ),
            (
                CareTeam,
                p(&[("patient", "12345")]),
                Err("invalid NHS number"),
            ),
            (
                CareTeam,
                p(&[
                    ("patient:identifier", &ident),
                    ("patient", &NhsNumber::test_range(2).as_digits()),
                ]),
                Err("two different patients"),
            ),
            (
                CareTeam,
                p(&[("patient:identifier", &ident), ("_include", AUDIT_INCLUDE)]),
                Err("'_include' is not supported"),
            ),
            (
                AuditEvent,
                p(&[
                    ("patient:identifier", &ident),
                    ("_include", "AuditEvent:agent"),
                ]),
                Err("only AuditEvent:entity-type"),
            ),
            (
                CareTeam,
                p(&[("patient:identifier", &ident), ("status", "active")]),
                Err("'status' is not supported"),
            ),
            (
                CareTeam,
                p(&[("patient:identifier", &ident), ("_format", "xml")]),
                Err("only json"),
            ),
        ];
        for (resource, params, expected) in cases {
            let got = parse_search(resource, &params);
            match expected {
                Ok(include) => {
                    let q = got.unwrap_or_else(|e| panic!("{params:?}: {e}"));
                    assert_eq!(q.nhs, nhs);
                    assert_eq!(q.include_roles, include, "{params:?}");
                }
                Err(words) => {
                    let e = got.expect_err(&format!("{params:?} should be refused"));
                    assert_eq!((e.status, e.spine_code), (400, Some("INVALID_SEARCH_DATA")));
                    assert!(
                        e.diagnostics.contains(words),
                        "{params:?}: {}",
                        e.diagnostics
                    );
                    assert!(
                        !e.diagnostics.contains(&nhs.as_digits()),
                        "an NHS number in an error"
                    );
                }
            }
        }
    }

    #[test]
    fn headers_table() {
        let h = |trace: Option<&str>,
                 rid: Option<&str>,
                 uns: Option<&str>,
                 user: (Option<&str>, Option<&str>, Option<&str>)| RawHeaders {
            trace_id: trace.map(String::from),
            request_id: rid.map(String::from),
            unscheduled: uns.map(String::from),
            user_id: user.0.map(String::from),
            user_role: user.1.map(String::from),
            user_name: user.2.map(String::from),
            unreadable: vec![],
        };
        let none = (None, None, None);
        let ok = |raw: RawHeaders| parse_headers(&raw).unwrap();
        let err = |raw: RawHeaders| parse_headers(&raw).unwrap_err();

        let r = ok(h(Some("t-1"), None, None, none));
        assert_eq!(
            (r.trace_id.as_str(), r.unscheduled, r.user),
            ("t-1", true, None)
        );
        assert_eq!(
            ok(h(None, Some("r-1"), Some("FALSE"), none)).trace_id,
            "r-1"
        );
        assert!(!ok(h(None, Some("r-1"), Some("false"), none)).unscheduled);
        assert!(ok(h(Some("t"), Some("r"), Some("True"), none)).unscheduled);
        let named = ok(h(
            Some("t"),
            None,
            None,
            (Some("u1"), Some("R8000"), Some("Sam Example")),
        ));
        assert_eq!(
            named.user,
            Some(ActingUser {
                id: "u1".into(),
                role: "R8000".into(),
                name: Some("Sam Example".into())
            })
        );
        assert_eq!(
            ok(h(Some("t"), None, None, (Some("u1"), Some("R8000"), None)))
                .user
                .unwrap()
                .name,
            None
        );

        for (raw, words) in [
            (
                h(None, None, None, none),
                "TraceID (or X-Request-ID) header is required",
            ),
            (h(Some(""), None, None, none), "TraceID is empty"),
            (h(Some("a b"), None, None, none), "TraceID holds spaces"),
            (
                h(Some(&"x".repeat(129)), None, None, none),
                "longer than 128",
            ),
            (
                h(Some("t"), None, Some("yes"), none),
                "IsUnscheduledAccessEvent must be true or false",
            ),
            (
                h(Some("t"), None, None, (Some("u1"), None, None)),
                "X-CPIS-User-Role is required",
            ),
            (
                h(Some("t"), None, None, (None, Some("R8000"), None)),
                "X-CPIS-User-Id is required",
            ),
            (
                h(Some("t"), None, None, (None, None, Some("Sam Example"))),
                "X-CPIS-User-Id is required",
            ),
            (
                h(Some("t"), None, None, (Some("u\u{7}"), Some("R8000"), None)),
                "control characters",
            ),
        ] {
            let e = err(raw);
            assert_eq!((e.status, e.spine_code), (400, Some("PRECONDITION_FAILED")));
            assert!(e.diagnostics.contains(words), "{}", e.diagnostics);
        }
        let mut unreadable = h(Some("t"), None, None, none);
        unreadable.unreadable.push("TraceID");
        assert!(err(unreadable)
            .diagnostics
            .contains("TraceID is not readable"));
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
        for bad in [None, Some("Basic abc"), Some("Bearer "), Some("abc")] {
            let e = bearer_token(bad).unwrap_err();
            assert_eq!((e.status, e.spine_code), (401, Some("ACCESS_DENIED")));
        }
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn care_teams_table() {
        let subject = Subject::new(NhsNumber::test_range(4), "Alex Jo", "Example");
        assert_eq!(subject.display, "Alex Jo EXAMPLE");
        let la = TeamLa {
            ods: "L001".into(),
            name: "Northbrook Borough Council".into(),
            emergency_phone: "0300 555 0101".into(),
            office_phone: Some("0300 555 0102".into()),
        };
        let no_office = TeamLa {
            office_phone: None,
            ..la.clone()
        };
        // (plan, la, category code, status, end, telecom uses)
        let cases = [
            (
                PlanKind::ChildProtection,
                None,
                true,
                Some(&la),
                "342191000000101",
                "active",
                vec!["mobile", "work"],
            ),
            (
                PlanKind::LookedAfter,
                Some("2025-02-01"),
                false,
                Some(&no_office),
                "764841000000100",
                "inactive",
                vec!["mobile"],
            ),
            (
                PlanKind::UnbornChildProtection,
                None,
                true,
                None,
                "818901000000100",
                "active",
                vec![],
            ),
        ];
        for (kind, end, current, la, code, status, uses) in cases {
            let plan = TeamPlan {
                kind,
                start: d("2024-03-01"),
                end: end.map(d),
                current,
            };
            let team = care_team(&subject, &plan, la);
            assert_eq!(team["resourceType"], "CareTeam");
            assert_eq!(team["status"], status);
            assert_eq!(team["category"][0]["coding"][0]["system"], SNOMED_SYSTEM);
            assert_eq!(team["category"][0]["coding"][0]["code"], code);
            assert_eq!(team["subject"]["identifier"]["system"], NHS_NUMBER_SYSTEM);
            assert_eq!(
                team["subject"]["identifier"]["value"],
                subject.nhs.as_digits()
            );
            assert_eq!(team["subject"]["display"], "Alex Jo EXAMPLE");
            assert_eq!(team["period"]["start"], "2024-03-01");
            assert_eq!(team["period"].get("end").and_then(Value::as_str), end);
            let got_uses: Vec<&str> = team["telecom"]
                .as_array()
                .map(|t| t.iter().map(|x| x["use"].as_str().unwrap()).collect())
                .unwrap_or_default();
            assert_eq!(got_uses, uses);
            match la {
                Some(la) => {
                    assert_eq!(team["name"], la.name.as_str());
                    assert_eq!(team["telecom"][0]["value"], la.emergency_phone.as_str());
                    assert_eq!(
                        team["managingOrganization"][0]["identifier"]["value"],
                        "L001"
                    );
                }
                None => assert!(team["name"].as_str().unwrap().contains("not yet available")),
            }
            assert!(!team["id"]
                .as_str()
                .unwrap()
                .contains(&subject.nhs.as_digits()));
        }
    }

    #[test]
    fn an_access_is_an_audit_event_with_its_practitioner_role() {
        let nhs = NhsNumber::test_range(5);
        let entry = AccessHistoryEntry {
            at: DateTime::parse_from_rfc3339("2026-05-01T10:20:30Z")
                .unwrap()
                .with_timezone(&Utc),
            org_ods: OdsCode::parse("RX9").unwrap(),
            org_name: "Synthetic Ambulance Service".into(),
            role: "Paramedic".into(),
            setting: CareSetting::Ambulance,
        };
        let (event, role) = audit_event(&nhs, &entry);
        assert_eq!(event["type"]["code"], "access");
        assert_eq!(
            event["type"]["display"],
            "Access/View Record Lifecycle Event"
        );
        assert_eq!(event["recorded"], "2026-05-01T10:20:30.000Z");
        assert_eq!(event["agent"][0]["type"]["coding"][0]["code"], "PAT");
        assert_eq!(
            event["agent"][0]["who"]["identifier"]["value"],
            nhs.as_digits()
        );
        assert_eq!(event["agent"][1]["type"]["coding"][0]["code"], "ASSIGNED");
        assert_eq!(
            event["agent"][1]["who"]["reference"],
            format!("PractitionerRole/{}", role["id"].as_str().unwrap())
        );
        assert_eq!(role["practitioner"]["display"], "Paramedic");
        assert_eq!(
            role["organization"]["display"],
            "Synthetic Ambulance Service (RX9)"
        );
        assert_eq!(role["code"][0]["text"], "Paramedic");
    }

    #[test]
    fn a_searchset_counts_matches_only_and_carries_warnings_as_an_outcome_entry() {
        let frame = BundleFrame {
            base_url: "http://127.0.0.1:1/fhir/R4".into(),
            self_url: "http://127.0.0.1:1/fhir/R4/CareTeam?patient=x".into(),
            last_updated: Some(Utc::now()),
            warnings: vec!["offline copy".into()],
        };
        let b = searchset(
            &frame,
            vec![json!({"resourceType": "AuditEvent", "id": "a"})],
            vec![json!({"resourceType": "PractitionerRole", "id": "r"})],
        );
        assert_eq!(b["type"], "searchset");
        assert_eq!(b["total"], 1);
        assert_eq!(b["link"][0]["relation"], "self");
        let modes: Vec<&str> = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["search"]["mode"].as_str().unwrap())
            .collect();
        assert_eq!(modes, ["match", "include", "outcome"]);
        assert_eq!(
            b["entry"][0]["fullUrl"],
            "http://127.0.0.1:1/fhir/R4/AuditEvent/a"
        );
        assert_eq!(b["entry"][2]["resource"]["issue"][0]["severity"], "warning");
        assert!(b["meta"]["lastUpdated"].is_string());
        let empty = searchset(&BundleFrame::default(), vec![], vec![]);
        assert_eq!(empty["total"], 0);
        assert!(empty.get("meta").is_none());
    }

    #[test]
    fn refusals_carry_spine_codes() {
        for (e, status, code) in [
            (
                FhirError::invalid_search("x"),
                400,
                Some("INVALID_SEARCH_DATA"),
            ),
            (
                FhirError::precondition("x"),
                400,
                Some("PRECONDITION_FAILED"),
            ),
            (FhirError::unauthenticated("x"), 401, Some("ACCESS_DENIED")),
            (FhirError::forbidden("x"), 403, Some("ACCESS_DENIED")),
            (FhirError::not_found("x"), 404, None),
        ] {
            let o = operation_outcome(&e);
            assert_eq!(e.status, status);
            assert_eq!(o["resourceType"], "OperationOutcome");
            assert_eq!(o["issue"][0]["severity"], "error");
            assert_eq!(o["issue"][0]["details"]["coding"][0]["code"].as_str(), code);
            if code.is_some() {
                assert_eq!(
                    o["issue"][0]["details"]["coding"][0]["system"],
                    SPINE_ERROR_SYSTEM
                );
            }
        }
    }
}
