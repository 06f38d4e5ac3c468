//! B1: a check answered from the device's cache, hit and miss, through `Device::check` itself (blind
//! index, decryption, visibility rules at today, the sealed audit write, the result view), beside a
//! plaintext SQLite primary-key lookup of the same rows measured in the same run.
//!
//! Setting up a signed-in device needs a central once: an in-process central enrols the device into
//! a region and signs the user in, then stops, so its port is closed. The 250,000 flags are applied
//! through `DeviceStore::apply_page`, the path sync uses, from pages built in memory. The device is
//! then reopened and signed in offline: the failed contact marks it offline, so every check is
//! answered by the cache, exactly as in a vehicle without signal.
//!
//! Store-level figures (lookup alone, audit write alone) are printed too, so a missed target shows
//! where the time goes.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::{Duration, Utc};
use cpis_central::demo::GUARANTEED_MISS_FROM;
use cpis_central::store::WebhookChange;
use cpis_central::CentralConfig;
use cpis_core::store::{AuditEntry, DeviceStore};
use cpis_core::{Activity, CareSetting, NhsNumber, OdsCode, Region, VisibilityRules};
use cpis_device::views::{CheckOutcome, Source};
use cpis_device::{CheckRequest, Device, DeviceConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::apply_breakdown;
use crate::data::{self, ALL_ENGLAND};
use crate::report::Row;
use crate::stats::{Samples, Summary};

pub struct Options {
    pub flags: u32,
    pub seed: u64,
    /// Device checks per kind (hit, miss). Each writes a durable audit record, so they are slower.
    pub checks: usize,
    /// Lookups per kind for the floor and the store-level figures.
    pub lookups: usize,
}

const USER: &str = "bench-clinician";
const ORG: &str = "RBENCH";
/// About the size of a sealed audit entry (JSON of the entry, nonce and tag).
const AUDIT_ROW_BYTES: usize = 200;

/// A PIN for the synthetic user; random per run and never printed.
pub fn random_pin() -> String {
    let mut rng = rand::thread_rng();
    (0..8).map(|_| rng.gen_range(0..10).to_string()).collect()
}

fn keys(rng: &mut ChaCha8Rng, n: usize, flags: u32, hit: bool) -> Vec<String> {
    (0..n)
        .map(|_| {
            let i = if hit {
                rng.gen_range(0..flags)
            } else {
                rng.gen_range(GUARANTEED_MISS_FROM..GUARANTEED_MISS_FROM + 90_000)
            };
            NhsNumber::test_range(i).as_digits()
        })
        .collect()
}

pub async fn run(opts: &Options, work: &Path) -> anyhow::Result<Vec<Row>> {
    let dir = work.join("b1");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let device_dir = dir.join("device");
    let pin = random_pin();
    let region = Region::parse(ALL_ENGLAND)?;
    let today = Utc::now().date_naive();
    eprintln!("B1: generating {} synthetic flags", opts.flags);
    let data = data::all_in_one_region(data::register(opts.flags, opts.seed, today), &region);

    // Enrol and sign in once against a central that then goes away.
    {
        let mut config =
            CentralConfig::new(format!("sqlite:{}", dir.join("central.sqlite").display()));
        config.background_tasks = false;
        let central = cpis_central::spawn(config).await?;
        let org = OdsCode::parse(ORG)?;
        let c = &central.central;
        c.upsert_la(&data.las[0], WebhookChange::Keep)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        c.add_user(
            USER,
            "Bench Clinician",
            "Paramedic",
            Activity::B0107,
            &org,
            &pin,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let code = c
            .create_enrolment(
                &region,
                &org,
                "Bench Ambulance Service",
                CareSetting::Ambulance,
                Duration::hours(1),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let device = Device::open(DeviceConfig::new(&device_dir))?;
        device.enrol(&central.url(), &code.code).await?;
        device.sign_in(USER, &pin).await?;
        drop(device);
        central.shutdown().await?;
    }

    // Fill the cache through the sync's apply path, and measure the store-level pieces.
    let mut rows = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0xB1);
    let hit_keys = keys(&mut rng, opts.lookups, opts.flags, true);
    let miss_keys = keys(&mut rng, opts.lookups, opts.flags, false);
    let (lookup_hit, lookup_miss, audit, durable) = {
        let mut store = DeviceStore::open(&device_dir)?;
        let keys = store
            .unlock(USER, &pin, Utc::now())
            .context("offline unlock of the benchmark device")?
            .keys;
        let pages = data::feed_pages(
            &region,
            &data.las,
            &data.flags,
            cpis_device::sync::PAGE_LIMIT as usize,
        );
        rows.extend(apply_breakdown::run(
            &mut store,
            &keys,
            &pages,
            &data.flags,
            &dir,
            cpis_device::sync::PAGE_LIMIT as usize,
        )?);
        if store.flag_count()? != u64::from(opts.flags) {
            bail!(
                "the cache holds {} flags, not {}",
                store.flag_count()?,
                opts.flags
            );
        }

        let rules = VisibilityRules::default();
        let mut hit = Samples::with_capacity(opts.lookups);
        let mut miss = Samples::with_capacity(opts.lookups);
        for (h, m) in hit_keys.iter().zip(&miss_keys) {
            let h = NhsNumber::parse(h)?;
            let m = NhsNumber::parse(m)?;
            let found = hit.time(|| {
                store
                    .lookup(&keys, &h)
                    .map(|r| r.filter(|(f, _)| !f.is_expired(today, &rules)))
            })?;
            if found.is_none() {
                bail!("a benchmark hit was not found in the cache");
            }
            if miss.time(|| store.lookup(&keys, &m))?.is_some() {
                bail!("a benchmark miss was found in the cache");
            }
        }
        // The audit write beside the same write without the product: one row of the same size
        // committed durably into a plain table, alternating, so both see the same disk.
        let mut plain_audit = data::open_plain(&dir.join("plain-audit.sqlite"))?;
        let mut audit = Samples::with_capacity(opts.checks);
        let mut durable = Samples::with_capacity(opts.checks);
        for (i, k) in hit_keys.iter().take(opts.checks).enumerate() {
            let entry = AuditEntry {
                at: Utc::now(),
                user_id: USER.into(),
                nhs_number: NhsNumber::parse(k)?,
                outcome: "record_found".into(),
                source: "cache".into(),
            };
            audit.time(|| store.record_check(&keys, &entry))?;
            durable
                .time(|| data::plain_durable_row(&mut plain_audit, i as i64, AUDIT_ROW_BYTES))?;
        }
        (
            hit.summary(),
            miss.summary(),
            audit.summary(),
            durable.summary(),
        )
    };

    // The floor: the same records' JSON in a plain table keyed by NHS number.
    let plain = data::open_plain(&dir.join("plain.sqlite"))?;
    {
        let mut plain = plain;
        data::plain_insert(&mut plain, &data::plain_rows(&data.flags))?;
    }
    let plain = data::open_plain(&dir.join("plain.sqlite"))?;
    let floor = |keys: &[String], expect_hit: bool| -> anyhow::Result<Samples> {
        let mut s = Samples::with_capacity(keys.len());
        for k in keys {
            let row = s.time(|| data::plain_lookup(&plain, k))?;
            if row.is_some() != expect_hit {
                bail!("the plaintext floor disagrees with the register");
            }
        }
        Ok(s)
    };

    // The real check path, offline, interleaved with the floor.
    let device = Device::open(DeviceConfig::new(&device_dir))?;
    device.sign_in(USER, &pin).await?;
    let mut check_hit = Samples::with_capacity(opts.checks);
    let mut check_miss = Samples::with_capacity(opts.checks);
    let mut floor_hit = Samples::with_capacity(opts.lookups);
    let mut floor_miss = Samples::with_capacity(opts.lookups);
    // Check and floor alternate one by one (a few floor lookups per check), so both see the same
    // background load from the other users of the machine and the same state of the disk.
    let per_check = (opts.lookups / opts.checks.max(1)).max(1);
    // A durable commit of one audit-sized row alongside each pair of checks: what the disk charges
    // for the check's audit write at that moment.
    let mut plain_audit = data::open_plain(&dir.join("plain-audit.sqlite"))?;
    let mut durable_alongside = Samples::with_capacity(opts.checks);
    // What-if: the same commit under synchronous=NORMAL (WAL): durable against a crash of the
    // app, not against power loss before the next checkpoint.
    let mut relaxed_audit = data::open_plain(&dir.join("plain-audit-normal.sqlite"))?;
    relaxed_audit.pragma_update(None, "synchronous", "NORMAL")?;
    let mut relaxed_alongside = Samples::with_capacity(opts.checks);
    for i in 0..opts.checks {
        durable_alongside.time(|| {
            data::plain_durable_row(&mut plain_audit, (1_000_000 + i) as i64, AUDIT_ROW_BYTES)
        })?;
        relaxed_alongside
            .time(|| data::plain_durable_row(&mut relaxed_audit, i as i64, AUDIT_ROW_BYTES))?;
        let f = (i * per_check).min(opts.lookups)..((i + 1) * per_check).min(opts.lookups);
        floor_hit.extend(floor(&hit_keys[f.clone()], true)?);
        let started = Instant::now();
        let view = device.check(&hit_keys[i], CheckRequest::default()).await;
        check_hit.push(started.elapsed());
        if view.outcome != CheckOutcome::RecordFound || view.source != Source::Cache {
            bail!(
                "a cached hit answered {:?} from {:?}",
                view.outcome,
                view.source
            );
        }
        floor_miss.extend(floor(&miss_keys[f], false)?);
        let started = Instant::now();
        let view = device.check(&miss_keys[i], CheckRequest::default()).await;
        check_miss.push(started.elapsed());
        if view.outcome != CheckOutcome::NoRecord || view.source != Source::Cache {
            bail!(
                "a cached miss answered {:?} from {:?}",
                view.outcome,
                view.source
            );
        }
    }
    let (floor_hit, floor_miss) = (floor_hit.summary(), floor_miss.summary());
    let target = |s: Summary, f: Summary| {
        s.median_ns < 50_000 && (s.median_ns as f64) < 3.0 * f.median_ns as f64
    };
    let ch = check_hit.summary();
    let cm = check_miss.summary();
    rows.push(
        Row::new("B1", "check, cache hit (`Device::check`, offline)")
            .latency(ch, "checks")
            .against("plain PK lookup", floor_hit)
            .target("median < 50 µs, ratio < 3", target(ch, floor_hit)),
    );
    rows.push(
        Row::new("B1", "check, cache miss (`Device::check`, offline)")
            .latency(cm, "checks")
            .against("plain PK lookup", floor_miss)
            .target("median < 50 µs, ratio < 3", target(cm, floor_miss)),
    );
    rows.push(
        Row::new("B1·a", "store lookup + visibility, hit (no audit)")
            .latency(lookup_hit, "lookups")
            .against("plain PK lookup", floor_hit),
    );
    rows.push(
        Row::new("B1·b", "store lookup, miss (no audit)")
            .latency(lookup_miss, "lookups")
            .against("plain PK lookup", floor_miss),
    );
    rows.push(
        Row::new("B1·c", "sealed audit write alone (`record_check`)")
            .latency(audit, "writes")
            .against("plain durable 1-row insert", durable),
    );
    rows.push(
        Row::new(
            "B1·d",
            "plain durable 1-row insert (WAL, synchronous=FULL): this disk's commit",
        )
        .latency(durable, "writes")
        .against("plain PK lookup", floor_hit),
    );
    rows.push(
        Row::new(
            "B1·e",
            "plain durable 1-row insert, measured alongside the `Device::check` calls",
        )
        .latency(durable_alongside.summary(), "writes")
        .against("plain PK lookup", floor_hit),
    );
    rows.push(
        Row::new(
            "B1·f",
            "what-if: that insert with synchronous=NORMAL (no fsync per commit), alongside",
        )
        .latency(relaxed_alongside.summary(), "writes")
        .against("plain PK lookup", floor_hit),
    );
    Ok(rows)
}
