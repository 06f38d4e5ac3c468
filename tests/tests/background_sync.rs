//! The outbox must drain on its own — at start, on a timer, on reconnection — never only when the
//! next local write happens (the most-reported bug of upload queues in offline-first sync engines).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cpis_core::NhsNumber;
use cpis_device::views::NotificationState;
use cpis_device::{spawn_background_sync, CheckRequest, Device, DeviceConfig};
use cpis_tests::CentralProcess;

const HEADER: &str = "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date\n";

fn delivered_ids(central: &CentralProcess) -> Vec<String> {
    let list = central.notifications("L905");
    list.iter()
        .map(|n| n["event_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_drains_after_reconnect_without_a_new_local_write() {
    let tmp = tempfile::tempdir().unwrap();
    let mut central = CentralProcess::sqlite_in(tmp.path());
    central.add_la(
        "L905",
        "Background Borough",
        "0300 555 0590",
        None,
        "region-g",
    );
    let person = NhsNumber::test_range(400_001).as_digits();
    let file = tmp.path().join("g.csv");
    std::fs::write(
        &file,
        format!("{HEADER}{person},Testcase,Lee,2020-01-01,CPPI,2025-01-01,,,,\n"),
    )
    .unwrap();
    central.admin(&["import", "--la", "L905", file.to_str().unwrap()], &[]);
    central.add_user("bg.user", "RXG", "B0107", "Clinician", "9876");
    let code = central.enrolment_code(&[
        "--region",
        "region-g",
        "--org",
        "RXG",
        "--setting",
        "minor-injuries",
    ]);
    central.start();

    let mut config = DeviceConfig::new(tmp.path().join("device"));
    config.request_timeout = Duration::from_secs(2);
    let device = Device::open(config).unwrap();
    device.enrol(&central.url(), &code).await.unwrap();
    device.sign_in("bg.user", "9876").await.unwrap();
    device.sync(&|_| {}).await.unwrap();

    // Offline: the alert is opened and its notification queued.
    central.kill();
    let view = device
        .check(
            &person,
            CheckRequest {
                open: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(view.notification, Some(NotificationState::Queued));
    let id = view.event_id.unwrap().to_string();

    // The background worker runs; the central comes back; nobody touches the device again.
    let device = Arc::new(device);
    let worker = spawn_background_sync(device.clone(), Arc::new(|_| {}));
    tokio::time::sleep(Duration::from_secs(2)).await;
    central.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ids = tokio::task::block_in_place(|| delivered_ids(&central));
        if ids.contains(&id) {
            assert_eq!(ids.iter().filter(|i| **i == id).count(), 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queued notification was not delivered after reconnection"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(device.status().queued_events, 0);
    worker.abort();
}
