//! `cpis central ...`: serve and administer the central service.

#[derive(clap::Args)]
pub struct CentralArgs {}

pub fn run(_args: CentralArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not built yet")
}
