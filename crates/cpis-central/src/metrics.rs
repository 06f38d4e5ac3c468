//! Prometheus metrics of a central instance, served only on the admin listener (`--admin-listen`):
//! requests by route and status with latency histograms, access events ingested, webhook attempts,
//! store errors, and, read from the store at each scrape, the webhook backlog (pending, failed, the
//! oldest pending's age) and each region's feed head. Labels carry route templates, statuses and
//! region names only: never a path with an ODS code filled in, never personal data.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::service::Central;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's recorder (one per process: in-process test centrals share it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("cpis_http_request_duration_seconds".into()),
                LATENCY_BUCKETS,
            )
            .expect("the latency buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed: this instance's metrics stay empty"
            );
        }
        // Counters a scraper should see at zero rather than missing until the first occurrence.
        metrics::counter!("cpis_events_ingested_total").increment(0);
        for operation in ["request", "claim_deliveries", "record_delivery"] {
            metrics::counter!("cpis_store_errors_total", "operation" => operation).increment(0);
        }
        handle
    })
}

/// Counts a store failure seen by `operation` (a request, or a background task's step).
pub fn store_error(operation: &'static str) {
    metrics::counter!("cpis_store_errors_total", "operation" => operation).increment(1);
}

/// Counts one webhook attempt by its outcome: delivered, retry or gave_up.
pub fn webhook_attempt(outcome: &'static str) {
    metrics::counter!("cpis_webhook_attempts_total", "outcome" => outcome).increment(1);
}

/// Counts access events newly stored (not duplicates, not rejections).
pub fn events_ingested(n: u64) {
    metrics::counter!("cpis_events_ingested_total").increment(n);
}

/// Middleware for the public router: one request counted by route template, method and status,
/// and its latency observed.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("cpis_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("cpis_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The admin listener's routes: `/metrics` only.
pub fn admin_router(central: Central) -> Router {
    handle();
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(central)
}

async fn scrape(State(central): State<Central>) -> Response {
    let store = central.store.as_ref();
    match store.delivery_backlog().await {
        Ok(b) => {
            metrics::gauge!("cpis_notifications_pending").set(b.pending as f64);
            metrics::gauge!("cpis_notifications_failed").set(b.failed as f64);
            let age = b
                .oldest_pending
                .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            metrics::gauge!("cpis_notification_oldest_pending_seconds").set(age);
        }
        Err(e) => {
            store_error("metrics");
            tracing::warn!(error = %e, "could not read the webhook backlog for metrics");
        }
    }
    match store.feed_heads().await {
        Ok(heads) => {
            for (region, head) in heads {
                metrics::gauge!("cpis_feed_head", "region" => region.as_str().to_string())
                    .set(head as f64);
            }
        }
        Err(e) => {
            store_error("metrics");
            tracing::warn!(error = %e, "could not read feed heads for metrics");
        }
    }
    let handle = handle();
    handle.run_upkeep();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
