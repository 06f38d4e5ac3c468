//! SIGKILL tests: the device command killed at random moments during `sync` and `check --open`, at
//! least 50 times. Afterwards the store opens, the cache equals the central's region (digests), and every event
//! that `check --open` reported as queued or delivered reaches the LA exactly once.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use cpis_core::NhsNumber;
use cpis_tests::{cpis_binary, run_cpis, CentralProcess};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const HEADER: &str = "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date\n";
const PEOPLE: u32 = 3_000;

fn nhs(i: u32) -> String {
    NhsNumber::test_range(600_000 + i).as_digits()
}

fn spawn_device(dir: &str, args: &[&str]) -> std::process::Child {
    Command::new(cpis_binary())
        .args(["device", "--data-dir", dir, "--page-limit", "100"])
        .args(args)
        .env("CPIS_PIN", "4321")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn device")
}

#[test]
fn device_killed_during_sync_and_check_open_keeps_a_consistent_cache_and_exactly_once_events() {
    let tmp = tempfile::tempdir().unwrap();
    let mut central = CentralProcess::sqlite_in(tmp.path());
    central.add_la(
        "L903",
        "Killtest District Council",
        "0300 555 0390",
        None,
        "region-k",
    );
    let mut csv = String::from(HEADER);
    for i in 0..PEOPLE {
        csv.push_str(&format!(
            "{},Family{i},Given{i},2019-01-01,CPPI,2025-01-01,,,,\n",
            nhs(i)
        ));
    }
    let file = tmp.path().join("k.csv");
    std::fs::write(&file, csv).unwrap();
    central.admin(&["import", "--la", "L903", file.to_str().unwrap()], &[]);
    central.add_user("kill.user", "RXK", "B0107", "Clinician", "4321");
    let code = central.enrolment_code(&[
        "--region",
        "region-k",
        "--org",
        "RXK",
        "--setting",
        "emergency-department",
    ]);
    central.start();
    let dir = tmp.path().join("device").to_string_lossy().to_string();
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

    let mut rng = rand::rngs::StdRng::seed_from_u64(20261124);
    let mut reported: HashMap<String, String> = HashMap::new();
    let mut kills = 0;
    // Kill inside the typical run time, learnt from runs that finished, so most runs die mid-way.
    let mut typical_ms: u64 = 400;
    for round in 0..200 {
        if kills >= 60 {
            break;
        }
        let during_sync = round % 2 == 0;
        let started = std::time::Instant::now();
        let mut child = if during_sync {
            spawn_device(&dir, &["sync", "--user", "kill.user", "--json"])
        } else {
            let who = nhs(rng.gen_range(0..PEOPLE));
            spawn_device(
                &dir,
                &["check", &who, "--user", "kill.user", "--open", "--json"],
            )
        };
        let at = rng.gen_range(5..typical_ms.max(20));
        std::thread::sleep(Duration::from_millis(at));
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        if finished {
            typical_ms = (typical_ms + started.elapsed().as_millis() as u64 * 9 / 10) / 2;
        }
        if !during_sync {
            if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
                if let (Some(id), Some(state)) =
                    (v["event_id"].as_str(), v["notification"].as_str())
                {
                    reported.insert(id.to_string(), state.to_string());
                }
            }
        }
        // After every kill the store opens and answers.
        let status: Value = serde_json::from_str(&run_cpis(
            &["device", "--data-dir", &dir, "status", "--json"],
            &[],
        ))
        .unwrap();
        assert_eq!(status["enrolled"], true, "round {round}");
    }
    assert!(
        kills >= 50,
        "only {kills} runs were killed mid-way; the test must kill at least 50"
    );
    assert!(
        !reported.is_empty(),
        "some checks must have completed and reported their event"
    );

    // Finish: one clean sync, then compare the cache with the central and the events with the LA's.
    run_cpis(
        &["device", "--data-dir", &dir, "sync", "--user", "kill.user"],
        &[("CPIS_PIN", "4321")],
    );
    let status: Value = serde_json::from_str(&run_cpis(
        &["device", "--data-dir", &dir, "status", "--json"],
        &[],
    ))
    .unwrap();
    assert_eq!(status["queued_events"], 0);
    assert_eq!(status["cached_flags"], PEOPLE);
    let device_digest = run_cpis(
        &[
            "device",
            "--data-dir",
            &dir,
            "digest",
            "--user",
            "kill.user",
        ],
        &[("CPIS_PIN", "4321")],
    );
    let central_digest = central.admin(&["region-digest", "--region", "region-k"], &[]);
    assert_eq!(
        device_digest.trim(),
        central_digest.lines().last().unwrap().trim()
    );

    let list = central.notifications("L903");
    let ids: Vec<String> = list
        .iter()
        .map(|n| n["event_id"].as_str().unwrap().to_string())
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an event reached the LA twice");
    for (id, state) in &reported {
        assert!(
            unique.contains(id),
            "event reported as {state} never reached the LA"
        );
    }
}
