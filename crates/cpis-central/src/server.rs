//! Running the central: bind, serve (plain HTTP on loopback only, TLS with rustls otherwise), the
//! admin listener (Prometheus metrics, never on the public port), the background tasks (webhook
//! delivery, daily expiry), and graceful (SIGTERM, Ctrl-C) or abrupt shutdown. Tests start a
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
use crate::store::{open_store_with, DatabaseTls, Store};

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
    /// The CA and the clear-text allowance for a PostgreSQL database.
    pub db_tls: DatabaseTls,
    /// Port 0 picks a free port (see `RunningCentral::addr`).
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Run webhook delivery and the daily expiry of ended records.
    pub background_tasks: bool,
    /// How often the webhook task looks for due deliveries.
    pub webhook_interval: Duration,
    /// The scale of webhook retry backoff (tests make it short).
    pub webhook_base_delay: Duration,
    /// How long this instance holds a claimed webhook delivery before another may take it over.
    pub webhook_claim: Duration,
    /// Where to serve `/metrics` (plain HTTP), apart from the public port. None: not served.
    pub admin_listen: Option<SocketAddr>,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl CentralConfig {
    /// A central over `db_url` on a free loopback port, plain HTTP, background tasks on.
    pub fn new(db_url: impl Into<String>) -> Self {
        Self {
            db_url: db_url.into(),
            db_tls: DatabaseTls::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            background_tasks: true,
            webhook_interval: Duration::from_secs(2),
            webhook_base_delay: crate::webhook::BASE_DELAY,
            webhook_claim: crate::webhook::CLAIM_FOR,
            admin_listen: None,
            shutdown_grace: Duration::from_secs(30),
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
    /// The admin listener's address, when there is one.
    pub admin_addr: Option<SocketAddr>,
    pub central: Central,
    tls: bool,
    grace: Duration,
    handle: axum_server::Handle,
    server: JoinHandle<std::io::Result<()>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Held while serving a SQLite database, so a restore refuses to replace it underneath.
    _serving: Option<crate::backup::ServingLock>,
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

    /// Stops accepting, lets requests in flight finish (up to `shutdown_grace`), stops background
    /// tasks.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.handle.graceful_shutdown(Some(self.grace));
        self.finish().await
    }

    /// Stops at once, dropping connections mid-response: a crash, as a device sees it.
    pub async fn abort(self) -> anyhow::Result<()> {
        self.handle.shutdown();
        self.finish().await
    }

    /// Serves until SIGTERM (a service manager stopping it) or Ctrl-C, then shuts down gracefully:
    /// requests in flight finish, new connections are refused.
    pub async fn serve_until_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        self.handle.graceful_shutdown(Some(self.grace));
        tracing::info!(grace = ?self.grace, "shutting down: no new connections, finishing requests in flight");
        self.finish().await
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

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Opens the store at `config.db_url` and serves. A SQLite database is marked as served (see
/// `backup::ServingLock`) for as long as the central runs.
pub async fn spawn(config: CentralConfig) -> anyhow::Result<RunningCentral> {
    let serving = match crate::backup::sqlite_path(&config.db_url) {
        Some(path) => Some(crate::backup::ServingLock::acquire(&path)?),
        None => None,
    };
    let store = open_store_with(&config.db_url, &config.db_tls)
        .await
        .with_context(|| "could not open the central's database")?;
    let mut running = spawn_with_store(store, config).await?;
    running._serving = serving;
    Ok(running)
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
    let mut admin_addr = None;
    if let Some(admin) = config.admin_listen {
        let listener = tokio::net::TcpListener::bind(admin)
            .await
            .with_context(|| format!("could not listen on {admin} (--admin-listen)"))?;
        admin_addr = Some(listener.local_addr()?);
        let app = crate::metrics::admin_router(central.clone());
        let mut stopped = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the admin listener stopped");
            }
        }));
    }
    if config.background_tasks {
        tasks.push(tokio::spawn(crate::webhook::run(
            store.clone(),
            crate::webhook::DeliverySchedule {
                interval: config.webhook_interval,
                base_delay: config.webhook_base_delay,
                claim_for: config.webhook_claim,
            },
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(expire_daily(central.clone(), stop_rx)));
    }
    tracing::info!(%addr, admin = ?admin_addr, backend = store.backend(), tls = config.tls.is_some(), "central serving");
    Ok(RunningCentral {
        addr,
        admin_addr,
        central,
        tls: config.tls.is_some(),
        grace: config.shutdown_grace,
        handle,
        server,
        stop,
        tasks,
        _serving: None,
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
