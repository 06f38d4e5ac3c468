//! `cpis-bench`: CP-IS Field's benchmarks at national scale. `cpis-bench run` measures every figure
//! beside its floor in the same run and prints the table (see BENCHMARKS.md and scripts/bench.sh).
//! The other subcommands are the child processes `run` starts, so that a device's peak memory and
//! a load generator's CPU are their own: they are not meant to be run by hand.

mod app_bench;
mod apply_breakdown;
mod b1_check;
mod b7_during_sync;
mod central_bench;
mod central_proc;
mod data;
mod device_child;
mod load;
mod report;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cpis-bench",
    about = "CP-IS Field benchmarks, each figure beside its floor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the benchmarks and print the table.
    Run(RunArgs),
    /// (child process) The device side of B2-B4.
    #[command(subcommand, hide = true)]
    Device(device_child::DeviceCommand),
    /// (child process) The B5 load generator.
    #[command(hide = true)]
    Load(load::LoadArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Which benchmarks, comma separated (b1..b7).
    #[arg(long, default_value = "b1,b2,b3,b4,b5,b6,b7", value_delimiter = ',')]
    only: Vec<String>,
    /// Synthetic flags in the register.
    #[arg(long, default_value_t = 250_000)]
    flags: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Device checks per kind (hit, miss) in B1.
    #[arg(long, default_value_t = 2_000)]
    checks: usize,
    /// Cache answers measured per phase in B7 (full answers: a quarter of that).
    #[arg(long, default_value_t = 400)]
    b7_checks: usize,
    /// Plain lookups per kind in B1 (the floor and the store-level figures).
    #[arg(long, default_value_t = 20_000)]
    lookups: usize,
    /// Records changed by the re-upload in B3.
    #[arg(long, default_value_t = 1_000)]
    delta: usize,
    /// Access events queued and drained in B4.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Requests per B5 load (live checks; status; events are sent in batches adding up to as many).
    #[arg(long, default_value_t = 20_000)]
    load_requests: usize,
    /// Concurrent connections of the B5 load generator.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Events per request in B5.
    #[arg(long, default_value_t = 50)]
    event_batch: usize,
    /// A PostgreSQL server for B5 (a fresh database is made there and dropped afterwards).
    #[arg(long, env = "CPIS_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// Scratch directory (databases, device stores). On the same disk as a real install: the
    /// figures include fsync.
    #[arg(long, default_value = "target/cpis-bench")]
    work: PathBuf,
    /// Where to write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Device(cmd) => runtime
            .block_on(device_child::run(cmd))
            .map(|_| ExitCode::SUCCESS),
        Command::Load(args) => runtime.block_on(load::run(args)).map(|_| ExitCode::SUCCESS),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.work)
        .with_context(|| format!("could not create {}", args.work.display()))?;
    let work = args.work.canonicalize()?;
    let wants = |b: &str| args.only.iter().any(|o| o.eq_ignore_ascii_case(b));
    let mut rows = Vec::new();
    if wants("b1") {
        let opts = b1_check::Options {
            flags: args.flags,
            seed: args.seed,
            checks: args.checks,
            lookups: args.lookups,
        };
        rows.extend(b1_check::run(&opts, &work).await?);
    }
    let opts = central_bench::Options {
        flags: args.flags,
        seed: args.seed,
        delta: args.delta,
        events: args.events,
        load_requests: args.load_requests,
        concurrency: args.concurrency,
        event_batch: args.event_batch,
        postgres: args.postgres.clone(),
        b2: wants("b2"),
        b3: wants("b3"),
        b4: wants("b4"),
        b5: wants("b5"),
        b6: wants("b6"),
    };
    rows.extend(central_bench::run(&opts, &work).await?);
    if wants("b7") {
        let opts = b7_during_sync::Options {
            flags: args.flags,
            seed: args.seed,
            checks: args.b7_checks,
        };
        rows.extend(b7_during_sync::run(&opts, &work).await?);
    }
    report::order(&mut rows);
    let table = report::markdown(&rows);
    println!("{table}");
    let json = args.json.unwrap_or_else(|| work.join("results.json"));
    std::fs::write(&json, serde_json::to_vec_pretty(&rows)?)?;
    eprintln!("results written to {}", json.display());
    Ok(ExitCode::SUCCESS)
}
