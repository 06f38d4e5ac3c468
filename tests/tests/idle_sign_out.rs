//! The engine's own idle limit: a signed-in user who stops using the device is signed out by the
//! engine, whatever the screen does; reading the status never counts as use, keep-alive does.

use std::time::Duration;

use cpis_core::NhsNumber;
use cpis_device::views::CheckOutcome;
use cpis_device::{CheckRequest, Device, DeviceConfig};
use cpis_tests::CentralProcess;

const HEADER: &str = "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_signs_out_an_idle_user_even_when_the_screen_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let mut central = CentralProcess::sqlite_in(tmp.path());
    central.add_la("L931", "Idle Borough", "0300 555 0931", None, "region-i");
    let child = NhsNumber::test_range(831_001);
    let file = tmp.path().join("upload.csv");
    std::fs::write(
        &file,
        format!(
            "{HEADER}{},Idle,Sam,2018-03-04,CPPI,2025-01-02,,,,\n",
            child.as_digits()
        ),
    )
    .unwrap();
    central.admin(&["import", "--la", "L931", file.to_str().unwrap()], &[]);
    central.add_user("idle.user", "RXI", "B0107", "Paramedic", "2468");
    let code = central.enrolment_code(&[
        "--region",
        "region-i",
        "--org",
        "RXI",
        "--setting",
        "ambulance",
    ]);
    central.start();
    let mut config = DeviceConfig::new(tmp.path().join("device"));
    config.idle_sign_out = Duration::from_secs(2);
    let device = Device::open(config).unwrap();
    device.enrol(&central.url(), &code).await.unwrap();
    device.sign_in("idle.user", "2468").await.unwrap();
    device.sync(&|_| {}).await.unwrap();
    let offline = CheckRequest {
        cache_only: true,
        ..Default::default()
    };
    let digits = child.as_digits();
    assert_eq!(
        device.check(&digits, offline.clone()).await.outcome,
        CheckOutcome::RecordFound
    );

    // Kept alive past the limit, the user stays signed in.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        device.keep_alive().unwrap();
    }
    assert_eq!(
        device.check(&digits, offline.clone()).await.outcome,
        CheckOutcome::RecordFound
    );

    // Only the status is read (as the screen polls it): that is not use, and the engine signs out.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = device.status();
    }
    let view = device.check(&digits, offline).await;
    assert_eq!(view.outcome, CheckOutcome::Locked);
    assert!(
        view.reason
            .as_deref()
            .unwrap_or("")
            .contains("not used for"),
        "{:?}",
        view.reason
    );
    assert!(device.status().signed_in_user.is_none());
    assert!(
        device.keep_alive().is_err(),
        "keep-alive cannot revive an ended session"
    );
}
