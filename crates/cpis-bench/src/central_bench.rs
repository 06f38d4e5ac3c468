//! B2 to B6: a real central (`cpis central serve`, release, loopback HTTP) with devices and load in
//! child processes of this binary.
//!
//! - B2 first sync: one region of the demo register, then all 250,000 flags from a second central
//!   whose one region holds every LA (made with `cpis central la` and `import` per LA). Floor: the
//!   same rows' JSON inserted unencrypted from memory in one transaction into an empty table.
//! - B3 delta sync: an LA of the synced region re-uploads its file with 1,000 records changed; the
//!   device's next sync is timed. Floor: the same 1,000 rows replaced in the plain table.
//! - B4 outbox drain: 10,000 queued events, then the count at the central, then every event sent
//!   again (each must come back a duplicate). Floor: the same sealed events into an empty table.
//! - B5 throughput: live checks and event batches from a load-generator process; floor: the
//!   central's unauthenticated status endpoint through the same generator. On SQLite, and on
//!   PostgreSQL when a server answers: there with one central instance and with two on the same
//!   database (the generator's connections shared out over both, as a load balancer would), and
//!   the rate at which a backlog of notifications is delivered to a loopback webhook by one and
//!   by two instances; floor: the same POSTs sent one after another by a plain client.
//! - B6 runs against the same central while it is up (see `app_bench`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use cpis_core::{FlagRecord, Region};
use serde::de::DeserializeOwned;

use crate::central_proc::{admin, last_line, CentralProcess};
use crate::data::{self, ALL_ENGLAND};
use crate::device_child::{DrainResult, SyncResult, CODE_ENV, PIN_ENV};
use crate::load::{LoadResult, Mode};
use crate::report::Row;
use crate::stats::{fmt_ns, Samples, Summary};

pub struct Options {
    pub flags: u32,
    pub seed: u64,
    pub delta: usize,
    pub events: usize,
    pub load_requests: usize,
    pub concurrency: usize,
    pub event_batch: usize,
    pub postgres: Option<String>,
    pub b2: bool,
    pub b3: bool,
    pub b4: bool,
    pub b5: bool,
    pub b6: bool,
}

/// The clinician every bench device signs in as; the load generator checks and records as them too.
pub const USER: &str = "bench-clinician";
pub(crate) const ORG: &str = "RBENCH";

/// A benchmark's scratch directory and its clinician's PIN, with the admin steps every central here
/// starts with. Also used by B7.
pub(crate) struct Ctx {
    work: PathBuf,
    pub(crate) pin: String,
}

impl Ctx {
    pub(crate) fn new(work: PathBuf, pin: String) -> Self {
        Self { work, pin }
    }

    /// Runs this binary with `args` in a child process and decodes the JSON line it prints.
    fn child<T: DeserializeOwned>(&self, args: &[&str], code: Option<&str>) -> anyhow::Result<T> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(args)
            .env(PIN_ENV, &self.pin)
            .env("RUST_LOG", "warn");
        if let Some(code) = code {
            cmd.env(CODE_ENV, code);
        }
        let out = cmd.output().context("could not start a child benchmark")?;
        if !out.status.success() {
            bail!(
                "`cpis-bench {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let stdout = String::from_utf8(out.stdout)?;
        serde_json::from_str(&last_line(&stdout))
            .with_context(|| format!("`cpis-bench {}` printed no result", args.join(" ")))
    }

    pub(crate) fn enrol_code(&self, db: &str, region: &str) -> anyhow::Result<String> {
        let out = admin(
            db,
            &[
                "enrol",
                "--region",
                region,
                "--org",
                ORG,
                "--setting",
                "ambulance",
                "--org-name",
                "Bench Ambulance Service",
            ],
            &[],
        )?;
        Ok(last_line(&out))
    }

    /// The demo register (`cpis central demo`) and the bench's clinician, into the central at `db`.
    pub(crate) fn load_demo(&self, db: &str, flags: u32, seed: u64) -> anyhow::Result<()> {
        admin(
            db,
            &[
                "demo",
                "--flags",
                &flags.to_string(),
                "--seed",
                &seed.to_string(),
            ],
            &[],
        )?;
        self.add_user(db)
    }

    fn add_user(&self, db: &str) -> anyhow::Result<()> {
        admin(
            db,
            &[
                "user",
                "--id",
                USER,
                "--name",
                "Bench Clinician",
                "--org",
                ORG,
                "--activity",
                "B0107",
                "--role",
                "Paramedic",
            ],
            &[("CPIS_PIN", &self.pin)],
        )?;
        Ok(())
    }

    fn dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let d = self.work.join(name);
        let _ = std::fs::remove_dir_all(&d);
        Ok(d)
    }
}

