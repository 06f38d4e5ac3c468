//! Search by name and date of birth end to end: a real central process, a device engine reaching it
//! through a proxy that can cut it off, and the `cpis device search` command. Offline the device's
//! copy answers in tiers; online the central's whole register joins in; every search is audited;
//! opening a person found by search tells the LA exactly as a check does, saying how they were found.

use std::path::Path;
use std::time::Duration;

use cpis_core::NhsNumber;
use cpis_device::views::{CheckOutcome, NotificationState, SearchOutcome, Source};
use cpis_device::{CheckRequest, Device, DeviceConfig, DeviceError, SearchInput};
use cpis_tests::proxy::FaultProxy;
use cpis_tests::{free_port, run_cpis, run_cpis_status, CentralProcess};
use serde_json::Value;

const HEADER: &str = "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date\n";
const LA: &str = "L931";
const USER: &str = "search.user";
const PIN: &str = "4826";

fn nhs(i: u32) -> NhsNumber {
    NhsNumber::test_range(731_000 + i)
}

/// A central with the register below; region-s is the device's, region-t another.
fn central(dir: &Path) -> CentralProcess {
    let mut central = CentralProcess::sqlite_in(dir);
    central.add_la(LA, "Searchford Council", "0300 555 0931", None, "region-s");
    central.add_la(
        "L932",
        "Farshire Council",
        "0300 555 0932",
        None,
        "region-t",
    );
    let mut csv = String::from(HEADER);
    let mut add = |i: u32, family: &str, given: &str, dob: &str| {
        csv.push_str(&format!(
            "{},{family},{given},{dob},CPPI,2025-01-02,,,,\n",
            nhs(i).as_digits()
        ))
    };
    add(1, "O'Neill", "Siân", "2019-03-07");
    // Two different children with the same birthday and similar names.
    add(2, "Smith", "John", "2018-05-20");
    add(3, "Smyth", "Jon", "2018-05-20");
    for (i, given) in (4..).zip(["Amy", "Ben", "Cara", "Dev", "Ella", "Finn", "Gus"]) {
        add(i, "Testwood", given, "2017-10-10");
    }
    let file = dir.join("s.csv");
    std::fs::write(&file, csv).unwrap();
    central.admin(&["import", "--la", LA, file.to_str().unwrap()], &[]);
    let other = dir.join("t.csv");
    std::fs::write(
        &other,
        format!(
            "{HEADER}{},Farfield,Amy,2016-01-02,LACI,2024-01-01,,,,\n",
            nhs(20).as_digits()
        ),
    )
    .unwrap();
    central.admin(&["import", "--la", "L932", other.to_str().unwrap()], &[]);
    central.add_user(USER, "RXS", "B0107", "Paramedic", PIN);
    central.start();
    central
}

fn code(central: &CentralProcess) -> String {
    central.enrolment_code(&[
        "--region",
        "region-s",
        "--org",
        "RXS",
        "--setting",
        "ambulance",
    ])
}

fn input(family: &str, given: Option<&str>, dob: &str) -> SearchInput {
    SearchInput {
        family_name: family.into(),
        date_of_birth: dob.into(),
        given_name: given.map(str::to_string),
        ..SearchInput::default()
    }
}

async fn synced_device(dir: &Path, central: &CentralProcess) -> (Device, FaultProxy) {
    let upstream = format!("127.0.0.1:{}", central.port).parse().unwrap();
    let proxy = FaultProxy::start(upstream).await;
    let mut config = DeviceConfig::new(dir.join("device"));
    config.request_timeout = Duration::from_secs(5);
    let device = Device::open(config).unwrap();
    device.enrol(&proxy.url(), &code(central)).await.unwrap();
    device.sign_in(USER, PIN).await.unwrap();
    device.sync(&|_| {}).await.unwrap();
    (device, proxy)
}

