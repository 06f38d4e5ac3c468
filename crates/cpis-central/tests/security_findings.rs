//! Regression tests for the second security review of the central, each named after its finding
//! and run on SQLite and on PostgreSQL: the online PIN limit, LA credentials and the inbox session,
//! the LA upload rate limit and audit trail, and the smaller gaps.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use cpis_central::auth::{PinAuthenticator, SignInError, UserAuthenticator};
use cpis_central::la_access::{token_reference, UploadSender, UPLOADS_PER_WINDOW};
use cpis_central::store::DeviceRecord;
use cpis_central::store::WebhookChange;
use cpis_central::{ApiFailure, Central};
use cpis_core::wire::{LoginRequest, NotificationPage, UserProfile};
use cpis_core::{Activity, CareSetting};

on_both_stores!(
    fifty_concurrent_wrong_pins_are_verified_at_most_five_times_and_a_restart_keeps_the_count,
    a_right_pin_for_another_organisation_is_refused_like_a_wrong_one_and_keeps_the_count,
    an_access_by_a_user_the_central_does_not_hold_shows_the_role_unknown_user,
    a_rejected_json_body_is_described_without_its_values,
    a_webhook_must_be_https_unless_on_this_machine_and_carry_no_user_name,
    revoking_an_las_tokens_ends_every_one_of_them_and_its_inbox_sessions,
    an_expired_la_token_is_refused,
    the_inbox_signs_in_to_a_session_of_its_own_and_signing_out_ends_it_at_the_central,
    uploads_are_rate_limited_per_la_across_centrals_and_every_one_is_in_the_audit_trail,
    a_device_that_never_signs_a_user_in_gets_nobodys_details_and_its_lookups_are_never_kept_against_a_colleague,
    a_user_session_ends_at_sign_out_and_when_another_user_signs_in_on_that_device,
    a_user_session_ends_when_idle_and_at_its_hard_end_and_each_use_moves_its_idle_end,
);

/// The central's own PIN check, counting how many PINs it was asked to verify.
struct CountingAuthenticator {
    inner: PinAuthenticator,
    verified: AtomicUsize,
}

#[async_trait]
impl UserAuthenticator for CountingAuthenticator {
    async fn sign_in(&self, user_id: &str, pin: &str) -> Result<UserProfile, SignInError> {
        self.verified.fetch_add(1, Ordering::SeqCst);
        self.inner.sign_in(user_id, pin).await
    }
}

async fn counting_central(c: &TestCentral) -> (Central, Arc<CountingAuthenticator>) {
    let users = Arc::new(CountingAuthenticator {
        inner: PinAuthenticator::new(c.store.clone()),
        verified: AtomicUsize::new(0),
    });
    let central = Central::with_authenticator(c.store.clone(), users.clone())
        .await
        .unwrap();
    (central, users)
}

async fn enrolled(c: &TestCentral, org: &str) -> DeviceRecord {
    let d = c.device("north", org, CareSetting::Ambulance).await;
    c.store.device(d.id).await.unwrap().unwrap()
}

fn attempt(user: &str, pin: &str) -> LoginRequest {
    LoginRequest {
        user_id: user.into(),
        pin: pin.into(),
    }
}

async fn fifty_concurrent_wrong_pins_are_verified_at_most_five_times_and_a_restart_keeps_the_count(
    c: TestCentral,
) {
    c.add_user("para1", "RX1", Activity::B0107).await;
    let device = Arc::new(enrolled(&c, "RX1").await);
    let (central, users) = counting_central(&c).await;
    let tries: Vec<_> = (0..50)
        .map(|i| {
            let (central, device) = (central.clone(), device.clone());
            tokio::spawn(async move {
                central
                    .login(&device, attempt("para1", &format!("{:04}", 1000 + i)))
                    .await
            })
        })
        .collect();
    for t in tries {
        let refused: ApiFailure = t.await.unwrap().expect_err("every guess is wrong");
        assert!(
            refused.code == "sign_in_refused" || refused.code == "too_many_attempts",
            "{}",
            refused.code
        );
    }
    let verified = users.verified.load(Ordering::SeqCst);
    assert!(verified <= 5, "{verified} PINs were verified");
    // The right PIN is not even tried now.
    let r = central.login(&device, attempt("para1", "2468")).await;
    assert_eq!(r.expect_err("paused").code, "too_many_attempts");
    assert_eq!(users.verified.load(Ordering::SeqCst), verified);

    // A central started afresh over the same database (or another instance beside it) holds the
    // same count.
    let (restarted, users) = counting_central(&c).await;
    let r = restarted.login(&device, attempt("para1", "2468")).await;
    assert_eq!(r.expect_err("still paused").code, "too_many_attempts");
    assert_eq!(users.verified.load(Ordering::SeqCst), 0);
    c.shutdown().await;
}

