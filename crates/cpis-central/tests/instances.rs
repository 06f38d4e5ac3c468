//! Several central instances on one database, on SQLite and on PostgreSQL: webhook deliveries
//! claimed by one instance at a time (and taken over when a claim lapses), a device served by any
//! instance mid-conversation, its last contact kept in the store; feed pages with entity tags; the
//! readiness check; metrics on the admin listener only.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use common::*;
use cpis_central::store::{
    DeliveryOutcome, PendingDelivery, PostgresStore, SqliteStore, Store, WebhookChange,
};
use cpis_central::{spawn_with_store, Central, CentralConfig};
use cpis_core::wire::{EventBatch, SignedPage};
use cpis_core::{AccessEvent, Accessor, Activity, CareSetting, OdsCode};
use uuid::Uuid;

/// A second handle on the same database, as another instance would open it.
async fn another_instance(
    backend: Backend,
    dir: &tempfile::TempDir,
    pg: &Option<PgSchema>,
) -> Arc<dyn Store> {
    match backend {
        Backend::Sqlite => Arc::new(
            SqliteStore::open(dir.path().join("central.sqlite"))
                .await
                .unwrap(),
        ),
        Backend::Postgres => Arc::new(
            PostgresStore::connect(&postgres_url(), Some(&pg.as_ref().unwrap().name))
                .await
                .unwrap(),
        ),
    }
}

