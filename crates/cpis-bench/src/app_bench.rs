//! B6: the app itself (the release `cpis-field` window), driven through tauri-driver and
//! WebKitWebDriver as a clinician would use it: start to first screen ready, sign in, 100 checks
//! through the screens, and the resident memory of the app and its WebKit processes afterwards.
//!
//! Floors from the same run: for the start, WebDriver reporting the window ready (process started,
//! window and webview created) before the app's own first screen; for a check through the window
//! (timed inside the page), an `app_status` call through the same IPC; for memory, the same
//! processes at the first screen.
//!
//! Needs a display (scripts/bench.sh runs the benchmarks under Xvfb), `tauri-driver` and
//! `WebKitWebDriver` on the PATH, and `target/release/cpis-field`. What is missing is reported as
//! not measured, with the reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::central_proc::free_port;
use crate::report::Row;
use crate::stats::{fmt_bytes, Samples};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A minimal W3C WebDriver client: what driving the app's screens needs.
struct WebDriver {
    base: String,
    http: reqwest::Client,
    session: Option<String>,
}

impl WebDriver {
    fn new(base: String) -> Self {
        Self {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("an HTTP client builds"),
            session: None,
        }
    }

    async fn cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if !status.is_success() || value.get("error").is_some() {
            bail!(
                "WebDriver {method} {path}: {} {}",
                value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or(status.as_str()),
                value.get("message").and_then(Value::as_str).unwrap_or("")
            );
        }
        Ok(value)
    }

    fn s(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session.as_deref().unwrap_or(""))
    }

    async fn start(&mut self, app: &Path) -> anyhow::Result<()> {
        let caps = json!({ "browserName": "wry", "tauri:options": { "application": app } });
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/session",
                Some(
                    json!({ "capabilities": { "alwaysMatch": caps }, "desiredCapabilities": caps }),
                ),
            )
            .await?;
        self.session = v
            .get("sessionId")
            .and_then(Value::as_str)
            .map(str::to_string);
        if self.session.is_none() {
            bail!("WebDriver gave no session id");
        }
        Ok(())
    }

    async fn quit(&mut self) {
        if self.session.is_some() {
            let path = self.s("");
            let _ = self.cmd(reqwest::Method::DELETE, &path, None).await;
            self.session = None;
        }
    }

    async fn exec(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.cmd(
            reqwest::Method::POST,
            &self.s("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    async fn wait_for(&self, script: &str, args: Value, what: &str) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Ok(v) = self.exec(script, args.clone()).await {
                if v.as_bool() == Some(true) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        bail!("timed out waiting for {what}")
    }

    async fn wait_screen(&self, screens: &[&str]) -> anyhow::Result<()> {
        self.wait_for(
            "return arguments[0].includes(document.body.dataset.screen || '');",
            json!(screens),
            &format!("screen {screens:?}"),
        )
        .await
    }

    async fn find(&self, css: &str) -> anyhow::Result<String> {
        self.wait_for(
            "return !!document.querySelector(arguments[0]);",
            json!([css]),
            css,
        )
        .await?;
        let v = self
            .cmd(
                reqwest::Method::POST,
                &self.s("/element"),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        v.get(ELEMENT)
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("no element {css}"))
    }

    async fn click(&self, css: &str) -> anyhow::Result<()> {
        let id = self.find(css).await?;
        self.cmd(
            reqwest::Method::POST,
            &self.s(&format!("/element/{id}/click")),
            Some(json!({})),
        )
        .await?;
        Ok(())
    }

    async fn type_text(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let id = self.find(css).await?;
        self.cmd(
            reqwest::Method::POST,
            &self.s(&format!("/element/{id}/clear")),
            Some(json!({})),
        )
        .await?;
        let keys: Vec<String> = text.chars().map(String::from).collect();
        self.cmd(
            reqwest::Method::POST,
            &self.s(&format!("/element/{id}/value")),
            Some(json!({ "text": text, "value": keys })),
        )
        .await?;
        Ok(())
    }
}

/// Runs an asynchronous script in the page that reports a duration in milliseconds.
async fn in_page_ms(wd: &WebDriver, script: &str) -> anyhow::Result<f64> {
    let v = wd
        .cmd(
            reqwest::Method::POST,
            &wd.s("/execute/async"),
            Some(json!({ "script": script, "args": [] })),
        )
        .await?;
    v.as_f64().context("the page reported no duration")
}

/// `(pid, parent pid, command name)` of every process.
fn processes() -> Vec<(u32, u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The name is in parentheses and may hold spaces: parse around the last ')'.
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            let name = stat[open + 1..close].to_string();
            let ppid = stat[close + 2..].split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid, name))
        })
        .collect()
}

