//! The outbox: access events sealed to the central's X25519 key, numbered by a per-device sequence,
//! held until the central acknowledges them. An event is built, sealed and queued in one
//! transaction, so it either exists durably (synchronous=FULL) or not at all.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{get_meta_u64, meta_keys, parse_ts, put_meta, ts, DeviceStore, SqlContext, StoreError};
use crate::access::{monotonic_ms, AccessEvent, Accessor, FoundBy};
use crate::nhs::NhsNumber;
use crate::wire::SealedEvent;

/// An event the central refused for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event_id: Uuid,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxSummary {
    pub queued: u64,
    pub oldest_queued_at: Option<DateTime<Utc>>,
    pub delivered: u64,
    pub dead: Vec<DeadLetter>,
}

fn parse_id(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|_| StoreError::Corrupt("an outbox event id does not parse".into()))
}

impl DeviceStore {
    /// Assigns the next device sequence, builds the access event (UUIDv7, device time `now`, the
    /// monotonic clock), seals it to the central and queues it — in one transaction.
    pub fn enqueue_access(
        &mut self,
        nhs: NhsNumber,
        accessor: Accessor,
        case_reference: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<AccessEvent, StoreError> {
        self.enqueue_access_sealed(nhs, accessor, case_reference, FoundBy::NhsNumber, now)
            .map(|(event, _)| event)
    }

    /// As `enqueue_access`, also returning the envelope as queued, for a caller that sends it at
    /// once (sealing again would cost a second key agreement for the same event).
    /// `found_by` says how the clinician found the person (the LA is told).
    pub fn enqueue_access_sealed(
        &mut self,
        nhs: NhsNumber,
        accessor: Accessor,
        case_reference: Option<String>,
        found_by: FoundBy,
        now: DateTime<Utc>,
    ) -> Result<(AccessEvent, SealedEvent), StoreError> {
        let enrolment = self.enrolment()?.ok_or(StoreError::NotEnrolled)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting an access event")?;
        // The larger of the stored counter and the outbox's own maximum: the sequence never goes
        // back, even if the meta row were lost.
        let stored = get_meta_u64(&tx, meta_keys::NEXT_DEVICE_SEQ)?.unwrap_or(1);
        let max_in_outbox: i64 = tx
            .prepare_cached("SELECT coalesce(max(device_seq), 0) FROM outbox")
            .ctx("numbering an access event")?
            .query_row([], |r| r.get(0))
            .ctx("numbering an access event")?;
        let device_seq = stored.max(max_in_outbox as u64 + 1);
        let mut event = AccessEvent::new(
            enrolment.device_id,
            device_seq,
            now,
            monotonic_ms(),
            nhs,
            accessor,
            case_reference,
        );
        event.found_by = found_by;
        let sealed = SealedEvent::seal(&event, &enrolment.central_sealing_key);
        tx.prepare_cached(
            "INSERT INTO outbox (event_id, device_seq, created_at, sealed, state, attempts, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?3)",
        )
        .ctx("queueing an access event")?
        .execute(params![event.id.to_string(), device_seq as i64, ts(now), sealed.sealed])
        .ctx("queueing an access event")?;
        put_meta(
            &tx,
            meta_keys::NEXT_DEVICE_SEQ,
            &(device_seq + 1).to_string(),
        )?;
        tx.commit().ctx("committing an access event")?;
        tracing::info!(event_id = %event.id, device_seq, notifies = event.notifies, "access event queued");
        Ok((event, sealed))
    }

    fn sealed_events(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<SealedEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).ctx("reading the outbox")?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .ctx("reading the outbox")?;
        let mut out = Vec::new();
        for row in rows {
            let (id, device_seq, sealed) = row.ctx("reading the outbox")?;
            out.push(SealedEvent {
                id: parse_id(&id)?,
                device_seq: device_seq as u64,
                sealed,
            });
        }
        Ok(out)
    }

