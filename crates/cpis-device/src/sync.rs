//! Sync: pull the region feed page by page (each page verified, then applied in one transaction with
//! its cursor) and push the outbox in idempotent batches with capped, jittered exponential backoff.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use cpis_core::store::{CacheKeys, DeviceStore, Enrolment, StagedIndex, StoreError};
use cpis_core::vault::FeedKey;
use cpis_core::wire::{EventBatch, EventResult, EventStatus, FeedPage, MAX_EVENT_BATCH};

use crate::client::{CentralClient, ClientError};
use crate::views::{SyncPhase, SyncProgress};

pub const PAGE_LIMIT: u32 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the central sent a page this device cannot trust, and it was rejected whole: {0}")]
    Rejected(String),
    #[error("the device store failed: {0}")]
    Store(#[from] StoreError),
    #[error(
        "the sync was stopped by a sign-in, sign-out or revocation; it starts again on its own"
    )]
    Interrupted,
}

/// Lets sign-in, sign-out and revocation stop a sync round at its next network wait, so none of
/// them waits behind a download crawling over a weak link.
#[derive(Default)]
pub struct RoundStop {
    epoch: AtomicU64,
    notify: tokio::sync::Notify,
}

impl RoundStop {
    /// Stops every round under way.
    pub fn stop(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Taken at the start of a round: the round stops once `stop` is called after this.
    pub fn ticket(&self) -> Ticket<'_> {
        Ticket {
            stop: self,
            epoch: self.epoch.load(Ordering::SeqCst),
        }
    }
}

#[derive(Clone, Copy)]
pub struct Ticket<'a> {
    stop: &'a RoundStop,
    epoch: u64,
}

impl Ticket<'_> {
    pub fn stopped(&self) -> bool {
        self.stop.epoch.load(Ordering::SeqCst) != self.epoch
    }

    /// Awaits `work` unless the round is stopped first.
    pub async fn run<T>(&self, work: impl Future<Output = T>) -> Result<T, SyncError> {
        let notified = self.stop.notify.notified();
        tokio::pin!(notified);
        // Registered before the check, so a stop between the two is not missed.
        notified.as_mut().enable();
        if self.stopped() {
            return Err(SyncError::Interrupted);
        }
        tokio::select! {
            biased;
            _ = &mut notified => Err(SyncError::Interrupted),
            out = work => Ok(out),
        }
    }
}

/// Checks a verified page against what this device expects: its region, its cursor, ordered seqs.
pub fn check_page(page: &FeedPage, enrolment: &Enrolment, cursor: u64) -> Result<(), String> {
    if page.region != enrolment.region {
        return Err(format!(
            "page is for region {} but this device belongs to {}",
            page.region, enrolment.region
        ));
    }
    if page.after != cursor {
        return Err(format!(
            "page continues from {} but this device is at {} (a replayed or out-of-order page)",
            page.after, cursor
        ));
    }
    if page.last < page.after {
        return Err("page ends before it starts".into());
    }
    let mut previous = page.after;
    for op in &page.ops {
        if op.seq <= previous || op.seq > page.last {
            return Err("page operations are out of order or outside the page's range".into());
        }
        previous = op.seq;
    }
    if page.ops.is_empty() && page.last != page.after {
        return Err("an empty page must not move the cursor".into());
    }
    Ok(())
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PullTotals {
    pub pages: u64,
    pub records: u64,
    pub bytes: u64,
    pub cursor: u64,
}

/// What a pull works with: the central, the session's keys, the enrolment it checks pages against,
/// and the round it belongs to.
pub struct Pull<'a> {
    pub client: &'a CentralClient,
    pub keys: &'a CacheKeys,
    /// The region's feed key: pages are sealed to it.
    pub feed_key: &'a FeedKey,
    pub enrolment: &'a Enrolment,
    pub now: DateTime<Utc>,
    pub page_limit: u32,
    pub progress: &'a (dyn Fn(SyncProgress) + Send + Sync),
    pub ticket: Ticket<'a>,
    /// Kept in step with what the download stages, for the checks that run meanwhile.
    pub staged: &'a StagedIndex,
}