/// The app's process (a descendant of `root` named cpis-field) and everything it started (the
/// WebKit web and network processes).
fn app_tree(root: u32) -> Vec<u32> {
    let procs = processes();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid, _) in &procs {
        children.entry(*ppid).or_default().push(*pid);
    }
    let descendants = |from: u32| {
        let mut out = vec![from];
        let mut i = 0;
        while i < out.len() {
            if let Some(c) = children.get(&out[i]) {
                out.extend(c);
            }
            i += 1;
        }
        out
    };
    let app = descendants(root).into_iter().find(|pid| {
        procs
            .iter()
            .any(|(p, _, name)| p == pid && name.starts_with("cpis-field"))
    });
    app.map(descendants).unwrap_or_default()
}

fn status_bytes(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        * 1024
}

/// (app process RSS, RSS of the app and its WebKit processes together).
fn tree_rss(root: u32) -> (u64, u64) {
    let tree = app_tree(root);
    let app = tree
        .first()
        .map(|p| status_bytes(*p, "VmRSS:"))
        .unwrap_or(0);
    let total = tree.iter().map(|p| status_bytes(*p, "VmRSS:")).sum();
    (app, total)
}

/// tauri-driver and what it started. Killing tauri-driver alone would orphan its WebKitWebDriver
/// (and an app left running), so its descendants are ended first, each by its pid.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let procs = processes();
        let mut tree = vec![self.0.id()];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(
                procs
                    .iter()
                    .filter(|(_, ppid, _)| *ppid == parent)
                    .map(|(pid, _, _)| *pid),
            );
            i += 1;
        }
        for pid in tree.iter().skip(1).rev() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Setup<'a> {
    /// An enrolled, synced device store the app opens (CPIS_DEVICE_DIR).
    pub device_dir: &'a Path,
    pub user: &'a str,
    pub pin: &'a str,
    /// NHS numbers to check: flagged people and misses, alternating.
    pub numbers: Vec<String>,
    pub work: &'a Path,
}

pub fn app_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("cpis-field");
    if !path.exists() {
        bail!("{} is not built", path.display());
    }
    Ok(path)
}

/// Why B6 cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if std::env::var_os("DISPLAY").is_none() {
        return Some("no display (run through scripts/bench.sh, which uses Xvfb)".into());
    }
    for tool in ["tauri-driver", "WebKitWebDriver"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    app_binary().err().map(|e| e.to_string())
}

