//! The FHIR R4 facade over real HTTP, on SQLite and on PostgreSQL (`sqlite::name`, `postgres::name`):
//! the CareTeam and AuditEvent searches, the access each unscheduled search records (exactly once
//! per TraceID, notifying the LA), scheduled reads that record nothing, client registration and
//! revocation, and refusals as Spine-coded OperationOutcomes that change nothing.

mod common;

use chrono::{Duration, Utc};
use common::*;
use cpis_core::fhir::{AUDIT_INCLUDE, NHS_NUMBER_SYSTEM, SPINE_ERROR_SYSTEM};
use cpis_core::wire::{LiveCheckRequest, NotificationPage};
use cpis_core::{Activity, CareSetting, NhsNumber, OdsCode};
use serde_json::Value;

on_both_stores!(
    a_care_team_search_shows_each_visible_plan_with_its_las_contacts,
    an_unscheduled_search_notifies_once_per_trace_id_and_a_scheduled_one_records_nothing,
    a_person_with_no_record_is_an_empty_searchset_never_a_404,
    the_audit_event_search_lists_unscheduled_accesses_with_their_practitioner_roles,
    a_named_clinician_is_recorded_as_such_and_a_silent_reader_does_not_notify,
    refusals_are_spine_coded_operation_outcomes_and_change_nothing,
    a_revoked_client_is_refused_from_its_next_request,
    metadata_lists_exactly_the_two_searches,
);

const ED: CareSetting = CareSetting::EmergencyDepartment;

async fn client_token(c: &TestCentral, org: &str, setting: CareSetting) -> String {
    c.central()
        .add_fhir_client(
            &OdsCode::parse(org).unwrap(),
            &format!("Synthetic Trust {org}"),
            setting,
        )
        .await
        .unwrap()
        .token
}

fn identifier(n: NhsNumber) -> String {
    format!("{NHS_NUMBER_SYSTEM}|{}", n.as_digits())
}

/// A GET under /fhir/R4 with the given query and headers; the status, headers and parsed body.
async fn fhir_get(
    c: &TestCentral,
    path: &str,
    query: &[(&str, String)],
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = c.http.get(format!("{}/fhir/R4/{path}", c.url)).query(query);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).expect("a JSON body");
    (status, h, body)
}

