//! B7: checks while a first download crawls over a link paced to 20 kB/s (a weak mobile signal),
//! then while replies are held (a tunnel), in the long-running engine with its background sync,
//! as the app runs it. Floor: the same checks on the same device once the download has finished
//! and nothing else runs (its idle check).
//!
//! The central is a `cpis central serve` process holding the demo register; the device reaches it
//! through the loopback fault proxy of the test suite, which paces every reply to 20 kB/s (each
//! connection on its own: the live check does not share the feed's 20 kB/s, a simplification in
//! the device's favour that the held phase does not need). Pages are 100 records (about 40 kB), so
//! the download is still under way while the checks are measured; the run fails if it is not.
//!
//! Two figures per phase: the cache's answer (`cache_only`, what the screen can show at once) and
//! the full answer (`Device::check` as the app calls it: the cache, then the central live under the
//! 1.5 s deadline).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use cpis_device::views::{CheckOutcome, SyncPhase};
use cpis_device::{spawn_background_sync, CheckRequest, Device, DeviceConfig};
use cpis_tests::proxy::{Fault, FaultProxy};

use crate::central_bench::{Ctx, USER};
use crate::central_proc::CentralProcess;
use crate::data;
use crate::report::Row;
use crate::stats::{fmt_ns, Samples};

pub struct Options {
    pub flags: u32,
    pub seed: u64,
    /// Cache answers measured per phase (full answers: a quarter of that).
    pub checks: usize,
}

const REGION: &str = "north-west";
const PACE_BYTES_PER_SEC: u32 = 20_000;
const PAGE_LIMIT: u32 = 100;