/// `n` notifications waiting for L001's webhook (people 0..n on the register, each opened once).
async fn notifications_waiting(store: &Arc<dyn Store>, n: u32) {
    let central = Central::new(store.clone()).await.unwrap();
    central
        .upsert_la(
            &la("L001", "north"),
            WebhookChange::Set(Some("http://127.0.0.1:9/hook".into())),
        )
        .await
        .unwrap();
    central
        .import(
            &OdsCode::parse("L001").unwrap(),
            csv_of(0..n).as_bytes(),
            false,
        )
        .await
        .unwrap();
    let accessor = Accessor {
        user_id: "para1".into(),
        role: "Paramedic".into(),
        activity: Activity::B0107,
        org_ods: OdsCode::parse("RX1").unwrap(),
        org_name: "Synthetic Ambulance Service".into(),
        setting: CareSetting::Ambulance,
    };
    let device = Uuid::now_v7();
    let events: Vec<AccessEvent> = (0..n)
        .map(|i| {
            AccessEvent::new(
                device,
                u64::from(i) + 1,
                Utc::now(),
                0,
                nhs(i),
                accessor.clone(),
                None,
            )
        })
        .collect();
    let intake = central.event_intake(events, Utc::now()).await.unwrap();
    store.ingest_events(intake, Utc::now()).await.unwrap();
    assert_eq!(store.notification_count().await.unwrap(), u64::from(n));
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both!(
    two_instances_claiming_at_once_never_get_the_same_delivery,
    a_lapsed_claim_is_taken_over_and_its_late_holder_cannot_overwrite_the_outcome,
    a_device_is_served_by_any_instance_mid_conversation_and_its_contact_is_written_once_a_minute,
    feed_pages_carry_an_entity_tag_and_an_unchanged_page_is_answered_304,
    readiness_fails_when_the_database_lacks_a_migration_this_central_knows,
    metrics_are_served_on_the_admin_listener_and_never_on_the_public_port,
);

async fn two_instances_claiming_at_once_never_get_the_same_delivery(backend: Backend) {
    let Some((a, dir, pg)) = fresh_store(backend).await else {
        return;
    };
    let b = another_instance(backend, &dir, &pg).await;
    notifications_waiting(&a, 120).await;
    // Four claimers, two per instance, each taking small batches until nothing is left.
    let mut tasks = Vec::new();
    for store in [a.clone(), a.clone(), b.clone(), b.clone()] {
        tasks.push(tokio::spawn(async move {
            let mut mine: Vec<(String, u64)> = Vec::new();
            loop {
                let now = Utc::now();
                let batch = store
                    .claim_deliveries(now, now + Duration::minutes(5), 7)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.iter().map(|d| (d.la.to_string(), d.seq)));
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(
        all.len(),
        distinct.len(),
        "a delivery was handed to two claimers"
    );
    assert_eq!(distinct.len(), 120, "every delivery was claimed once");
}

async fn a_lapsed_claim_is_taken_over_and_its_late_holder_cannot_overwrite_the_outcome(
    backend: Backend,
) {
    let Some((a, dir, pg)) = fresh_store(backend).await else {
        return;
    };
    let b = another_instance(backend, &dir, &pg).await;
    notifications_waiting(&a, 5).await;
    let t0 = Utc::now();
    let claimed_by_a: Vec<PendingDelivery> = a
        .claim_deliveries(t0, t0 + Duration::seconds(60), 100)
        .await
        .unwrap();
    assert_eq!(claimed_by_a.len(), 5);
    // While A's claim lasts, B gets nothing (A may be posting right now).
    let early = t0 + Duration::seconds(30);
    assert!(b
        .claim_deliveries(early, early + Duration::seconds(60), 100)
        .await
        .unwrap()
        .is_empty());
    // A crashed: once its claim lapses, B takes every delivery over.
    let late = t0 + Duration::seconds(61);
    let taken_over = b
        .claim_deliveries(late, late + Duration::seconds(60), 100)
        .await
        .unwrap();
    let ids = |v: &[PendingDelivery]| {
        v.iter()
            .map(|d| d.notification.event_id)
            .collect::<HashSet<_>>()
    };
    assert_eq!(ids(&taken_over), ids(&claimed_by_a));
    let first = &taken_over[0];
    assert!(b
        .record_delivery(first, DeliveryOutcome::Delivered { at: late })
        .await
        .unwrap());
    // A comes back late with a failure for the same notification: it no longer holds the claim,
    // and the delivery stays delivered (it is not sent again).
    let stale = claimed_by_a
        .iter()
        .find(|d| d.notification.event_id == first.notification.event_id)
        .unwrap();
    assert!(!a
        .record_delivery(
            stale,
            DeliveryOutcome::Retry {
                attempts: 1,
                next_attempt_at: late,
                error: "timed out".into(),
            },
        )
        .await
        .unwrap());
    let (state, _) = a
        .delivery_state(first.notification.event_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state, "delivered");
    // A retry recorded by the holder releases the claim: the delivery is due again at its time.
    let second = &taken_over[1];
    let retry_at = late + Duration::seconds(5);
    assert!(b
        .record_delivery(
            second,
            DeliveryOutcome::Retry {
                attempts: 1,
                next_attempt_at: retry_at,
                error: "503".into(),
            },
        )
        .await
        .unwrap());
    let again = a
        .claim_deliveries(retry_at, retry_at + Duration::seconds(60), 100)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].notification.event_id, second.notification.event_id);
    assert_eq!(again[0].attempts, 1);
}

async fn start_instance(store: Arc<dyn Store>) -> cpis_central::RunningCentral {
    let mut config = CentralConfig::new("unused");
    config.background_tasks = false;
    spawn_with_store(store, config).await.unwrap()
}

async fn a_device_is_served_by_any_instance_mid_conversation_and_its_contact_is_written_once_a_minute(
    backend: Backend,
) {
    let Some((a, dir, pg)) = fresh_store(backend).await else {
        return;
    };
    let b = another_instance(backend, &dir, &pg).await;
    let one = start_instance(a.clone()).await;
    let two = start_instance(b.clone()).await;
    let http = reqwest::Client::new();
    one.central
        .upsert_la(&la("L001", "north"), WebhookChange::Keep)
        .await
        .unwrap();
    let code = one
        .central
        .create_enrolment(
            &cpis_core::Region::parse("north").unwrap(),
            &OdsCode::parse("RX1").unwrap(),
            "Synthetic Trust",
            CareSetting::Ambulance,
            Duration::hours(1),
        )
        .await
        .unwrap()
        .code;
    // Enrolled and challenged at one instance, the challenge answered at the other.
    let mut device = TestDevice::enrol(&http, &one.url(), &code).await.unwrap();
    let challenge: cpis_core::wire::ChallengeResponse =
        device.challenge().await.json().await.unwrap();
    let signature = cpis_core::crypto::hazmat::ed25519_sign(
        &device.key,
        &cpis_core::wire::auth_message(device.id, &challenge.challenge),
    )
    .unwrap();
    use base64::Engine;
    let r = http
        .post(format!("{}/v1/auth/token", two.url()))
        .json(&cpis_core::wire::TokenRequest {
            device_id: device.id,
            challenge: challenge.challenge,
            signature: base64::engine::general_purpose::STANDARD.encode(signature),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the token is issued by the other instance");
    device.token = r
        .json::<cpis_core::wire::TokenResponse>()
        .await
        .unwrap()
        .token;
    // The token from the second instance opens the feed at the first, and at the second; a user
    // signed in at the first is signed in at the second (the session is the store's).
    one.central
        .add_user(
            "para1",
            "Synthetic Clinician",
            "Paramedic",
            cpis_core::Activity::B0107,
            &OdsCode::parse("RX1").unwrap(),
            TEST_PIN,
        )
        .await
        .unwrap();
    device.url = one.url();
    device.sign_in("para1").await;
    for url in [one.url(), two.url()] {
        device.url = url;
        let page = device.page(0, 100).await;
        assert_eq!(page.region.as_str(), "north");
        let check = serde_json::json!({ "nhs_number": nhs(1), "unscheduled": false });
        assert_eq!(device.post("/v1/check", &check).await.status(), 200);
    }
    let seen = a.device(device.id).await.unwrap().unwrap().last_seen;
    assert!(seen.is_some(), "the contact is recorded in the store");
    // The store writes a contact only when the stored one is older than the interval, whichever
    // instance asks.
    let now = Utc::now() + Duration::seconds(10);
    assert!(!b
        .touch_device(device.id, now, now - Duration::minutes(1))
        .await
        .unwrap());
    let later = Utc::now() + Duration::minutes(2);
    assert!(a
        .touch_device(device.id, later, later - Duration::minutes(1))
        .await
        .unwrap());
    assert!(!b
        .touch_device(device.id, later, later - Duration::minutes(1))
        .await
        .unwrap());
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

async fn feed_pages_carry_an_entity_tag_and_an_unchanged_page_is_answered_304(backend: Backend) {
    let Some(c) = TestCentral::start(backend).await else {
        return;
    };
    c.add_la("L001", "north").await;
    c.add_la("L002", "south").await;
    let token = c.la_token("L001").await;
    let r = c.upload("L001", &token, &csv_of(0..5), false).await;
    assert_eq!(r.status(), 200);
    let north = c.device("north", "RX1", CareSetting::Ambulance).await;
    let south = c.device("south", "RX2", CareSetting::Ambulance).await;
    let get = |d: &TestDevice, etag: Option<&str>| {
        let mut req = d
            .http
            .get(format!("{}/v1/feed?after=0&limit=100", d.url))
            .bearer_auth(&d.token);
        if let Some(t) = etag {
            req = req.header("if-none-match", t);
        }
        req.send()
    };
    let first = get(&north, None).await.unwrap();
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let cache = first.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cache.contains("private") && cache.contains("no-cache"),
        "{cache}"
    );
    let body: SignedPage = first.json().await.unwrap();
    assert!(!body.body.is_empty());
    // The same page asked again with its tag: not sent again.
    let again = get(&north, Some(&etag)).await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    // Another region's device asking the same URL with that tag gets its own page, in full.
    let other = get(&south, Some(&etag)).await.unwrap();
    assert_eq!(other.status(), 200);
    assert_ne!(other.headers()["etag"].to_str().unwrap(), etag);
    // A change to the region makes the old tag stale.
    let r = c.upload("L001", &token, &csv_of(0..6), false).await;
    assert_eq!(r.status(), 200);
    let changed = get(&north, Some(&etag)).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    c.shutdown().await;
}

async fn readiness_fails_when_the_database_lacks_a_migration_this_central_knows(backend: Backend) {
    let Some(c) = TestCentral::start(backend).await else {
        return;
    };
    let ready = || async {
        let r = c
            .http
            .get(format!("{}/v1/ready", c.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.unwrap())
    };
    let (status, body) = ready().await;
    assert_eq!(status, 200, "{body}");
    // The database goes back to an older schema (e.g. restored from an old copy underneath).
    let sql = "DELETE FROM schema_migrations WHERE name = '0008_delivery_claims.sql'";
    match backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(c.dir.path().join("central.sqlite")).unwrap();
            conn.execute(sql, []).unwrap();
        }
        Backend::Postgres => {
            let (client, conn) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let schema = c.schema_name().unwrap();
            client
                .batch_execute(&format!("SET search_path = {schema}; {sql}"))
                .await
                .unwrap();
        }
    }
    let (status, body) = ready().await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("0008_delivery_claims.sql"),
        "{body}"
    );
    c.shutdown().await;
}

async fn metrics_are_served_on_the_admin_listener_and_never_on_the_public_port(backend: Backend) {
    let Some((store, _dir, _pg)) = fresh_store(backend).await else {
        return;
    };
    let mut config = CentralConfig::new("unused");
    config.background_tasks = false;
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let running = spawn_with_store(store.clone(), config).await.unwrap();
    let http = reqwest::Client::new();
    running
        .central
        .upsert_la(
            &la("L001", "north"),
            WebhookChange::Set(Some("http://127.0.0.1:9/hook".into())),
        )
        .await
        .unwrap();
    let token = running
        .central
        .create_la_token(&OdsCode::parse("L001").unwrap())
        .await
        .unwrap();
    let r = http
        .post(format!("{}/v1/la/L001/upload", running.url()))
        .bearer_auth(&token)
        .body(csv_of(0..3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let code = running
        .central
        .create_enrolment(
            &cpis_core::Region::parse("north").unwrap(),
            &OdsCode::parse("RX1").unwrap(),
            "Synthetic Trust",
            CareSetting::Ambulance,
            Duration::hours(1),
        )
        .await
        .unwrap()
        .code;
    let mut device = TestDevice::enrol(&http, &running.url(), &code)
        .await
        .unwrap();
    device.authenticate(&http, &running.url()).await.unwrap();
    device.feed_key = Some(
        running
            .central
            .keys
            .feed_key(&cpis_core::Region::parse("north").unwrap()),
    );
    device.page(0, 100).await;
    let e = device.event(nhs(1), "para1");
    let r = device
        .post(
            "/v1/events",
            &EventBatch {
                events: vec![device.seal(&e)],
            },
        )
        .await;
    assert_eq!(r.status(), 200);

    let public = http
        .get(format!("{}/metrics", running.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404, "metrics are never on the public port");
    let admin = running.admin_addr.expect("an admin listener");
    let text = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "cpis_http_requests_total{route=\"/v1/feed\",method=\"GET\",status=\"200\"}",
        "cpis_http_request_duration_seconds_bucket{route=\"/v1/events\",method=\"POST\"",
        "cpis_events_ingested_total",
        "cpis_notifications_pending",
        "cpis_notifications_failed",
        "cpis_notification_oldest_pending_seconds",
        "cpis_feed_head{region=\"north\"}",
        "cpis_store_errors_total",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(!text.contains(&nhs(1).as_digits()), "no personal data");
    running.shutdown().await.unwrap();
}