async fn a_right_pin_for_another_organisation_is_refused_like_a_wrong_one_and_keeps_the_count(
    c: TestCentral,
) {
    c.add_user("gp9", "RX9", Activity::B0107).await;
    let here = c.device("north", "RX1", CareSetting::Ambulance).await;
    let there = c.device("north", "RX9", CareSetting::Ambulance).await;
    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    };
    let right = answer(here.post("/v1/login", &attempt("gp9", "2468")).await).await;
    let wrong = answer(here.post("/v1/login", &attempt("gp9", "0000")).await).await;
    let nobody = answer(here.post("/v1/login", &attempt("nobody", "2468")).await).await;
    assert_eq!(right.0, 401);
    assert_eq!(
        right, wrong,
        "a right PIN must not be told from a wrong one"
    );
    assert_eq!(right, nobody);
    // The right PIN did not clear the count: three more tries at the other organisation's device,
    // and its own device is paused too.
    for _ in 0..3 {
        let r = here.post("/v1/login", &attempt("gp9", "2468")).await;
        assert_eq!(refused(r, 401).await.error, "sign_in_refused");
    }
    let r = there.post("/v1/login", &attempt("gp9", "2468")).await;
    assert_eq!(refused(r, 429).await.error, "too_many_attempts");
    // Another user of the same device is not held up.
    c.add_user("gp10", "RX9", Activity::B0107).await;
    let r = there.post("/v1/login", &attempt("gp10", "2468")).await;
    assert_eq!(r.status(), 200);
    c.shutdown().await;
}

