//! Offline access ends: past the lease the cache does not open and the answer says to phone the LA's
//! emergency duty team; a revoked device is wiped at its next contact and says why.

use std::time::Duration;

use cpis_core::NhsNumber;
use cpis_device::views::{CheckOutcome, NotificationState};
use cpis_device::{CheckRequest, Device, DeviceConfig};
use cpis_tests::{run_cpis, run_cpis_status, CentralProcess};
use serde_json::Value;

const HEADER: &str = "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date\n";

fn central_with_one_person(
    tmp: &std::path::Path,
    region: &str,
    la: &str,
) -> (CentralProcess, String, String) {
    let central = CentralProcess::sqlite_in(tmp);
    central.add_la(la, "Leaseby Council", "0300 555 0690", None, region);
    let person = NhsNumber::test_range(300_003).as_digits();
    let file = tmp.join("l.csv");
    std::fs::write(
        &file,
        format!("{HEADER}{person},Testlease,Kim,2020-01-01,LACI,2025-01-01,,,,\n"),
    )
    .unwrap();
    central.admin(&["import", "--la", la, file.to_str().unwrap()], &[]);
    central.add_user("lease.user", "RXL", "B0107", "Clinician", "3141");
    let code =
        central.enrolment_code(&["--region", region, "--org", "RXL", "--setting", "ambulance"]);
    (central, code, person)
}

fn device_at(dir: &std::path::Path, clock_offset: chrono::Duration) -> Device {
    let mut config = DeviceConfig::new(dir);
    config.request_timeout = Duration::from_secs(2);
    config.clock_offset = clock_offset;
    Device::open(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_lease_the_cache_is_locked_offline_and_queued_events_still_send() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut central, code, person) = central_with_one_person(tmp.path(), "region-l", "L906");
    central.admin(&["region", "--name", "region-l", "--lease-hours", "2"], &[]);
    central.start();
    let dir = tmp.path().join("device");
    let device = device_at(&dir, chrono::Duration::zero());
    device.enrol(&central.url(), &code).await.unwrap();
    device.sign_in("lease.user", "3141").await.unwrap();
    device.sync(&|_| {}).await.unwrap();
    central.kill();

    // Within the lease, offline: the cache answers and the notification queues.
    let view = device
        .check(
            &person,
            CheckRequest {
                open: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(view.outcome, CheckOutcome::RecordFound);
    assert_eq!(view.notification, Some(NotificationState::Queued));
    let event = view.event_id.unwrap().to_string();
    drop(device);

    // Three hours later, still offline: the cache does not open, even with the right PIN.
    let later = device_at(&dir, chrono::Duration::hours(3));
    let err = later
        .sign_in("lease.user", "3141")
        .await
        .expect_err("the lease has run out");
    assert_eq!(err.view().code, "lease_expired", "{err}");
    let view = later.check(&person, CheckRequest::default()).await;
    assert_eq!(view.outcome, CheckOutcome::Locked);
    assert!(view
        .caveats
        .iter()
        .any(|c| c.contains("emergency duty team")));
    // The queued notification survives and goes as soon as the central answers, with no sign-in.
    central.start();
    let summary = later.sync(&|_| {}).await.unwrap();
    assert_eq!(summary.events_delivered, 1);
    assert!(summary.pull_skipped.is_some());
    let notes = central.admin(&["notifications", "--la", "L906", "--json"], &[]);
    assert!(notes.contains(&event));
    // An online sign-in restores the cache. (The offset stood for time passing: the central's clock
    // does not move with it, so the device returns to real time for the new lease.)
    drop(later);
    let restored = device_at(&dir, chrono::Duration::zero());
    restored.sign_in("lease.user", "3141").await.unwrap();
    restored.sync(&|_| {}).await.unwrap();
    let view = restored.check(&person, CheckRequest::default()).await;
    assert_eq!(view.outcome, CheckOutcome::RecordFound);
}

#[test]
fn a_revoked_device_hands_in_its_queued_events_then_is_wiped_at_its_next_contact_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut central, code, person) = central_with_one_person(tmp.path(), "region-r", "L907");
    central.start();
    let dir = tmp.path().join("device").to_string_lossy().to_string();
    let pin = [("CPIS_PIN", "3141")];
    run_cpis(
        &[
            "device",
            "--data-dir",
            &dir,
            "enrol",
            "--central",
            &central.url(),
            "--code",
            &code,
        ],
        &[],
    );
    run_cpis(
        &["device", "--data-dir", &dir, "sync", "--user", "lease.user"],
        &pin,
    );
    let status: Value = serde_json::from_str(&run_cpis(
        &["device", "--data-dir", &dir, "status", "--json"],
        &[],
    ))
    .unwrap();
    let device_id = status["device_id"].as_str().unwrap().to_string();
    assert_eq!(status["cached_flags"], 1);
    let listed = central.admin(&["devices", "--json"], &[]);
    assert!(
        listed.contains(&device_id),
        "the central lists the enrolled device"
    );

    // Offline, an alert is opened: its notification waits in the outbox.
    central.kill();
    let (_, out, _) = run_cpis_status(
        &[
            "device",
            "--data-dir",
            &dir,
            "check",
            &person,
            "--user",
            "lease.user",
            "--open",
            "--json",
        ],
        &pin,
    );
    let view: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["notification"], "queued", "{view}");
    let event = view["event_id"].as_str().unwrap().to_string();

    // The device is revoked while away; at its next contact the queued event still reaches the LA.
    central.admin(&["revoke-device", "--device", &device_id], &[]);
    central.start();
    let (code, _, _) = run_cpis_status(
        &[
            "device",
            "--data-dir",
            &dir,
            "sync",
            "--user",
            "lease.user",
            "--json",
        ],
        &pin,
    );
    assert_ne!(code, Some(0), "a revoked device's sync fails");
    let status: Value = serde_json::from_str(&run_cpis(
        &["device", "--data-dir", &dir, "status", "--json"],
        &[],
    ))
    .unwrap();
    assert_eq!(status["cached_flags"], 0, "the cache is wiped");
    assert_eq!(status["queued_events"], 0);
    let notes = central.admin(&["notifications", "--la", "L907", "--json"], &[]);
    assert!(
        notes.contains(&event),
        "the event recorded before revocation was delivered"
    );
    assert!(
        status["wiped_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{status}"
    );
    let (code, out, _) = run_cpis_status(
        &[
            "device",
            "--data-dir",
            &dir,
            "check",
            &person,
            "--user",
            "lease.user",
            "--json",
        ],
        &pin,
    );
    assert_eq!(code, Some(5), "{out}");
    let view: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["outcome"], "locked");
}
