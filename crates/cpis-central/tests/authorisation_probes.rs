//! Authorisation probes: every device and LA endpoint of the central, called without credentials,
//! with forged, expired or revoked ones, with another LA's, and with oversized and malformed bodies.
//! Each must be refused with the right status and a JSON error, and nothing may be stored. Run on
//! SQLite and on PostgreSQL.

mod common;

use chrono::{Duration, Utc};
use common::*;
use cpis_core::wire::{EventBatch, LiveCheckRequest, LoginRequest};
use cpis_core::{Activity, CareSetting, OdsCode};
use serde_json::json;

on_both_stores!(every_endpoint_refuses_every_bad_credential_and_body_and_stores_nothing,);

/// (method, path, JSON body) of each device endpoint.
fn device_endpoints(
    batch: &EventBatch,
    check: &LiveCheckRequest,
) -> Vec<(&'static str, String, serde_json::Value)> {
    vec![
        (
            "POST",
            "/v1/login".into(),
            json!(LoginRequest {
                user_id: "probe.user".into(),
                pin: "7531".into()
            }),
        ),
        ("POST", "/v1/lease".into(), json!({})),
        ("GET", "/v1/feed?after=0".into(), json!(null)),
        ("GET", "/v1/emergency-numbers".into(), json!(null)),
        (
            "POST",
            "/v1/events".into(),
            serde_json::to_value(batch).unwrap(),
        ),
        (
            "POST",
            "/v1/check".into(),
            serde_json::to_value(check).unwrap(),
        ),
        (
            "POST",
            "/v1/search".into(),
            json!({ "query": { "family_name": "Testwood", "date_of_birth": "2019-03-07" } }),
        ),
    ]
}

/// The endpoints that answer with a person's details: they need a signed-in user as well.
fn needs_user(path: &str) -> bool {
    path == "/v1/check" || path == "/v1/search"
}

/// Counts of everything a request could have stored.
async fn stored(c: &TestCentral) -> (u64, u64, u64, usize) {
    (
        c.store.event_count().await.unwrap(),
        c.store.notification_count().await.unwrap(),
        c.store.flag_count().await.unwrap(),
        c.store.devices().await.unwrap().len(),
    )
}

async fn send(
    c: &TestCentral,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<reqwest::Body>,
    content_type: &str,
) -> reqwest::Response {
    send_as(c, method, path, (token, None), body, content_type).await
}

/// `credentials`: the device's bearer token and a user session.
async fn send_as(
    c: &TestCentral,
    method: &str,
    path: &str,
    credentials: (Option<&str>, Option<&str>),
    body: Option<reqwest::Body>,
    content_type: &str,
) -> reqwest::Response {
    let url = format!("{}{path}", c.url);
    let mut r = match method {
        "GET" => c.http.get(url),
        _ => c.http.post(url),
    };
    let (token, session) = credentials;
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(s) = session {
        r = r.header(cpis_core::wire::USER_SESSION_HEADER, s);
    }
    if let Some(b) = body {
        r = r.header("content-type", content_type).body(b);
    }
    r.send().await.unwrap()
}

/// A body just over the endpoint's limit. The central may answer 413 before the body is all sent, which
/// can cut the upload short on the client's side: that is retried, the refusal is what is checked.
/// Each try has its own client, so a connection the central cut short never serves a later request.
async fn send_oversized(
    c: &TestCentral,
    path: &str,
    token: &str,
    limit: usize,
    content_type: &str,
) -> reqwest::Response {
    send_oversized_as(c, path, (token, None), limit, content_type).await
}

async fn send_oversized_as(
    c: &TestCentral,
    path: &str,
    (token, session): (&str, Option<&str>),
    limit: usize,
    content_type: &str,
) -> reqwest::Response {
    for _ in 0..5 {
        let url = format!("{}{path}", c.url);
        let mut request = reqwest::Client::new().post(url);
        if let Some(s) = session {
            request = request.header(cpis_core::wire::USER_SESSION_HEADER, s);
        }
        let r = request
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(vec![b' '; limit + 4096])
            .send()
            .await;
        if let Ok(r) = r {
            return r;
        }
    }
    panic!("{path}: the oversized request never got an answer");
}

async fn expect_refusal(r: reqwest::Response, status: u16, what: &str) {
    assert_eq!(r.status().as_u16(), status, "{what}");
    let text = r.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{what}: refusal is not JSON: {text}"));
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: no error code: {text}"
    );
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message: {text}"
    );
}