fn fresh_sqlite(work: &Path, name: &str) -> String {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(work.join(format!("{name}{suffix}")));
    }
    format!("sqlite:{}", work.join(name).display())
}

fn once(label: &str, seconds: f64) -> Row {
    let mut row = Row::new("", label).latency(Summary::once(seconds), "");
    row.p99 = "-".into();
    row
}

/// Times one run of `f` as a floor.
fn floor_once(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Summary> {
    let mut s = Samples::default();
    s.time(f)?;
    Ok(s.summary())
}

/// A plaintext table of `rows`, created empty, filled in one transaction: the sync floor.
fn plain_fill(path: &Path, rows: &[(String, Vec<u8>)]) -> anyhow::Result<Summary> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut conn = data::open_plain(path)?;
    floor_once(|| data::plain_insert(&mut conn, rows))
}

pub async fn run(opts: &Options, work: &Path) -> anyhow::Result<Vec<Row>> {
    if !(opts.b2 || opts.b3 || opts.b4 || opts.b5 || opts.b6) {
        return Ok(Vec::new());
    }
    let ctx = Ctx {
        work: work.to_path_buf(),
        pin: crate::b1_check::random_pin(),
    };
    let mut rows = Vec::new();
    let today = Utc::now().date_naive();
    // The same register the central's demo command makes (same generator, seed and date), so the
    // floors write exactly the records the central serves.
    let register = data::register(opts.flags, opts.seed, today);
    let region_of: HashMap<_, _> = register
        .las
        .iter()
        .map(|l| (l.ods.clone(), l.region.clone()))
        .collect();
    let mut per_region: HashMap<Region, Vec<&FlagRecord>> = HashMap::new();
    for f in &register.flags {
        per_region
            .entry(region_of[&f.local_authority].clone())
            .or_default()
            .push(f);
    }
    // The largest region: the heaviest first sync a regional device does.
    let (region, region_flags) = per_region
        .iter()
        .max_by_key(|(_, v)| v.len())
        .map(|(r, v)| (r.clone(), v.clone()))
        .context("an empty register")?;

    if opts.b2 || opts.b3 || opts.b4 || opts.b5 || opts.b6 {
        let db = fresh_sqlite(work, "central-regions.sqlite");
        eprintln!(
            "B2-B5: loading the demo register into a central ({} flags)",
            opts.flags
        );
        let started = Instant::now();
        ctx.load_demo(&db, opts.flags, opts.seed)?;
        eprintln!("  loaded in {:.1} s", started.elapsed().as_secs_f64());
        let sync_code = ctx.enrol_code(&db, region.as_str())?;
        let drain_code = ctx.enrol_code(&db, region.as_str())?;
        let load_codes: Vec<String> = (0..3)
            .map(|_| ctx.enrol_code(&db, region.as_str()))
            .collect::<anyhow::Result<_>>()?;
        let app_code = ctx.enrol_code(&db, region.as_str())?;
        let central = CentralProcess::start(&db, &work.join("central-regions.log"))?;

        let device_dir = ctx.dir("device-region")?;
        let plain_path = work.join("plain-region.sqlite");
        if opts.b2 || opts.b3 {
            eprintln!(
                "B2: first sync of region {} ({} flags)",
                region,
                region_flags.len()
            );
            let r: SyncResult = ctx.child(
                &[
                    "device",
                    "sync",
                    "--dir",
                    &device_dir.display().to_string(),
                    "--url",
                    &central.url,
                    "--user",
                    USER,
                ],
                Some(&sync_code),
            )?;
            if r.cached_flags != region_flags.len() as u64 {
                bail!(
                    "the device holds {} flags after its first sync, the region has {}",
                    r.cached_flags,
                    region_flags.len()
                );
            }
            let owned: Vec<FlagRecord> = region_flags.iter().map(|f| (*f).clone()).collect();
            let floor = plain_fill(&plain_path, &data::plain_rows(&owned))?;
            let mut row = once(
                &format!(
                    "first sync, one region ({} flags, {} pages, {:.0} MB on the wire)",
                    r.cached_flags,
                    r.pages,
                    r.bytes as f64 / 1e6
                ),
                r.seconds,
            )
            .against("plain insert, one tx", floor)
            .rss(Some(r.peak_rss));
            row.id = "B2".into();
            row.n = format!("{} flags", r.cached_flags);
            rows.push(row.target("device RSS < 300 MB", r.peak_rss < 300_000_000));
        }

        if opts.b3 {
            rows.push(delta_sync(
                &ctx,
                &db,
                &register,
                &region,
                &device_dir,
                &plain_path,
                opts.delta,
            )?);
        }

        if opts.b4 {
            rows.extend(drain(&ctx, &central, &drain_code, opts).await?);
        }

        if opts.b5 {
            rows.extend(throughput(&ctx, &central, "SQLite", &load_codes, opts)?);
        }

        if opts.b6 {
            rows.extend(app(&ctx, &central, &app_code, &region_flags).await);
        }
        let mut row = Row::new(
            "B5·m",
            "central serve process (SQLite), peak RSS over B2-B6",
        );
        row.peak_rss = central.peak_rss();
        rows.push(row);
        central.stop()?;
    }

    if opts.b5 {
        rows.extend(postgres_throughput(&ctx, opts, &region).await);
    }

    if opts.b2 {
        rows.extend(first_sync_all(&ctx, opts, register)?);
    }
    Ok(rows)
}

