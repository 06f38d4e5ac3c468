//! CP-IS Field central service: the national register that local authorities upload, region feeds
//! published to enrolled devices (signed pages), device enrolment and authentication, user sign-in
//! and leases, access-event intake (exactly once), LA notifications (feed, webhook, inbox page) and
//! the live online check, and a FHIR R4 facade in the national CP-IS API's shape. One `Store` trait with SQLite and PostgreSQL implementations.
//!
//! To run a central inside a test:
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let central = cpis_central::spawn(cpis_central::CentralConfig::new("sqlite:/tmp/central.sqlite")).await?;
//! let url = central.url();
//! central.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod backup;
pub mod demo;
pub mod digest;
pub mod error;
pub mod fhir;
pub mod http;
pub mod la_access;
pub mod metrics;
pub mod server;
pub mod service;
pub mod store;
pub mod upload;
pub mod upload_decision;
pub mod webhook;
pub mod webhook_target;

pub use error::ApiFailure;
pub use server::{
    spawn, spawn_with_store, CentralConfig, RunningCentral, TlsFiles, DEFAULT_LISTEN,
};
pub use service::{Central, CentralKeys};
pub use store::{
    open_store, open_store_with, DatabaseTls, PostgresStore, SqliteStore, Store, StoreError,
};