async fn every_endpoint_refuses_every_bad_credential_and_body_and_stores_nothing(c: TestCentral) {
    c.add_la("L001", "north").await;
    c.add_la("L002", "south").await;
    let la1 = c.la_token("L001").await;
    let la2 = c.la_token("L002").await;
    let r = c.upload("L001", &la1, &csv_of(0..5), false).await;
    assert_eq!(r.status(), 200);
    c.central()
        .add_user(
            "probe.user",
            "Probe User",
            "Paramedic",
            Activity::B0107,
            &OdsCode::parse("RX1").unwrap(),
            "7531",
        )
        .await
        .unwrap();
    let mut device = c.device("north", "RX1", CareSetting::Ambulance).await;
    let mut revoked = c.device("north", "RX1", CareSetting::Ambulance).await;
    let event = device.event(nhs(1), "probe.user");
    let batch = EventBatch {
        events: vec![device.seal(&event)],
    };
    let check = LiveCheckRequest {
        nhs_number: nhs(1),
        unscheduled: true,
        access_event: Some(device.seal(&event)),
    };
    // A revoked device's event recorded after its revocation, so even the intake refuses to store it.
    let mut late = revoked.event(nhs(2), "probe.user");
    late.device_time = Utc::now() + Duration::hours(1);
    assert!(c.store.revoke_device(revoked.id, Utc::now()).await.unwrap());
    let expired = cpis_central::auth::new_token();
    c.store
        .create_device_token(
            &cpis_central::auth::secret_hash(&expired),
            device.id,
            Utc::now() - Duration::seconds(1),
        )
        .await
        .unwrap();
    let session = device
        .sign_in_with("probe.user", "7531")
        .await
        .user_session
        .token;
    let other = c.device("north", "RX1", CareSetting::Ambulance).await;
    let before = stored(&c).await;

    for (method, path, body) in device_endpoints(&batch, &check) {
        let json_body = || (!body.is_null()).then(|| reqwest::Body::from(body.to_string()));
        let cases: [(&str, Option<&str>, u16); 5] = [
            ("no credentials", None, 401),
            ("a forged token", Some("forged-token-forged-token"), 401),
            ("an expired token", Some(expired.as_str()), 401),
            ("an LA's token", Some(la1.as_str()), 401),
            ("a revoked device", Some(revoked.token.as_str()), 403),
        ];
        for (label, token, status) in cases {
            if label == "a revoked device" && path == "/v1/events" {
                // The intake still answers a revoked device, but stores nothing recorded after revocation.
                let late_batch = EventBatch {
                    events: vec![revoked.seal(&late)],
                };
                let r = send(
                    &c,
                    method,
                    &path,
                    token,
                    Some(json!(late_batch).to_string().into()),
                    "application/json",
                )
                .await;
                assert_eq!(r.status(), 200, "{path} with {label}");
                continue;
            }
            let r = send(&c, method, &path, token, json_body(), "application/json").await;
            expect_refusal(r, status, &format!("{method} {path} with {label}")).await;
        }
        if needs_user(&path) {
            // The device's own token is not enough, and a made-up session is no session.
            for (label, session) in [
                ("no user session", None),
                ("a forged user session", Some("forged-session")),
            ] {
                let r = send_as(
                    &c,
                    method,
                    &path,
                    (Some(device.token.as_str()), session),
                    json_body(),
                    "application/json",
                )
                .await;
                expect_refusal(r, 401, &format!("{method} {path} with {label}")).await;
            }
            // A session is good only with the token of the device it was opened on.
            let r = send_as(
                &c,
                method,
                &path,
                (Some(other.token.as_str()), Some(session.as_str())),
                json_body(),
                "application/json",
            )
            .await;
            expect_refusal(
                r,
                401,
                &format!("{method} {path} with another device's user session"),
            )
            .await;
        }
        let user = needs_user(&path).then_some(session.as_str());
        // `/v1/lease` takes no body: there is nothing to malform.
        if method == "POST" && path != "/v1/lease" {
            let token = Some(device.token.as_str());
            let r = send_as(
                &c,
                method,
                &path,
                (token, user),
                Some("{not json".into()),
                "application/json",
            )
            .await;
            let s = r.status().as_u16();
            assert!(s == 400 || s == 422, "{path} malformed: {s}");
            expect_refusal(r, s, &format!("{path} with a malformed body")).await;
            let limit = if path == "/v1/events" {
                cpis_central::http::EVENTS_BODY_LIMIT
            } else {
                cpis_central::http::DEFAULT_BODY_LIMIT
            };
            let r = send_oversized_as(&c, &path, (&device.token, user), limit, "application/json")
                .await;
            expect_refusal(r, 413, &format!("{path} with an oversized body")).await;
        }
    }

    // LA endpoints: only the LA's own token opens them.
    let upload = csv_of(0..3);
    for (method, path, body, ctype) in [
        ("GET", "/v1/la/L001/notifications?after=0", None, ""),
        (
            "POST",
            "/v1/la/L001/upload",
            Some(upload.clone()),
            "text/csv",
        ),
    ] {
        let cases: [(&str, Option<&str>, u16); 4] = [
            ("no credentials", None, 401),
            ("a forged token", Some("forged-la-token"), 401),
            ("another LA's token", Some(la2.as_str()), 403),
            ("a device's token", Some(device.token.as_str()), 401),
        ];
        for (label, token, status) in cases {
            let r = send(
                &c,
                method,
                path,
                token,
                body.clone().map(reqwest::Body::from),
                ctype,
            )
            .await;
            expect_refusal(r, status, &format!("{method} {path} with {label}")).await;
        }
    }
    let r = send_oversized(
        &c,
        "/v1/la/L001/upload",
        &la1,
        cpis_central::http::UPLOAD_BODY_LIMIT,
        "text/csv",
    )
    .await;
    expect_refusal(r, 413, "an oversized upload").await;
    // The inbox page shows nothing without the LA's own token.
    let page = send(&c, "GET", "/la/L001/inbox", None, None, "")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains(&nhs(1).to_string()),
        "the inbox leaked a record without sign-in"
    );

    assert_eq!(
        stored(&c).await,
        before,
        "a refused request stored something"
    );
    c.shutdown().await;
}