/// B6: the app window against this central, on a device enrolled and synced into the region.
async fn app(
    ctx: &Ctx,
    central: &CentralProcess,
    code: &str,
    region_flags: &[&FlagRecord],
) -> Vec<Row> {
    let skipped = |why: String| {
        eprintln!("!!! B6 (the app) NOT MEASURED: {why}");
        vec![Row::skipped(
            "B6",
            "app start, and memory after 100 checks",
            &format!("not measured: {}", first_line(&why)),
        )]
    };
    if let Some(why) = crate::app_bench::unavailable() {
        return skipped(why);
    }
    let inner = async {
        eprintln!("B6: the app window, 100 checks");
        let dir = ctx.dir("device-app")?;
        let _: SyncResult = ctx.child(
            &[
                "device",
                "sync",
                "--dir",
                &dir.display().to_string(),
                "--url",
                &central.url,
                "--user",
                USER,
            ],
            Some(code),
        )?;
        let numbers = (0..100)
            .map(|i| {
                if i % 2 == 0 {
                    region_flags[(i * 7919) % region_flags.len()]
                        .nhs_number
                        .as_digits()
                } else {
                    cpis_core::NhsNumber::test_range(
                        cpis_central::demo::GUARANTEED_MISS_FROM + i as u32,
                    )
                    .as_digits()
                }
            })
            .collect();
        crate::app_bench::run(crate::app_bench::Setup {
            device_dir: &dir,
            user: USER,
            pin: &ctx.pin,
            numbers,
            work: &ctx.work,
        })
        .await
    };
    match inner.await {
        Ok(rows) => rows,
        Err(e) => skipped(format!("{e:#}")),
    }
}

