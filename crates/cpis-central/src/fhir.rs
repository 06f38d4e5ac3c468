//! The FHIR facade's use cases, over the same store and rules as the live check: client systems
//! (register, list, revoke, authenticate) and the two searches. The CareTeam search is the access:
//! an unscheduled one is recorded once per client, `TraceID` and person (a retry never notifies
//! twice) and notifies the responsible LA; every search is kept in the lookup trail. The FHIR shapes
//! themselves are `cpis_core::fhir`'s pure functions.

use chrono::{DateTime, Utc};
use cpis_core::crypto::hazmat;
use cpis_core::fhir::{
    self, FhirError, RequestHeaders, SearchQuery, SearchResource, Subject, TeamLa, TeamPlan,
};
use cpis_core::plan::Visibility;
use cpis_core::{
    AccessEvent, Accessor, Activity, CareSetting, FlagRecord, LocalAuthority, OdsCode,
};
use serde_json::Value;
use uuid::Uuid;

use crate::auth;
use crate::error::ApiFailure;
use crate::service::Central;
use crate::store::{FhirClientRecord, LiveLookup, StoreError};

/// A client system just registered, with its token (shown once; stored only as a hash).
#[derive(Debug)]
pub struct IssuedFhirClient {
    pub client: FhirClientRecord,
    pub token: String,
}

/// The role recorded for a system's query when no clinician is named.
pub const SYSTEM_ROLE: &str = "Clinical system (no user named)";

/// A search's answer: the matching resources and those included with them.
#[derive(Debug, Default)]
pub struct SearchAnswer {
    pub matches: Vec<Value>,
    pub includes: Vec<Value>,
}

