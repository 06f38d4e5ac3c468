//! `cpis device --data-dir DIR ...`: a headless device over the same engine as the app.

#[derive(clap::Args)]
pub struct DeviceArgs {}

pub fn run(_args: DeviceArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not built yet")
}