async fn care_teams(
    c: &TestCentral,
    token: &str,
    n: NhsNumber,
    trace: &str,
    extra: &[(&str, &str)],
) -> Value {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("authorization", bearer.as_str()), ("traceid", trace)];
    headers.extend_from_slice(extra);
    let (status, _, body) = fhir_get(
        c,
        "CareTeam",
        &[("patient:identifier", identifier(n))],
        &headers,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn audit_events(c: &TestCentral, token: &str, n: NhsNumber) -> Value {
    let bearer = format!("Bearer {token}");
    let (status, _, body) = fhir_get(
        c,
        "AuditEvent",
        &[
            ("patient:identifier", identifier(n)),
            ("_include", AUDIT_INCLUDE.to_string()),
        ],
        &[
            ("authorization", &bearer),
            ("x-request-id", "audit-1"),
            ("isunscheduledaccessevent", "false"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn notifications(c: &TestCentral, la_token: &str) -> NotificationPage {
    c.http
        .get(format!("{}/v1/la/L001/notifications", c.url))
        .bearer_auth(la_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn matches(bundle: &Value, resource: &str) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| {
            assert_eq!(e["resource"]["resourceType"], resource);
            e["resource"].clone()
        })
        .collect()
}

/// L001 in `north` holding people 0..10 on a child protection plan; person 1 also has a looked
/// after plan that ended a month ago (still shown) and person 2 only one that ended two years ago.
async fn register(c: &TestCentral) -> String {
    c.add_la("L001", "north").await;
    let token = c.la_token("L001").await;
    let ended = (Utc::now() - Duration::days(30)).date_naive();
    let mut csv = HEADER.to_string();
    for i in (0..10).filter(|i| *i != 2) {
        csv.push_str(&row(i, "CPPI"));
    }
    csv.push_str(&format!(
        "{},Testfamily1,Sam,2019-02-03,LACI,2024-06-01,{ended},,,\n",
        nhs(1).as_digits()
    ));
    csv.push_str(&format!(
        "{},Testfamily2,Sam,2019-02-03,LACI,2021-01-01,2022-01-01,,,\n",
        nhs(2).as_digits()
    ));
    let r = c.upload("L001", &token, &csv, false).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    token
}

async fn a_care_team_search_shows_each_visible_plan_with_its_las_contacts(c: TestCentral) {
    register(&c).await;
    let token = client_token(&c, "RYY", ED).await;
    let bundle = care_teams(&c, &token, nhs(1), "t-1", &[]).await;
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 2);
    assert_eq!(bundle["link"][0]["relation"], "self");
    let teams = matches(&bundle, "CareTeam");
    let mut codes: Vec<(&str, &str)> = teams
        .iter()
        .map(|t| {
            (
                t["category"][0]["coding"][0]["code"].as_str().unwrap(),
                t["status"].as_str().unwrap(),
            )
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            ("342191000000101", "active"),
            ("764841000000100", "inactive")
        ]
    );
    for t in &teams {
        assert_eq!(t["name"], "L001 Synthetic Borough Council");
        assert_eq!(t["subject"]["identifier"]["value"], nhs(1).as_digits());
        assert_eq!(t["subject"]["display"], "Sam TESTFAMILY1");
        let phones: Vec<(&str, &str)> = t["telecom"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["use"].as_str().unwrap(), p["value"].as_str().unwrap()))
            .collect();
        assert_eq!(
            phones,
            [("mobile", "0300 555 0100"), ("work", "0300 555 0101")]
        );
    }
    let lac = teams.iter().find(|t| t["status"] == "inactive").unwrap();
    assert_eq!(lac["period"]["start"], "2024-06-01");
    assert!(lac["period"]["end"].is_string());
    // `patient={nhs}` is the same search.
    let bearer = format!("Bearer {token}");
    let (status, _, same) = fhir_get(
        &c,
        "CareTeam",
        &[("patient", nhs(1).as_digits())],
        &[("authorization", &bearer), ("traceid", "t-1")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(same["total"], 2);
    // A plan past its window is not shown: nothing else of that person is.
    assert_eq!(care_teams(&c, &token, nhs(2), "t-2", &[]).await["total"], 0);
    c.shutdown().await;
}

async fn an_unscheduled_search_notifies_once_per_trace_id_and_a_scheduled_one_records_nothing(
    c: TestCentral,
) {
    let la_token = register(&c).await;
    let token = client_token(&c, "RYY", ED).await;
    // The same TraceID three times (a client retrying) is one access, one notification.
    for _ in 0..3 {
        care_teams(&c, &token, nhs(3), "retry-1", &[]).await;
    }
    let page = notifications(&c, &la_token).await;
    assert_eq!(page.notifications.len(), 1);
    let n = &page.notifications[0];
    assert_eq!(
        (n.nhs_number, n.org_ods.as_str(), n.setting),
        (nhs(3), "RYY", ED)
    );
    assert_eq!(n.org_name, "Synthetic Trust RYY");
    // A new TraceID is a new access; an explicit `true` is the same as none.
    care_teams(
        &c,
        &token,
        nhs(3),
        "retry-2",
        &[("isunscheduledaccessevent", "true")],
    )
    .await;
    assert_eq!(notifications(&c, &la_token).await.notifications.len(), 2);
    // Scheduled: neither notified nor in the access history, but still in the lookup trail.
    let events_before = c.store.event_count().await.unwrap();
    care_teams(
        &c,
        &token,
        nhs(4),
        "sched-1",
        &[("isunscheduledaccessevent", "false")],
    )
    .await;
    assert_eq!(notifications(&c, &la_token).await.notifications.len(), 2);
    assert_eq!(c.store.event_count().await.unwrap(), events_before);
    assert_eq!(audit_events(&c, &token, nhs(4)).await["total"], 0);
    let trail = c.store.lookups_of(&nhs(4), 10).await.unwrap();
    assert!(trail
        .iter()
        .any(|l| l.found && l.user_id.starts_with("fhir-client:")));
    // A client in a scheduled setting reads silently whatever it sends.
    let gp = client_token(&c, "GP1", CareSetting::Gp).await;
    care_teams(&c, &gp, nhs(5), "gp-1", &[]).await;
    assert_eq!(notifications(&c, &la_token).await.notifications.len(), 2);
    c.shutdown().await;
}

async fn a_person_with_no_record_is_an_empty_searchset_never_a_404(c: TestCentral) {
    let la_token = register(&c).await;
    let token = client_token(&c, "RYY", ED).await;
    let nobody = nhs(500);
    let bundle = care_teams(&c, &token, nobody, "none-1", &[]).await;
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 0);
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 0);
    assert_eq!(audit_events(&c, &token, nobody).await["total"], 0);
    assert!(notifications(&c, &la_token).await.notifications.is_empty());
    let trail = c.store.lookups_of(&nobody, 10).await.unwrap();
    assert_eq!(trail.len(), 2, "both searches are in the lookup trail");
    assert!(trail.iter().all(|l| !l.found));
    c.shutdown().await;
}

async fn the_audit_event_search_lists_unscheduled_accesses_with_their_practitioner_roles(
    c: TestCentral,
) {
    register(&c).await;
    let token = client_token(&c, "RYY", ED).await;
    // A paramedic opens the alert on a device, then the ED's system looks (two different viewers).
    let mut device = c.device("north", "RX1", CareSetting::Ambulance).await;
    c.add_user("para1", "RX1", Activity::B0107).await;
    device.sign_in("para1").await;
    let e = device.event(nhs(6), "para1");
    let r = device
        .post(
            "/v1/check",
            &LiveCheckRequest {
                nhs_number: nhs(6),
                unscheduled: true,
                access_event: Some(device.seal(&e)),
            },
        )
        .await;
    assert_eq!(r.status(), 200);
    care_teams(&c, &token, nhs(6), "ed-1", &[]).await;
    let bundle = audit_events(&c, &token, nhs(6)).await;
    assert_eq!(bundle["total"], 2);
    let events = matches(&bundle, "AuditEvent");
    let included: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| &e["resource"])
        .collect();
    assert_eq!(included.len(), 2);
    let mut viewers = Vec::new();
    for ev in &events {
        assert_eq!(ev["type"]["code"], "access");
        assert_eq!(ev["agent"][0]["type"]["coding"][0]["code"], "PAT");
        assert_eq!(
            ev["agent"][0]["who"]["identifier"]["value"],
            nhs(6).as_digits()
        );
        assert_eq!(ev["agent"][1]["type"]["coding"][0]["code"], "ASSIGNED");
        let reference = ev["agent"][1]["who"]["reference"].as_str().unwrap();
        let role = included
            .iter()
            .find(|r| format!("PractitionerRole/{}", r["id"].as_str().unwrap()) == reference)
            .expect("each viewer's PractitionerRole is included");
        viewers.push((
            role["organization"]["display"]
                .as_str()
                .unwrap()
                .to_string(),
            role["code"][0]["text"].as_str().unwrap().to_string(),
        ));
    }
    // Newest first: the ED's system, then the paramedic.
    assert_eq!(
        viewers,
        [
            (
                "Synthetic Trust RYY (RYY)".to_string(),
                "Clinical system (no user named)".to_string()
            ),
            (
                "Synthetic Trust RX1 (RX1)".to_string(),
                "Paramedic".to_string()
            ),
        ]
    );
    // Without the _include, the same events and no PractitionerRoles.
    let bearer = format!("Bearer {token}");
    let (_, _, plain) = fhir_get(
        &c,
        "AuditEvent",
        &[("patient", nhs(6).as_digits())],
        &[("authorization", &bearer), ("traceid", "a-2")],
    )
    .await;
    assert_eq!(plain["total"], 2);
    assert_eq!(plain["entry"].as_array().unwrap().len(), 2);
    c.shutdown().await;
}

async fn a_named_clinician_is_recorded_as_such_and_a_silent_reader_does_not_notify(c: TestCentral) {
    let la_token = register(&c).await;
    let token = client_token(&c, "RYY", ED).await;
    care_teams(
        &c,
        &token,
        nhs(7),
        "named-1",
        &[
            ("x-cpis-user-id", "edu1"),
            ("x-cpis-user-role", "R8000"),
            ("x-cpis-user-name", "Robin Example"),
        ],
    )
    .await;
    let page = notifications(&c, &la_token).await;
    assert_eq!(page.notifications.len(), 1);
    assert_eq!(page.notifications[0].user_id, "edu1 (Robin Example)");
    assert_eq!(page.notifications[0].role, "R8000");
    // A user the central holds at the client's organisation as a silent reader (B0170) reads silently.
    c.add_user("reader1", "RYY", Activity::B0170).await;
    care_teams(
        &c,
        &token,
        nhs(8),
        "named-2",
        &[("x-cpis-user-id", "reader1"), ("x-cpis-user-role", "R8000")],
    )
    .await;
    assert_eq!(notifications(&c, &la_token).await.notifications.len(), 1);
    let trail = c.store.lookups_of(&nhs(8), 10).await.unwrap();
    assert_eq!(trail[0].user_id, "reader1");
    c.shutdown().await;
}

async fn refusals_are_spine_coded_operation_outcomes_and_change_nothing(c: TestCentral) {
    let la_token = register(&c).await;
    let token = client_token(&c, "RYY", ED).await;
    let bearer = format!("Bearer {token}");
    let good = identifier(nhs(3));
    let mut bad_digit = nhs(3).digits();
    bad_digit[9] = (bad_digit[9] + 1) % 10;
    let bad_number: String = bad_digit.iter().map(|d| char::from(b'0' + d)).collect();
    let bad_ident = format!("{NHS_NUMBER_SYSTEM}|{bad_number}");
    // (path, query, headers, status, Spine code, words in the diagnostics)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, String)>,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "CareTeam",
            vec![("patient:identifier", bad_ident.clone())],
            vec![("authorization", &bearer), ("traceid", "x")],
            400,
            "INVALID_SEARCH_DATA",
            "check digit",
        ),
        (
            "CareTeam",
            vec![("patient", "12345".into())],
            vec![("authorization", &bearer), ("traceid", "x")],
            400,
            "INVALID_SEARCH_DATA",
            "10 digits",
        ),
        (
            "CareTeam",
            vec![],
            vec![("authorization", &bearer), ("traceid", "x")],
            400,
            "INVALID_SEARCH_DATA",
            "a patient is required",
        ),
        (
            "AuditEvent",
            vec![
                ("patient:identifier", good.clone()),
                ("_include", "AuditEvent:agent".into()),
            ],
            vec![("authorization", &bearer), ("traceid", "x")],
            400,
            "INVALID_SEARCH_DATA",
            "_include",
        ),
        (
            "CareTeam",
            vec![("patient:identifier", good.clone())],
            vec![("authorization", &bearer)],
            400,
            "PRECONDITION_FAILED",
            "TraceID",
        ),
        (
            "CareTeam",
            vec![("patient:identifier", good.clone())],
            vec![
                ("authorization", &bearer),
                ("traceid", "x"),
                ("isunscheduledaccessevent", "maybe"),
            ],
            400,
            "PRECONDITION_FAILED",
            "IsUnscheduledAccessEvent",
        ),
        (
            "CareTeam",
            vec![("patient:identifier", good.clone())],
            vec![
                ("authorization", &bearer),
                ("traceid", "x"),
                ("x-cpis-user-id", "u1"),
            ],
            400,
            "PRECONDITION_FAILED",
            "X-CPIS-User-Role",
        ),
        (
            "CareTeam",
            vec![("patient:identifier", good.clone())],
            vec![("traceid", "x")],
            401,
            "ACCESS_DENIED",
            "Authorization",
        ),
        (
            "CareTeam",
            vec![("patient:identifier", good.clone())],
            vec![("authorization", "Bearer not-a-token"), ("traceid", "x")],
            401,
            "ACCESS_DENIED",
            "registered",
        ),
    ];
    for (path, query, headers, status, code, words) in cases {
        let (got, h, body) = fhir_get(&c, path, &query, &headers).await;
        assert_eq!(got, status, "{path} {query:?}: {body}");
        assert_eq!(h["content-type"], "application/fhir+json");
        assert_eq!(body["resourceType"], "OperationOutcome");
        let coding = &body["issue"][0]["details"]["coding"][0];
        assert_eq!(coding["system"], SPINE_ERROR_SYSTEM);
        assert_eq!(coding["code"], code);
        let diagnostics = body["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(diagnostics.contains(words), "{diagnostics}");
        assert!(!diagnostics.contains(&nhs(3).as_digits()));
    }
    // Unknown paths and methods are OperationOutcomes too.
    let (status, _, body) = fhir_get(&c, "Patient", &[], &[]).await;
    assert_eq!(
        (status, body["resourceType"].as_str()),
        (404, Some("OperationOutcome"))
    );
    let r = c
        .http
        .post(format!("{}/fhir/R4/CareTeam", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // Nothing was stored by any of them.
    assert_eq!(c.store.event_count().await.unwrap(), 0);
    assert!(notifications(&c, &la_token).await.notifications.is_empty());
    assert!(c.store.lookups_of(&nhs(3), 10).await.unwrap().is_empty());
    c.shutdown().await;
}

async fn a_revoked_client_is_refused_from_its_next_request(c: TestCentral) {
    register(&c).await;
    let issued = c
        .central()
        .add_fhir_client(&OdsCode::parse("RYY").unwrap(), "Synthetic Trust RYY", ED)
        .await
        .unwrap();
    care_teams(&c, &issued.token, nhs(3), "before", &[]).await;
    let listed = c.central().fhir_clients().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].client_id, issued.client.client_id);
    assert!(c
        .central()
        .revoke_fhir_client(issued.client.client_id)
        .await
        .unwrap());
    let bearer = format!("Bearer {}", issued.token);
    let (status, _, body) = fhir_get(
        &c,
        "CareTeam",
        &[("patient:identifier", identifier(nhs(3)))],
        &[("authorization", &bearer), ("traceid", "after")],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        body["issue"][0]["details"]["coding"][0]["code"],
        "ACCESS_DENIED"
    );
    assert!(c.central().fhir_clients().await.unwrap()[0]
        .revoked_at
        .is_some());
    assert!(!c
        .central()
        .revoke_fhir_client(uuid::Uuid::now_v7())
        .await
        .unwrap());
    c.shutdown().await;
}

async fn metadata_lists_exactly_the_two_searches(c: TestCentral) {
    register(&c).await;
    let token = client_token(&c, "RYY", ED).await;
    let (status, h, cs) = fhir_get(&c, "metadata", &[], &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "application/fhir+json");
    assert!(h.contains_key("date"));
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let resources: Vec<&str> = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(resources, ["CareTeam", "AuditEvent"]);
    assert_eq!(
        cs["rest"][0]["resource"][1]["searchInclude"][0],
        AUDIT_INCLUDE
    );
    // Every answer carries a Date and echoes the client's trace ids.
    let bearer = format!("Bearer {token}");
    let (_, h, _) = fhir_get(
        &c,
        "CareTeam",
        &[("patient", nhs(3).as_digits())],
        &[
            ("authorization", &bearer),
            ("traceid", "T-42"),
            ("x-request-id", "R-42"),
            ("isunscheduledaccessevent", "false"),
        ],
    )
    .await;
    assert_eq!(h["traceid"], "T-42");
    assert_eq!(h["x-request-id"], "R-42");
    assert_eq!(h["content-type"], "application/fhir+json");
    assert!(h.contains_key("date"));
    c.shutdown().await;
}
