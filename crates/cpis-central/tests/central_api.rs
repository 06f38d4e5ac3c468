//! The central's integration suite, over real HTTP on a random port, run against SQLite and against
//! PostgreSQL (`sqlite::name` and `postgres::name`): exactly-once intake, authorisation, uploads,
//! feed paging and removals, login and leases, the live check, restarts, webhook and inbox.

mod common;

use std::collections::{HashMap, HashSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{Duration, Utc};
use common::*;
use cpis_core::crypto::hazmat;
use cpis_core::wire::{
    self, EventBatch, EventBatchResult, EventStatus, FeedChange, LeaseRenewal, LiveCheckRequest,
    LiveCheckResponse, LiveOutcome, LoginRequest, LoginResponse, NotificationPage, TokenRequest,
    UploadReport,
};
use cpis_core::{Activity, CareSetting, NhsNumber, OdsCode, Region};

on_both_stores!(
    a_batch_of_1000_events_posted_three_times_concurrently_is_stored_once_with_one_notification_each,
    a_device_reads_only_its_own_regions_feed,
    an_la_reads_only_its_own_notifications_and_uploads_only_its_own_list,
    used_expired_and_unknown_enrolment_codes_are_refused_with_json_errors,
    a_revoked_device_is_refused_everything_but_handing_in_events_recorded_before_revocation,
    missing_or_forged_credentials_are_refused_and_nothing_is_stored,
    an_upload_with_good_and_bad_rows_stores_only_the_good_people,
    an_upload_that_would_remove_half_the_people_is_refused_without_the_flag,
    the_feed_pages_in_order_and_carries_removals_and_region_moves,
    login_gives_a_lease_whose_mac_the_device_can_check_and_refuses_other_organisations,
    the_live_check_applies_visibility_records_the_access_once_and_shows_history,
    an_events_setting_and_activity_are_the_centrals_not_what_the_device_claims,
    a_restart_on_the_same_database_keeps_keys_feed_and_events,
    oversized_and_malformed_bodies_are_refused_with_json_errors,
    webhook_delivery_carries_the_event_id_and_retries_until_accepted,
    the_inbox_page_needs_the_las_token_and_shows_its_notifications,
    expiry_turns_ended_records_into_removals,
    a_live_answer_is_as_old_as_its_las_last_accepted_upload,
    a_name_search_runs_over_the_whole_register_in_tiers_and_is_kept_in_the_lookup_trail,
    the_emergency_numbers_need_a_device_token_and_give_only_that_devices_region_signed,
);

async fn notifications(c: &TestCentral, la_token: &str, after: u64) -> NotificationPage {
    c.http
        .get(format!("{}/v1/la/L001/notifications?after={after}", c.url))
        .bearer_auth(la_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn a_batch_of_1000_events_posted_three_times_concurrently_is_stored_once_with_one_notification_each(
    c: TestCentral,
) {
    let la_token = setup_register(&c, "L001", "north", 0..300).await;
    let mut device = c.device("north", "RX1", CareSetting::Ambulance).await;
    for u in 0..7 {
        c.add_user(&format!("user{u}"), "RX1", Activity::B0107)
            .await;
    }
    c.add_user("reader", "RX1", Activity::B0170).await;
    // 1,000 events: people 0..300 are flagged (and notify), 300.. are not on the register; every
    // fifth event is by a silent reader (B0170) and must not notify.
    let mut events = Vec::new();
    let mut notifying = HashSet::new();
    for i in 0..1000u32 {
        let mut e = device.event(nhs(i % 400), &format!("user{}", i % 7));
        if i % 5 == 0 {
            e.accessor.user_id = "reader".into();
            e.accessor.activity = Activity::B0170;
            e.notifies = false;
        }
        if e.notifies && i % 400 < 300 {
            notifying.insert(e.id);
        }
        events.push(device.seal(&e));
    }
    let batches: Vec<EventBatch> = events
        .chunks(500)
        .map(|c| EventBatch { events: c.to_vec() })
        .collect();
    let mut posts = Vec::new();
    for _ in 0..3 {
        for b in &batches {
            let (http, url, token, b) = (
                device.http.clone(),
                device.url.clone(),
                device.token.clone(),
                b.clone(),
            );
            posts.push(tokio::spawn(async move {
                let r = http
                    .post(format!("{url}/v1/events"))
                    .bearer_auth(token)
                    .json(&b)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.json::<EventBatchResult>().await.unwrap()
            }));
        }
    }
    let mut accepted: HashMap<uuid::Uuid, usize> = HashMap::new();
    for p in posts {
        for r in p.await.unwrap().results {
            assert_ne!(r.status, EventStatus::Rejected, "{:?}", r.reason);
            if r.status == EventStatus::Accepted {
                *accepted.entry(r.id).or_default() += 1;
            }
        }
    }
    assert_eq!(
        accepted.len(),
        1000,
        "every event accepted by exactly one delivery"
    );
    assert!(accepted.values().all(|n| *n == 1));
    assert_eq!(c.store.event_count().await.unwrap(), 1000);
    assert_eq!(
        c.store.notification_count().await.unwrap(),
        notifying.len() as u64
    );

    // The LA's feed lists each notifying event exactly once, numbered 1..=n without gaps.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = notifications(&c, &la_token, after).await;
        if page.notifications.is_empty() {
            break;
        }
        after = page.next;
        seen.extend(page.notifications);
    }
    let ids: HashSet<_> = seen.iter().map(|n| n.event_id).collect();
    assert_eq!(ids, notifying);
    assert_eq!(seen.len(), notifying.len());
    assert!(seen.iter().enumerate().all(|(i, n)| n.seq == i as u64 + 1));

    // A fourth delivery, later: all duplicates, nothing new.
    let r = device.deliver_sealed(batches[0].events.clone()).await;
    assert!(r.results.iter().all(|r| r.status == EventStatus::Duplicate));
    assert_eq!(c.store.event_count().await.unwrap(), 1000);
    c.shutdown().await;
}

async fn a_device_reads_only_its_own_regions_feed(c: TestCentral) {
    setup_register(&c, "L001", "region-a", 0..20).await;
    setup_register(&c, "L002", "region-b", 100..130).await;
    let a = c.device("region-a", "RXA", CareSetting::Ambulance).await;
    let b = c.device("region-b", "RXB", CareSetting::Ambulance).await;
    let mut cache_a = Cache::default();
    a.pull(&mut cache_a, 7).await;
    assert_eq!(cache_a.flags.len(), 20);
    assert_eq!(cache_a.las.keys().collect::<Vec<_>>(), ["L001"]);
    assert!(
        !cache_a.flags.contains_key(&nhs(100).as_digits()),
        "no region-B person in region A's feed"
    );
    assert_eq!(
        cache_a.digest(),
        c.store
            .region_digest(&Region::parse("region-a").unwrap())
            .await
            .unwrap()
    );

    // Asking for another region is not possible: there is no parameter for it, and extra ones are ignored.
    let page: wire::SignedPage = a
        .get("/v1/feed?after=0&region=region-b")
        .await
        .json()
        .await
        .unwrap();
    let page = page
        .open(&a.central_signing, a.feed_key.as_ref().unwrap())
        .unwrap();
    assert_eq!(page.region, Region::parse("region-a").unwrap());
    assert!(page.ops.iter().all(|op| match &op.change {
        FeedChange::PutFlag { record } => record.local_authority.as_str() == "L001",
        FeedChange::PutLa { la } => la.ods.as_str() == "L001",
        _ => true,
    }));

    let mut cache_b = Cache::default();
    b.pull(&mut cache_b, 1000).await;
    assert_eq!(cache_b.flags.len(), 30);
    assert_ne!(cache_a.digest(), cache_b.digest());
    c.shutdown().await;
}

async fn an_la_reads_only_its_own_notifications_and_uploads_only_its_own_list(c: TestCentral) {
    let token_a = setup_register(&c, "L001", "north", 0..5).await;
    let token_b = setup_register(&c, "L002", "north", 10..15).await;
    let mut device = c
        .device("north", "RX1", CareSetting::EmergencyDepartment)
        .await;
    let e = device.event(nhs(1), "doc");
    let r = device.deliver(&[&e]).await;
    assert_eq!(r.results[0].status, EventStatus::Accepted);

    let get = |la: &str, token: Option<&str>| {
        let mut r = c.http.get(format!("{}/v1/la/{la}/notifications", c.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let own: NotificationPage = get("L001", Some(&token_a))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own.notifications.len(), 1);
    assert_eq!(own.notifications[0].event_id, e.id);
    let err = refused(get("L001", Some(&token_b)).await.unwrap(), 403).await;
    assert_eq!(err.error, "wrong_la");
    refused(get("L001", None).await.unwrap(), 401).await;
    refused(get("L001", Some("not-a-token")).await.unwrap(), 401).await;
    // A device token is not an LA token.
    refused(get("L001", Some(&device.token)).await.unwrap(), 401).await;
    let b_own: NotificationPage = get("L002", Some(&token_b))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(b_own.notifications.is_empty());

    // LA B cannot replace LA A's list.
    let r = c.upload("L001", &token_b, &csv_of(20..22), true).await;
    assert_eq!(refused(r, 403).await.error, "wrong_la");
    assert_eq!(
        c.store
            .flag(&nhs(1))
            .await
            .unwrap()
            .unwrap()
            .local_authority
            .as_str(),
        "L001"
    );
    assert!(c.store.flag(&nhs(20)).await.unwrap().is_none());
    // LA B listing a person LA A holds: the row is accepted exactly as any other row (the result
    // never tells LA B that another LA holds the number) and the person now holds both LAs' plans.
    let r = c
        .upload("L002", &token_b, &csv_of([10, 11, 12, 13, 14, 1]), false)
        .await;
    let report: UploadReport = r.json().await.unwrap();
    assert_eq!((report.accepted_rows, report.rejected_rows), (6, 0));
    assert_eq!(
        (report.rows[5].accepted, &report.rows[5].reason),
        (report.rows[0].accepted, &report.rows[0].reason)
    );
    let person = c.store.flag(&nhs(1)).await.unwrap().unwrap();
    let holders: Vec<String> = person.holders().iter().map(|l| l.to_string()).collect();
    assert_eq!(holders, ["L001", "L002"]);
    c.shutdown().await;
}

async fn used_expired_and_unknown_enrolment_codes_are_refused_with_json_errors(c: TestCentral) {
    let code = c
        .enrolment_code("north", "RX1", CareSetting::Ambulance)
        .await;
    let first = TestDevice::enrol(&c.http, &c.url, &code.to_lowercase()).await;
    assert!(first.is_ok(), "typed in lower case, the code still works");
    let Err((status, err)) = TestDevice::enrol(&c.http, &c.url, &code).await else {
        panic!("reused code accepted")
    };
    assert_eq!((status, err.error.as_str()), (401, "enrolment_code_used"));

    let expired = c
        .central()
        .create_enrolment(
            &Region::parse("north").unwrap(),
            &OdsCode::parse("RX1").unwrap(),
            "Synthetic Trust",
            CareSetting::Ambulance,
            Duration::seconds(-1),
        )
        .await
        .unwrap();
    let Err((status, err)) = TestDevice::enrol(&c.http, &c.url, &expired.code).await else {
        panic!("expired code accepted")
    };
    assert_eq!(
        (status, err.error.as_str()),
        (401, "enrolment_code_expired")
    );
    let Err((status, err)) = TestDevice::enrol(&c.http, &c.url, "ZZZZZZZZZZ").await else {
        panic!("unknown code accepted")
    };
    assert_eq!(
        (status, err.error.as_str()),
        (401, "enrolment_code_invalid")
    );

    // A malformed key is a bad request, and uses nothing up.
    let good = c
        .enrolment_code("north", "RX1", CareSetting::Ambulance)
        .await;
    let r = c
        .http
        .post(format!("{}/v1/enrol", c.url))
        .json(&serde_json::json!({ "code": good, "device_public_key": B64.encode([1u8; 16]) }))
        .send()
        .await
        .unwrap();
    refused(r, 400).await;
    assert!(TestDevice::enrol(&c.http, &c.url, &good).await.is_ok());
    assert_eq!(c.store.devices().await.unwrap().len(), 2);
    c.shutdown().await;
}

async fn a_revoked_device_is_refused_everything_but_handing_in_events_recorded_before_revocation(
    c: TestCentral,
) {
    setup_register(&c, "L001", "north", 0..5).await;
    c.central()
        .add_user(
            "para1",
            "Synthetic Paramedic",
            "Paramedic",
            Activity::B0107,
            &OdsCode::parse("RX1").unwrap(),
            "2468",
        )
        .await
        .unwrap();
    let mut device = c.device("north", "RX1", CareSetting::Ambulance).await;
    // Recorded offline before the revocation: still a notification the LA must get.
    let before = device.event(nhs(1), "para1");
    assert!(c.store.revoke_device(device.id, Utc::now()).await.unwrap());

    let mut e = device.event(nhs(1), "para1");
    e.device_time = Utc::now() + Duration::minutes(1);
    let batch = EventBatch {
        events: vec![device.seal(&e)],
    };
    let check = LiveCheckRequest {
        nhs_number: nhs(1),
        unscheduled: true,
        access_event: Some(device.seal(&e)),
    };
    for r in [
        device.get("/v1/feed?after=0").await,
        device.post("/v1/check", &check).await,
        device
            .post(
                "/v1/login",
                &LoginRequest {
                    user_id: "para1".into(),
                    pin: "2468".into(),
                },
            )
            .await,
        device.post("/v1/lease", &serde_json::json!({})).await,
    ] {
        assert_eq!(refused(r, 403).await.error, "device_revoked");
    }
    // The event intake takes what was recorded before revocation, and only that.
    let r = device.post("/v1/events", &batch).await;
    assert_eq!(r.status(), 200);
    let result: EventBatchResult = r.json().await.unwrap();
    assert_eq!(result.results[0].status, EventStatus::Rejected);
    assert_eq!(c.store.event_count().await.unwrap(), 0);
    assert_eq!(c.store.notification_count().await.unwrap(), 0);
    let r = device
        .post(
            "/v1/events",
            &EventBatch {
                events: vec![device.seal(&before)],
            },
        )
        .await;
    let result: EventBatchResult = r.json().await.unwrap();
    assert_eq!(result.results[0].status, EventStatus::Accepted);
    assert_eq!(c.store.event_count().await.unwrap(), 1);
    let listed = c.store.devices().await.unwrap();
    assert!(listed
        .iter()
        .any(|d| d.id == device.id && d.revoked_at.is_some()));
    c.shutdown().await;
}

async fn missing_or_forged_credentials_are_refused_and_nothing_is_stored(c: TestCentral) {
    setup_register(&c, "L001", "north", 0..5).await;
    let mut device = c.device("north", "RX1", CareSetting::Ambulance).await;
    let mut other = c.device("north", "RX1", CareSetting::Ambulance).await;
    let e = device.event(nhs(1), "para1");
    let batch = EventBatch {
        events: vec![device.seal(&e)],
    };
    let no_token = c
        .http
        .post(format!("{}/v1/events", c.url))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(refused(no_token, 401).await.error, "unauthorised");
    let forged = c
        .http
        .post(format!("{}/v1/events", c.url))
        .bearer_auth("forged-token")
        .json(&batch)
        .send()
        .await
        .unwrap();
    refused(forged, 401).await;
    let feed = c
        .http
        .get(format!("{}/v1/feed", c.url))
        .send()
        .await
        .unwrap();
    refused(feed, 401).await;

    // An expired token is refused like an unknown one.
    let stale = cpis_central::auth::new_token();
    c.store
        .create_device_token(
            &cpis_central::auth::secret_hash(&stale),
            device.id,
            Utc::now() - Duration::seconds(1),
        )
        .await
        .unwrap();
    let r = c
        .http
        .post(format!("{}/v1/events", c.url))
        .bearer_auth(&stale)
        .json(&batch)
        .send()
        .await
        .unwrap();
    refused(r, 401).await;

    // A signature by another key over the right challenge, and a replayed challenge.
    let challenge: wire::ChallengeResponse = device.challenge().await.json().await.unwrap();
    let wrong_key = hazmat::ed25519_generate();
    let forged_sig = hazmat::ed25519_sign(
        &wrong_key,
        &wire::auth_message(device.id, &challenge.challenge),
    )
    .unwrap();
    let r = c
        .http
        .post(format!("{}/v1/auth/token", c.url))
        .json(&TokenRequest {
            device_id: device.id,
            challenge: challenge.challenge.clone(),
            signature: B64.encode(forged_sig),
        })
        .send()
        .await
        .unwrap();
    refused(r, 401).await;
    let good_sig = hazmat::ed25519_sign(
        &device.key,
        &wire::auth_message(device.id, &challenge.challenge),
    )
    .unwrap();
    let r = c
        .http
        .post(format!("{}/v1/auth/token", c.url))
        .json(&TokenRequest {
            device_id: device.id,
            challenge: challenge.challenge,
            signature: B64.encode(good_sig),
        })
        .send()
        .await
        .unwrap();
    refused(r, 401).await; // The challenge was used up by the forged attempt.
                           // Another device's challenge signed by this device.
    let theirs: wire::ChallengeResponse = other.challenge().await.json().await.unwrap();
    let sig = hazmat::ed25519_sign(
        &device.key,
        &wire::auth_message(device.id, &theirs.challenge),
    )
    .unwrap();
    let r = c
        .http
        .post(format!("{}/v1/auth/token", c.url))
        .json(&TokenRequest {
            device_id: device.id,
            challenge: theirs.challenge,
            signature: B64.encode(sig),
        })
        .send()
        .await
        .unwrap();
    refused(r, 401).await;

    // Events that are not this device's, or do not open, are rejected one by one; nothing is stored.
    let theirs = other.event(nhs(2), "para2");
    let third = device.event(nhs(3), "para1");
    let mut tampered = device.seal(&third);
    let mut raw = B64.decode(&tampered.sealed).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    tampered.sealed = B64.encode(raw);
    let mut sealed_elsewhere = device.event(nhs(4), "para1");
    sealed_elsewhere.device_seq += 0;
    let wrong_key = cpis_core::wire::SealedEvent::seal(
        &sealed_elsewhere,
        &hazmat::x25519_public(&hazmat::x25519_generate()),
    );
    let r = device
        .deliver_sealed(vec![device.seal(&theirs), tampered, wrong_key])
        .await;
    assert!(r
        .results
        .iter()
        .all(|r| r.status == EventStatus::Rejected && r.reason.is_some()));
    assert_eq!(c.store.event_count().await.unwrap(), 0);
    assert_eq!(c.store.notification_count().await.unwrap(), 0);
    let _ = other.authenticate(&c.http.clone(), &c.url.clone()).await;
    c.shutdown().await;
}

async fn an_upload_with_good_and_bad_rows_stores_only_the_good_people(c: TestCentral) {
    let token = setup_register(&c, "L001", "north", 0..10).await;
    let before = c.store.flag(&nhs(3)).await.unwrap().unwrap();
    let mut csv = HEADER.to_string();
    for i in 0..10 {
        if i == 3 {
            // Person 3 gains a plan with a bad date: their stored record must not change.
            csv.push_str(&row(3, "CPPI"));
            csv.push_str(&format!(
                "{},Testfamily3,Sam,2019-02-03,LACI,2025-02-30,,,,\n",
                nhs(3).as_digits()
            ));
        } else {
            csv.push_str(&row(i, "CPPI"));
        }
    }
    csv.push_str(&row(10, "LACI")); // new person, good
    csv.push_str("9990000019,Badnumber,Ann,2019-02-03,CPPI,2025-01-01,,,,\n");
    csv.push_str(&format!(
        "{},Newperson,Bo,2019-02-03,XYZ,2025-01-01,,,,\n",
        nhs(11).as_digits()
    ));
    csv.push_str(&format!(
        "{},Newperson,Bo,2019-02-03,CPPI,2025-01-01,2024-01-01,,,\n",
        nhs(12).as_digits()
    ));
    csv.push_str(&row(13, "CPPI"));
    csv.push_str(&row(13, "CPPI"));
    let r = c.upload("L001", &token, &csv, false).await;
    assert_eq!(r.status(), 200);
    let report: UploadReport = r.json().await.unwrap();
    assert_eq!(report.accepted_rows, 10, "{report:?}");
    assert_eq!(report.rejected_rows, 7, "{report:?}");
    assert_eq!(report.removed, 0);
    assert_eq!(report.people, 11);
    let reasons: HashMap<usize, String> = report
        .rows
        .iter()
        .filter(|r| !r.accepted)
        .map(|r| (r.line, r.reason.clone().unwrap()))
        .collect();
    assert!(reasons[&5].contains("another row"), "{reasons:?}");
    assert!(reasons[&6].contains("start_date"), "{reasons:?}");
    assert!(reasons[&14].contains("NHS number"));
    assert!(reasons[&15].contains("plan kind"));
    assert!(reasons[&16].contains("before it starts"));
    assert!(reasons[&17].contains("two CPPI") && reasons[&18].contains("two CPPI"));
    // No reason carries an NHS number or a name.
    for reason in reasons.values() {
        assert!(
            !reason.contains("999")
                && !reason.contains("Testfamily")
                && !reason.contains("Newperson"),
            "{reason}"
        );
    }
    assert_eq!(c.store.flag(&nhs(3)).await.unwrap().unwrap(), before);
    assert!(c.store.flag(&nhs(10)).await.unwrap().is_some());
    for i in [11, 12, 13] {
        assert!(c.store.flag(&nhs(i)).await.unwrap().is_none());
    }
    c.shutdown().await;
}

async fn an_upload_that_would_remove_half_the_people_is_refused_without_the_flag(c: TestCentral) {
    let token = setup_register(&c, "L001", "north", 0..20).await;
    let digest = c
        .store
        .region_digest(&Region::parse("north").unwrap())
        .await
        .unwrap();
    let r = c.upload("L001", &token, &csv_of(0..10), false).await;
    let err = refused(r, 422).await;
    assert_eq!(err.error, "large_removal");
    assert!(err.message.contains("10 of the 20"), "{}", err.message);
    assert_eq!(
        c.store
            .region_digest(&Region::parse("north").unwrap())
            .await
            .unwrap(),
        digest,
        "nothing changed"
    );
    // Two of twenty (10%) is allowed; with the flag, half. Absence ends plans, never removes.
    let report: UploadReport = c
        .upload("L001", &token, &csv_of(0..18), false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((report.removed, report.ended, report.people), (0, 2, 20));
    let report: UploadReport = c
        .upload("L001", &token, &csv_of(0..9), true)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((report.removed, report.ended, report.people), (0, 9, 20));
    let ended = c.store.flag(&nhs(12)).await.unwrap().unwrap();
    assert!(ended.plans.iter().all(|p| p.end.is_some()));
    c.shutdown().await;
}

async fn the_feed_pages_in_order_and_carries_removals_and_region_moves(c: TestCentral) {
    let token = setup_register(&c, "L001", "north", 0..50).await;
    setup_register(&c, "L002", "south", 100..110).await;
    let device = c.device("north", "RX1", CareSetting::Ambulance).await;
    let mut cache = Cache::default();
    let pages = device.pull(&mut cache, 10).await;
    assert_eq!(pages, 6, "51 ops in pages of 10");
    assert_eq!(cache.flags.len(), 50);
    let north = Region::parse("north").unwrap();
    assert_eq!(cache.digest(), c.store.region_digest(&north).await.unwrap());

    // An unchanged re-upload adds nothing; a change adds one put; absent people's plans are ended
    // (puts, never removals).
    c.upload("L001", &token, &csv_of(0..50), false).await;
    assert!(device.page(cache.cursor, 100).await.ops.is_empty());
    let mut csv = csv_of(0..46);
    csv.push_str(&format!(
        "{},Renamed,Sam,2019-02-03,LACI,2025-01-01,,,,\n",
        nhs(49).as_digits()
    ));
    c.upload("L001", &token, &csv, false).await;
    let page = device.page(cache.cursor, 100).await;
    let removed: Vec<_> = page
        .ops
        .iter()
        .filter_map(|o| match &o.change {
            FeedChange::RemoveFlag { nhs_number } => Some(*nhs_number),
            _ => None,
        })
        .collect();
    assert!(removed.is_empty(), "absence removed people: {removed:?}");
    assert_eq!(page.ops.len(), 4, "three endings and one change");
    device.pull(&mut cache, 2).await;
    assert_eq!(cache.flags.len(), 50);
    assert!(cache.flags[&nhs(47).as_digits()].plans[0].end.is_some());
    assert_eq!(cache.flags[&nhs(49).as_digits()].family_name, "Renamed");
    assert_eq!(cache.digest(), c.store.region_digest(&north).await.unwrap());

    // A new device from 0 gets only live records: no tombstone history beyond the keys it needs.
    let fresh = c.device("north", "RX2", CareSetting::Ambulance).await;
    let mut fresh_cache = Cache::default();
    fresh.pull(&mut fresh_cache, 5000).await;
    assert_eq!(fresh_cache.digest(), cache.digest());

    // L002 moves into the north: its people arrive; L001 moves south: its people leave.
    c.add_la("L002", "north").await;
    c.add_la("L001", "south").await;
    device.pull(&mut cache, 7).await;
    assert_eq!(cache.las.keys().collect::<Vec<_>>(), ["L002"]);
    assert_eq!(cache.flags.len(), 10);
    assert!(cache
        .flags
        .values()
        .all(|f| f.local_authority.as_str() == "L002"));
    assert_eq!(cache.digest(), c.store.region_digest(&north).await.unwrap());
    // Past the head, a page is empty and says so.
    let page = device.page(cache.cursor, 10).await;
    assert!(page.ops.is_empty() && !page.has_more && page.last == cache.cursor);
    c.shutdown().await;
}

async fn login_gives_a_lease_whose_mac_the_device_can_check_and_refuses_other_organisations(
    c: TestCentral,
) {
    let rx1 = OdsCode::parse("RX1").unwrap();
    c.central()
        .add_user(
            "para1",
            "Synthetic Paramedic",
            "Paramedic",
            Activity::B0107,
            &rx1,
            "2468",
        )
        .await
        .unwrap();
    c.central()
        .add_user(
            "gp9",
            "Synthetic Doctor",
            "GP",
            Activity::B0107,
            &OdsCode::parse("RX9").unwrap(),
            "1357",
        )
        .await
        .unwrap();
    c.store
        .set_lease_hours(&Region::parse("north").unwrap(), 12, Utc::now())
        .await
        .unwrap();
    let device = c.device("north", "RX1", CareSetting::Ambulance).await;
    let r = device
        .post(
            "/v1/login",
            &LoginRequest {
                user_id: "para1".into(),
                pin: "2468".into(),
            },
        )
        .await;
    assert_eq!(r.status(), 200);
    let login: LoginResponse = r.json().await.unwrap();
    assert_eq!(login.user.role, "Paramedic");
    assert_eq!(login.user.activity, Activity::B0107);
    let key = B64.decode(&login.lease.lease_key).unwrap();
    assert_eq!(key.len(), 32);
    let expires = login.lease.expires_at;
    assert_eq!(expires.timestamp_subsec_nanos(), 0);
    let hours = (expires - Utc::now()).num_minutes() as f64 / 60.0;
    assert!((11.9..=12.0).contains(&hours), "{hours}");
    let mac = B64.decode(&login.lease.mac).unwrap();
    assert!(hazmat::hmac_sha256_verify(
        &key,
        &wire::lease_mac_message(device.id, expires),
        &mac
    ));

    let renewal: LeaseRenewal = device
        .post("/v1/lease", &serde_json::json!({}))
        .await
        .json()
        .await
        .unwrap();
    let mac = B64.decode(&renewal.mac).unwrap();
    assert!(hazmat::hmac_sha256_verify(
        &key,
        &wire::lease_mac_message(device.id, renewal.expires_at),
        &mac
    ));

    let wrong_pin = device
        .post(
            "/v1/login",
            &LoginRequest {
                user_id: "para1".into(),
                pin: "0000".into(),
            },
        )
        .await;
    assert_eq!(refused(wrong_pin, 401).await.error, "sign_in_refused");
    let unknown = device
        .post(
            "/v1/login",
            &LoginRequest {
                user_id: "nobody".into(),
                pin: "2468".into(),
            },
        )
        .await;
    assert_eq!(refused(unknown, 401).await.error, "sign_in_refused");
    let other_org = device
        .post(
            "/v1/login",
            &LoginRequest {
                user_id: "gp9".into(),
                pin: "1357".into(),
            },
        )
        .await;
    // Guessing: after five wrong PINs in a row the user's online sign-in pauses, even for the right PIN.
    for _ in 0..4 {
        let r = device
            .post(
                "/v1/login",
                &LoginRequest {
                    user_id: "para1".into(),
                    pin: "9999".into(),
                },
            )
            .await;
        refused(r, 401).await;
    }
    let r = device
        .post(
            "/v1/login",
            &LoginRequest {
                user_id: "para1".into(),
                pin: "2468".into(),
            },
        )
        .await;
    assert_eq!(refused(r, 429).await.error, "too_many_attempts");

    // Refused exactly as a wrong PIN is: the answer must not tell that the PIN was right.
    assert_eq!(refused(other_org, 401).await.error, "sign_in_refused");
    c.shutdown().await;
}

async fn the_live_check_applies_visibility_records_the_access_once_and_shows_history(
    c: TestCentral,
) {
    let token = setup_register(&c, "L001", "region-a", 0..3).await;
    setup_register(&c, "L002", "region-b", 10..12).await;
    // Person 5: one plan ended 400 days ago (gone), one ended 10 days ago (still shown).
    let ended = |days: i64| {
        (Utc::now().date_naive() - Duration::days(days))
            .format("%Y-%m-%d")
            .to_string()
    };
    let mut csv = csv_of(0..3);
    csv.push_str(&format!(
        "{},Ended,Kit,2015-01-01,CPPI,2020-01-01,{},,,\n",
        nhs(5).as_digits(),
        ended(400)
    ));
    csv.push_str(&format!(
        "{},Ended,Kit,2015-01-01,LACI,2020-01-01,{},,,\n",
        nhs(5).as_digits(),
        ended(10)
    ));
    c.upload("L001", &token, &csv, false).await;
    let mut device = c.device("region-a", "RX1", CareSetting::Ambulance).await;
    c.add_user("para1", "RX1", Activity::B0107).await;
    device.sign_in("para1").await;

    let check = |nhs_number: NhsNumber, event| LiveCheckRequest {
        nhs_number,
        unscheduled: true,
        access_event: event,
    };
    let e = device.event(nhs(1), "para1");
    for _ in 0..2 {
        let r: LiveCheckResponse = device
            .post("/v1/check", &check(nhs(1), Some(device.seal(&e))))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(r.outcome, LiveOutcome::RecordFound);
        assert!(r.access_recorded);
        assert_eq!(r.local_authority.unwrap().emergency_phone, "0300 555 0100");
        assert_eq!(r.access_history.len(), 1);
        assert_eq!(r.access_history[0].at, e.device_time);
    }
    // The same event later by the outbox: a duplicate, still one notification.
    let r = device.deliver(&[&e]).await;
    assert_eq!(r.results[0].status, EventStatus::Duplicate);
    assert_eq!(c.store.notification_count().await.unwrap(), 1);

    let r: LiveCheckResponse = device
        .post("/v1/check", &check(nhs(5), None))
        .await
        .json()
        .await
        .unwrap();
    let plans = r.record.unwrap().plans;
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].kind, cpis_core::PlanKind::LookedAfter);
    // A region-B person is found live (the cache would not have them); an unknown one is not.
    let r: LiveCheckResponse = device
        .post("/v1/check", &check(nhs(10), None))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r.outcome, LiveOutcome::RecordFound);
    assert_eq!(r.local_authority.unwrap().ods.as_str(), "L002");
    let r: LiveCheckResponse = device
        .post(
            "/v1/check",
            &check(
                NhsNumber::test_range(cpis_central::demo::GUARANTEED_MISS_FROM),
                None,
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r.outcome, LiveOutcome::NoRecord);
    assert!(r.record.is_none() && !r.access_recorded);
    // Every answered lookup is kept against the person asked about, found or not, newest first.
    let kept = c.store.lookups_of(&nhs(1), 10).await.unwrap();
    assert_eq!(kept.len(), 2);
    assert!(kept
        .iter()
        .all(|l| l.device_id == device.id && l.user_id == "para1" && l.found));
    assert!(kept[0].at >= kept[1].at);
    let missed = c
        .store
        .lookups_of(
            &NhsNumber::test_range(cpis_central::demo::GUARANTEED_MISS_FROM),
            10,
        )
        .await
        .unwrap();
    assert_eq!(missed.len(), 1);
    assert!(!missed[0].found);
    // A malformed NHS number is a refusal with a reason.
    let r = device
        .post(
            "/v1/check",
            &serde_json::json!({ "nhs_number": "9990000019", "user_id": "x", "unscheduled": true }),
        )
        .await;
    refused(r, 422).await;
    c.shutdown().await;
}

async fn a_restart_on_the_same_database_keeps_keys_feed_and_events(mut c: TestCentral) {
    setup_register(&c, "L001", "north", 0..5).await;
    let mut device = c.device("north", "RX1", CareSetting::Ambulance).await;
    let e = device.event(nhs(1), "para1");
    device
        .post(
            "/v1/events",
            &EventBatch {
                events: vec![device.seal(&e)],
            },
        )
        .await;
    let before = device.page(0, 100).await;
    let url = c.url.clone();
    c.restart().await;
    assert_eq!(c.running.as_ref().unwrap().url(), url, "same port");
    // Same signing key (the page verifies against the pinned key), same sealing key, same token.
    let after = device.page(0, 100).await;
    assert_eq!(before.ops, after.ops);
    let r = device.deliver(&[&e]).await;
    assert_eq!(r.results[0].status, EventStatus::Duplicate);
    let e2 = device.event(nhs(2), "para1");
    let r = device.deliver(&[&e2]).await;
    assert_eq!(r.results[0].status, EventStatus::Accepted);
    // An abrupt stop, then back: still consistent.
    let running = c.running.take().unwrap();
    let addr = running.addr;
    running.abort().await.unwrap();
    c.running = Some(
        cpis_central::spawn_with_store(
            c.store.clone(),
            cpis_central::CentralConfig::new("unused").listen(addr),
        )
        .await
        .unwrap(),
    );
    assert_eq!(c.store.event_count().await.unwrap(), 2);
    assert_eq!(device.page(0, 100).await.ops, before.ops);
    c.shutdown().await;
}

async fn oversized_and_malformed_bodies_are_refused_with_json_errors(c: TestCentral) {
    setup_register(&c, "L001", "north", 0..5).await;
    let mut device = c.device("north", "RX1", CareSetting::Ambulance).await;
    let e = device.event(nhs(1), "para1");
    let one = device.seal(&e);
    let too_many = EventBatch {
        events: vec![one.clone(); wire::MAX_EVENT_BATCH + 1],
    };
    assert_eq!(
        refused(device.post("/v1/events", &too_many).await, 413)
            .await
            .error,
        "too_large"
    );
    let huge = "x".repeat(3 * 1024 * 1024);
    // The central answers 413 as soon as it sees the length; the client may still be sending and see
    // the connection close instead. Either way nothing is stored. Its own client, so the connection
    // the central cut short is never handed to the requests after it.
    match reqwest::Client::new()
        .post(format!("{}/v1/events", c.url))
        .bearer_auth(&device.token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
    {
        Ok(r) => {
            refused(r, 413).await;
        }
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    refused(device.post_text("/v1/events", "{not json").await, 400).await;
    refused(device.post_text("/v1/events", "{\"events\": 5}").await, 422).await;
    refused(device.get("/v1/feed?after=minus-one").await, 400).await;
    let r = c
        .http
        .get(format!("{}/v1/nowhere", c.url))
        .send()
        .await
        .unwrap();
    refused(r, 404).await;
    let r = c
        .http
        .get(format!("{}/v1/events", c.url))
        .send()
        .await
        .unwrap();
    refused(r, 405).await;
    let token = c.la_token("L001").await;
    let r = c
        .upload("L001", &token, "no,header,here\n1,2,3\n", false)
        .await;
    assert_eq!(refused(r, 422).await.error, "invalid_upload_file");
    assert_eq!(c.store.event_count().await.unwrap(), 0);
    // The API describes itself.
    let spec: serde_json::Value = c
        .http
        .get(format!("{}/openapi.json", c.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["openapi"], "3.0.3");
    for path in [
        "/v1/enrol",
        "/v1/feed",
        "/v1/events",
        "/v1/check",
        "/v1/search",
        "/v1/login",
        "/v1/lease",
        "/v1/la/{ods}/upload",
        "/fhir/R4/metadata",
        "/fhir/R4/CareTeam",
        "/fhir/R4/AuditEvent",
    ] {
        assert!(spec["paths"][path].is_object(), "{path}");
    }
    // Every response carries a request id.
    let r = c
        .http
        .get(format!("{}/v1/status", c.url))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("x-request-id"));
    c.shutdown().await;
}

async fn webhook_delivery_carries_the_event_id_and_retries_until_accepted(c: TestCentral) {
    use std::sync::{Arc, Mutex};
    // A receiver that fails its first two calls, then records what it gets.
    let got: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let (got, calls) = (got.clone(), calls.clone());
        axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::Json<serde_json::Value>| {
                    let (got, calls) = (got.clone(), calls.clone());
                    async move {
                        if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let id = headers["x-cpis-event-id"].to_str().unwrap().to_string();
                        got.lock().unwrap().push((id, body.0));
                        axum::http::StatusCode::OK
                    }
                },
            ),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    setup_register(&c, "L001", "north", 0..5).await;
    c.central()
        .upsert_la(
            &la("L001", "north"),
            cpis_central::store::WebhookChange::Set(Some(hook)),
        )
        .await
        .unwrap();
    let mut device = c.device("north", "RX1", CareSetting::Ambulance).await;
    let e = device.event(nhs(2), "para1");
    device
        .post(
            "/v1/events",
            &EventBatch {
                events: vec![device.seal(&e)],
            },
        )
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while got.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "webhook never delivered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, e.id.to_string());
    assert_eq!(got[0].1["event_id"], e.id.to_string());
    assert_eq!(
        got[0].1["seen_at"],
        serde_json::to_value(e.device_time).unwrap()
    );
    // The central records the delivery once the receiver has answered: wait for that.
    let (state, attempts) = loop {
        let (state, attempts) = c.store.delivery_state(e.id).await.unwrap().unwrap();
        if state != "pending" || std::time::Instant::now() > deadline {
            break (state, attempts);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(state, "delivered");
    assert_eq!(
        attempts, 3,
        "two failed attempts, then the one that succeeded"
    );
    c.shutdown().await;
}

async fn the_inbox_page_needs_the_las_token_and_shows_its_notifications(c: TestCentral) {
    let token_a = setup_register(&c, "L001", "north", 0..5).await;
    let token_b = setup_register(&c, "L002", "north", 10..12).await;
    let mut device = c.device("north", "RX1", CareSetting::Maternity).await;
    let e = device.event(nhs(3), "mw1");
    device
        .post(
            "/v1/events",
            &EventBatch {
                events: vec![device.seal(&e)],
            },
        )
        .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let page = http
        .get(format!("{}/la/L001/inbox", c.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign in") && !html.contains("<script"));

    let wrong = http
        .post(format!("{}/la/L001/inbox/sign-in", c.url))
        .form(&[("token", token_b.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let ok = http
        .post(format!("{}/la/L001/inbox/sign-in", c.url))
        .form(&[("token", token_a.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let cookie = cookie.split(';').next().unwrap().to_string();
    let html = http
        .get(format!("{}/la/L001/inbox", c.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // For a visual check of the page: CPIS_INBOX_HTML_OUT=/tmp/inbox.html, then open it in a browser.
    if let Ok(path) = std::env::var("CPIS_INBOX_HTML_OUT") {
        std::fs::write(path, &html).unwrap();
    }
    assert!(html.contains(&nhs(3).to_string()), "NHS number shown 3-3-4");
    assert!(
        html.contains("TESTFAMILY3") && html.contains("Maternity unit") && html.contains("RX1")
    );
    // LA A's cookie does not open LA B's inbox.
    let other = http
        .get(format!("{}/la/L002/inbox", c.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    assert!(!other.text().await.unwrap().contains("TESTFAMILY3"));
    c.shutdown().await;
}

async fn expiry_turns_ended_records_into_removals(c: TestCentral) {
    let token = setup_register(&c, "L001", "north", 0..3).await;
    let device = c.device("north", "RX1", CareSetting::Ambulance).await;
    let mut cache = Cache::default();
    device.pull(&mut cache, 100).await;
    // Uploading a record already past its window stores nothing for it.
    let old = (Utc::now().date_naive() - Duration::days(500)).format("%Y-%m-%d");
    let mut csv = csv_of(0..3);
    csv.push_str(&format!(
        "{},Long,Gone,2010-01-01,CPPI,2015-01-01,{old},,,\n",
        nhs(7).as_digits()
    ));
    let report: UploadReport = c
        .upload("L001", &token, &csv, false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report.accepted_rows, 4);
    assert!(c.store.flag(&nhs(7)).await.unwrap().is_none());
    // Records that pass their window later are removed by the expiry pass.
    let in_a_year = Utc::now().date_naive() + Duration::days(800);
    let mut csv = HEADER.to_string();
    let soon = (Utc::now().date_naive() + Duration::days(5)).format("%Y-%m-%d");
    for i in 0..3 {
        csv.push_str(&format!(
            "{},Testfamily{i},Sam,2019-02-03,CPPI,2025-01-01,{soon},,,\n",
            nhs(i).as_digits()
        ));
    }
    c.upload("L001", &token, &csv, false).await;
    assert_eq!(
        c.central().expire(Utc::now().date_naive()).await.unwrap(),
        0
    );
    assert_eq!(c.central().expire(in_a_year).await.unwrap(), 3);
    device.pull(&mut cache, 100).await;
    assert!(cache.flags.is_empty());
    assert_eq!(
        cache.digest(),
        c.store
            .region_digest(&Region::parse("north").unwrap())
            .await
            .unwrap()
    );
    c.shutdown().await;
}

/// A device (rogue, cloned or buggy) cannot silence a notification by claiming a silent setting or
/// activity, nor pass itself off as another organisation: the central judges each event by its own
/// records. A user it does not hold there is still recorded, and notifies where the setting does.
async fn an_events_setting_and_activity_are_the_centrals_not_what_the_device_claims(
    c: TestCentral,
) {
    let la_token = setup_register(&c, "L001", "north", 0..5).await;
    let mut device = c.device("north", "RX1", CareSetting::Ambulance).await;
    c.add_user("para1", "RX1", Activity::B0107).await;
    c.add_user("gp1", "RX1", Activity::B0170).await;
    c.add_user("elsewhere", "RX2", Activity::B0107).await;

    // A notifying paramedic's event dressed up as a silent in-hours GP read at another organisation.
    let mut silenced = device.event(nhs(1), "para1");
    silenced.accessor.activity = Activity::B0170;
    silenced.accessor.setting = CareSetting::Gp;
    silenced.accessor.org_ods = OdsCode::parse("RX2").unwrap();
    silenced.accessor.org_name = "Somewhere Else".into();
    silenced.notifies = false;
    // A silent reader's event claiming to notify.
    let mut loud = device.event(nhs(2), "gp1");
    loud.accessor.activity = Activity::B0107;
    loud.notifies = true;
    // A user the central does not hold at this organisation, claiming to read silently.
    let mut stranger = device.event(nhs(3), "elsewhere");
    stranger.accessor.activity = Activity::B0170;
    stranger.notifies = false;
    let r = device.deliver(&[&silenced, &loud, &stranger]).await;
    assert!(r.results.iter().all(|r| r.status == EventStatus::Accepted));
    assert_eq!(c.store.event_count().await.unwrap(), 3);

    let page = notifications(&c, &la_token, 0).await;
    let told: HashMap<uuid::Uuid, &wire::Notification> =
        page.notifications.iter().map(|n| (n.event_id, n)).collect();
    assert_eq!(told.len(), 2, "{:?}", page.notifications);
    let n = told[&silenced.id];
    assert_eq!(n.setting, CareSetting::Ambulance);
    assert_eq!(n.org_ods.as_str(), "RX1");
    assert_eq!(n.org_name, "Synthetic Trust RX1");
    assert_eq!(n.role, "Paramedic");
    assert!(
        !told.contains_key(&loud.id),
        "a silent reader never notifies"
    );
    assert_eq!(told[&stranger.id].setting, CareSetting::Ambulance);

    // The live check answers only a user signed in on this device, whoever the body names.
    for user in ["elsewhere", "nobody", "para1"] {
        let r = device
            .post(
                "/v1/check",
                &serde_json::json!({ "nhs_number": nhs(1), "user_id": user, "unscheduled": false }),
            )
            .await;
        let e = refused(r, 401).await;
        assert_eq!(e.error, "user_session_required", "{user}");
    }
    assert!(
        c.store.lookups_of(&nhs(1), 10).await.unwrap().is_empty(),
        "a refused lookup is not answered, so not kept as one"
    );
    assert_eq!(c.store.event_count().await.unwrap(), 3);
    c.shutdown().await;
}

async fn a_live_answer_is_as_old_as_its_las_last_accepted_upload(c: TestCentral) {
    let before = Utc::now();
    let token = setup_register(&c, "L001", "region-a", 0..20).await;
    let after = Utc::now();
    let mut device = c.device("region-a", "RX1", CareSetting::Ambulance).await;
    c.add_user("para1", "RX1", Activity::B0107).await;
    device.sign_in("para1").await;
    let req = LiveCheckRequest {
        nhs_number: nhs(1),
        unscheduled: false,
        access_event: None,
    };
    let first = ask(&device, &req).await;
    assert!(
        first.as_of >= before && first.as_of <= after,
        "{}",
        first.as_of
    );
    // A refused upload (it would remove half the people) is not an upload the data dates from.
    let r = c.upload("L001", &token, &csv_of(0..5), false).await;
    assert_eq!(r.status(), 422);
    assert_eq!(ask(&device, &req).await.as_of, first.as_of);
    // An accepted one is.
    let again = Utc::now();
    let r = c.upload("L001", &token, &csv_of(0..20), false).await;
    assert_eq!(r.status(), 200);
    assert!(ask(&device, &req).await.as_of >= again);
}

async fn ask(device: &TestDevice, req: &LiveCheckRequest) -> LiveCheckResponse {
    device.post("/v1/check", req).await.json().await.unwrap()
}

async fn a_name_search_runs_over_the_whole_register_in_tiers_and_is_kept_in_the_lookup_trail(
    c: TestCentral,
) {
    use cpis_core::search::{SearchQuery, TierKind};
    use cpis_core::wire::{LiveSearchRequest, LiveSearchResponse};
    use cpis_core::FoundBy;

    c.add_la("L001", "region-a").await;
    c.add_la("L002", "region-b").await;
    let token = c.la_token("L001").await;
    let mut csv = HEADER.to_string();
    let mut add = |i: u32, family: &str, given: &str, dob: &str| {
        csv.push_str(&format!(
            "{},{family},{given},{dob},CPPI,2025-01-01,,,,\n",
            nhs(i).as_digits()
        ))
    };
    add(1, "O'Neill", "Siân", "2019-03-07");
    // Two different children, same birthday, similar names.
    add(2, "Smith", "John", "2018-05-20");
    add(3, "Smyth", "Jon", "2018-05-20");
    for (i, given) in (4..).zip(["Amy", "Ben", "Cara", "Dev", "Ella", "Finn", "Gus"]) {
        add(i, "Testwood", given, "2017-10-10");
    }
    let r = c.upload("L001", &token, &csv, false).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let token_b = c.la_token("L002").await;
    let csv_b = format!(
        "{HEADER}{},Farfield,Amy,2016-01-02,LACI,2025-01-01,,,,\n",
        nhs(20).as_digits()
    );
    let r = c.upload("L002", &token_b, &csv_b, false).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let mut device = c.device("region-a", "RX1", CareSetting::Ambulance).await;
    c.add_user("para1", "RX1", Activity::B0107).await;
    device.sign_in("para1").await;

    let today = Utc::now().date_naive();
    let search = |family: &str, given: Option<&str>, dob: &str| {
        let query = SearchQuery::parse(family, dob, given, None, None, today).unwrap();
        let device = &device;
        async move {
            let r = device
                .post("/v1/search", &LiveSearchRequest { query })
                .await;
            assert_eq!(r.status(), 200);
            r.json::<LiveSearchResponse>().await.unwrap()
        }
    };
    let people = |r: &LiveSearchResponse| {
        let mut v: Vec<NhsNumber> = r.candidates.iter().map(|c| c.record.nhs_number).collect();
        v.sort();
        v
    };

    // One match, through case, accents and apostrophes, with the LA's emergency number.
    let r = search("ONEILL", Some("Sian"), "2019-03-07").await;
    assert_eq!(r.outcome, TierKind::Match);
    assert_eq!(people(&r), vec![nhs(1)]);
    assert_eq!(
        r.candidates[0]
            .local_authority
            .as_ref()
            .unwrap()
            .emergency_phone,
        "0300 555 0100"
    );
    // The two similar children are cards, never one match.
    let r = search("Smith", Some("John"), "2018-05-20").await;
    assert_eq!(r.outcome, TierKind::PossibleMatches);
    assert_eq!(people(&r), vec![nhs(2), nhs(3)]);
    // Seven on one birthday with no given name: too many, nobody sent.
    let r = search("Testwood", None, "2017-10-10").await;
    assert_eq!(r.outcome, TierKind::TooMany);
    assert!(r.candidates.is_empty());
    assert_eq!(r.total, 7);
    // The whole register: a person of another region, found with day and month swapped.
    let r = search("Farfield", Some("Amy"), "2016-02-01").await;
    assert_eq!(r.outcome, TierKind::PossibleMatches);
    assert_eq!(people(&r), vec![nhs(20)]);
    let r = search("Brown", Some("Grace"), "2019-03-07").await;
    assert_eq!(r.outcome, TierKind::NoMatch);
    assert!(r.candidates.is_empty());

    // Bad input is refused naming the field; a user of another organisation is refused.
    let r = device
        .post(
            "/v1/search",
            &serde_json::json!({ "user_id": "para1", "query": { "family_name": " ", "date_of_birth": "2019-03-07" } }),
        )
        .await;
    assert!(refused(r, 400).await.message.contains("family name"));
    let r = device
        .post(
            "/v1/search",
            &serde_json::json!({ "user_id": "para1", "query": { "family_name": "Smith", "date_of_birth": "07/03/2019" } }),
        )
        .await;
    refused(r, 422).await;
    // Without the user session, nobody's details: the body cannot name a user.
    let session = device.user_session.take();
    let r = device
        .post(
            "/v1/search",
            &serde_json::json!({ "user_id": "para1", "query": { "family_name": "Smith", "date_of_birth": "2019-03-07" } }),
        )
        .await;
    assert_eq!(refused(r, 401).await.error, "user_session_required");
    device.user_session = session;

    // The trail: every answered search, newest first, with what was entered; each person a
    // search returned has the lookup against them; "too many" returned nobody.
    let searches = c.store.searches(10).await.unwrap();
    let outcomes: Vec<TierKind> = searches.iter().map(|s| s.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            TierKind::NoMatch,
            TierKind::PossibleMatches,
            TierKind::TooMany,
            TierKind::PossibleMatches,
            TierKind::Match
        ]
    );
    assert!(searches
        .iter()
        .all(|s| s.device_id == device.id && s.user_id == "para1"));
    assert_eq!(searches[4].query.family_name, "ONEILL");
    assert_eq!(searches[2].candidates, 7);
    let trail = c.store.lookups_of(&nhs(2), 10).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].search_id, searches[3].id);
    assert!(c.store.lookups_of(&nhs(4), 10).await.unwrap().is_empty());

    // Opening a person found by search tells the LA so; an older event without the field is
    // one found by NHS number.
    let mut device = device;
    let mut by_search = device.event(nhs(1), "para1");
    by_search.found_by = FoundBy::NameAndDateOfBirth;
    let by_number = device.event(nhs(2), "para1");
    device.deliver(&[&by_search, &by_number]).await;
    let page = notifications(&c, &token, 0).await;
    let found_by: HashMap<NhsNumber, FoundBy> = page
        .notifications
        .iter()
        .map(|n| (n.nhs_number, n.found_by))
        .collect();
    assert_eq!(found_by[&nhs(1)], FoundBy::NameAndDateOfBirth);
    assert_eq!(found_by[&nhs(2)], FoundBy::NhsNumber);
    // The LA's inbox page says so too, for that notification only.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = http
        .post(format!("{}/la/L001/inbox/sign-in", c.url))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let html = http
        .get(format!("{}/la/L001/inbox", c.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(html.matches("Found by name and date of birth").count(), 1);
    c.shutdown().await;
}

async fn the_emergency_numbers_need_a_device_token_and_give_only_that_devices_region_signed(
    c: TestCentral,
) {
    c.add_la("L002", "north").await;
    c.add_la("L001", "north").await;
    c.add_la("L009", "south").await;
    let la_token = c.la_token("L001").await;
    let north = c.device("north", "RX1", CareSetting::Ambulance).await;
    let south = c.device("south", "RX2", CareSetting::Ambulance).await;

    // No credentials, an LA's token or a forged one: refused. No user sign-in is needed.
    let url = format!("{}/v1/emergency-numbers", c.url);
    refused(c.http.get(&url).send().await.unwrap(), 401).await;
    refused(
        c.http
            .get(&url)
            .bearer_auth(&la_token)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    refused(
        c.http
            .get(&url)
            .bearer_auth("forged-token-forged-token")
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;

    let r = north.get("/v1/emergency-numbers?region=south").await;
    assert_eq!(r.status(), 200);
    let signed: wire::SignedDirectory = r.json().await.unwrap();
    let directory = signed.verify(&north.central_signing).unwrap();
    assert_eq!(directory.region, Region::parse("north").unwrap());
    let listed: Vec<_> = directory
        .local_authorities
        .iter()
        .map(|la| {
            (
                la.ods.as_str(),
                la.emergency_phone.as_str(),
                la.office_phone.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("L001", "0300 555 0100", Some("0300 555 0101")),
            ("L002", "0300 555 0100", Some("0300 555 0101")),
        ],
        "the device's region only, in name order"
    );
    // Signed for what it is: a directory does not pass as a feed page.
    let as_page = wire::SignedPage {
        body: signed.body.clone(),
        signature: signed.signature.clone(),
    };
    assert!(as_page.verify(&north.central_signing).is_err());

    let signed: wire::SignedDirectory = south
        .get("/v1/emergency-numbers")
        .await
        .json()
        .await
        .unwrap();
    let directory = signed.verify(&south.central_signing).unwrap();
    assert_eq!(
        directory
            .local_authorities
            .iter()
            .map(|la| la.ods.as_str())
            .collect::<Vec<_>>(),
        ["L009"]
    );

    // A revoked device is refused like everywhere else.
    assert!(c.store.revoke_device(south.id, Utc::now()).await.unwrap());
    assert_eq!(
        refused(south.get("/v1/emergency-numbers").await, 403)
            .await
            .error,
        "device_revoked"
    );
    c.shutdown().await;
}
