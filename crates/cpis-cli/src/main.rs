//! `cpis`: one binary for the central (`cpis central ...`) and a headless device (`cpis device ...`),
//! over the same engine as the app.

mod central_cmd;
mod device_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cpis",
    version,
    about = "CP-IS Field: offline child protection information sharing checks"
)]
struct Cli {
    /// How logs (on stderr; level from CPIS_LOG) are written: text for people, json (one object
    /// a line) for a log collector.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run and administer the central service.
    Central(central_cmd::CentralArgs),
    /// Operate a headless device: enrol, sign in, sync, check, status.
    Device(device_cmd::DeviceArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr, never carry personal data, and default to warnings so command output stays clean.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CPIS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
    let result = match cli.command {
        Command::Central(args) => central_cmd::run(args),
        Command::Device(args) => device_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