/// B3: re-upload one LA's file with `n` records changed, then time the device's next sync.
fn delta_sync(
    ctx: &Ctx,
    db: &str,
    register: &cpis_central::demo::DemoData,
    region: &Region,
    device_dir: &Path,
    plain_path: &Path,
    n: usize,
) -> anyhow::Result<Row> {
    // The region's LA with the most people, so one upload can change `n` of them.
    let mut by_la: HashMap<_, Vec<&FlagRecord>> = HashMap::new();
    for f in &register.flags {
        by_la.entry(f.local_authority.clone()).or_default().push(f);
    }
    let (la, people) = by_la
        .into_iter()
        .filter(|(ods, _)| {
            register
                .las
                .iter()
                .any(|l| &l.ods == ods && &l.region == region)
        })
        .max_by_key(|(_, v)| v.len())
        .context("the region has no LA")?;
    if people.len() < n {
        bail!(
            "LA {la} holds {} people, fewer than the {n} to change",
            people.len()
        );
    }
    // A new local case reference for the first n people: a real, visible change to each record.
    let changed: Vec<FlagRecord> = people
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut f = (*f).clone();
            if i < n {
                f.local_id = Some(format!("D{:07}", i));
            }
            f
        })
        .collect();
    let file = ctx.work.join("delta-upload.csv");
    std::fs::write(&file, data::la_csv(&changed.iter().collect::<Vec<_>>())?)?;
    eprintln!("B3: re-uploading LA {la} with {n} records changed");
    admin(
        db,
        &["import", "--la", la.as_str(), &file.display().to_string()],
        &[],
    )?;
    let r: SyncResult = ctx.child(
        &[
            "device",
            "sync",
            "--dir",
            &device_dir.display().to_string(),
            "--user",
            USER,
        ],
        None,
    )?;
    let rows = data::plain_rows(&changed[..n]);
    let mut conn = data::open_plain(plain_path)?;
    let floor = floor_once(|| {
        let tx = conn.transaction()?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT OR REPLACE INTO flags (nhs, json) VALUES (?1, ?2)")?;
            for (nhs, json) in &rows {
                stmt.execute(rusqlite::params![nhs, json])?;
            }
        }
        tx.commit()?;
        Ok(())
    })?;
    let mut row = once(
        &format!(
            "delta sync ({} changes pulled in {} pages)",
            r.records, r.pages
        ),
        r.seconds,
    )
    .against("plain replace, one tx", floor)
    .rss(Some(r.peak_rss));
    row.id = "B3".into();
    row.n = format!("{} changes", r.records);
    let met = r.seconds < 0.3 && r.records as usize == n;
    Ok(row.target("< 300 ms", met))
}

/// B4: 10,000 queued events drained to the central, counted there, then all sent again.
async fn drain(
    ctx: &Ctx,
    central: &CentralProcess,
    code: &str,
    opts: &Options,
) -> anyhow::Result<Vec<Row>> {
    let store = cpis_central::open_store(&central.db).await?;
    let before = store.event_count().await?;
    eprintln!("B4: queueing {} events, then draining", opts.events);
    let dir = ctx.dir("device-drain")?;
    let r: DrainResult = ctx.child(
        &[
            "device",
            "drain",
            "--dir",
            &dir.display().to_string(),
            "--url",
            &central.url,
            "--user",
            USER,
            "--events",
            &opts.events.to_string(),
            "--flags",
            &opts.flags.to_string(),
        ],
        Some(code),
    )?;
    let after = store.event_count().await?;
    let stored = after - before;
    let exactly_once = stored == opts.events as u64
        && r.delivered == opts.events as u64
        && r.queued_after == 0
        && r.dead == 0
        && r.resent_accepted == 0
        && r.resent_duplicate == opts.events as u64;
    // The floor, measured by the child: the same sealed events written into an empty plain table
    // in one transaction.
    let floor = Summary::once(r.floor_seconds);
    let mut row = once(
        &format!(
            "outbox drain: central stored {stored}, resent {} → {} duplicates, {} accepted",
            r.resent_duplicate + r.resent_accepted + r.resent_rejected,
            r.resent_duplicate,
            r.resent_accepted
        ),
        r.seconds,
    )
    .against("plain insert, one tx", floor)
    .rss(Some(r.peak_rss));
    row.id = "B4".into();
    row.n = format!("{} events", opts.events);
    let mut rows = vec![row.target("< 5 s, exactly once", r.seconds < 5.0 && exactly_once)];
    let mut setup = once(
        "queueing them: one durable transaction per event (setup, not the figure)",
        r.enqueue_seconds,
    );
    setup.id = "B4·a".into();
    setup.n = format!("{} events", opts.events);
    rows.push(setup);
    Ok(rows)
}

fn load(
    ctx: &Ctx,
    url: &str,
    code: &str,
    mode: &str,
    requests: usize,
    opts: &Options,
) -> anyhow::Result<LoadResult> {
    let dir = ctx.dir(&format!("load-{mode}"))?;
    ctx.child(
        &[
            "load",
            "--url",
            url,
            "--dir",
            &dir.display().to_string(),
            "--mode",
            mode,
            "--requests",
            &requests.to_string(),
            "--concurrency",
            &opts.concurrency.to_string(),
            "--batch",
            &opts.event_batch.to_string(),
            "--flags",
            &opts.flags.to_string(),
        ],
        Some(code),
    )
}

fn throughput(
    ctx: &Ctx,
    central: &CentralProcess,
    backend: &str,
    codes: &[String],
    opts: &Options,
) -> anyhow::Result<Vec<Row>> {
    throughput_at(ctx, &central.url, backend, codes, opts)
}