async fn wait_until(what: &str, limit: Duration, f: impl Fn() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while !f() {
        if started.elapsed() > limit {
            bail!("B7: {what} did not happen within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn time_checks(
    device: &Device,
    keys: &[String],
    cache_only: bool,
    n: usize,
) -> anyhow::Result<Samples> {
    let mut samples = Samples::with_capacity(n);
    for key in keys.iter().cycle().take(n) {
        let request = CheckRequest {
            cache_only,
            ..Default::default()
        };
        let started = Instant::now();
        let view = device.check(key, request).await;
        samples.push(started.elapsed());
        if !matches!(
            view.outcome,
            CheckOutcome::RecordFound | CheckOutcome::NoRecord
        ) {
            bail!("B7: a check answered {:?}: {:?}", view.outcome, view.reason);
        }
    }
    Ok(samples)
}

pub async fn run(opts: &Options, work: &Path) -> anyhow::Result<Vec<Row>> {
    let dir = work.join("b7");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = format!("sqlite:{}", dir.join("central.sqlite").display());
    eprintln!("B7: loading the demo register ({} flags)", opts.flags);
    let ctx = Ctx::new(dir.clone(), crate::b1_check::random_pin());
    ctx.load_demo(&db, opts.flags, opts.seed)?;
    let code = ctx.enrol_code(&db, REGION)?;
    let pin = ctx.pin.clone();
    let central = CentralProcess::start(&db, &dir.join("central.log"))?;
    let upstream: SocketAddr = central
        .url
        .trim_start_matches("http://")
        .parse()
        .context("the central's address")?;
    let proxy = FaultProxy::start(upstream).await;

    // The people of the region in the order the register was loaded, so the first pages hold the
    // first of them; the rest of the list answers as misses while the copy is incomplete.
    let register = data::register(opts.flags, opts.seed, Utc::now().date_naive());
    let region_las: HashSet<_> = register
        .las
        .iter()
        .filter(|l| l.region.as_str() == REGION)
        .map(|l| l.ods.clone())
        .collect();
    let keys: Vec<String> = register
        .flags
        .iter()
        .filter(|f| region_las.contains(&f.local_authority))
        .take(200)
        .map(|f| f.nhs_number.as_digits())
        .collect();
    if keys.is_empty() {
        bail!("B7: the register has nobody in {REGION}");
    }

    let mut config = DeviceConfig::new(dir.join("device"));
    config.page_limit = PAGE_LIMIT;
    let deadline = config.live_check_deadline;
    let device = Arc::new(Device::open(config)?);
    device.enrol(&proxy.url(), &code).await?;
    device.sign_in(USER, &pin).await?;

    proxy.inject("/", Fault::Pace(PACE_BYTES_PER_SEC), u32::MAX);
    let pages = Arc::new(AtomicU64::new(0));
    let seen = pages.clone();
    let worker = spawn_background_sync(
        device.clone(),
        Arc::new(move |p| {
            if p.phase == SyncPhase::Pull {
                seen.store(p.pages, Ordering::SeqCst);
            }
        }),
    );
    eprintln!("B7: first download paced to {PACE_BYTES_PER_SEC} B/s; waiting for two pages");
    wait_until(
        "two pages of the first download",
        Duration::from_secs(180),
        || pages.load(Ordering::SeqCst) >= 2,
    )
    .await?;

    let n_full = (opts.checks / 4).max(1);
    let crawl_cache = time_checks(&device, &keys, true, opts.checks).await?;
    let crawl_full = time_checks(&device, &keys, false, n_full).await?;
    if device.status().last_sync_at.is_some() {
        bail!("B7: the download finished before the checks were measured: lower --flags' pace");
    }

    // Held: every reply waits forever; the first full answer waits out the deadline, and marks
    // the central unreachable for the ones after it.
    proxy.clear();
    proxy.inject("/", Fault::Hold, u32::MAX);
    let held_cache = time_checks(&device, &keys, true, opts.checks).await?;
    let held_full = time_checks(&device, &keys, false, n_full).await?;

    // Released: the download finishes at full speed, then the same checks once idle.
    proxy.clear();
    eprintln!("B7: released; waiting for the download to finish");
    let wake = device.wake_handle();
    wait_until(
        "the end of the first download",
        Duration::from_secs(600),
        || {
            wake.notify_one();
            device.status().last_sync_at.is_some()
        },
    )
    .await?;
    worker.abort();
    let idle = time_checks(&device, &keys, true, opts.checks).await?;
    let idle_full = time_checks(&device, &keys, false, n_full).await?;
    drop(device);
    central.stop()?;

    let idle = idle.summary();
    let limit = deadline + Duration::from_millis(100);
    let within_2x = |s: &Samples| (s.summary().median_ns as f64) < 2.0 * idle.median_ns as f64;
    let within_deadline = |s: &Samples| s.summary().max_ns <= limit.as_nanos() as u64;
    let mut rows = vec![
        Row::new(
            "B7",
            format!("check during a first download at 20 kB/s: the cache's answer ({PAGE_LIMIT}-record pages)"),
        )
        .latency(crawl_cache.summary(), "checks")
        .against("idle cache answer", idle)
        .target("median < 2× idle", within_2x(&crawl_cache)),
        Row::new("B7", "check during a first download at 20 kB/s: the full answer (live under the deadline)")
            .latency(crawl_full.summary(), "checks")
            .against("idle cache answer", idle)
            .target(
                &format!("max ≤ {}", fmt_ns(limit.as_nanos() as u64)),
                within_deadline(&crawl_full),
            ),
        Row::new("B7", "check while replies are held: the cache's answer")
            .latency(held_cache.summary(), "checks")
            .against("idle cache answer", idle)
            .target("median < 2× idle", within_2x(&held_cache)),
        Row::new("B7", "check while replies are held: the full answer (the first waits out the deadline)")
            .latency(held_full.summary(), "checks")
            .against("idle cache answer", idle)
            .target(
                &format!("max ≤ {}", fmt_ns(limit.as_nanos() as u64)),
                within_deadline(&held_full),
            ),
        Row::new("B7·a", "idle full answer on the same device (central live through the proxy)")
            .latency(idle_full.summary(), "checks")
            .against("idle cache answer", idle),
    ];
    for (label, s) in [("crawl full", &crawl_full), ("held full", &held_full)] {
        eprintln!("B7: {label} max {}", fmt_ns(s.summary().max_ns));
    }
    rows.push(
        Row::new(
            "B7·b",
            "idle cache answer (the floor above), region copy complete",
        )
        .latency(idle, "checks"),
    );
    Ok(rows)
}
