//! The device side of B2, B3 and B4, run as a child process so its peak resident memory (VmHWM)
//! is the device's own: a `Device` from `cpis-device` driven exactly as the app drives it (enrol,
//! sign in, sync). Each command prints one JSON line on stdout for the parent. Secrets (the user's
//! PIN, the enrolment code) come from the environment and are never printed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::Utc;
use cpis_core::store::DeviceStore;
use cpis_core::wire::{EventBatch, EventStatus, MAX_EVENT_BATCH};
use cpis_core::{Accessor, NhsNumber};
use cpis_device::client::CentralClient;
use cpis_device::{Device, DeviceConfig};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::stats;

pub const PIN_ENV: &str = "CPIS_BENCH_PIN";
pub const CODE_ENV: &str = "CPIS_BENCH_CODE";

#[derive(clap::Subcommand)]
pub enum DeviceCommand {
    /// Enrol when `--url` is given (code from CPIS_BENCH_CODE), sign in, and time one sync.
    Sync {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        user: String,
        /// After the timed sync, fetch every page again and time the fetching and the verifying
        /// apart from applying.
        #[arg(long)]
        breakdown: bool,
    },
    /// Enrol, queue N access events, then time the sync that drains them; then send every one of
    /// them again to check the central takes each exactly once.
    Drain {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        url: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        events: usize,
        /// Events name people `test_range(0..flags)`.
        #[arg(long)]
        flags: u32,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SyncResult {
    pub seconds: f64,
    pub pages: u64,
    pub records: u64,
    pub bytes: u64,
    pub cached_flags: u64,
    pub peak_rss: u64,
    /// With `--breakdown`: fetching every page again over HTTP (central + transfer), seconds.
    pub fetch_seconds: Option<f64>,
    /// With `--breakdown`: verifying the signatures and decoding those pages, seconds.
    pub verify_seconds: Option<f64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DrainResult {
    pub enqueue_seconds: f64,
    pub seconds: f64,
    pub delivered: u64,
    pub dead: u64,
    pub queued_after: u64,
    pub resent_accepted: u64,
    pub resent_duplicate: u64,
    pub resent_rejected: u64,
    /// The floor: the same sealed events into an empty plain table, one transaction.
    pub floor_seconds: f64,
    pub peak_rss: u64,
}

fn secret(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

pub async fn run(cmd: DeviceCommand) -> anyhow::Result<()> {
    match cmd {
        DeviceCommand::Sync {
            dir,
            url,
            user,
            breakdown,
        } => {
            let pin = secret(PIN_ENV)?;
            let device = Device::open(DeviceConfig::new(&dir))?;
            if let Some(url) = url {
                device.enrol(&url, &secret(CODE_ENV)?).await?;
            }
            device.sign_in(&user, &pin).await?;
            let started = Instant::now();
            let summary = device.sync(&|_| {}).await?;
            let seconds = started.elapsed().as_secs_f64();
            let cached_flags = device.store().flag_count()?;
            drop(device);
            // Peak memory is read before the breakdown, which holds every page at once.
            let peak_rss = stats::self_peak_rss().unwrap_or(0);
            let (fetch_seconds, verify_seconds) = if breakdown {
                let (f, v) = fetch_again(&dir).await?;
                (Some(f), Some(v))
            } else {
                (None, None)
            };
            let result = SyncResult {
                seconds,
                pages: summary.pages,
                records: summary.records,
                bytes: summary.bytes,
                cached_flags,
                peak_rss,
                fetch_seconds,
                verify_seconds,
            };
            println!("{}", serde_json::to_string(&result)?);
        }
        DeviceCommand::Drain {
            dir,
            url,
            user,
            events,
            flags,
        } => {
            let pin = secret(PIN_ENV)?;
            let profile = {
                let device = Device::open(DeviceConfig::new(&dir))?;
                device.enrol(&url, &secret(CODE_ENV)?).await?;
                device.sign_in(&user, &pin).await?;
                device
                    .status()
                    .signed_in_user
                    .context("signed in but no user")?
            };
            // Queue the events through the store's own durable path (one transaction each, as
            // opening alerts offline would).
            let (enqueue_seconds, sent) = {
                let mut store = DeviceStore::open(&dir)?;
                let enrolment = store.enrolment()?.context("not enrolled")?;
                let accessor = Accessor {
                    user_id: profile.id.clone(),
                    role: profile.role.clone(),
                    activity: profile.activity.parse()?,
                    org_ods: enrolment.org_ods.clone(),
                    org_name: enrolment.org_name.clone(),
                    setting: enrolment.setting,
                };
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
                let started = Instant::now();
                for _ in 0..events {
                    let nhs = NhsNumber::test_range(rng.gen_range(0..flags));
                    store.enqueue_access(nhs, accessor.clone(), None, Utc::now())?;
                }
                let enqueue_seconds = started.elapsed().as_secs_f64();
                (enqueue_seconds, store.queued_events(usize::MAX)?)
            };
            if sent.len() != events {
                bail!("{} events queued, not {events}", sent.len());
            }
            // The drain: a device that is enrolled but not signed in only pushes.
            let device = Device::open(DeviceConfig::new(&dir))?;
            let started = Instant::now();
            let summary = device.sync(&|_| {}).await?;
            let seconds = started.elapsed().as_secs_f64();
            let queued_after = device.store().outbox_summary()?.queued;
            drop(device);

            // Every event again, as a device that never saw the acknowledgements would send them.
            let (_, client) = client_for(&dir).await?;
            let mut result = DrainResult {
                enqueue_seconds,
                seconds,
                delivered: summary.events_delivered,
                dead: summary.events_dead,
                queued_after,
                ..Default::default()
            };
            for chunk in sent.chunks(MAX_EVENT_BATCH) {
                let answer = client
                    .push_events(&EventBatch {
                        events: chunk.to_vec(),
                    })
                    .await?;
                for r in answer.results {
                    match r.status {
                        EventStatus::Accepted => result.resent_accepted += 1,
                        EventStatus::Duplicate => result.resent_duplicate += 1,
                        EventStatus::Rejected => result.resent_rejected += 1,
                    }
                }
            }
            result.floor_seconds = plain_events_floor(&dir.join("plain-events.sqlite"), &sent)?;
            result.peak_rss = stats::self_peak_rss().unwrap_or(0);
            println!("{}", serde_json::to_string(&result)?);
        }
    }
    Ok(())
}

/// An authenticated client for the device enrolled in `dir`.
async fn client_for(dir: &std::path::Path) -> anyhow::Result<(DeviceStore, CentralClient)> {
    let store = DeviceStore::open(dir)?;
    let enrolment = store.enrolment()?.context("not enrolled")?;
    let client = CentralClient::new(&enrolment.central_url);
    let challenge = client.challenge(enrolment.device_id).await?;
    let signature = store.sign(&cpis_core::wire::auth_message(
        enrolment.device_id,
        &challenge,
    ))?;
    client
        .exchange_token(enrolment.device_id, challenge, signature)
        .await?;
    Ok((store, client))
}

/// Fetches the whole feed again (time on the wire and at the central), then verifies and decodes
/// every page (time on the device before applying).
async fn fetch_again(dir: &std::path::Path) -> anyhow::Result<(f64, f64)> {
    let (store, client) = client_for(dir).await?;
    let pinned = store
        .enrolment()?
        .context("not enrolled")?
        .central_signing_key;
    let mut pages = Vec::new();
    let mut after = 0;
    let started = Instant::now();
    loop {
        let (signed, _) = client
            .feed_page(after, cpis_device::sync::PAGE_LIMIT)
            .await?;
        // Only the cursor is read here, to ask for the next page; the timed verify comes below.
        let page = signed.verify(&pinned)?;
        after = page.last;
        pages.push(signed);
        if !page.has_more {
            break;
        }
    }
    let fetch = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for p in &pages {
        std::hint::black_box(p.verify(&pinned)?);
    }
    let verify = started.elapsed().as_secs_f64();
    // The loop above verified each page once to find the next cursor: take that out of the fetch.
    Ok(((fetch - verify).max(0.0), verify))
}

/// Writes the same sealed events, as plain rows, into an empty table in one transaction.
fn plain_events_floor(
    path: &std::path::Path,
    events: &[cpis_core::wire::SealedEvent],
) -> anyhow::Result<f64> {
    let _ = std::fs::remove_file(path);
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE events (id TEXT PRIMARY KEY, sealed TEXT NOT NULL)")?;
    let started = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare("INSERT INTO events (id, sealed) VALUES (?1, ?2)")?;
        for e in events {
            stmt.execute(rusqlite::params![e.id.to_string(), e.sealed])?;
        }
    }
    tx.commit()?;
    Ok(started.elapsed().as_secs_f64())
}
