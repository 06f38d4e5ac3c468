//! Delivery of notifications to an LA's own system by webhook: each notification POSTed as JSON with
//! `X-Cpis-Event-Id` (so the receiver de-duplicates), retried with capped exponential backoff and
//! full jitter, its state recorded. Each instance claims the deliveries it makes in the store, so with
//! several instances on one database a notification is POSTed by one at a time; a claim lapses after
//! `claim_for`, so a crashed instance's deliveries are taken over. Delivery is at least once (a
//! receiver that answers after the claim lapsed may be called again); the event id makes it once.

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use rand::Rng;
use tokio::sync::watch;

use crate::store::{DeliveryOutcome, PendingDelivery, Store};

/// Attempts before a notification is marked failed (the LA still sees it in its feed and inbox).
pub const MAX_ATTEMPTS: u32 = 20;
/// The first retry's scale; each later one doubles it, up to `MAX_DELAY`.
pub const BASE_DELAY: StdDuration = StdDuration::from_secs(5);
pub const MAX_DELAY: StdDuration = StdDuration::from_secs(3_600);
/// Deliveries claimed per pass, one after another, each given at most `REQUEST_TIMEOUT`.
pub const BATCH: u32 = 20;
pub const REQUEST_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// How long a claim lasts: longer than a pass can take (`BATCH` × `REQUEST_TIMEOUT`), so a live
/// instance never loses its claims to another.
pub const CLAIM_FOR: StdDuration = StdDuration::from_secs(5 * 60);

/// The wait before attempt `attempts + 1`: full jitter over a capped exponential, never less than a
/// fifth of `base` so a failing receiver is not hammered.
pub fn backoff(attempts: u32, base: StdDuration) -> Duration {
    let base_ms = base.as_millis().max(1) as i64;
    let cap = base_ms
        .saturating_mul(1i64 << attempts.min(20))
        .min(MAX_DELAY.as_millis() as i64);
    let ms = rand::thread_rng().gen_range((base_ms / 5).max(1)..=cap.max(base_ms / 5 + 1));
    Duration::milliseconds(ms)
}

async fn deliver(client: &reqwest::Client, d: &PendingDelivery) -> Result<(), String> {
    let response = client
        .post(&d.webhook_url)
        .header("X-Cpis-Event-Id", d.notification.event_id.to_string())
        .json(&d.notification)
        .send()
        .await
        .map_err(|e| format!("could not reach the webhook: {}", e.without_url()))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {}", response.status()))
    }
}

/// One pass: claims the due deliveries (at most `BATCH`) and makes them. Returns how many it claimed.
pub async fn deliver_due(
    store: &dyn Store,
    client: &reqwest::Client,
    base_delay: StdDuration,
    claim_for: StdDuration,
) -> usize {
    let now = Utc::now();
    let claim_until = now + Duration::from_std(claim_for).unwrap_or(Duration::minutes(5));
    let due = match store.claim_deliveries(now, claim_until, BATCH).await {
        Ok(d) => d,
        Err(e) => {
            crate::metrics::store_error("claim_deliveries");
            tracing::warn!(error = %e, "could not claim due webhook deliveries");
            return 0;
        }
    };
    for d in &due {
        let outcome = match deliver(client, d).await {
            Ok(()) => {
                tracing::info!(la = %d.la, seq = d.seq, event = %d.notification.event_id, "notification delivered to webhook");
                crate::metrics::webhook_attempt("delivered");
                DeliveryOutcome::Delivered { at: Utc::now() }
            }
            Err(error) => {
                let attempts = d.attempts + 1;
                tracing::warn!(la = %d.la, seq = d.seq, attempts, reason = %error, "webhook delivery failed");
                if attempts >= MAX_ATTEMPTS {
                    crate::metrics::webhook_attempt("gave_up");
                    DeliveryOutcome::GaveUp { attempts, error }
                } else {
                    crate::metrics::webhook_attempt("retry");
                    DeliveryOutcome::Retry {
                        attempts,
                        next_attempt_at: Utc::now() + backoff(attempts, base_delay),
                        error,
                    }
                }
            }
        };
        match store.record_delivery(d, outcome).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(la = %d.la, seq = d.seq, "webhook delivery's claim lapsed and another instance took it over")
            }
            Err(e) => {
                crate::metrics::store_error("record_delivery");
                tracing::warn!(error = %e, "could not record webhook delivery state")
            }
        }
    }
    due.len()
}

/// How the delivery task runs.
#[derive(Debug, Clone, Copy)]
pub struct DeliverySchedule {
    /// How often to look for due deliveries when the last pass found few.
    pub interval: StdDuration,
    /// The scale of retry backoff.
    pub base_delay: StdDuration,
    /// How long this instance's claims last.
    pub claim_for: StdDuration,
}

/// Runs deliveries every `schedule.interval` until `stop` turns true.
pub async fn run(
    store: std::sync::Arc<dyn Store>,
    schedule: DeliverySchedule,
    mut stop: watch::Receiver<bool>,
) {
    let client = crate::webhook_target::client();
    loop {
        // A full pass goes straight on to the next: a backlog drains without waiting.
        let attempted = deliver_due(
            store.as_ref(),
            &client,
            schedule.base_delay,
            schedule.claim_for,
        )
        .await;
        if attempted == BATCH as usize && !*stop.borrow() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(schedule.interval) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_capped_and_never_shorter_than_a_fifth_of_the_base() {
        let mut longest = 0;
        for attempts in 0..40 {
            let d = backoff(attempts, BASE_DELAY).num_milliseconds();
            assert!(d >= 1_000, "{attempts}: {d}");
            assert!(d <= MAX_DELAY.as_millis() as i64, "{attempts}: {d}");
            longest = longest.max(d);
        }
        assert!(longest > 60_000, "later retries wait longer");
        assert!(backoff(3, StdDuration::from_millis(50)).num_milliseconds() <= 400);
    }
}
