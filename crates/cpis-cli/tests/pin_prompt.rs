//! The device command's PIN prompt, run in a real terminal (util-linux `script` gives it one): what
//! is typed at the prompt is not echoed back to the screen.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;

#[test]
fn the_pin_typed_at_the_prompt_is_not_echoed() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no `script` command to give the prompt a terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cpis = env!("CARGO_BIN_EXE_cpis");
    let inner = format!(
        "{cpis} device --data-dir {} login --user para1",
        dir.path().join("device").display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .env_remove("CPIS_PIN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("PIN:") {
        match rx.recv() {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => panic!(
                "the command ended without asking for a PIN: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    // The prompt is written just before echo is turned off; let the command reach its read.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"8642\n").unwrap();
    stdin.flush().unwrap();
    while let Ok(chunk) = rx.recv() {
        seen.extend(chunk);
    }
    drop(stdin);
    child.wait().unwrap();
    let screen = String::from_utf8_lossy(&seen);
    assert!(!screen.contains("8642"), "the PIN was echoed: {screen}");
}
