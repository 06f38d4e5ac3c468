//! Shared helpers for the end-to-end, fault and kill tests: a fault-injecting HTTP proxy that sits
//! between a device and the central on loopback, a round-robin balancer over several centrals, an
//! LA webhook receiver that counts, and small utilities for temporary directories and the `cpis`
//! binary.

pub mod proxy;
pub mod round_robin;
pub mod webhook_counter;

use std::path::{Path, PathBuf};

/// The `cpis` binary built for this test run (cargo builds workspace binaries before integration tests
/// only for their own package, so build it on first use).
pub fn cpis_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug").join("cpis");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "cpis-cli"])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the cpis binary failed");
    });
    bin
}

/// A free loopback port (bound and released: good enough for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `cpis central ... serve` process on a SQLite file, stopped on drop.
pub struct CentralProcess {
    pub db_url: String,
    pub port: u16,
    /// Extra arguments after `serve --listen ADDR` (e.g. `--admin-listen`).
    pub serve_args: Vec<String>,
    /// Where the process's stderr goes (its logs, at `CPIS_LOG=info`); discarded when None.
    pub log: Option<PathBuf>,
    child: Option<std::process::Child>,
}

impl CentralProcess {
    pub fn new(db_url: &str, port: u16) -> Self {
        Self {
            db_url: db_url.to_string(),
            port,
            serve_args: Vec::new(),
            log: None,
            child: None,
        }
    }

    /// A central on a new SQLite file in `dir`, on a free loopback port (not started yet).
    pub fn sqlite_in(dir: &Path) -> Self {
        let db = format!("sqlite:{}", dir.join("central.sqlite").display());
        Self::new(&db, free_port())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let stderr = match &self.log {
            Some(path) => std::process::Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open the central's log file"),
            ),
            None => std::process::Stdio::null(),
        };
        let child = std::process::Command::new(cpis_binary())
            .args(["central", "--db", &self.db_url, "serve", "--listen"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.serve_args)
            .env("CPIS_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start central");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the central did not start listening on {}", self.port);
    }

    /// The running central's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Asks the central to stop (SIGTERM, as a service manager does) and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        self.signal_term(child.id());
        child.wait().expect("wait for the central")
    }

    /// Sends SIGTERM to the running central without waiting (see `wait`).
    pub fn send_term(&self) {
        self.signal_term(self.pid().expect("running"));
    }

    fn signal_term(&self, pid: u32) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits for the central to exit on its own.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        child.wait().expect("wait for the central")
    }

    /// Stops the central abruptly (SIGKILL): a crash, not a clean shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the LA has been told: `cpis central notifications --la LA --json`, as JSON objects.
    pub fn notifications(&self, la: &str) -> Vec<serde_json::Value> {
        let out = self.admin(&["notifications", "--la", la, "--json"], &[]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("notifications JSON");
        v["notifications"]
            .as_array()
            .cloned()
            .expect("a notifications list")
    }

    /// Runs `cpis central --db DB <args>` and returns stdout; panics with stderr on failure.
    pub fn admin(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        run_cpis(&[&["central", "--db", &self.db_url], args].concat(), env)
    }

    /// `cpis central la`: creates the local authority in `region` (regions are created on first use).
    pub fn add_la(
        &self,
        ods: &str,
        name: &str,
        emergency_phone: &str,
        office_phone: Option<&str>,
        region: &str,
    ) {
        let mut args = vec![
            "la",
            "--ods",
            ods,
            "--name",
            name,
            "--emergency-phone",
            emergency_phone,
            "--region",
            region,
        ];
        if let Some(phone) = office_phone {
            args.extend(["--office-phone", phone]);
        }
        self.admin(&args, &[]);
    }

    /// `cpis central user`: a synthetic user at `org` with this activity (B0107 or B0170) and role.
    pub fn add_user(&self, id: &str, org: &str, activity: &str, role: &str, pin: &str) {
        self.admin(
            &[
                "user",
                "--id",
                id,
                "--name",
                "Test Clinician",
                "--org",
                org,
                "--activity",
                activity,
                "--role",
                role,
            ],
            &[("CPIS_PIN", pin)],
        );
    }

    /// `cpis central enrol` with these arguments after `enrol`: the one-time code it prints last.
    pub fn enrolment_code(&self, args: &[&str]) -> String {
        self.admin(&[&["enrol"], args].concat(), &[])
            .lines()
            .last()
            .expect("enrol prints a code")
            .trim()
            .to_string()
    }
}

impl Drop for CentralProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the `cpis` binary and returns stdout; panics with stderr when it fails.
pub fn run_cpis(args: &[&str], env: &[(&str, &str)]) -> String {
    let (code, stdout, stderr) = run_cpis_status(args, env);
    assert!(
        code == Some(0),
        "cpis {args:?} failed ({code:?}):\n{stderr}\n{stdout}"
    );
    stdout
}

/// Runs the `cpis` binary and returns (exit code, stdout, stderr).
pub fn run_cpis_status(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = std::process::Command::new(cpis_binary());
    command.args(args).env_remove("CPIS_PIN");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run cpis");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}
