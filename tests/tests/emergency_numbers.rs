//! A device whose copy cannot be opened still gives the emergency numbers: the region's local
//! authorities and their duty numbers arrive signed by the central with the device token alone,
//! are kept in clear, and are refused when the kept copy has been altered.

use std::time::Duration;

use cpis_core::crypto::hazmat;
use cpis_core::wire::{EmergencyContact, EmergencyDirectory, SignedDirectory};
use cpis_core::Region;
use cpis_device::{Device, DeviceConfig};
use cpis_tests::{run_cpis_status, CentralProcess};

fn device_at(dir: &std::path::Path, clock_offset: chrono::Duration) -> Device {
    let mut config = DeviceConfig::new(dir);
    config.request_timeout = Duration::from_secs(2);
    config.clock_offset = clock_offset;
    Device::open(config).unwrap()
}

fn listed(device: &Device) -> Vec<(String, String, String)> {
    device
        .emergency_numbers()
        .unwrap()
        .local_authorities
        .into_iter()
        .map(|la| (la.ods, la.name, la.emergency_phone))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_never_signed_in_or_past_its_lease_still_lists_its_regions_emergency_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut central = CentralProcess::sqlite_in(tmp.path());
    central.add_la(
        "E801",
        "Northbrook Council",
        "0300 555 0801",
        Some("0300 555 0811"),
        "region-e",
    );
    central.add_la("E802", "Avonley Council", "0300 555 0802", None, "region-e");
    central.add_la(
        "W901",
        "Westerby Council",
        "0300 555 0901",
        None,
        "region-w",
    );
    central.admin(&["region", "--name", "region-e", "--lease-hours", "2"], &[]);
    central.add_user("duty.user", "RXE", "B0107", "Clinician", "2718");
    let code = central.enrolment_code(&[
        "--region",
        "region-e",
        "--org",
        "RXE",
        "--setting",
        "ambulance",
    ]);
    central.start();

    // Enrolled, nobody has ever signed in: the region's LAs are there, in name order, and only them.
    let dir = tmp.path().join("device");
    let device = device_at(&dir, chrono::Duration::zero());
    device.enrol(&central.url(), &code).await.unwrap();
    assert!(!device.is_signed_in());
    assert_eq!(
        listed(&device),
        [
            (
                "E802".into(),
                "Avonley Council".into(),
                "0300 555 0802".into()
            ),
            (
                "E801".into(),
                "Northbrook Council".into(),
                "0300 555 0801".into()
            ),
        ]
    );
    let view = device.emergency_numbers().unwrap();
    assert_eq!(view.region.as_deref(), Some("region-e"));
    assert_eq!(
        view.local_authorities[1].office_phone.as_deref(),
        Some("0300 555 0811")
    );

    // A round with nobody signed in keeps them current: a new LA and a changed number arrive.
    central.add_la(
        "E803",
        "Cobham Vale Council",
        "0300 555 0803",
        None,
        "region-e",
    );
    central.add_la(
        "E801",
        "Northbrook Council",
        "0300 555 0899",
        None,
        "region-e",
    );
    let summary = device.sync(&|_| {}).await.unwrap();
    assert!(summary.pull_skipped.is_some(), "nobody is signed in");
    let names: Vec<_> = listed(&device).into_iter().map(|l| (l.0, l.2)).collect();
    assert_eq!(
        names,
        [
            ("E802".to_string(), "0300 555 0802".to_string()),
            ("E803".into(), "0300 555 0803".into()),
            ("E801".into(), "0300 555 0899".into()),
        ]
    );

    // Signed in and synced, then offline past the lease: the copy is locked, the numbers are not.
    device.sign_in("duty.user", "2718").await.unwrap();
    device.sync(&|_| {}).await.unwrap();
    central.kill();
    drop(device);
    let later = device_at(&dir, chrono::Duration::hours(3));
    let err = later.sign_in("duty.user", "2718").await.unwrap_err();
    assert_eq!(err.view().code, "lease_expired", "{err}");
    assert_eq!(listed(&later).len(), 3);
    assert_eq!(listed(&later)[2].2, "0300 555 0899");
    drop(later);

    // The command line gives them too, with no PIN and no connection, and filters by name or code.
    let data_dir = dir.to_string_lossy().to_string();
    let (status, out, err) = run_cpis_status(
        &[
            "device",
            "--data-dir",
            &data_dir,
            "emergency-numbers",
            "--filter",
            "e803",
        ],
        &[],
    );
    assert_eq!(status, Some(0), "{err}");
    assert!(
        out.contains("Cobham Vale Council (E803): emergency duty 0300 555 0803"),
        "{out}"
    );
    assert!(!out.contains("Avonley"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_copy_of_the_emergency_numbers_is_refused_not_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let mut central = CentralProcess::sqlite_in(tmp.path());
    central.add_la(
        "E811",
        "Fernside Council",
        "0300 555 0811",
        None,
        "region-t",
    );
    let code = central.enrolment_code(&[
        "--region",
        "region-t",
        "--org",
        "RXT",
        "--setting",
        "ambulance",
    ]);
    central.start();
    let dir = tmp.path().join("device");
    let device = device_at(&dir, chrono::Duration::zero());
    device.enrol(&central.url(), &code).await.unwrap();
    assert_eq!(listed(&device)[0].2, "0300 555 0811");
    drop(device);
    central.kill();

    // Someone with the file rewrites the duty number and signs it with a key of their own.
    let forged = SignedDirectory::sign(
        &EmergencyDirectory {
            region: Region::parse("region-t").unwrap(),
            generated_at: chrono::Utc::now(),
            local_authorities: vec![EmergencyContact {
                ods: cpis_core::OdsCode::parse("E811").unwrap(),
                name: "Fernside Council".into(),
                emergency_phone: "0300 555 0666".into(),
                office_phone: None,
            }],
        },
        &hazmat::ed25519_generate(),
    )
    .unwrap();
    let db = rusqlite::Connection::open(dir.join("device.sqlite")).unwrap();
    let changed = db
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'emergency_numbers'",
            [serde_json::to_string(&forged).unwrap()],
        )
        .unwrap();
    assert_eq!(changed, 1, "the numbers are kept in the device store");
    drop(db);

    let device = device_at(&dir, chrono::Duration::zero());
    let err = device.emergency_numbers().unwrap_err();
    assert_eq!(err.view().code, "emergency_numbers_untrusted", "{err}");
    assert!(err.to_string().contains("not shown"), "{err}");
    assert!(!err.to_string().contains("0666"), "{err}");
}