    /// Queued events whose backoff has passed (`next_attempt_at <= now`), oldest sequence first.
    pub fn due_events(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<SealedEvent>, StoreError> {
        self.sealed_events(
            "SELECT event_id, device_seq, sealed FROM outbox
             WHERE state = 'queued' AND next_attempt_at <= ?1 ORDER BY device_seq LIMIT ?2",
            params![ts(now), limit as i64],
        )
    }

    /// Every queued event regardless of backoff (e.g. a final flush before a wipe).
    pub fn queued_events(&self, limit: usize) -> Result<Vec<SealedEvent>, StoreError> {
        self.sealed_events(
            "SELECT event_id, device_seq, sealed FROM outbox
             WHERE state = 'queued' ORDER BY device_seq LIMIT ?1",
            params![limit as i64],
        )
    }

    /// The central has the events (accepted now or earlier).
    pub fn mark_delivered(&mut self, ids: &[Uuid], now: DateTime<Utc>) -> Result<(), StoreError> {
        let tx = self.conn.transaction().ctx("starting a delivery")?;
        {
            let mut stmt = tx
                .prepare_cached("UPDATE outbox SET state = 'delivered', delivered_at = ?2, last_error = NULL WHERE event_id = ?1")
                .ctx("marking events delivered")?;
            for id in ids {
                stmt.execute(params![id.to_string(), ts(now)])
                    .ctx("marking events delivered")?;
            }
        }
        tx.commit().ctx("committing a delivery")
    }

    /// The central refused the event for good; it stays listed so someone can follow it up.
    pub fn mark_dead(&mut self, id: Uuid, reason: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET state = 'dead', last_error = ?2 WHERE event_id = ?1 AND state = 'queued'",
                params![id.to_string(), reason],
            )
            .ctx("marking an event dead")?;
        Ok(())
    }

    /// A delivery attempt failed: try again at `next_attempt_at`.
    pub fn defer_events(
        &mut self,
        ids: &[Uuid],
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction().ctx("starting a deferral")?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
                     WHERE event_id = ?1 AND state = 'queued'",
                )
                .ctx("deferring events")?;
            for id in ids {
                stmt.execute(params![id.to_string(), ts(next_attempt_at), error])
                    .ctx("deferring events")?;
            }
        }
        tx.commit().ctx("committing a deferral")
    }

    /// `queued`, `delivered` or `dead`; `None` when unknown.
    pub fn event_state(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached("SELECT state FROM outbox WHERE event_id = ?1")
            .ctx("reading an event's state")?
            .query_row([id.to_string()], |r| r.get(0))
            .optional()
            .ctx("reading an event's state")
    }

    /// How many attempts an event has had and its last error (for status and tests).
    pub fn event_attempts(&self, id: Uuid) -> Result<Option<(u32, Option<String>)>, StoreError> {
        self.conn
            .prepare_cached("SELECT attempts, last_error FROM outbox WHERE event_id = ?1")
            .ctx("reading an event's attempts")?
            .query_row([id.to_string()], |r| {
                Ok((r.get::<_, i64>(0)? as u32, r.get(1)?))
            })
            .optional()
            .ctx("reading an event's attempts")
    }

    pub fn outbox_summary(&self) -> Result<OutboxSummary, StoreError> {
        let (queued, oldest, delivered): (i64, Option<String>, i64) = self
            .conn
            .prepare_cached(
                "SELECT
                    coalesce(sum(state = 'queued'), 0),
                    min(CASE WHEN state = 'queued' THEN created_at END),
                    coalesce(sum(state = 'delivered'), 0)
                 FROM outbox",
            )
            .ctx("summarising the outbox")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .ctx("summarising the outbox")?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT event_id, coalesce(last_error, ''), created_at FROM outbox WHERE state = 'dead' ORDER BY device_seq")
            .ctx("listing dead events")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .ctx("listing dead events")?;
        let mut dead = Vec::new();
        for row in rows {
            let (id, reason, created_at) = row.ctx("listing dead events")?;
            dead.push(DeadLetter {
                event_id: parse_id(&id)?,
                reason,
                created_at: parse_ts(&created_at)?,
            });
        }
        Ok(OutboxSummary {
            queued: queued as u64,
            oldest_queued_at: oldest.map(|s| parse_ts(&s)).transpose()?,
            delivered: delivered as u64,
            dead,
        })
    }

    /// Delivered events older than `before` are dropped: the central holds them now.
    pub fn prune_delivered(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM outbox WHERE state = 'delivered' AND delivered_at < ?1",
                [ts(before)],
            )
            .ctx("pruning delivered events")
    }
}