pub async fn run(setup: Setup<'_>) -> anyhow::Result<Vec<Row>> {
    let app = app_binary()?;
    let port = free_port()?;
    let native = free_port()?;
    let log = std::fs::File::create(setup.work.join("tauri-driver.log"))?;
    let driver = Driver(
        Command::new("tauri-driver")
            .arg("--port")
            .arg(port.to_string())
            .arg("--native-port")
            .arg(native.to_string())
            .env("CPIS_DEVICE_DIR", setup.device_dir)
            .env("RUST_LOG", "warn")
            // WebKitGTK without a GPU (Xvfb): render in software.
            .env("WEBKIT_DISABLE_DMABUF_RENDERER", "1")
            .env("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("could not start tauri-driver")?,
    );
    let mut wd = WebDriver::new(format!("http://127.0.0.1:{port}"));
    let until = Instant::now() + Duration::from_secs(20);
    while wd.cmd(reqwest::Method::GET, "/status", None).await.is_err() {
        if Instant::now() > until {
            bail!("tauri-driver did not answer");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let result = drive(&mut wd, &app, &setup, driver.0.id()).await;
    wd.quit().await;
    drop(driver);
    result
}

async fn drive(
    wd: &mut WebDriver,
    app: &Path,
    setup: &Setup<'_>,
    driver_pid: u32,
) -> anyhow::Result<Vec<Row>> {
    let started = Instant::now();
    wd.start(app).await?;
    let window_ready = started.elapsed();
    wd.wait_screen(&["sign_in", "check", "enrol"]).await?;
    let first_screen = started.elapsed();
    let (_, rss_first) = tree_rss(driver_pid);

    wd.type_text("#user-id", setup.user).await?;
    wd.type_text("#pin", setup.pin).await?;
    wd.click("#sign-in-submit").await?;
    wd.wait_screen(&["check"]).await?;

    let mut checks = Samples::with_capacity(setup.numbers.len());
    let mut ipc = Samples::with_capacity(setup.numbers.len());
    for nhs in &setup.numbers {
        wd.wait_for(
            "return document.body.dataset.screen === 'check' && !!document.getElementById('nhs-number');",
            json!([]),
            "the check form",
        )
        .await?;
        wd.type_text("#nhs-number", nhs).await?;
        // Timed inside the page, from the click to the result screen being drawn, so WebDriver's
        // own round trips are not in the figure.
        checks.push(Duration::from_secs_f64(
            in_page_ms(
                wd,
                "const done = arguments[arguments.length - 1];
                 const t0 = performance.now();
                 const finish = () => done(performance.now() - t0);
                 const seen = new MutationObserver(() => {
                   if (document.body.dataset.screen === 'result') { seen.disconnect(); finish(); }
                 });
                 seen.observe(document.body, { attributes: true, attributeFilter: ['data-screen'] });
                 document.getElementById('check-submit').click();",
            )
            .await?
                / 1e3,
        ));
        ipc.push(Duration::from_secs_f64(
            in_page_ms(
                wd,
                "const done = arguments[arguments.length - 1];
                 const t0 = performance.now();
                 window.__TAURI_INTERNALS__.invoke('app_status')
                   .then(() => done(performance.now() - t0), () => done(-1));",
            )
            .await?
            .max(0.0)
                / 1e3,
        ));
        wd.click("#check-again").await?;
    }
    let (app_rss, total_rss) = tree_rss(driver_pid);
    let app_peak = app_tree(driver_pid)
        .first()
        .map(|p| status_bytes(*p, "VmHWM:"))
        .unwrap_or(0);

    let mut rows = Vec::new();
    let mut start = Row::new(
        "B6",
        "app start to first screen ready (release window, Xvfb)",
    );
    start.n = "1 start".into();
    start.median = crate::stats::fmt_ns(first_screen.as_nanos() as u64);
    start.floor = format!(
        "WebDriver has the window (process + webview up) {}",
        crate::stats::fmt_ns(window_ready.as_nanos() as u64)
    );
    start.ratio = Some(first_screen.as_secs_f64() / window_ready.as_secs_f64().max(1e-9));
    start.peak_rss = Some(rss_first);
    rows.push(start);
    let mut mem = Row::new(
        "B6",
        format!(
            "resident memory after {} checks: app + WebKit processes (app alone {}, app peak {})",
            checks.len(),
            fmt_bytes(app_rss),
            fmt_bytes(app_peak)
        ),
    );
    mem.n = format!("{} checks", checks.len());
    mem.floor = format!(
        "same processes at the first screen {}",
        fmt_bytes(rss_first)
    );
    mem.ratio = Some(total_rss as f64 / rss_first.max(1) as f64);
    mem.peak_rss = Some(total_rss);
    rows.push(mem);
    rows.push(
        Row::new(
            "B6·a",
            "a check through the window: click to result screen drawn (online, timed in the page)",
        )
        .latency(checks.summary(), "checks")
        .against("`app_status` through the same IPC", ipc.summary()),
    );
    Ok(rows)
}
