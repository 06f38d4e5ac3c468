//! Running the central as a service, over real processes: SIGTERM lets a request in flight finish
//! and the process exits 0; logs as JSON lines; a backup taken while it serves, and a restore
//! refused while it serves.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use cpis_tests::{run_cpis_status, CentralProcess};

/// Waits until `file` holds a line containing `text` (the process writes it when it gets there).
fn wait_for_log(file: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(file).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains(text)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the central never logged '{text}':\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn central_with_region(dir: &Path) -> CentralProcess {
    let mut central = CentralProcess::sqlite_in(dir);
    central.add_la(
        "L001",
        "Testshire County Council",
        "0300 555 0190",
        None,
        "north",
    );
    central.log = Some(dir.join("central.log"));
    central
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_and_the_central_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let mut central = central_with_region(tmp.path());
    let code = central.enrolment_code(&[
        "--region",
        "north",
        "--org",
        "RX1",
        "--setting",
        "ambulance",
    ]);
    central.start();
    let log = central.log.clone().unwrap();
    wait_for_log(&log, "central serving");

    // An enrolment whose body has not arrived yet: the central has taken the request and is
    // waiting for the body (it says so with `100 Continue`).
    let body = format!(
        r#"{{"code":"{code}","device_public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}"#
    );
    let mut socket = TcpStream::connect(("127.0.0.1", central.port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        socket,
        "POST /v1/enrol HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    socket.read_exact(&mut interim).unwrap();
    assert!(
        String::from_utf8_lossy(&interim).starts_with("HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&interim)
    );

    // The service manager stops the central while that request is in flight.
    central.send_term();
    wait_for_log(&log, "shutting down");
    socket.write_all(body.as_bytes()).unwrap();
    let mut reply = String::new();
    socket.read_to_string(&mut reply).unwrap();
    let reply = reply.trim_start_matches("\r\n");
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "the request in flight completes: {reply}"
    );
    assert!(reply.contains("device_id"), "{reply}");
    let status = central.wait();
    assert_eq!(status.code(), Some(0), "the central exits 0 after SIGTERM");
    // And the enrolment it finished is kept.
    let devices = central.admin(&["devices", "--json"], &[]);
    let devices: serde_json::Value = serde_json::from_str(&devices).unwrap();
    assert_eq!(devices.as_array().map(Vec::len), Some(1), "{devices}");
}

#[test]
fn logs_are_json_lines_with_log_format_json() {
    let tmp = tempfile::tempdir().unwrap();
    let mut central = central_with_region(tmp.path());
    central.serve_args = vec!["--log-format".into(), "json".into()];
    central.start();
    let line = wait_for_log(central.log.as_ref().unwrap(), "central serving");
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["message"], "central serving", "{v}");
    assert!(v["timestamp"].is_string(), "{v}");
    assert_eq!(central.terminate().code(), Some(0));
}

#[test]
fn a_backup_is_taken_while_the_central_serves_and_a_restore_is_refused_until_it_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let mut central = central_with_region(tmp.path());
    central.start();
    let backup = tmp.path().join("backup.sqlite");
    let backup_arg = backup.to_string_lossy().to_string();
    let out = central.admin(&["backup", "--to", &backup_arg, "--json"], &[]);
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(summary["bytes"].as_u64().unwrap() > 0, "{summary}");
    assert!(backup.exists());

    let (code, _, err) = run_cpis_status(
        &[
            "central",
            "--db",
            &central.db_url,
            "restore",
            "--from",
            &backup_arg,
        ],
        &[],
    );
    assert_ne!(
        code,
        Some(0),
        "a restore under a serving central is refused"
    );
    assert!(err.contains("is serving"), "{err}");

    assert_eq!(central.terminate().code(), Some(0));
    let out = central.admin(&["restore", "--from", &backup_arg], &[]);
    assert!(out.contains("restored"), "{out}");
    // The restored database serves again.
    central.start();
    let status = reqwest::blocking::get(format!("{}/v1/ready", central.url())).unwrap();
    assert_eq!(status.status(), 200);
}
