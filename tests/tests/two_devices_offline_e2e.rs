//! End to end over real processes, sockets and files: a central on SQLite, LA uploads (command line
//! and HTTP), two devices in different regions, checks while the central is down, reconnection, and
//! the LAs' notifications carrying exactly the expected events with the device's time of each check.

use chrono::{DateTime, Utc};
use cpis_core::NhsNumber;
use cpis_tests::{run_cpis, run_cpis_status, CentralProcess};
use serde_json::Value;

const HEADER: &str = "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date\n";

fn nhs(i: u32) -> String {
    NhsNumber::test_range(700_000 + i).as_digits()
}

fn device(dir: &std::path::Path, args: &[&str], pin: &str) -> Value {
    let d = dir.to_string_lossy().to_string();
    let out = run_cpis(
        &[&["device", "--data-dir", &d], args, &["--json"]].concat(),
        &[("CPIS_PIN", pin)],
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}\n{out}"))
}

fn check(
    dir: &std::path::Path,
    number: &str,
    user: &str,
    pin: &str,
    open: bool,
) -> (Value, DateTime<Utc>, DateTime<Utc>) {
    let before = Utc::now();
    let mut args = vec!["check", number, "--user", user];
    if open {
        args.push("--open");
    }
    let d = dir.to_string_lossy().to_string();
    let (_, out, err) = run_cpis_status(
        &[&["device", "--data-dir", &d], &args[..], &["--json"]].concat(),
        &[("CPIS_PIN", pin)],
    );
    let after = Utc::now();
    let v: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON: {e}\n{out}\n{err}"));
    (v, before, after)
}

