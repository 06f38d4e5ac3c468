//! A real central for the benchmarks: the release `cpis central serve` process on its own database,
//! administered through the same `cpis central ...` commands a trust's IT team uses. The benchmark
//! talks to it only over loopback HTTP, as devices do.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::stats;

/// Where the `cpis` binary is: beside this one (both come from the same release build).
pub fn cpis_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name("cpis");
    if !path.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release -p cpis-cli` (scripts/bench.sh does)",
            path.display()
        );
    }
    Ok(path)
}

/// Runs `cpis central --db DB ARGS...` to completion and returns its standard output.
pub fn admin(db: &str, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut cmd = Command::new(cpis_binary()?);
    cmd.arg("central").arg("--db").arg(db).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd
        .env("RUST_LOG", "warn")
        .output()
        .context("could not run cpis")?;
    if !out.status.success() {
        bail!(
            "`cpis central {}` failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The last non-empty line of a command's output (where codes and tokens are printed).
pub fn last_line(out: &str) -> String {
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// A free loopback port (the serve process binds it a moment later).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub struct CentralProcess {
    child: Child,
    pub url: String,
    pub db: String,
}

impl CentralProcess {
    /// Starts `cpis central serve` on a free loopback port and waits until it answers.
    pub fn start(db: &str, log: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log_file = std::fs::File::create(log)?;
        let mut child = Command::new(cpis_binary()?)
            .arg("central")
            .arg("--db")
            .arg(db)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("could not start `cpis central serve`")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("serving at") {
                    let _ = tx.send(());
                }
            }
        });
        let started = Instant::now();
        loop {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "`cpis central serve` exited with {status}; see {}",
                    log.display()
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                bail!("`cpis central serve` did not start within 60 s");
            }
        }
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            db: db.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URLs of several instances, as the load generator takes them.
    pub fn joined_urls(instances: &[&Self]) -> String {
        instances
            .iter()
            .map(|c| c.url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The serve process's peak resident memory so far.
    pub fn peak_rss(&self) -> Option<u64> {
        stats::peak_rss_of(&self.pid().to_string())
    }

    /// Asks the process to stop as Ctrl-C would (graceful shutdown), then waits for it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for CentralProcess {
    fn drop(&mut self) {
        // Never leave a server behind when a benchmark fails part-way.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