async fn an_access_by_a_user_the_central_does_not_hold_shows_the_role_unknown_user(c: TestCentral) {
    c.add_la("L001", "north").await;
    let token = c.la_token("L001").await;
    let r = c.upload("L001", &token, &csv_of(0..2), false).await;
    assert_eq!(r.status(), 200);
    let mut device = c.device("north", "RX1", CareSetting::Ambulance).await;
    let mut event = device.event(nhs(0), "ghost");
    event.accessor.role = "Consultant Safeguarding Lead".into();
    device.deliver(&[&event]).await;
    let page: NotificationPage = c
        .http
        .get(format!("{}/v1/la/L001/notifications?after=0", c.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page.notifications.len(), 1);
    assert_eq!(page.notifications[0].role, "unknown user");
    c.shutdown().await;
}

async fn a_rejected_json_body_is_described_without_its_values(c: TestCentral) {
    let device = c.device("north", "RX1", CareSetting::Ambulance).await;
    // A PIN sent as a number: serde's own message would quote it, and refusals are logged.
    let r = device
        .post_text("/v1/login", r#"{"user_id":"para1","pin":86421357}"#)
        .await;
    let e = refused(r, 422).await;
    assert!(!e.message.contains("86421357"), "{}", e.message);
    assert!(e.message.contains("line 1"), "{}", e.message);
    c.shutdown().await;
}

async fn a_webhook_must_be_https_unless_on_this_machine_and_carry_no_user_name(c: TestCentral) {
    let la = c.add_la("L001", "north").await;
    for bad in [
        "http://la.example.org/hook",
        "http://localhost:80@la.example.org/hook",
        "https://user:secret@la.example.org/hook",
    ] {
        let r = c
            .central()
            .upsert_la(&la, WebhookChange::Set(Some(bad.into())))
            .await;
        assert_eq!(r.expect_err(bad).code, "invalid_webhook");
    }
    for ok in ["https://la.example.org/hook", "http://127.0.0.1:9/hook"] {
        c.central()
            .upsert_la(&la, WebhookChange::Set(Some(ok.into())))
            .await
            .unwrap();
    }
    let stored = c.store.local_authority(&la.ods).await.unwrap().unwrap();
    assert_eq!(
        stored.webhook_url.as_deref(),
        Some("http://127.0.0.1:9/hook")
    );
    c.shutdown().await;
}

async fn notifications_status(c: &TestCentral, la: &str, token: &str) -> u16 {
    c.http
        .get(format!("{}/v1/la/{la}/notifications?after=0", c.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in to `la`'s inbox with `token`; the `Set-Cookie` header as sent.
async fn inbox_sign_in(c: &TestCentral, la: &str, token: &str, host: Option<&str>) -> String {
    let mut req = no_redirects()
        .post(format!("{}/la/{la}/inbox/sign-in", c.url))
        .form(&[("token", token)]);
    if let Some(host) = host {
        req = req.header("host", host);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 303);
    r.headers()["set-cookie"].to_str().unwrap().to_string()
}

/// The inbox page with this cookie: its status and whether it shows notifications.
async fn inbox_with(c: &TestCentral, la: &str, cookie: &str) -> (u16, bool) {
    let r = no_redirects()
        .get(format!("{}/la/{la}/inbox", c.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let html = r.text().await.unwrap();
    (status, html.contains("Access notifications"))
}

async fn revoking_an_las_tokens_ends_every_one_of_them_and_its_inbox_sessions(c: TestCentral) {
    c.add_la("L001", "north").await;
    c.add_la("L002", "north").await;
    let (a1, a2, b) = (
        c.la_token("L001").await,
        c.la_token("L001").await,
        c.la_token("L002").await,
    );
    let session = inbox_sign_in(&c, "L001", &a1, None).await;
    let session = session.split(';').next().unwrap().to_string();
    assert_eq!(inbox_with(&c, "L001", &session).await, (200, true));
    for t in [&a1, &a2] {
        assert_eq!(notifications_status(&c, "L001", t).await, 200);
    }
    let l001 = cpis_core::OdsCode::parse("L001").unwrap();
    assert_eq!(c.central().revoke_la_tokens(&l001).await.unwrap(), 2);
    for t in [&a1, &a2] {
        assert_eq!(notifications_status(&c, "L001", t).await, 401);
    }
    assert_eq!(inbox_with(&c, "L001", &session).await, (401, false));
    // Another LA's token is untouched, and a new token for the LA works.
    assert_eq!(notifications_status(&c, "L002", &b).await, 200);
    let fresh = c.la_token("L001").await;
    assert_eq!(notifications_status(&c, "L001", &fresh).await, 200);
    c.shutdown().await;
}

async fn an_expired_la_token_is_refused(c: TestCentral) {
    c.add_la("L001", "north").await;
    let l001 = cpis_core::OdsCode::parse("L001").unwrap();
    let token = cpis_central::auth::new_token();
    let now = chrono::Utc::now();
    c.store
        .create_la_token(
            &cpis_central::auth::secret_hash(&token),
            &l001,
            now - chrono::Duration::days(91),
            now - chrono::Duration::days(1),
        )
        .await
        .unwrap();
    assert_eq!(notifications_status(&c, "L001", &token).await, 401);
    // A lifetime is the administrator's setting, within bounds.
    let issued = c
        .central()
        .issue_la_token(&l001, chrono::Duration::days(7))
        .await
        .unwrap();
    let days = (issued.expires_at - now).num_hours() as f64 / 24.0;
    assert!((6.9..=7.1).contains(&days), "{days}");
    assert_eq!(notifications_status(&c, "L001", &issued.token).await, 200);
    let too_long = c
        .central()
        .issue_la_token(&l001, chrono::Duration::days(5000))
        .await;
    assert_eq!(too_long.expect_err("too long").code, "invalid_lifetime");
    c.shutdown().await;
}

async fn the_inbox_signs_in_to_a_session_of_its_own_and_signing_out_ends_it_at_the_central(
    c: TestCentral,
) {
    c.add_la("L001", "north").await;
    let token = c.la_token("L001").await;
    let set_cookie = inbox_sign_in(&c, "L001", &token, None).await;
    assert!(
        !set_cookie.contains(&token),
        "the API token went into a cookie"
    );
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/la/L001/",
        "Max-Age=1800",
    ] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    // Over plain HTTP on this machine a Secure cookie would be dropped; off it, always Secure.
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let remote = inbox_sign_in(&c, "L001", &token, Some("central.example.org")).await;
    assert!(remote.contains("; Secure"), "{remote}");

    let session = set_cookie.split(';').next().unwrap().to_string();
    assert_eq!(inbox_with(&c, "L001", &session).await, (200, true));
    let out = no_redirects()
        .post(format!("{}/la/L001/inbox/sign-out", c.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    // A copy of the cookie kept from before signing out opens nothing.
    assert_eq!(inbox_with(&c, "L001", &session).await, (401, false));
    // The API token itself is not a session.
    assert_eq!(
        inbox_with(&c, "L001", &format!("cpis_inbox={token}")).await,
        (401, false)
    );
    assert!(!inbox_with(&c, "L001", &format!("cpis_la={token}")).await.1);
    c.shutdown().await;
}

async fn uploads_are_rate_limited_per_la_across_centrals_and_every_one_is_in_the_audit_trail(
    c: TestCentral,
) {
    c.add_la("L001", "north").await;
    c.add_la("L002", "north").await;
    let (a, b) = (c.la_token("L001").await, c.la_token("L002").await);
    let l001 = cpis_core::OdsCode::parse("L001").unwrap();
    // One unreadable file, the rest a list of three people, half through another central over the
    // same database.
    let r = c.upload("L001", &a, "not,a,register\n", false).await;
    assert_eq!(r.status(), 422);
    let other = Central::new(c.store.clone()).await.unwrap();
    for i in 1..UPLOADS_PER_WINDOW {
        if i % 2 == 0 {
            let r = c.upload("L001", &a, &csv_of(0..3), false).await;
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        } else {
            other
                .audited_import(
                    &l001,
                    UploadSender::LaToken(&a),
                    csv_of(0..3).as_bytes(),
                    false,
                )
                .await
                .unwrap();
        }
    }
    let r = c.upload("L001", &a, &csv_of(0..3), false).await;
    assert_eq!(refused(r, 429).await.error, "too_many_uploads");
    let over = other
        .audited_import(
            &l001,
            UploadSender::LaToken(&a),
            csv_of(0..3).as_bytes(),
            false,
        )
        .await;
    assert_eq!(over.expect_err("over the limit").code, "too_many_uploads");
    // Another LA is not held up.
    let r = c.upload("L002", &b, &csv_of(10..12), false).await;
    assert_eq!(r.status(), 200);

    let trail = c.central().la_uploads(Some(&l001), 100).await.unwrap();
    assert_eq!(trail.len() as u32, UPLOADS_PER_WINDOW + 2);
    assert!(trail
        .iter()
        .all(|u| u.la == l001 && u.token_ref == token_reference(&a)));
    let count = |o: &str| trail.iter().filter(|u| u.outcome == o).count() as u32;
    assert_eq!(count("rate_limited"), 2);
    assert_eq!(count("refused"), 1);
    assert_eq!(count("accepted"), UPLOADS_PER_WINDOW - 1);
    let accepted = trail.iter().find(|u| u.outcome == "accepted").unwrap();
    assert_eq!(accepted.rows, Some(3));
    let refusal = trail.iter().find(|u| u.outcome == "refused").unwrap();
    assert_eq!(refusal.detail.as_deref(), Some("invalid_upload_file"));
    // Newest first, and no row's contents anywhere in the trail.
    assert!(trail
        .windows(2)
        .all(|w| w[0].received_at >= w[1].received_at));
    let shown = format!("{trail:?}");
    assert!(!shown.contains(&nhs(0).as_digits()) && !shown.contains("Testfamily"));
    c.shutdown().await;
}

/// What a thief with a device's files could read: every request an enrolled device can make with its
/// own key and no signed-in user, answered in full (status, headers and body).
async fn responses_without_a_user(device: &TestDevice) -> Vec<String> {
    let mut seen = Vec::new();
    let keep = |what: &str, r: reqwest::Response| {
        let head = format!("{what} {} {:?}", r.status(), r.headers());
        async move { format!("{head}\n{}", r.text().await.unwrap()) }
    };
    // The whole feed, page by page, as far as the envelopes lead.
    let mut after = 0;
    loop {
        let r = device.get(&format!("/v1/feed?after={after}&limit=7")).await;
        assert_eq!(r.status(), 200, "the feed still downloads without a user");
        let text = keep("feed", r).await;
        let json = &text[text.find('\n').unwrap() + 1..];
        let signed: cpis_core::wire::SignedPage = serde_json::from_str(json).unwrap();
        let envelope = signed.verify(&device.central_signing).unwrap();
        // The envelope's own bytes, decoded, are what a thief would search.
        seen.push(String::from_utf8(B64.decode(&signed.body).unwrap()).unwrap());
        seen.push(text);
        after = envelope.last;
        if !envelope.has_more {
            break;
        }
    }
    for nhs_number in [nhs(1), nhs(500)] {
        // The body names a colleague; the central must not take its word.
        let body = serde_json::json!({ "nhs_number": nhs_number, "user_id": "colleague", "unscheduled": false });
        seen.push(keep("check", device.post("/v1/check", &body).await).await);
    }
    let search = serde_json::json!({ "user_id": "colleague", "query": { "family_name": "Thieffamily1", "given_name": "Thiefgiven1", "date_of_birth": "2019-02-02" } });
    seen.push(keep("search", device.post("/v1/search", &search).await).await);
    seen.push(
        keep(
            "lease",
            device.post("/v1/lease", &serde_json::json!({})).await,
        )
        .await,
    );
    seen.push(
        keep(
            "emergency numbers",
            device.get("/v1/emergency-numbers").await,
        )
        .await,
    );
    let events = serde_json::json!({ "events": [] });
    seen.push(keep("events", device.post("/v1/events", &events).await).await);
    seen.push(
        keep(
            "logout",
            device.post("/v1/logout", &serde_json::json!({})).await,
        )
        .await,
    );
    seen.push(
        keep(
            "wrong PIN",
            device
                .post("/v1/login", &attempt("colleague", "0000"))
                .await,
        )
        .await,
    );
    seen
}

async fn a_device_that_never_signs_a_user_in_gets_nobodys_details_and_its_lookups_are_never_kept_against_a_colleague(
    c: TestCentral,
) {
    // People with names and dates of birth no envelope or header could hold by chance.
    c.add_la("L001", "north").await;
    let token = c.la_token("L001").await;
    let mut csv = HEADER.to_string();
    for i in 1..=20u32 {
        csv.push_str(&format!(
            "{},Thieffamily{i},Thiefgiven{i},2019-02-{:02},CPPI,2025-01-01,,,,\n",
            nhs(i).as_digits(),
            i + 1
        ));
    }
    let r = c.upload("L001", &token, &csv, false).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    c.add_user("colleague", "RX1", Activity::B0107).await;
    c.add_user("para1", "RX1", Activity::B0107).await;
    // Enrolled and authenticated with its own key, and nothing more.
    let mut device = c.device("north", "RX1", CareSetting::Ambulance).await;
    device.feed_key = None;

    let seen = responses_without_a_user(&device).await.join("\n");
    for i in 1..=20u32 {
        let n = nhs(i);
        for secret in [
            n.as_digits(),
            n.to_string(),
            format!("Thieffamily{i}"),
            format!("Thiefgiven{i}"),
            format!("2019-02-{:02}", i + 1),
        ] {
            assert!(
                !seen.contains(&secret),
                "a response without a signed-in user carries {secret}"
            );
        }
    }
    // Nothing was looked up, so nothing is kept against anyone: not the colleague the bodies named.
    for i in [1, 500] {
        assert!(c.store.lookups_of(&nhs(i), 10).await.unwrap().is_empty());
    }
    assert!(c.store.searches(10).await.unwrap().is_empty());

    // Signed in, the same device is answered, and the lookup is kept against whoever signed in,
    // whatever the body says.
    device.sign_in("para1").await;
    let body =
        serde_json::json!({ "nhs_number": nhs(1), "user_id": "colleague", "unscheduled": false });
    let r = device.post("/v1/check", &body).await;
    assert_eq!(r.status(), 200);
    let answer: cpis_core::wire::LiveCheckResponse = r.json().await.unwrap();
    assert_eq!(answer.record.unwrap().family_name, "Thieffamily1");
    let kept = c.store.lookups_of(&nhs(1), 10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].user_id, "para1");
    // And the feed it downloads opens with the key the sign-in gave.
    let page = device.page(0, 100).await;
    assert!(!page.ops.is_empty());
    c.shutdown().await;
}

async fn a_user_session_ends_at_sign_out_and_when_another_user_signs_in_on_that_device(
    c: TestCentral,
) {
    setup_register(&c, "L001", "north", 0..5).await;
    c.add_user("para1", "RX1", Activity::B0107).await;
    c.add_user("para2", "RX1", Activity::B0107).await;
    let mut device = c.device("north", "RX1", CareSetting::Ambulance).await;
    async fn status(d: &TestDevice) -> u16 {
        let check = serde_json::json!({ "nhs_number": nhs(1), "unscheduled": false });
        d.post("/v1/check", &check).await.status().as_u16()
    }

    device.sign_in("para1").await;
    let first = device.user_session.clone();
    assert_eq!(status(&device).await, 200);
    // Another user signs in on the device: the first session ends.
    device.sign_in("para2").await;
    assert_eq!(status(&device).await, 200);
    let second = device.user_session.replace(first.unwrap()).unwrap();
    assert_eq!(status(&device).await, 401);
    // Signing out ends the session at the central, whichever instance is asked next.
    device.user_session = Some(second);
    let r = device.post("/v1/logout", &serde_json::json!({})).await;
    assert_eq!(r.status(), 204);
    assert_eq!(status(&device).await, 401);
    let kept = c.store.lookups_of(&nhs(1), 10).await.unwrap();
    let users: Vec<&str> = kept.iter().map(|l| l.user_id.as_str()).collect();
    assert_eq!(
        users,
        ["para2", "para1"],
        "newest first, each against who was signed in"
    );
    c.shutdown().await;
}

async fn a_user_session_ends_when_idle_and_at_its_hard_end_and_each_use_moves_its_idle_end(
    c: TestCentral,
) {
    use chrono::{Duration, Utc};
    use cpis_central::store::UserSessionRow;
    let device = enrolled(&c, "RX1").await;
    let other = enrolled(&c, "RX1").await;
    let t0 = Utc::now();
    let minutes = |m: i64| t0 + Duration::minutes(m);
    c.store
        .open_user_session(&UserSessionRow {
            token_hash: "session-a".into(),
            device_id: device.id,
            user_id: "para1".into(),
            idle_until: minutes(15),
            expires_at: minutes(60),
        })
        .await
        .unwrap();
    let used = |at: i64| {
        let store = c.store.clone();
        async move {
            store
                .use_user_session("session-a", device.id, minutes(at), minutes(at + 15))
                .await
                .unwrap()
        }
    };
    // Each use moves the idle end: used at 10 minutes, it is still live at 20.
    assert_eq!(used(10).await.as_deref(), Some("para1"));
    assert_eq!(used(20).await.as_deref(), Some("para1"));
    assert_eq!(used(34).await.as_deref(), Some("para1"));
    // Used often, it still ends at its hard end.
    assert_eq!(used(48).await.as_deref(), Some("para1"));
    assert_eq!(used(61).await, None);
    // Left idle past its idle end, it has ended.
    c.store
        .open_user_session(&UserSessionRow {
            token_hash: "session-b".into(),
            device_id: device.id,
            user_id: "para1".into(),
            idle_until: minutes(15),
            expires_at: minutes(600),
        })
        .await
        .unwrap();
    let idle = c
        .store
        .use_user_session("session-b", device.id, minutes(16), minutes(31))
        .await
        .unwrap();
    assert_eq!(idle, None);
    // Another device's token never names it.
    let elsewhere = c
        .store
        .use_user_session("session-b", other.id, minutes(1), minutes(16))
        .await
        .unwrap();
    assert_eq!(elsewhere, None);
    c.shutdown().await;
}