#[test]
fn two_regions_offline_checks_then_reconnect_deliver_exactly_the_expected_notifications() {
    let tmp = tempfile::tempdir().unwrap();
    let mut central = CentralProcess::sqlite_in(tmp.path());
    let la_a = "L901";
    let la_b = "L902";
    central.add_la(
        la_a,
        "Testshire County Council",
        "0300 555 0190",
        Some("0300 555 0191"),
        "region-a",
    );
    central.add_la(
        la_b,
        "Exampleton Borough Council",
        "0300 555 0290",
        None,
        "region-b",
    );

    // LA A uploads from the command line; one row is bad and must be rejected alone.
    let upload_a = format!(
        "{HEADER}{},Testfamily,Alex,2019-03-04,CPPI,2025-01-10,,,,\n{},Samplename,Bo,2020-05-06,LACI,2024-02-01,,,A-17,\n{},Placeholder,Cy,2021-07-08,CPPI,2025-06-01,,,,\n{},Badrow,Di,2021-07-08,XXXX,2025-06-01,,,,\n",
        nhs(1), nhs(2), nhs(3), nhs(4)
    );
    let file_a = tmp.path().join("a.csv");
    std::fs::write(&file_a, upload_a).unwrap();
    let report: Value = serde_json::from_str(&central.admin(
        &["import", "--la", la_a, file_a.to_str().unwrap(), "--json"],
        &[],
    ))
    .unwrap();
    assert_eq!(report["accepted_rows"], 3, "{report}");
    assert_eq!(report["rejected_rows"], 1, "{report}");

    central.start();

    // LA B uploads over authenticated HTTP.
    let token = central
        .admin(&["la-token", "--la", la_b], &[])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let upload_b = format!(
        "{HEADER}{},Fictional,Eve,2018-01-02,CPPI,2025-03-03,,,,\n",
        nhs(11)
    );
    let http = reqwest::blocking::Client::new();
    let response = http
        .post(format!("{}/v1/la/{la_b}/upload", central.url()))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body(upload_b)
        .send()
        .unwrap();
    assert!(
        response.status().is_success(),
        "HTTP upload: {}",
        response.status()
    );

    // Users and devices.
    central.add_user("para.a", "RXA", "B0107", "Paramedic", "1111");
    central.add_user("gp.b", "RXB", "B0107", "GP", "2222");
    let code_a = central.enrolment_code(&[
        "--region",
        "region-a",
        "--org",
        "RXA",
        "--setting",
        "ambulance",
        "--org-name",
        "Test Ambulance Service",
    ]);
    let code_b = central.enrolment_code(&[
        "--region",
        "region-b",
        "--org",
        "RXB",
        "--setting",
        "ooh-gp",
        "--org-name",
        "Test Out Of Hours",
    ]);
    let dev_a = tmp.path().join("device-a");
    let dev_b = tmp.path().join("device-b");
    device(
        &dev_a,
        &["enrol", "--central", &central.url(), "--code", &code_a],
        "",
    );
    device(
        &dev_b,
        &["enrol", "--central", &central.url(), "--code", &code_b],
        "",
    );
    device(&dev_a, &["sync", "--user", "para.a"], "1111");
    device(&dev_b, &["sync", "--user", "gp.b"], "2222");
    assert_eq!(device(&dev_a, &["status"], "")["cached_flags"], 3);
    assert_eq!(device(&dev_b, &["status"], "")["cached_flags"], 1);

    // Online: device A opens A1's alert; device B finds region A's person through the central, live.
    let (v, a1_before, a1_after) = check(&dev_a, &nhs(1), "para.a", "1111", true);
    assert_eq!(v["outcome"], "record_found");
    assert_eq!(v["notification"], "delivered", "{v}");
    let a1_id = v["event_id"].as_str().unwrap().to_string();
    let (v, b_a1_before, b_a1_after) = check(&dev_b, &nhs(1), "gp.b", "2222", true);
    assert_eq!(v["outcome"], "record_found");
    assert_eq!(v["source"], "central");
    let b_a1_id = v["event_id"].as_str().unwrap().to_string();

    // The central goes down.
    central.kill();
    let (v, a2_before, a2_after) = check(&dev_a, &nhs(2), "para.a", "1111", true);
    assert_eq!(v["outcome"], "record_found", "{v}");
    assert_eq!(v["source"], "cache");
    assert_eq!(v["notification"], "queued");
    assert_eq!(v["plans"][0]["kind"], "LACI");
    assert_eq!(v["local_authority"]["emergency_phone"], "0300 555 0190");
    let a2_id = v["event_id"].as_str().unwrap().to_string();
    // Region A's person is not in region B's copy: an honest miss with caveats, never "not at risk".
    let (v, _, _) = check(&dev_b, &nhs(2), "gp.b", "2222", true);
    assert_eq!(v["outcome"], "no_record");
    assert_eq!(v["message"], "No CP-IS record found for this NHS number");
    assert!(v["caveats"].as_array().unwrap().len() >= 4);
    assert!(!v.to_string().to_lowercase().contains("not at risk"));
    let (v, b1_before, b1_after) = check(&dev_b, &nhs(11), "gp.b", "2222", true);
    assert_eq!(v["outcome"], "record_found");
    assert_eq!(v["notification"], "queued");
    let b1_id = v["event_id"].as_str().unwrap().to_string();
    // Invalid numbers are refused before any lookup.
    let (v, _, _) = check(&dev_a, "999 000 0019", "para.a", "1111", false);
    assert_eq!(v["outcome"], "invalid_nhs_number");
    assert!(v["reason"].as_str().unwrap().contains("check digit"));
    assert_eq!(device(&dev_a, &["status"], "")["queued_events"], 1);

    // Back online: each device syncs and its queue drains.
    central.start();
    device(&dev_a, &["sync"], "");
    device(&dev_b, &["sync"], "");
    assert_eq!(device(&dev_a, &["status"], "")["queued_events"], 0);
    assert_eq!(device(&dev_b, &["status"], "")["queued_events"], 0);

    let within = |n: &Value, before: DateTime<Utc>, after: DateTime<Utc>| {
        let seen: DateTime<Utc> = n["seen_at"].as_str().unwrap().parse().unwrap();
        seen >= before - chrono::Duration::seconds(1)
            && seen <= after + chrono::Duration::seconds(1)
    };
    let mut got_a = central.notifications(la_a);
    got_a.sort_by_key(|n| n["seen_at"].as_str().unwrap().to_string());
    let ids_a: Vec<&str> = got_a
        .iter()
        .map(|n| n["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids_a,
        vec![a1_id.as_str(), b_a1_id.as_str(), a2_id.as_str()],
        "LA A's notifications"
    );
    assert!(within(&got_a[0], a1_before, a1_after));
    assert!(within(&got_a[1], b_a1_before, b_a1_after));
    // The offline check carries the time the clinician looked, not the time it was sent.
    assert!(within(&got_a[2], a2_before, a2_after));
    let got_b = central.notifications(la_b);
    assert_eq!(got_b.len(), 1);
    assert_eq!(got_b[0]["event_id"], b1_id.as_str());
    assert!(within(&got_b[0], b1_before, b1_after));

    // The information-governance view: who asked the central about A1 online (never the offline
    // checks, which stay in each device's own audit log), without printing the number.
    let out = central.admin(&["lookups", "--nhs", &nhs(1), "--json"], &[]);
    assert!(!out.contains(&nhs(1)), "the NHS number is never printed");
    let lookups: Value = serde_json::from_str(&out).unwrap();
    let users: std::collections::BTreeSet<&str> = lookups["lookups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["found"], true);
            l["user_id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(users, ["gp.b", "para.a"].into_iter().collect());
    let out = central.admin(&["lookups", "--nhs", &nhs(2)], &[]);
    assert!(
        out.contains("no live checks"),
        "A2 was only checked offline: {out}"
    );
}
