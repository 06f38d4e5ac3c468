//! Running the central: bind, serve (plain HTTP on loopback only, TLS with rustls otherwise), the
//! background tasks (webhook delivery, daily expiry), and graceful or abrupt shutdown. Tests start a
//! central in-process on `127.0.0.1:0` with `spawn` and stop and restart it on the same port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::service::Central;
use crate::store::{open_store, Store};

/// Where the central listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8750";

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct CentralConfig {
    /// `sqlite:PATH` or `postgres://...`.
    pub db_url: String,
    /// Port 0 picks a free port (see `RunningCentral::addr`).
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Run webhook delivery and the daily expiry of ended records.
    pub background_tasks: bool,
    /// How often the webhook task looks for due deliveries.
    pub webhook_interval: Duration,
    /// The scale of webhook retry backoff (tests make it short).
    pub webhook_base_delay: Duration,
}

impl CentralConfig {
    /// A central over `db_url` on a free loopback port, plain HTTP, background tasks on.
    pub fn new(db_url: impl Into<String>) -> Self {
        Self {
            db_url: db_url.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            background_tasks: true,
            webhook_interval: Duration::from_secs(2),
            webhook_base_delay: crate::webhook::BASE_DELAY,
        }
    }

    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
}

/// A central serving in this process.
pub struct RunningCentral {
    pub addr: SocketAddr,
    pub central: Central,
    tls: bool,
    handle: axum_server::Handle,
    server: JoinHandle<std::io::Result<()>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningCentral {
    /// The base URL devices use, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.central.store.clone()
    }

    /// Stops accepting, lets requests in flight finish (up to 5 s), stops background tasks.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.handle.graceful_shutdown(Some(Duration::from_secs(5)));
        self.finish().await
    }

    /// Stops at once, dropping connections mid-response: a crash, as a device sees it.
    pub async fn abort(self) -> anyhow::Result<()> {
        self.handle.shutdown();
        self.finish().await
    }

    /// Serves until the server stops (for `cpis central serve`, which stops it on Ctrl-C).
    pub async fn wait_for_ctrl_c(self) -> anyhow::Result<()> {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        self.shutdown().await
    }

    async fn finish(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        self.server
            .await
            .context("the server task failed")?
            .context("the server stopped with an error")?;
        Ok(())
    }
}

/// Opens the store at `config.db_url` and serves.
pub async fn spawn(config: CentralConfig) -> anyhow::Result<RunningCentral> {
    let store = open_store(&config.db_url)
        .await
        .with_context(|| "could not open the central's database")?;
    spawn_with_store(store, config).await
}

/// Serves over an already open store (e.g. a PostgreSQL schema made for one test).
pub async fn spawn_with_store(
    store: Arc<dyn Store>,
    config: CentralConfig,
) -> anyhow::Result<RunningCentral> {
    if config.tls.is_none() && !config.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve plain HTTP on {}: it is not a loopback address. Give --tls-cert and --tls-key, or listen on 127.0.0.1",
            config.listen
        );
    }
    let central = Central::new(store.clone())
        .await
        .context("could not load the central's keys")?;
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("could not listen on {}", config.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let app = crate::http::router(central.clone(), config.tls.is_some()).into_make_service();
    let handle = axum_server::Handle::new();
    let server = match &config.tls {
        None => {
            let s = axum_server::from_tcp(listener).handle(handle.clone());
            tokio::spawn(async move { s.serve(app).await })
        }
        Some(tls) => {
            // reqwest and axum-server bring two rustls back-ends; name one explicitly.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .with_context(|| {
                    format!(
                        "could not load TLS certificate {} and key {}",
                        tls.cert.display(),
                        tls.key.display()
                    )
                })?;
            let s = axum_server::from_tcp_rustls(listener, rustls).handle(handle.clone());
            tokio::spawn(async move { s.serve(app).await })
        }
    };
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    if config.background_tasks {
        tasks.push(tokio::spawn(crate::webhook::run(
            store.clone(),
            config.webhook_interval,
            config.webhook_base_delay,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(expire_daily(central.clone(), stop_rx)));
    }
    tracing::info!(%addr, backend = store.backend(), tls = config.tls.is_some(), "central serving");
    Ok(RunningCentral {
        addr,
        central,
        tls: config.tls.is_some(),
        handle,
        server,
        stop,
        tasks,
    })
}

/// Turns ended records into removals at start and then once a day.
async fn expire_daily(central: Central, mut stop: watch::Receiver<bool>) {
    loop {
        match central
            .expire(cpis_core::ukdate::uk_today(Utc::now()))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired records removed from region feeds"),
            Err(e) => tracing::warn!(error = %e, "expiry pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(24 * 3600)) => {}
            _ = stop.changed() => return,
        }
    }
}