/// The id of the access event a CareTeam search records: the same client, trace id and person give
/// the same id, so the store's exactly-once intake makes a retry a duplicate.
pub fn access_event_id(client: Uuid, trace_id: &str, nhs: &cpis_core::NhsNumber) -> Uuid {
    let digest = hazmat::sha256(
        format!(
            "cpis-field/fhir-access/v1\n{client}\n{trace_id}\n{}",
            nhs.as_digits()
        )
        .as_bytes(),
    );
    let bytes: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Who looked, as recorded: the named clinician (role and activity from the central's own user
/// record when it holds them at the client's organisation, as for a device), or else the client
/// system itself. A name sent by the client is kept with the user id, so the LA's notification
/// shows it; the access history shows only the role, as for every other access.
pub fn fhir_accessor(
    client: &FhirClientRecord,
    headers: &RequestHeaders,
    known_user: Option<(String, Activity)>,
) -> Accessor {
    let (user_id, role, activity) = match &headers.user {
        Some(user) => {
            let id = match &user.name {
                Some(name) => format!("{} ({name})", user.id),
                None => user.id.clone(),
            };
            match known_user {
                Some((role, activity)) => (id, role, activity),
                None => (id, user.role.clone(), Activity::B0107),
            }
        }
        None => (
            format!("fhir-client:{}", client.client_id),
            SYSTEM_ROLE.to_string(),
            Activity::B0107,
        ),
    };
    Accessor {
        user_id,
        role,
        activity,
        org_ods: client.org_ods.clone(),
        org_name: client.org_name.clone(),
        setting: client.setting,
    }
}

/// The access event a CareTeam search records, or `None` when it records none: a scheduled
/// request (`IsUnscheduledAccessEvent: false`), a client in a scheduled setting, or a user who reads
/// silently (B0170) neither notify nor enter the access history, as on a device.
pub fn fhir_access_event(
    client: &FhirClientRecord,
    headers: &RequestHeaders,
    known_user: Option<(String, Activity)>,
    nhs: cpis_core::NhsNumber,
    now: DateTime<Utc>,
) -> Option<AccessEvent> {
    if !headers.unscheduled {
        return None;
    }
    let accessor = fhir_accessor(client, headers, known_user);
    if !accessor.notifies() {
        return None;
    }
    let mut event = AccessEvent::new(client.client_id, 0, now, 0, nhs, accessor, None);
    event.id = access_event_id(client.client_id, &headers.trace_id, &nhs);
    Some(event)
}

/// The plans of a visible record as CareTeams' input, with the LA's contacts.
pub fn team_inputs(
    record: &FlagRecord,
    la: Option<&LocalAuthority>,
    today: chrono::NaiveDate,
    rules: &cpis_core::VisibilityRules,
) -> (Subject, Vec<TeamPlan>, Option<TeamLa>) {
    let subject = Subject::new(record.nhs_number, &record.given_names, &record.family_name);
    let plans = record
        .visible_plans(today, rules)
        .into_iter()
        .map(|(p, v)| TeamPlan {
            kind: p.kind,
            start: p.start,
            end: p.end,
            current: matches!(v, Visibility::Current),
        })
        .collect();
    let la = la.map(|la| TeamLa {
        ods: la.ods.to_string(),
        name: la.name.clone(),
        emergency_phone: la.emergency_phone.clone(),
        office_phone: la.office_phone.clone(),
    });
    (subject, plans, la)
}

fn store_failure(e: StoreError) -> FhirError {
    tracing::error!(error = %e, "store failure");
    FhirError::internal()
}

impl Central {
    /// Registers a client system; its accesses are recorded under this organisation and setting.
    pub async fn add_fhir_client(
        &self,
        org_ods: &OdsCode,
        org_name: &str,
        setting: CareSetting,
    ) -> Result<IssuedFhirClient, ApiFailure> {
        if org_name.trim().is_empty() {
            return Err(ApiFailure::unprocessable(
                "invalid_fhir_client",
                "the organisation name must not be empty",
            ));
        }
        let token = auth::new_token();
        let client = FhirClientRecord {
            client_id: Uuid::now_v7(),
            org_ods: org_ods.clone(),
            org_name: org_name.trim().to_string(),
            setting,
            created_at: Utc::now(),
            revoked_at: None,
        };
        self.store
            .create_fhir_client(&client, &auth::secret_hash(&token))
            .await?;
        tracing::info!(client = %client.client_id, org = %client.org_ods, "FHIR client registered");
        Ok(IssuedFhirClient { client, token })
    }

    pub async fn fhir_clients(&self) -> Result<Vec<FhirClientRecord>, ApiFailure> {
        Ok(self.store.fhir_clients().await?)
    }

    pub async fn revoke_fhir_client(&self, id: Uuid) -> Result<bool, ApiFailure> {
        Ok(self.store.revoke_fhir_client(id, Utc::now()).await?)
    }

    /// The registered, unrevoked client a bearer token belongs to.
    pub async fn authenticate_fhir_client(
        &self,
        token: &str,
    ) -> Result<FhirClientRecord, FhirError> {
        match self
            .store
            .fhir_client_for_token(&auth::secret_hash(token))
            .await
            .map_err(store_failure)?
        {
            None => Err(FhirError::unauthenticated(
                "the bearer token is not a registered client system's",
            )),
            Some(c) if c.revoked_at.is_some() => Err(FhirError::forbidden(
                "this client system's access has been revoked",
            )),
            Some(c) => Ok(c),
        }
    }

    /// Answers a search. The person's record is read under the same visibility rules as the live
    /// check; a person with nothing visible has no plans and no access history to show.
    pub async fn fhir_search(
        &self,
        client: &FhirClientRecord,
        resource: SearchResource,
        query: &SearchQuery,
        headers: &RequestHeaders,
    ) -> Result<SearchAnswer, FhirError> {
        let now = Utc::now();
        let today = cpis_core::ukdate::uk_today(now);
        let record = self
            .store
            .flag(&query.nhs)
            .await
            .map_err(store_failure)?
            .and_then(|r| crate::service::visible_record(r, today, &self.rules));
        let accessor = fhir_accessor(client, headers, None);
        let mut answer = SearchAnswer::default();
        if let Some(record) = &record {
            match resource {
                SearchResource::CareTeam => {
                    self.record_fhir_access(client, headers, query, now).await?;
                    let la = self
                        .store
                        .local_authority(&record.local_authority)
                        .await
                        .map_err(store_failure)?
                        .map(|l| l.la);
                    let (subject, plans, la) = team_inputs(record, la.as_ref(), today, &self.rules);
                    answer.matches = plans
                        .iter()
                        .map(|p| fhir::care_team(&subject, p, la.as_ref()))
                        .collect();
                }
                SearchResource::AuditEvent => {
                    let history = self
                        .access_history(&query.nhs)
                        .await
                        .map_err(|_| FhirError::internal())?;
                    for entry in history.iter().take(fhir::ACCESS_HISTORY_MAX) {
                        let (event, role) = fhir::audit_event(&query.nhs, entry);
                        answer.matches.push(event);
                        if query.include_roles
                            && !answer.includes.iter().any(|r| r["id"] == role["id"])
                        {
                            answer.includes.push(role);
                        }
                    }
                }
            }
        }
        // Every search is kept against the person, found or not, as for the live check.
        self.store
            .record_lookup(
                &query.nhs,
                &LiveLookup {
                    at: now,
                    device_id: client.client_id,
                    user_id: accessor.user_id,
                    found: record.is_some(),
                    search_id: None,
                },
            )
            .await
            .map_err(store_failure)?;
        Ok(answer)
    }

    async fn record_fhir_access(
        &self,
        client: &FhirClientRecord,
        headers: &RequestHeaders,
        query: &SearchQuery,
        now: DateTime<Utc>,
    ) -> Result<(), FhirError> {
        let known_user = match &headers.user {
            Some(user) => self
                .store
                .user(&user.id)
                .await
                .map_err(store_failure)?
                .filter(|u| u.org_ods == client.org_ods)
                .map(|u| (u.role, u.activity)),
            None => None,
        };
        if let Some(event) = fhir_access_event(client, headers, known_user, query.nhs, now) {
            let intake = self
                .event_intake(vec![event], now)
                .await
                .map_err(store_failure)?;
            self.store
                .ingest_events(intake, now)
                .await
                .map_err(store_failure)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpis_core::fhir::ActingUser;
    use cpis_core::NhsNumber;

    fn client(setting: CareSetting) -> FhirClientRecord {
        FhirClientRecord {
            client_id: Uuid::now_v7(),
            org_ods: OdsCode::parse("RYY").unwrap(),
            org_name: "Synthetic Urgent Care Trust".into(),
            setting,
            created_at: Utc::now(),
            revoked_at: None,
        }
    }

    fn headers(unscheduled: bool, user: Option<(&str, &str, Option<&str>)>) -> RequestHeaders {
        RequestHeaders {
            trace_id: "trace-1".into(),
            unscheduled,
            user: user.map(|(id, role, name)| ActingUser {
                id: id.into(),
                role: role.into(),
                name: name.map(String::from),
            }),
        }
    }

    #[test]
    fn which_searches_record_an_access_table() {
        let nhs = NhsNumber::test_range(9);
        let ed = client(CareSetting::EmergencyDepartment);
        let gp = client(CareSetting::Gp);
        let named = Some(("u7", "R8000", Some("Sam Example")));
        let silent_user = Some(("Safeguarding lead".to_string(), Activity::B0170));
        // (client, unscheduled header, named user, central's record of the user, expected (user id, role) or none)
        type NamedUser<'a> = Option<(&'a str, &'a str, Option<&'a str>)>;
        type Case<'a> = (
            &'a FhirClientRecord,
            bool,
            NamedUser<'a>,
            Option<(String, Activity)>,
            Option<(String, &'a str)>,
        );
        let cases: Vec<Case> = vec![
            (
                &ed,
                true,
                None,
                None,
                Some((format!("fhir-client:{}", ed.client_id), SYSTEM_ROLE)),
            ),
            (
                &ed,
                true,
                named,
                None,
                Some(("u7 (Sam Example)".into(), "R8000")),
            ),
            (
                &ed,
                true,
                Some(("u7", "R8000", None)),
                None,
                Some(("u7".into(), "R8000")),
            ),
            (
                &ed,
                true,
                named,
                Some(("Nurse".into(), Activity::B0107)),
                Some(("u7 (Sam Example)".into(), "Nurse")),
            ),
            (&ed, true, named, silent_user, None),
            (&ed, false, None, None, None),
            (&ed, false, named, None, None),
            (&gp, true, None, None, None),
        ];
        for (c, unscheduled, user, known, expected) in cases {
            let h = headers(unscheduled, user);
            let got = fhir_access_event(c, &h, known, nhs, Utc::now());
            match expected {
                None => assert!(got.is_none(), "{unscheduled} {user:?}"),
                Some((id, role)) => {
                    let e = got.expect("an access is recorded");
                    assert!(e.notifies);
                    assert_eq!(e.accessor.user_id, id);
                    assert_eq!(e.accessor.role, role);
                    assert_eq!(e.accessor.org_ods, c.org_ods);
                    assert_eq!(e.accessor.setting, c.setting);
                    assert_eq!(e.device_id, c.client_id);
                }
            }
        }
    }

    #[test]
    fn a_retry_with_the_same_trace_id_is_the_same_access() {
        let nhs = NhsNumber::test_range(9);
        let c = client(CareSetting::Ambulance);
        let a = access_event_id(c.client_id, "t1", &nhs);
        assert_eq!(a, access_event_id(c.client_id, "t1", &nhs));
        assert_ne!(a, access_event_id(c.client_id, "t2", &nhs));
        assert_ne!(
            a,
            access_event_id(c.client_id, "t1", &NhsNumber::test_range(10))
        );
        assert_ne!(a, access_event_id(Uuid::now_v7(), "t1", &nhs));
    }
}
