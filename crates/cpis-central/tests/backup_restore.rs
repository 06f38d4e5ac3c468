//! Backup under load and restore of the embedded SQLite database, over real HTTP: devices keep
//! pushing access events while the backup is taken and after it, the register changes after it,
//! and after the restore the devices resume with nothing lost and nothing doubled.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use cpis_central::backup;
use cpis_central::store::{SqliteStore, Store, WebhookChange};
use cpis_central::{spawn_with_store, CentralConfig, RunningCentral};
use cpis_core::wire::EventStatus;
use cpis_core::{AccessEvent, CareSetting, OdsCode, Region};

async fn serve(store: Arc<dyn Store>, addr: Option<std::net::SocketAddr>) -> RunningCentral {
    let mut config = CentralConfig::new("unused");
    config.background_tasks = false;
    if let Some(addr) = addr {
        config.listen = addr;
    }
    spawn_with_store(store, config).await.unwrap()
}

/// Pushes `rounds` batches of 10 events (people 0..40 in turn), returning every event it made.
async fn push_rounds(device: &mut TestDevice, rounds: u32) -> Vec<AccessEvent> {
    let mut made = Vec::new();
    for round in 0..rounds {
        let events: Vec<AccessEvent> = (0..10)
            .map(|i| device.event(nhs((round * 10 + i) % 40), "para1"))
            .collect();
        let result = device.deliver(&events.iter().collect::<Vec<_>>()).await;
        assert!(result
            .results
            .iter()
            .all(|r| r.status == EventStatus::Accepted));
        made.extend(events);
    }
    made
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_load_restores_to_a_central_whose_devices_resume_with_nothing_lost() {
    let Some((store, dir, _)) = fresh_store(Backend::Sqlite).await else {
        return;
    };
    let db = dir.path().join("central.sqlite");
    let running = serve(store.clone(), None).await;
    let url = running.url();
    let addr = running.addr;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let central = running.central.clone();
    central
        .upsert_la(&la("L001", "north"), WebhookChange::Keep)
        .await
        .unwrap();
    let ods = OdsCode::parse("L001").unwrap();
    central
        .import(&ods, csv_of(0..50).as_bytes(), false)
        .await
        .unwrap();
    let mut devices = Vec::new();
    for org in ["RX1", "RX2"] {
        let code = central
            .create_enrolment(
                &Region::parse("north").unwrap(),
                &OdsCode::parse(org).unwrap(),
                "Synthetic Trust",
                CareSetting::Ambulance,
                chrono::Duration::hours(1),
            )
            .await
            .unwrap()
            .code;
        let mut d = TestDevice::enrol(&http, &url, &code).await.unwrap();
        d.authenticate(&http, &url).await.unwrap();
        d.feed_key = Some(central.keys.feed_key(&Region::parse("north").unwrap()));
        devices.push(d);
    }
    let mut caches = [Cache::default(), Cache::default()];
    for (d, cache) in devices.iter().zip(caches.iter_mut()) {
        d.pull(cache, 20).await;
    }

    // Both devices push while the backup is taken.
    let backup_file = dir.path().join("backup.sqlite");
    let mut pushers = Vec::new();
    for mut d in devices.drain(..) {
        pushers.push(tokio::spawn(async move {
            let made = push_rounds(&mut d, 15).await;
            (d, made)
        }));
    }
    let (db_c, to) = (db.clone(), backup_file.clone());
    let taken = tokio::task::spawn_blocking(move || backup::backup(&db_c, &to))
        .await
        .unwrap()
        .unwrap();
    let mut made: Vec<AccessEvent> = Vec::new();
    for p in pushers {
        let (d, m) = p.await.unwrap();
        devices.push(d);
        made.extend(m);
    }
    assert!(
        taken.access_events < made.len() as u64,
        "the backup was taken while events were still arriving ({} of {})",
        taken.access_events,
        made.len()
    );
    // More after the backup: events, and a register change (people 40..50 removed, 60..70 added)
    // that device 0 applies and device 1 does not.
    made.extend(push_rounds(&mut devices[0], 3).await);
    let upload: Vec<u32> = (0..40).chain(60..70).collect();
    central
        .import(&ods, csv_of(upload).as_bytes(), true)
        .await
        .unwrap();
    devices[0].pull(&mut caches[0], 20).await;
    assert!(caches[0].flags.contains_key(&nhs(65).as_digits()));
    let total = made.len() as u64;
    assert_eq!(store.event_count().await.unwrap(), total);

    // The central stops; the database is restored from the backup; the central starts again.
    drop(central);
    running.shutdown().await.unwrap();
    drop(store);
    let (from, to) = (backup_file.clone(), db.clone());
    let restored = tokio::task::spawn_blocking(move || backup::restore(&from, &to))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        restored.events_carried_over,
        total - taken.access_events,
        "events accepted after the backup are carried over from the replaced database"
    );
    assert!(restored.removals_published >= 10);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).await.unwrap());
    let running = serve(store.clone(), Some(addr)).await;

    // Nothing lost, nothing doubled: every event is held once and notified once, and a device that
    // sends everything again (as one that never heard the answers would) gets only duplicates.
    assert_eq!(store.event_count().await.unwrap(), total);
    assert_eq!(store.notification_count().await.unwrap(), total);
    let mut again = HashSet::new();
    for d in devices.iter_mut() {
        d.authenticate(&http, &url).await.unwrap();
    }
    for d in &devices {
        let mine: Vec<&AccessEvent> = made.iter().filter(|e| e.device_id == d.id).collect();
        for chunk in mine.chunks(100) {
            for r in d.deliver(chunk).await.results {
                assert_eq!(r.status, EventStatus::Duplicate, "{r:?}");
                again.insert(r.id);
            }
        }
    }
    assert_eq!(again.len() as u64, total);
    assert_eq!(store.notification_count().await.unwrap(), total);

    // Both devices converge on the restored register from wherever their cursor was: device 0 had
    // applied the change the backup does not hold, device 1 had not.
    let north = Region::parse("north").unwrap();
    let digest = store.region_digest(&north).await.unwrap();
    for (d, cache) in devices.iter().zip(caches.iter_mut()) {
        d.pull(cache, 20).await;
        assert_eq!(cache.digest(), digest, "device {}", d.id);
    }
    assert!(caches[0].flags.contains_key(&nhs(45).as_digits()));
    assert!(!caches[0].flags.contains_key(&nhs(65).as_digits()));
    running.shutdown().await.unwrap();
}