/// Points the proxy at a port nobody listens on: the central is out of reach.
fn cut_off(proxy: &FaultProxy) {
    proxy.set_upstream(format!("127.0.0.1:{}", free_port()).parse().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_the_devices_copy_answers_in_tiers_and_every_search_is_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let central = central(tmp.path());
    let (device, proxy) = synced_device(tmp.path(), &central).await;
    cut_off(&proxy);

    // One match through case, accents and apostrophes: that person's check, not yet opened.
    let v = device
        .search(&input("oneill", Some("SIAN"), "2019-03-07"))
        .await
        .unwrap();
    assert_eq!(v.outcome, SearchOutcome::Match);
    assert_eq!(v.source, Source::Cache);
    let answer = v.answer.as_ref().unwrap();
    assert_eq!(answer.outcome, CheckOutcome::RecordFound);
    assert_eq!(answer.nhs_number, Some(nhs(1).to_string()));
    assert!(answer.person.is_none() && answer.plans.is_empty());
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["outcome"], "match");
    assert_eq!(json["nhs_number"], nhs(1).to_string());
    assert_eq!(json["found_by"], "name_and_date_of_birth");
    assert!(json["check_id"].is_string() && json["local_authority"].is_object());

    // Two similar children on one birthday: cards with no plan details, never one match.
    let v = device
        .search(&input("Smith", Some("John"), "2018-05-20"))
        .await
        .unwrap();
    assert_eq!(v.outcome, SearchOutcome::PossibleMatches);
    let names: Vec<&str> = v
        .candidates
        .iter()
        .map(|c| c.family_name.as_str())
        .collect();
    assert_eq!(names, vec!["Smith", "Smyth"]);
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["outcome"], "possible_matches");
    for card in json["candidates"].as_array().unwrap() {
        assert!(card.get("plans").is_none() && card.get("local_authority").is_none());
    }
    // Confirming the second card is that person's check.
    let chosen = device.choose_candidate(v.search_id, 2).unwrap();
    assert_eq!(chosen.outcome, CheckOutcome::RecordFound);
    assert_eq!(chosen.nhs_number, Some(nhs(3).to_string()));
    assert!(chosen.person.is_none());

    let v = device
        .search(&input("Testwood", None, "2017-10-10"))
        .await
        .unwrap();
    assert_eq!(v.outcome, SearchOutcome::TooMany);
    assert!(v.candidates.is_empty() && v.answer.is_none());

    let v = device
        .search(&input("Brown", Some("Grace"), "2019-03-07"))
        .await
        .unwrap();
    assert_eq!(v.outcome, SearchOutcome::NoMatch);
    let caveats = v.caveats.join("\n");
    for expected in ["Names change", "spelt", "may not have matched", "sensitive"] {
        assert!(caveats.contains(expected), "{expected}: {caveats}");
    }

    let v = device
        .search(&input("Smith", Some("John"), "2018-05-20"))
        .await
        .unwrap();
    let none = device.none_of_these(v.search_id).unwrap();
    assert_eq!(none.outcome, SearchOutcome::NoMatch);
    assert!(!none.caveats.is_empty());

    // Someone of another region is not in this device's copy: offline, a miss that says so.
    let v = device
        .search(&input("Farfield", Some("Amy"), "2016-01-02"))
        .await
        .unwrap();
    assert_eq!(v.outcome, SearchOutcome::NoMatch);
    assert!(v
        .caveats
        .iter()
        .any(|c| c.contains("only this device's region")));

    // Bad input is refused, naming the field.
    for (bad, field) in [
        (input(" ", None, "2019-03-07"), "family name"),
        (input("Smith", None, "07/03/2019"), "date of birth"),
        (input("Smith", None, "2099-01-01"), "date of birth"),
    ] {
        match device.search(&bad).await {
            Err(DeviceError::InvalidInput(m)) => assert!(m.starts_with(field), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    // The sealed audit: who, what was entered, how many candidates, what was chosen.
    let audit: Vec<_> = device
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter_map(|e| e.search.clone().map(|s| (e, s)))
        .collect();
    let steps: Vec<(&str, usize)> = audit
        .iter()
        .map(|(_, s)| (s.step.as_str(), s.candidates))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("match", 1),
            ("possible_matches", 2),
            ("chosen", 2),
            ("too_many", 7),
            ("no_match", 0),
            ("possible_matches", 2),
            ("none_of_these", 2),
            ("no_match", 0),
        ]
    );
    assert!(audit.iter().all(|(e, _)| e.user_id == USER));
    assert_eq!(audit[0].1.entered.family_name, "oneill");
    assert_eq!(audit[0].0.nhs_number, Some(nhs(1)));
    assert_eq!(audit[2].0.nhs_number, Some(nhs(3)), "the choice is kept");
    assert_eq!(audit[6].0.nhs_number, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_the_whole_register_answers_and_an_opened_match_tells_the_la_how_it_was_found() {
    let tmp = tempfile::tempdir().unwrap();
    let central = central(tmp.path());
    let (device, _proxy) = synced_device(tmp.path(), &central).await;

    // Another region's child, with day and month swapped: only the central can find them.
    let v = device
        .search(&input("Farfield", Some("Amy"), "2016-02-01"))
        .await
        .unwrap();
    assert_eq!(v.outcome, SearchOutcome::PossibleMatches);
    assert_eq!(v.source, Source::Central);
    assert_eq!(v.candidates.len(), 1);
    assert!(v.candidates[0]
        .differed
        .iter()
        .any(|d| d.contains("day and month swapped")));

    // The match opened: the same access event as a check's, delivered with the live call.
    let v = device
        .search(&input("O Neill", Some("Sian"), "2019-03-07"))
        .await
        .unwrap();
    assert_eq!(v.outcome, SearchOutcome::Match);
    let check_id = v.answer.unwrap().check_id;
    let opened = device.open_alert(check_id).await.unwrap();
    assert!(opened.opened);
    assert_eq!(opened.person.as_ref().unwrap().family_name, "O'Neill");
    assert_eq!(opened.plans.len(), 1);
    assert!(opened.event_id.is_some());
    assert_ne!(opened.notification, Some(NotificationState::NotSent));
    // And a person checked by number, for comparison.
    let checked = device
        .check(
            &nhs(2).as_digits(),
            CheckRequest {
                open: true,
                ..CheckRequest::default()
            },
        )
        .await;
    assert!(checked.opened);
    device.sync(&|_| {}).await.unwrap();

    let told = central.notifications(LA);
    let by = |n: NhsNumber| {
        told.iter()
            .find(|t| t["nhs_number"] == n.as_digits())
            .unwrap_or_else(|| panic!("the LA was told about {n}"))["found_by"]
            .clone()
    };
    assert_eq!(told.len(), 2, "one notification each, never two");
    assert_eq!(by(nhs(1)), "name_and_date_of_birth");
    assert_eq!(by(nhs(2)), "nhs_number");
}

fn cli(dir: &Path, args: &[&str]) -> (Option<i32>, Value, String) {
    let d = dir.to_string_lossy().to_string();
    let (code, out, err) = run_cpis_status(
        &[&["device", "--data-dir", &d], args, &["--json"]].concat(),
        &[("CPIS_PIN", PIN), ("CPIS_USER", USER)],
    );
    let v = serde_json::from_str(&out).unwrap_or(Value::Null);
    (code, v, err)
}

#[test]
fn the_search_command_answers_in_the_same_tiers_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let central = central(tmp.path());
    let dir = tmp.path().join("cli-device");
    let d = dir.to_string_lossy().to_string();
    run_cpis(
        &[
            "device",
            "--data-dir",
            &d,
            "enrol",
            "--central",
            &central.url(),
            "--code",
            &code(&central),
        ],
        &[],
    );
    run_cpis(
        &["device", "--data-dir", &d, "sync", "--user", USER],
        &[("CPIS_PIN", PIN)],
    );

    let (rc, v, _) = cli(
        &dir,
        &[
            "search",
            "--family",
            "ONeill",
            "--given",
            "Sian",
            "--dob",
            "2019-03-07",
        ],
    );
    assert_eq!(rc, Some(0));
    assert_eq!(v["outcome"], "match");
    assert_eq!(v["nhs_number"], nhs(1).to_string());
    assert_eq!(v["opened"], false);
    assert!(v["check_id"].is_string());

    let (_, v, _) = cli(
        &dir,
        &[
            "search",
            "--family",
            "Smith",
            "--given",
            "John",
            "--dob",
            "2018-05-20",
        ],
    );
    assert_eq!(v["outcome"], "possible_matches");
    assert_eq!(v["candidates"].as_array().unwrap().len(), 2);

    let (_, v, _) = cli(
        &dir,
        &[
            "search",
            "--family",
            "Smith",
            "--given",
            "John",
            "--dob",
            "2018-05-20",
            "--choose",
            "1",
            "--open",
        ],
    );
    assert_eq!(v["outcome"], "match");
    assert_eq!(v["opened"], true);
    assert_eq!(v["person"]["family_name"], "Smith");

    let (_, v, _) = cli(
        &dir,
        &["search", "--family", "Testwood", "--dob", "2017-10-10"],
    );
    assert_eq!(v["outcome"], "too_many");
    assert!(v["candidates"].as_array().unwrap().is_empty());

    let (_, v, _) = cli(
        &dir,
        &["search", "--family", "Brown", "--dob", "2019-03-07"],
    );
    assert_eq!(v["outcome"], "no_match");
    assert!(v["caveats"].as_array().unwrap().len() >= 8);

    let (rc, v, _) = cli(
        &dir,
        &["search", "--family", "Brown", "--dob", "7 March 2019"],
    );
    assert_eq!(rc, Some(4));
    assert_eq!(v["code"], "invalid_input");
    assert!(v["message"].as_str().unwrap().starts_with("date of birth"));
}
