//! The B5 load generator, run as its own process so the central's CPU is not shared with the
//! benchmark's bookkeeping inside one process. It enrols and authenticates as a device (the
//! challenge/token flow of `CentralClient`) and then drives one of: `status` (the floor: the same
//! HTTP round trip with no authentication or database), `check` (live checks, half hits and half
//! misses) or `events` (access-event batches sealed to the central's key, made before the clock
//! starts). Prints one JSON line.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use chrono::Utc;
use cpis_central::demo::GUARANTEED_MISS_FROM;
use cpis_core::store::DeviceStore;
use cpis_core::wire::{EventBatch, LiveCheckRequest, SealedEvent};
use cpis_core::{AccessEvent, Accessor, Activity, NhsNumber};
use cpis_device::client::CentralClient;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::device_child::CODE_ENV;
use crate::stats::{self, Samples, Summary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Mode {
    Status,
    Check,
    Events,
}

#[derive(clap::Args)]
pub struct LoadArgs {
    /// The central, or several instances of one central separated by commas.
    #[arg(long)]
    url: String,
    /// Where this load generator keeps its device identity.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, value_enum)]
    mode: Mode,
    /// Requests to send (after a warm-up of a tenth as many).
    #[arg(long)]
    requests: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Events per request in `events` mode.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Live checks ask for people `test_range(0..flags)` (hits) and past `GUARANTEED_MISS_FROM` (misses).
    #[arg(long)]
    flags: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LoadResult {
    pub mode: Mode,
    pub requests: usize,
    pub errors: usize,
    pub items: usize,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub items_per_second: f64,
    pub latency: Summary,
    pub peak_rss: u64,
}

enum Work {
    Status,
    Check(Vec<NhsNumber>),
    Events(Vec<EventBatch>),
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let store = DeviceStore::open(&args.dir)?;
    // One client per central instance (`--url A,B`): the connections share out over them as a load
    // balancer would, and the device is one device to all of them (the store is shared).
    let clients: Vec<CentralClient> = args
        .url
        .split(',')
        .map(|url| CentralClient::with_timeout(url.trim(), Duration::from_secs(30)))
        .collect();
    let code = std::env::var(CODE_ENV).with_context(|| format!("{CODE_ENV} is not set"))?;
    let enrolled = clients[0].enrol(&code, &store.device_public_key()?).await?;
    let device_id = enrolled.device_id;
    for client in &clients {
        let challenge = client.challenge(device_id).await?;
        let signature = store.sign(&cpis_core::wire::auth_message(device_id, &challenge))?;
        client
            .exchange_token(device_id, challenge, signature)
            .await?;
    }
    if matches!(args.mode, Mode::Check) {
        // A live check answers only a signed-in user: the bench's clinician signs in once, and the
        // session is good at every instance.
        let pin = std::env::var(crate::device_child::PIN_ENV)
            .with_context(|| format!("{} is not set", crate::device_child::PIN_ENV))?;
        let login = clients[0].login(crate::central_bench::USER, &pin).await?;
        for client in &clients {
            client.set_user_session(Some(login.user_session.token.clone()));
        }
    }

    let warmup = (args.requests / 10).max(args.concurrency);
    let total = warmup + args.requests;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let work = match args.mode {
        Mode::Status => Work::Status,
        Mode::Check => Work::Check(
            (0..total)
                .map(|i| {
                    NhsNumber::test_range(if i % 2 == 0 {
                        rng.gen_range(0..args.flags)
                    } else {
                        rng.gen_range(GUARANTEED_MISS_FROM..GUARANTEED_MISS_FROM + 90_000)
                    })
                })
                .collect(),
        ),
        Mode::Events => {
            let key: [u8; 32] = base64::engine::general_purpose::STANDARD
                .decode(&enrolled.central_sealing_key)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("the central's sealing key is not 32 bytes"))?;
            let accessor = Accessor {
                user_id: crate::central_bench::USER.into(),
                role: "Paramedic".into(),
                activity: Activity::B0107,
                org_ods: enrolled.org_ods.clone(),
                org_name: enrolled.org_name.clone(),
                setting: enrolled.setting,
            };
            let mut seq = 0u64;
            Work::Events(
                (0..total)
                    .map(|_| EventBatch {
                        events: (0..args.batch)
                            .map(|_| {
                                seq += 1;
                                let e = AccessEvent::new(
                                    device_id,
                                    seq,
                                    Utc::now(),
                                    cpis_core::access::monotonic_ms(),
                                    NhsNumber::test_range(rng.gen_range(0..args.flags)),
                                    accessor.clone(),
                                    None,
                                );
                                SealedEvent::seal(&e, &key)
                            })
                            .collect(),
                    })
                    .collect(),
            )
        }
    };
    let clients: Vec<Arc<CentralClient>> = clients.into_iter().map(Arc::new).collect();
    let work = Arc::new(work);

    let run_phase = |from: usize, to: usize| {
        let work = work.clone();
        let next = Arc::new(AtomicUsize::new(from));
        let tasks: Vec<_> = (0..args.concurrency)
            .map(|task| {
                let client = clients[task % clients.len()].clone();
                let work = work.clone();
                let next = next.clone();
                tokio::spawn(async move {
                    let mut samples = Samples::default();
                    let mut errors = 0usize;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= to {
                            break;
                        }
                        let started = Instant::now();
                        let ok = match &*work {
                            Work::Status => client.probe().await,
                            Work::Check(keys) => client
                                .live_check(
                                    &LiveCheckRequest {
                                        nhs_number: keys[i],
                                        unscheduled: false,
                                        access_event: None,
                                    },
                                    Duration::from_secs(30),
                                )
                                .await
                                .is_ok(),
                            Work::Events(batches) => client
                                .push_events(&batches[i])
                                .await
                                .map(|r| {
                                    r.results
                                        .iter()
                                        .all(|e| e.status == cpis_core::wire::EventStatus::Accepted)
                                })
                                .unwrap_or(false),
                        };
                        samples.push(started.elapsed());
                        if !ok {
                            errors += 1;
                        }
                    }
                    (samples, errors)
                })
            })
            .collect();
        async move {
            let started = Instant::now();
            let mut samples = Samples::default();
            let mut errors = 0;
            for t in tasks {
                let (s, e) = t.await.expect("a load task panicked");
                samples.extend(s);
                errors += e;
            }
            (started.elapsed(), samples, errors)
        }
    };
    let _ = run_phase(0, warmup).await;
    let (elapsed, samples, errors) = run_phase(warmup, total).await;
    let seconds = elapsed.as_secs_f64();
    let per_request = match args.mode {
        Mode::Events => args.batch,
        _ => 1,
    };
    let result = LoadResult {
        mode: args.mode,
        requests: samples.len(),
        errors,
        items: samples.len() * per_request,
        seconds,
        requests_per_second: samples.len() as f64 / seconds,
        items_per_second: (samples.len() * per_request) as f64 / seconds,
        latency: samples.summary(),
        peak_rss: stats::self_peak_rss().unwrap_or(0),
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
