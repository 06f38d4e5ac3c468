//! Updates reach a device while nobody is signed in, sealed: the background round downloads them,
//! the store's files cannot tell anyone what they hold, and they open at the next sign-in, even one
//! made without a connection.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cpis_core::NhsNumber;
use cpis_device::views::{CheckOutcome, Source};
use cpis_device::{CheckRequest, Device, DeviceConfig};
use cpis_tests::CentralProcess;

const HEADER: &str = "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date\n";
const LA: &str = "L911";

fn person(i: u32) -> NhsNumber {
    NhsNumber::test_range(710_000 + i)
}

fn import(central: &CentralProcess, dir: &Path, people: std::ops::Range<u32>) {
    let mut csv = String::from(HEADER);
    for i in people {
        csv.push_str(&format!(
            "{},Sealedfamily{i},Sealedgiven{i},2018-03-04,CPPI,2025-01-02,,,,\n",
            person(i).as_digits()
        ));
    }
    let file = dir.join("list.csv");
    std::fs::write(&file, csv).unwrap();
    central.admin(&["import", "--la", LA, file.to_str().unwrap()], &[]);
}

/// Every byte of every file in the device's data directory (database, WAL, keys).
fn stored_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_file() {
            all.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A running central with three people, and a device that enrolled, signed in, synced and signed
/// out again.
async fn synced_then_signed_out() -> (tempfile::TempDir, CentralProcess, PathBuf, Device) {
    let tmp = tempfile::tempdir().unwrap();
    let mut central = CentralProcess::sqlite_in(tmp.path());
    central.add_la(LA, "Sealby Council", "0300 555 0711", None, "region-s");
    import(&central, tmp.path(), 0..3);
    central.add_user("seal.user", "RXS", "B0107", "Clinician", "2718");
    let code = central.enrolment_code(&[
        "--region",
        "region-s",
        "--org",
        "RXS",
        "--setting",
        "ambulance",
    ]);
    central.start();
    let dir = tmp.path().join("device");
    let mut config = DeviceConfig::new(&dir);
    config.request_timeout = Duration::from_secs(2);
    let device = Device::open(config).unwrap();
    device.enrol(&central.url(), &code).await.unwrap();
    device.sign_in("seal.user", "2718").await.unwrap();
    device.sync(&|_| {}).await.unwrap();
    device.sign_out();
    (tmp, central, dir, device)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_downloaded_with_nobody_signed_in_stay_sealed_and_open_at_an_offline_sign_in() {
    let (tmp, mut central, dir, device) = synced_then_signed_out().await;

    // The LA adds two people while nobody is signed in; the background round still downloads.
    import(&central, tmp.path(), 0..5);
    let summary = device.sync(&|_| {}).await.unwrap();
    let skipped = summary.pull_skipped.unwrap_or_default();
    assert!(skipped.contains("applied at the next sign-in"), "{skipped}");
    // What it downloaded says nothing to whoever has the device's files.
    let bytes = stored_bytes(&dir);
    for i in 3..5 {
        for secret in [
            person(i).as_digits(),
            person(i).to_string(),
            format!("Sealedfamily{i}"),
            format!("Sealedgiven{i}"),
        ] {
            assert!(!contains(&bytes, &secret), "the store shows {secret}");
        }
    }

    // No connection now: an offline sign-in opens what was downloaded.
    central.kill();
    device.sign_in("seal.user", "2718").await.unwrap();
    let view = device
        .check(&person(4).as_digits(), CheckRequest::default())
        .await;
    assert_eq!(view.outcome, CheckOutcome::RecordFound, "{view:?}");
    assert_eq!(view.source, Source::Cache);
    let opened = device.open_alert(view.check_id).await.unwrap();
    assert_eq!(opened.person.unwrap().family_name, "Sealedfamily4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_signed_in_without_a_connection_says_the_national_register_was_not_asked() {
    let (_tmp, mut central, _dir, device) = synced_then_signed_out().await;

    // Signed in while the central is away, then the link returns: the check answers from the copy
    // and says the register was not asked, since only an online sign-in opens a user session.
    central.kill();
    device.sign_in("seal.user", "2718").await.unwrap();
    central.start();
    assert!(device.probe().await, "the central is back");
    let view = device
        .check(&person(1).as_digits(), CheckRequest::default())
        .await;
    assert_eq!(view.outcome, CheckOutcome::RecordFound);
    assert_eq!(view.source, Source::Cache);
    assert!(
        view.caveats
            .iter()
            .any(|c| c.contains("national register was not asked")),
        "{:?}",
        view.caveats
    );
}