/// B5 against `url`: one central, or several instances' URLs separated by commas.
fn throughput_at(
    ctx: &Ctx,
    url: &str,
    backend: &str,
    codes: &[String],
    opts: &Options,
) -> anyhow::Result<Vec<Row>> {
    eprintln!(
        "B5 ({backend}): load from a separate process, {} connections",
        opts.concurrency
    );
    let status = load(ctx, url, &codes[0], "status", opts.load_requests, opts)?;
    let check = load(ctx, url, &codes[1], "check", opts.load_requests, opts)?;
    let batches = (opts.load_requests / opts.event_batch).max(opts.concurrency * 4);
    let events = load(ctx, url, &codes[2], "events", batches, opts)?;
    let floor = format!(
        "status endpoint {:.0}/s (p99 {})",
        status.requests_per_second,
        fmt_ns(status.latency.p99_ns)
    );
    let mut rows = Vec::new();
    for (r, what) in [(&check, "live checks"), (&events, "events ingested")] {
        let mut row = Row::new("B5", format!("{what}/s, {backend}"));
        row.n = match r.mode {
            Mode::Events => format!(
                "{} events in {} batches of {}, {} conns",
                r.items, r.requests, opts.event_batch, opts.concurrency
            ),
            _ => format!("{} requests, {} conns", r.requests, opts.concurrency),
        };
        row.median = format!(
            "{:.0}/s (latency {})",
            r.items_per_second,
            fmt_ns(r.latency.median_ns)
        );
        row.p99 = fmt_ns(r.latency.p99_ns);
        row.floor = floor.clone();
        row.ratio = Some(status.requests_per_second / r.requests_per_second);
        row.raw = Some(r.latency);
        if r.errors > 0 {
            row.figure.push_str(&format!(" ({} errors)", r.errors));
        }
        if r.mode == Mode::Check && backend == "SQLite" {
            let met =
                r.items_per_second >= 2_000.0 && r.latency.p99_ns < 50_000_000 && r.errors == 0;
            rows.push(row.target("≥ 2,000/s, p99 < 50 ms", met));
        } else {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// B5 on PostgreSQL: a fresh database on the server, the demo register, the same load.
async fn postgres_throughput(ctx: &Ctx, opts: &Options, region: &Region) -> Vec<Row> {
    let Some(base) = opts.postgres.as_deref() else {
        return vec![Row::skipped(
            "B5",
            "live checks and events/s, PostgreSQL",
            "no --postgres URL given",
        )];
    };
    match postgres_inner(ctx, opts, region, base).await {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("!!! B5 on PostgreSQL NOT MEASURED: {e:#}");
            vec![Row::skipped(
                "B5",
                "live checks and events/s, PostgreSQL",
                &format!("not measured: {}", first_line(&format!("{e:#}"))),
            )]
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(160).collect()
}

async fn postgres_inner(
    ctx: &Ctx,
    opts: &Options,
    region: &Region,
    base: &str,
) -> anyhow::Result<Vec<Row>> {
    let name = format!("cpis_bench_{}", std::process::id());
    let psql = |db_url: &str, sql: &str| -> anyhow::Result<()> {
        let out = Command::new("psql")
            .arg(db_url)
            .arg("-v")
            .arg("ON_ERROR_STOP=1")
            .arg("-qc")
            .arg(sql)
            .output()
            .context("psql is not installed")?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    };
    psql(base, &format!("CREATE DATABASE {name}"))
        .context("the PostgreSQL server did not take a new database")?;
    let db = replace_database(base, &name);
    let result = async {
        eprintln!("B5 (PostgreSQL): loading the demo register into database {name}");
        ctx.load_demo(&db, opts.flags, opts.seed)?;
        let mut codes: Vec<String> = (0..8)
            .map(|_| ctx.enrol_code(&db, region.as_str()))
            .collect::<anyhow::Result<_>>()?;
        let central = CentralProcess::start(&db, &ctx.work.join("central-postgres.log"))?;
        let rows = throughput(ctx, &central, "PostgreSQL", &codes[0..3], opts);
        let rss = central.peak_rss();
        central.stop()?;
        let mut rows = rows?;
        let mut row = Row::new(
            "B5·m",
            "central serve process (PostgreSQL), peak RSS over B5",
        );
        row.peak_rss = rss;
        rows.push(row);

        // Two instances on the same database, the same load shared out over both.
        let one = CentralProcess::start(&db, &ctx.work.join("central-postgres-1.log"))?;
        let two = CentralProcess::start(&db, &ctx.work.join("central-postgres-2.log"))?;
        let both = CentralProcess::joined_urls(&[&one, &two]);
        let two_rows = throughput_at(ctx, &both, "PostgreSQL, two instances", &codes[3..6], opts);
        one.stop()?;
        two.stop()?;
        rows.extend(two_rows?);

        rows.extend(webhook_delivery(ctx, &db, opts, codes.split_off(6)).await?);
        Ok::<_, anyhow::Error>(rows)
    }
    .await;
    // Leave the server as it was.
    std::thread::sleep(Duration::from_millis(200));
    let _ = psql(base, &format!("DROP DATABASE IF EXISTS {name}"));
    result
}

/// Notifications delivered to a webhook per second, by one and by two instances. Each time: a
/// backlog made by the event load while no LA has a webhook, then every LA's webhook pointed at a
/// loopback receiver and the instance(s) started, timed until the receiver has `WEBHOOK_TARGET`
/// of them (start-up included). Floor: the same number of notification-sized POSTs sent one after
/// another to the same receiver by a plain HTTP client, which is what one instance's delivery
/// loop does, without the store.
async fn webhook_delivery(
    ctx: &Ctx,
    db: &str,
    opts: &Options,
    codes: Vec<String>,
) -> anyhow::Result<Vec<Row>> {
    use cpis_central::store::Store;
    const WEBHOOK_TARGET: usize = 3_000;
    let receiver = cpis_tests::webhook_counter::WebhookCounter::start();
    let store = cpis_central::store::PostgresStore::connect(db, None).await?;
    let floor = webhook_floor(&receiver, WEBHOOK_TARGET).await?;
    let mut rows = Vec::new();
    for (instances, code) in [1usize, 2].into_iter().zip(codes) {
        set_webhooks(&store, None).await?;
        let central = CentralProcess::start(db, &ctx.work.join("central-webhook-load.log"))?;
        let batches = (WEBHOOK_TARGET / opts.event_batch + 1).max(opts.concurrency);
        load(ctx, &central.url, &code, "events", batches, opts)?;
        central.stop()?;
        set_webhooks(&store, Some(&receiver.url())).await?;
        let backlog = store.delivery_backlog().await?.pending as usize;
        let target = WEBHOOK_TARGET.min(backlog);
        let before = receiver.received().len();
        eprintln!(
            "B5 webhook: {backlog} notifications waiting, {instances} instance(s) delivering"
        );
        let started = Instant::now();
        let centrals = (0..instances)
            .map(|i| CentralProcess::start(db, &ctx.work.join(format!("central-webhook-{i}.log"))))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let deadline = started + Duration::from_secs(600);
        while receiver.received().len() - before < target {
            if Instant::now() > deadline {
                bail!("the webhook received fewer than {target} notifications in 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        for c in centrals {
            c.stop()?;
        }
        let rate = target as f64 / seconds;
        let mut row = Row::new(
            "B5",
            format!("notifications delivered to a webhook/s, PostgreSQL, {instances} instance(s)"),
        );
        row.n = format!("first {target} of a backlog of {backlog}");
        row.median = format!("{rate:.0}/s ({:.1} s)", seconds);
        row.floor = format!("plain serial POSTs {floor:.0}/s");
        row.ratio = Some(floor / rate);
        rows.push(row);
    }
    set_webhooks(&store, None).await?;
    Ok(rows)
}

/// The receiver's rate for notification-sized POSTs sent one after another by one client.
async fn webhook_floor(
    receiver: &cpis_tests::webhook_counter::WebhookCounter,
    n: usize,
) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let body = serde_json::json!({ "event_id": uuid::Uuid::nil(), "padding": "x".repeat(600) });
    let started = Instant::now();
    for _ in 0..n {
        let id = uuid::Uuid::now_v7().to_string();
        let r = client
            .post(receiver.url())
            .header("X-Cpis-Event-Id", &id)
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("the receiver answered {}", r.status());
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Points every LA's webhook at `url`, or at nothing.
async fn set_webhooks(
    store: &cpis_central::store::PostgresStore,
    url: Option<&str>,
) -> anyhow::Result<()> {
    use cpis_central::store::{Store, WebhookChange};
    for r in store.local_authorities().await? {
        store
            .upsert_la(
                &r.la,
                WebhookChange::Set(url.map(str::to_string)),
                Utc::now(),
            )
            .await?;
    }
    Ok(())
}

/// The same server URL with another database name.
fn replace_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// B2, all 250,000: a central whose one region holds every LA, loaded the way an LA uploads.
fn first_sync_all(
    ctx: &Ctx,
    opts: &Options,
    register: cpis_central::demo::DemoData,
) -> anyhow::Result<Vec<Row>> {
    let region = Region::parse(ALL_ENGLAND)?;
    let register = data::all_in_one_region(register, &region);
    let db = fresh_sqlite(&ctx.work, "central-all.sqlite");
    eprintln!(
        "B2: loading {} flags into one region through {} LA uploads",
        opts.flags,
        register.las.len()
    );
    let started = Instant::now();
    let mut by_la: HashMap<_, Vec<&FlagRecord>> = HashMap::new();
    for f in &register.flags {
        by_la.entry(f.local_authority.clone()).or_default().push(f);
    }
    let file = ctx.work.join("la-upload.csv");
    for la in &register.las {
        let mut args = vec![
            "la",
            "--ods",
            la.ods.as_str(),
            "--name",
            &la.name,
            "--emergency-phone",
            &la.emergency_phone,
            "--region",
            ALL_ENGLAND,
        ];
        if let Some(p) = &la.office_phone {
            args.extend(["--office-phone", p]);
        }
        admin(&db, &args, &[])?;
        let people = by_la.get(&la.ods).cloned().unwrap_or_default();
        std::fs::write(&file, data::la_csv(&people)?)?;
        admin(
            &db,
            &[
                "import",
                "--la",
                la.ods.as_str(),
                &file.display().to_string(),
            ],
            &[],
        )?;
    }
    eprintln!("  loaded in {:.1} s", started.elapsed().as_secs_f64());
    ctx.add_user(&db)?;
    let code = ctx.enrol_code(&db, ALL_ENGLAND)?;
    let central = CentralProcess::start(&db, &ctx.work.join("central-all.log"))?;
    let dir = ctx.dir("device-all")?;
    eprintln!("B2: first sync of all {} flags", opts.flags);
    let r: SyncResult = ctx.child(
        &[
            "device",
            "sync",
            "--dir",
            &dir.display().to_string(),
            "--url",
            &central.url,
            "--user",
            USER,
            "--breakdown",
        ],
        Some(&code),
    )?;
    let central_rss = central.peak_rss();
    central.stop()?;
    if r.cached_flags != u64::from(opts.flags) {
        bail!(
            "the device holds {} flags after its first sync, not {}",
            r.cached_flags,
            opts.flags
        );
    }
    let floor = plain_fill(
        &ctx.work.join("plain-all.sqlite"),
        &data::plain_rows(&register.flags),
    )?;
    let mut row = once(
        &format!(
            "first sync, all flags ({} pages, {:.0} MB on the wire; central RSS {})",
            r.pages,
            r.bytes as f64 / 1e6,
            central_rss
                .map(crate::stats::fmt_bytes)
                .unwrap_or_else(|| "?".into())
        ),
        r.seconds,
    )
    .against("plain insert, one tx", floor)
    .rss(Some(r.peak_rss));
    row.id = "B2".into();
    row.n = format!("{} flags", r.cached_flags);
    let mut rows = vec![row.target(
        "< 10 s, device RSS < 300 MB",
        r.seconds < 10.0 && r.peak_rss < 300_000_000,
    )];
    for (id, what, seconds) in [
        (
            "B2·f",
            "network part: every page fetched again (central query + sign + loopback transfer)",
            r.fetch_seconds,
        ),
        (
            "B2·g",
            "verifying the signatures and decoding those pages on the device",
            r.verify_seconds,
        ),
    ] {
        if let Some(seconds) = seconds {
            let mut row = once(what, seconds).against("plain insert, one tx", floor);
            row.id = id.into();
            row.n = format!("{} pages", r.pages);
            rows.push(row);
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_database_on_the_same_server() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5432/test", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            replace_database("postgres://u@h:1/test?sslmode=disable", "b"),
            "postgres://u@h:1/b?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://u@h", "b"), "postgres://u@h/b");
    }
}