/// Pulls until the central has nothing newer. The first download and later deltas are the same path;
/// a drop at any point resumes from the last applied page.
pub async fn pull(store: &mut DeviceStore, pull: Pull<'_>) -> Result<PullTotals, SyncError> {
    let Pull {
        client,
        keys,
        feed_key,
        enrolment,
        now,
        page_limit,
        progress,
        ticket,
        staged,
    } = pull;
    let mut totals = PullTotals {
        cursor: store.cursor()?,
        ..Default::default()
    };
    loop {
        let (signed, bytes) = ticket
            .run(client.feed_page(totals.cursor, page_limit))
            .await??;
        let page = signed
            .open(&enrolment.central_signing_key, feed_key)
            .map_err(|e| SyncError::Rejected(e.to_string()))?;
        check_page(&page, enrolment, totals.cursor).map_err(SyncError::Rejected)?;
        if ticket.stopped() {
            return Err(SyncError::Interrupted);
        }
        // The data is as fresh as the central's page, not as the moment it arrived: a replayed old page
        // (even an empty one at the current cursor) must not make stale data look fresh.
        let applied = store.apply_page_indexed(keys, &page, page.generated_at.min(now), staged)?;
        totals.pages += 1;
        totals.records += applied.ops as u64;
        totals.bytes += bytes;
        totals.cursor = page.last;
        progress(SyncProgress {
            phase: SyncPhase::Pull,
            pages: totals.pages,
            records: totals.records,
            bytes: totals.bytes,
            cursor: totals.cursor,
            head: page.head,
            events_sent: 0,
        });
        if !page.has_more {
            return Ok(totals);
        }
    }
}

/// Downloads the region's new pages while nobody is signed in: each checked against the key pinned
/// at enrolment and its place in the feed, then kept sealed (this device cannot open them without
/// a user) to be applied at the next sign-in. Returns how many pages were kept.
pub async fn fetch_sealed(
    store: &mut DeviceStore,
    client: &CentralClient,
    enrolment: &Enrolment,
    page_limit: u32,
    ticket: Ticket<'_>,
) -> Result<u64, SyncError> {
    let mut cursor = match store.sealed_pages_end()? {
        Some(end) => end.max(store.cursor()?),
        None => store.cursor()?,
    };
    let mut kept = 0;
    loop {
        let (signed, _) = ticket.run(client.feed_page(cursor, page_limit)).await??;
        let envelope = signed
            .verify(&enrolment.central_signing_key)
            .map_err(|e| SyncError::Rejected(e.to_string()))?;
        if envelope.region != enrolment.region
            || envelope.after != cursor
            || envelope.last < envelope.after
        {
            return Err(SyncError::Rejected(format!(
                "a sealed page for {} at {}..{} does not continue this device's feed at {cursor}",
                envelope.region, envelope.after, envelope.last
            )));
        }
        if envelope.last > envelope.after {
            store.keep_sealed_page(&signed, envelope.after, envelope.last)?;
            kept += 1;
        }
        cursor = envelope.last;
        if !envelope.has_more {
            return Ok(kept);
        }
    }
}

/// Applies the pages kept while nobody was signed in, in feed order, now that a user's unlock gives
/// the feed key. A page this copy already has is skipped; one that does not continue it (or does not
/// open) ends the run, and the rest is downloaded afresh. Every kept page is then forgotten.
pub fn apply_sealed(
    store: &mut DeviceStore,
    keys: &CacheKeys,
    feed_key: &FeedKey,
    enrolment: &Enrolment,
    now: DateTime<Utc>,
    staged: &StagedIndex,
) -> Result<u64, SyncError> {
    let mut records = 0;
    for signed in store.sealed_pages()? {
        let cursor = store.cursor()?;
        let Ok(envelope) = signed.verify(&enrolment.central_signing_key) else {
            break;
        };
        if envelope.last <= cursor {
            continue;
        }
        if envelope.after != cursor {
            break;
        }
        let Ok(page) = envelope.open(feed_key) else {
            tracing::warn!("a kept feed page does not open with this device's feed key");
            break;
        };
        if let Err(why) = check_page(&page, enrolment, cursor) {
            tracing::warn!(why, "a kept feed page was refused");
            break;
        }
        let applied = store.apply_page_indexed(keys, &page, page.generated_at.min(now), staged)?;
        records += applied.ops as u64;
    }
    store.drop_sealed_pages()?;
    Ok(records)
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PushTotals {
    pub delivered: u64,
    pub dead: u64,
}

/// Backoff after `failures` consecutive failed pushes: full jitter over a capped exponential.
pub fn backoff(failures: u32) -> Duration {
    let base_ms: u64 = 1_000;
    let cap_ms: u64 = 5 * 60 * 1_000;
    let ceiling = base_ms.saturating_mul(1u64 << failures.min(20)).min(cap_ms);
    Duration::from_millis(rand::thread_rng().gen_range(base_ms / 2..=ceiling.max(base_ms / 2 + 1)))
}

/// Marks what the central settled: accepted and duplicate are delivered, rejected is a dead letter.
/// Returns how many it settled.
fn settle(
    store: &mut DeviceStore,
    results: Vec<EventResult>,
    now: DateTime<Utc>,
    totals: &mut PushTotals,
) -> Result<usize, StoreError> {
    let mut delivered = Vec::new();
    let mut dead = 0;
    for r in results {
        match r.status {
            EventStatus::Accepted | EventStatus::Duplicate => delivered.push(r.id),
            EventStatus::Rejected => {
                store.mark_dead(
                    r.id,
                    r.reason.as_deref().unwrap_or("refused by the central"),
                )?;
                dead += 1;
            }
        }
    }
    store.mark_delivered(&delivered, now)?;
    totals.delivered += delivered.len() as u64;
    totals.dead += dead;
    Ok(delivered.len() + dead as usize)
}

/// Sends queued events in batches. `all` ignores backoff (an explicit "sync now").
pub async fn push(
    store: &mut DeviceStore,
    client: &CentralClient,
    now: DateTime<Utc>,
    all: bool,
    ticket: Ticket<'_>,
) -> Result<PushTotals, SyncError> {
    let mut totals = PushTotals::default();
    loop {
        let batch = if all {
            store.queued_events(MAX_EVENT_BATCH)?
        } else {
            store.due_events(now, MAX_EVENT_BATCH)?
        };
        if batch.is_empty() {
            return Ok(totals);
        }
        let ids: Vec<_> = batch.iter().map(|e| e.id).collect();
        // A stopped push leaves its events queued: the central takes a resent event as a duplicate.
        match ticket
            .run(client.push_events(&EventBatch {
                events: batch.clone(),
            }))
            .await?
        {
            Ok(result) => {
                store.set_meta("push_failures", "0")?;
                // Events the central did not mention stay queued and go again next round.
                if settle(store, result.results, now, &mut totals)? == 0 {
                    return Ok(totals);
                }
            }
            Err(e) if e.is_transient() => {
                let failures: u32 = store
                    .get_meta("push_failures")?
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
                    + 1;
                store.set_meta("push_failures", &failures.to_string())?;
                let next = now + chrono::Duration::from_std(backoff(failures)).unwrap_or_default();
                store.defer_events(&ids, next, &e.to_string())?;
                return Err(e.into());
            }
            Err(ClientError::Refused { status, .. })
                if status == 400 || status == 413 || status == 422 =>
            {
                // The batch as a whole was refused: send each alone so one bad event cannot block the rest.
                for event in batch {
                    let id = event.id;
                    match ticket
                        .run(client.push_events(&EventBatch {
                            events: vec![event],
                        }))
                        .await?
                    {
                        Ok(r) => {
                            settle(store, r.results, now, &mut totals)?;
                        }
                        Err(ClientError::Refused { message, .. }) => {
                            store.mark_dead(id, &message)?;
                            totals.dead += 1;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for failures in 0..40 {
            let d = backoff(failures);
            assert!(d <= Duration::from_secs(300), "{failures}: {d:?}");
            assert!(d >= Duration::from_millis(500));
        }
        let late: Duration = (0..50).map(|_| backoff(12)).max().unwrap();
        assert!(
            late > Duration::from_secs(30),
            "late backoffs reach far: {late:?}"
        );
    }
}
