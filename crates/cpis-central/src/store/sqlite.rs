//! The embedded SQLite store: one file, WAL, one writer connection behind a mutex (SQLite allows one
//! writer at a time anyway) and a small pool of readers. Blocking calls run on tokio's blocking pool.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use cpis_core::plan::VisibilityRules;
use cpis_core::wire::{FeedChange, FeedOp, Notification};
use cpis_core::{AccessEvent, CareSetting, FlagRecord, LocalAuthority, NhsNumber, OdsCode, Region};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::migrations::{Migration, SQLITE};
use super::{
    flag_key, la_key, DeliveryBacklog, DeliveryOutcome, DeviceRecord, EnrolRefusal, EventIntake,
    FeedSlice, FhirClientRecord, Ingested, LaRecord, LaUploadOutcome, LaUploadRecord, LiveLookup,
    LiveSearch, NewDevice, NewEnrolment, NewLaUpload, PendingDelivery, RegionRecord, Store,
    StoreError, StoreResult, StoredKeys, UploadOps, UserRecord, UserSessionRow, WebhookChange,
    SESSION_IDLE_SLACK,
};

const READERS: usize = 4;

pub struct SqliteStore {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

/// UTC time as fixed-width text, so text order is time order.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn parse_ts(s: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("time '{s}': {e}")))
}

fn opt_ts(s: Option<String>) -> StoreResult<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_ts).transpose()
}

fn corrupt<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(crate) fn open_connection(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

pub(crate) fn migrate(conn: &mut Connection, migrations: &[Migration]) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for m in migrations {
        let applied: Option<String> = tx
            .query_row(
                "SELECT sha256 FROM schema_migrations WHERE name = ?1",
                [m.name],
                |r| r.get(0),
            )
            .optional()?;
        match applied {
            Some(sha) if sha == m.sha256() => {}
            Some(_) => {
                return Err(StoreError::MigrationChanged {
                    name: m.name.into(),
                })
            }
            None => {
                tx.execute_batch(m.sql)?;
                tx.execute(
                    "INSERT INTO schema_migrations (name, sha256, applied_at) VALUES (?1, ?2, ?3)",
                    params![m.name, m.sha256(), ts(Utc::now())],
                )?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let p = path.clone();
        let writer = tokio::task::spawn_blocking(move || -> StoreResult<Connection> {
            if let Some(dir) = p.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| StoreError::Database(format!("{}: {e}", dir.display())))?;
                }
            }
            let mut conn = open_connection(&p)?;
            migrate(&mut conn, SQLITE)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))??;
        Ok(Self {
            path,
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in an immediate (write-locking) transaction on the writer connection.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?
    }

    /// Runs `f` in a read transaction on a pooled reader connection (a consistent snapshot).
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => open_connection(&path)?,
            };
            let out = {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let out = f(&tx);
                tx.finish()?;
                out
            };
            let mut pool = readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?
    }
}

// ---- helpers shared by several transactions ----

fn ensure_region(tx: &Transaction<'_>, region: &Region, now: DateTime<Utc>) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO regions (name, lease_hours, created_at) VALUES (?1, 72, ?2) ON CONFLICT (name) DO NOTHING",
        params![region.as_str(), ts(now)],
    )?;
    Ok(())
}

/// Hands out feed sequence numbers inside one write transaction; saved back by `finish`.
struct FeedWriter {
    next: u64,
}

impl FeedWriter {
    fn start(tx: &Transaction<'_>) -> StoreResult<Self> {
        let value: i64 =
            tx.query_row("SELECT value FROM counters WHERE name = 'feed'", [], |r| {
                r.get(0)
            })?;
        Ok(Self {
            next: value as u64 + 1,
        })
    }

    fn write(
        &mut self,
        tx: &Transaction<'_>,
        region: &Region,
        key: &str,
        change: &FeedChange,
    ) -> StoreResult<u64> {
        let seq = self.next;
        self.next += 1;
        let op = feed_op_name(change);
        let payload = serde_json::to_string(change)?;
        let mut stmt = tx.prepare_cached(
            "INSERT INTO region_feed (region, key, seq, op, payload_json) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (region, key) DO UPDATE SET seq = excluded.seq, op = excluded.op,
                 payload_json = excluded.payload_json",
        )?;
        stmt.execute(params![region.as_str(), key, seq as i64, op, payload])?;
        Ok(seq)
    }

    fn finish(self, tx: &Transaction<'_>) -> StoreResult<()> {
        tx.execute(
            "UPDATE counters SET value = ?1 WHERE name = 'feed'",
            [(self.next - 1) as i64],
        )?;
        Ok(())
    }
}

pub(crate) fn feed_op_name(change: &FeedChange) -> &'static str {
    match change {
        FeedChange::PutLa { .. } => "put_la",
        FeedChange::RemoveLa { .. } => "remove_la",
        FeedChange::PutFlag { .. } => "put_flag",
        FeedChange::RemoveFlag { .. } => "remove_flag",
    }
}

fn la_region(tx: &Transaction<'_>, ods: &OdsCode) -> StoreResult<Option<Region>> {
    let r: Option<String> = tx
        .query_row(
            "SELECT region FROM local_authorities WHERE ods = ?1",
            [ods.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    r.map(|r| Region::parse(&r).map_err(corrupt)).transpose()
}

/// One LA's own records, as its uploads gave them.
fn flags_of_la(tx: &Transaction<'_>, ods: &OdsCode) -> StoreResult<Vec<FlagRecord>> {
    let mut stmt = tx.prepare_cached("SELECT record_json FROM la_flags WHERE la_ods = ?1")?;
    let rows = stmt.query_map([ods.as_str()], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for json in rows {
        out.push(serde_json::from_str(&json?)?);
    }
    Ok(out)
}

/// The regions whose devices carry this person: those of every LA holding a plan for them.
fn regions_holding(tx: &Transaction<'_>, nhs: &NhsNumber) -> StoreResult<BTreeSet<Region>> {
    let mut stmt = tx.prepare_cached(
        "SELECT DISTINCT l.region FROM la_flags f JOIN local_authorities l ON l.ods = f.la_ods
         WHERE f.nhs_number = ?1",
    )?;
    let rows = stmt.query_map([nhs.as_digits()], |r| r.get::<_, String>(0))?;
    let mut out = BTreeSet::new();
    for r in rows {
        out.insert(Region::parse(&r?).map_err(corrupt)?);
    }
    Ok(out)
}

/// Rebuilds one person from every LA's record of them and publishes the result: put in each region
/// of an LA that holds them, removed from any region in `before` that no longer carries them.
fn republish(
    tx: &Transaction<'_>,
    feed: &mut FeedWriter,
    nhs: &NhsNumber,
    before: &BTreeSet<Region>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let records: Vec<FlagRecord> = {
        let mut stmt =
            tx.prepare_cached("SELECT record_json FROM la_flags WHERE nhs_number = ?1")?;
        let rows = stmt.query_map([nhs.as_digits()], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(serde_json::from_str(&json?)?);
        }
        out
    };
    let after = regions_holding(tx, nhs)?;
    match cpis_core::plan::merge_person(&records) {
        Some(person) => {
            tx.prepare_cached(
                "INSERT INTO flags (nhs_number, la_ods, record_json, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (nhs_number) DO UPDATE SET la_ods = excluded.la_ods,
                   record_json = excluded.record_json, updated_at = excluded.updated_at",
            )?
            .execute(params![nhs.as_digits(), person.local_authority.as_str(), serde_json::to_string(&person)?, ts(now)])?;
            for region in &after {
                feed.write(
                    tx,
                    region,
                    &flag_key(nhs),
                    &FeedChange::PutFlag {
                        record: person.clone(),
                    },
                )?;
            }
        }
        None => {
            tx.prepare_cached("DELETE FROM flags WHERE nhs_number = ?1")?
                .execute([nhs.as_digits()])?;
        }
    }
    for region in before.difference(&after) {
        feed.write(
            tx,
            region,
            &flag_key(nhs),
            &FeedChange::RemoveFlag { nhs_number: *nhs },
        )?;
    }
    Ok(())
}

/// Stores one LA's own record of a person.
fn put_la_flag(tx: &Transaction<'_>, record: &FlagRecord, now: DateTime<Utc>) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO la_flags (nhs_number, la_ods, record_json, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (nhs_number, la_ods) DO UPDATE SET record_json = excluded.record_json,
           updated_at = excluded.updated_at",
    )?
    .execute(params![
        record.nhs_number.as_digits(),
        record.local_authority.as_str(),
        serde_json::to_string(record)?,
        ts(now)
    ])?;
    Ok(())
}

fn la_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LaRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

type LaRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
);

fn la_record(row: LaRow) -> StoreResult<LaRecord> {
    let (ods, name, emergency_phone, office_phone, region, webhook_url) = row;
    Ok(LaRecord {
        la: LocalAuthority {
            ods: OdsCode::parse(&ods).map_err(corrupt)?,
            name,
            emergency_phone,
            office_phone,
            region: Region::parse(&region).map_err(corrupt)?,
        },
        webhook_url,
    })
}

const LA_COLUMNS: &str = "ods, name, emergency_phone, office_phone, region, webhook_url";
const DEVICE_COLUMNS: &str =
    "device_id, public_key, region, org_ods, org_name, setting, lease_key, enrolled_at, last_seen, revoked_at";

fn device_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        id: r.get(0)?,
        public_key: r.get(1)?,
        region: r.get(2)?,
        org_ods: r.get(3)?,
        org_name: r.get(4)?,
        setting: r.get(5)?,
        lease_key: r.get(6)?,
        enrolled_at: r.get(7)?,
        last_seen: r.get(8)?,
        revoked_at: r.get(9)?,
    })
}

struct DeviceRow {
    id: String,
    public_key: Vec<u8>,
    region: String,
    org_ods: String,
    org_name: String,
    setting: String,
    lease_key: Vec<u8>,
    enrolled_at: String,
    last_seen: Option<String>,
    revoked_at: Option<String>,
}

impl DeviceRow {
    fn into_record(self) -> StoreResult<DeviceRecord> {
        Ok(DeviceRecord {
            id: Uuid::parse_str(&self.id).map_err(corrupt)?,
            public_key: self.public_key,
            region: Region::parse(&self.region).map_err(corrupt)?,
            org_ods: OdsCode::parse(&self.org_ods).map_err(corrupt)?,
            org_name: self.org_name,
            setting: self.setting.parse::<CareSetting>().map_err(corrupt)?,
            lease_key: Zeroizing::new(self.lease_key),
            enrolled_at: parse_ts(&self.enrolled_at)?,
            last_seen: opt_ts(self.last_seen)?,
            revoked_at: opt_ts(self.revoked_at)?,
        })
    }
}

const FHIR_CLIENT_COLUMNS: &str = "client_id, org_ods, org_name, setting, created_at, revoked_at";

type FhirClientRow = (String, String, String, String, String, Option<String>);

fn fhir_client_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FhirClientRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn fhir_client_record(
    (id, ods, name, setting, created, revoked): FhirClientRow,
) -> StoreResult<FhirClientRecord> {
    Ok(FhirClientRecord {
        client_id: Uuid::parse_str(&id).map_err(corrupt)?,
        org_ods: OdsCode::parse(&ods).map_err(corrupt)?,
        org_name: name,
        setting: setting.parse::<CareSetting>().map_err(corrupt)?,
        created_at: parse_ts(&created)?,
        revoked_at: opt_ts(revoked)?,
    })
}

fn device_in(tx: &Transaction<'_>, id: Uuid) -> StoreResult<Option<DeviceRecord>> {
    let row = tx
        .query_row(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1"),
            [id.to_string()],
            device_from_row,
        )
        .optional()?;
    row.map(DeviceRow::into_record).transpose()
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn central_keys(&self, fresh: StoredKeys) -> StoreResult<StoredKeys> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO central_keys (id, signing_pkcs8, sealing_secret, created_at) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (id) DO NOTHING",
                params![fresh.signing_pkcs8.as_slice(), fresh.sealing_secret.as_slice(), ts(Utc::now())],
            )?;
            let (signing, sealing): (Vec<u8>, Vec<u8>) = tx.query_row(
                "SELECT signing_pkcs8, sealing_secret FROM central_keys WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let sealing: [u8; 32] = sealing
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt("sealing secret is not 32 bytes".into()))?;
            Ok(StoredKeys {
                signing_pkcs8: Zeroizing::new(signing),
                sealing_secret: Zeroizing::new(sealing),
            })
        })
        .await
    }

    async fn upsert_la(
        &self,
        la: &LocalAuthority,
        webhook: WebhookChange,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let la = la.clone();
        self.write(move |tx| {
            ensure_region(tx, &la.region, now)?;
            let old: Option<LaRecord> = tx
                .query_row(
                    &format!("SELECT {LA_COLUMNS} FROM local_authorities WHERE ods = ?1"),
                    [la.ods.as_str()],
                    la_from_row,
                )
                .optional()?
                .map(la_record)
                .transpose()?;
            let webhook_url = match (&webhook, &old) {
                (WebhookChange::Set(w), _) => w.clone(),
                (WebhookChange::Keep, Some(old)) => old.webhook_url.clone(),
                (WebhookChange::Keep, None) => None,
            };
            tx.execute(
                "INSERT INTO local_authorities (ods, name, emergency_phone, office_phone, region, webhook_url, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (ods) DO UPDATE SET name = excluded.name, emergency_phone = excluded.emergency_phone,
                   office_phone = excluded.office_phone, region = excluded.region,
                   webhook_url = excluded.webhook_url, updated_at = excluded.updated_at",
                params![
                    la.ods.as_str(),
                    la.name,
                    la.emergency_phone,
                    la.office_phone,
                    la.region.as_str(),
                    webhook_url,
                    ts(now)
                ],
            )?;
            let mut feed = FeedWriter::start(tx)?;
            match old {
                Some(old) if old.la.region != la.region => {
                    // Moved: its people are republished from where every LA holding them now sits.
                    feed.write(tx, &old.la.region, &la_key(&la.ods), &FeedChange::RemoveLa { ods: la.ods.clone() })?;
                    feed.write(tx, &la.region, &la_key(&la.ods), &FeedChange::PutLa { la: la.clone() })?;
                    for p in flags_of_la(tx, &la.ods)? {
                        let mut before = regions_holding(tx, &p.nhs_number)?;
                        before.insert(old.la.region.clone());
                        republish(tx, &mut feed, &p.nhs_number, &before, now)?;
                    }
                }
                Some(old) if old.la == la => {}
                _ => {
                    feed.write(tx, &la.region, &la_key(&la.ods), &FeedChange::PutLa { la: la.clone() })?;
                }
            }
            feed.finish(tx)
        })
        .await
    }

    async fn set_lease_hours(
        &self,
        region: &Region,
        hours: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let region = region.clone();
        self.write(move |tx| {
            ensure_region(tx, &region, now)?;
            tx.execute(
                "UPDATE regions SET lease_hours = ?1 WHERE name = ?2",
                params![hours, region.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    async fn region(&self, region: &Region) -> StoreResult<Option<RegionRecord>> {
        let region = region.clone();
        self.read(move |tx| {
            let hours: Option<u32> = tx
                .query_row(
                    "SELECT lease_hours FROM regions WHERE name = ?1",
                    [region.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(hours.map(|lease_hours| RegionRecord {
                region,
                lease_hours,
            }))
        })
        .await
    }

    async fn regions(&self) -> StoreResult<Vec<RegionRecord>> {
        self.read(|tx| {
            let mut stmt = tx.prepare("SELECT name, lease_hours FROM regions ORDER BY name")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (name, lease_hours) = row?;
                out.push(RegionRecord {
                    region: Region::parse(&name).map_err(corrupt)?,
                    lease_hours,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn local_authority(&self, ods: &OdsCode) -> StoreResult<Option<LaRecord>> {
        let ods = ods.clone();
        self.read(move |tx| {
            tx.query_row(
                &format!("SELECT {LA_COLUMNS} FROM local_authorities WHERE ods = ?1"),
                [ods.as_str()],
                la_from_row,
            )
            .optional()?
            .map(la_record)
            .transpose()
        })
        .await
    }

    async fn local_authorities(&self) -> StoreResult<Vec<LaRecord>> {
        self.read(|tx| {
            let mut stmt = tx.prepare(&format!(
                "SELECT {LA_COLUMNS} FROM local_authorities ORDER BY ods"
            ))?;
            let rows = stmt.query_map([], la_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(la_record(row?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn la_records(
        &self,
        la: &OdsCode,
    ) -> StoreResult<(Vec<FlagRecord>, Option<DateTime<Utc>>)> {
        let la = la.clone();
        self.read(move |tx| {
            let at: Option<Option<String>> = tx
                .query_row(
                    "SELECT last_upload_at FROM local_authorities WHERE ods = ?1",
                    [la.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let at = at.ok_or_else(|| StoreError::UnknownLa(la.clone()))?;
            Ok((flags_of_la(tx, &la)?, at.map(|t| parse_ts(&t)).transpose()?))
        })
        .await
    }

    async fn apply_upload(
        &self,
        la: &OdsCode,
        ops: UploadOps,
        now: DateTime<Utc>,
    ) -> StoreResult<usize> {
        let la = la.clone();
        self.write(move |tx| {
            let at: Option<Option<String>> = tx
                .query_row(
                    "SELECT last_upload_at FROM local_authorities WHERE ods = ?1",
                    [la.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let at = at.ok_or_else(|| StoreError::UnknownLa(la.clone()))?;
            if at.map(|t| parse_ts(&t)).transpose()? != ops.based_on {
                return Err(StoreError::UploadRaced);
            }
            let mut feed = FeedWriter::start(tx)?;
            for record in &ops.puts {
                let before = regions_holding(tx, &record.nhs_number)?;
                put_la_flag(tx, record, now)?;
                republish(tx, &mut feed, &record.nhs_number, &before, now)?;
            }
            for nhs in &ops.removes {
                let before = regions_holding(tx, nhs)?;
                tx.prepare_cached("DELETE FROM la_flags WHERE nhs_number = ?1 AND la_ods = ?2")?
                    .execute(params![nhs.as_digits(), la.as_str()])?;
                republish(tx, &mut feed, nhs, &before, now)?;
            }
            feed.finish(tx)?;
            tx.execute(
                "UPDATE local_authorities SET last_upload_at = ?2 WHERE ods = ?1",
                params![la.as_str(), ts(now)],
            )?;
            let people = tx.query_row(
                "SELECT COUNT(*) FROM la_flags WHERE la_ods = ?1",
                [la.as_str()],
                |r| r.get::<_, i64>(0),
            )? as usize;
            Ok(people)
        })
        .await
    }

    async fn bulk_load(
        &self,
        las: Vec<LocalAuthority>,
        flags: Vec<FlagRecord>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.write(move |tx| {
            let now_text = ts(now);
            let mut feed = FeedWriter::start(tx)?;
            let mut regions: HashMap<OdsCode, Region> = HashMap::new();
            for la in &las {
                ensure_region(tx, &la.region, now)?;
                if let Some(old) = la_region(tx, &la.ods)? {
                    if old != la.region {
                        feed.write(tx, &old, &la_key(&la.ods), &FeedChange::RemoveLa { ods: la.ods.clone() })?;
                    }
                }
                tx.execute(
                    "INSERT INTO local_authorities (ods, name, emergency_phone, office_phone, region, updated_at, last_upload_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                     ON CONFLICT (ods) DO UPDATE SET name = excluded.name, emergency_phone = excluded.emergency_phone,
                       office_phone = excluded.office_phone, region = excluded.region, updated_at = excluded.updated_at,
                       last_upload_at = excluded.last_upload_at",
                    params![la.ods.as_str(), la.name, la.emergency_phone, la.office_phone, la.region.as_str(), now_text],
                )?;
                feed.write(tx, &la.region, &la_key(&la.ods), &FeedChange::PutLa { la: la.clone() })?;
                regions.insert(la.ods.clone(), la.region.clone());
            }
            for record in flags {
                if !regions.contains_key(&record.local_authority) {
                    let region = la_region(tx, &record.local_authority)?
                        .ok_or_else(|| StoreError::UnknownLa(record.local_authority.clone()))?;
                    regions.insert(record.local_authority.clone(), region);
                }
                let before = regions_holding(tx, &record.nhs_number)?;
                put_la_flag(tx, &record, now)?;
                republish(tx, &mut feed, &record.nhs_number, &before, now)?;
            }
            feed.finish(tx)
        })
        .await
    }

    async fn flag(&self, nhs: &NhsNumber) -> StoreResult<Option<FlagRecord>> {
        let digits = nhs.as_digits();
        self.read(move |tx| {
            let json: Option<String> = tx
                .query_row(
                    "SELECT record_json FROM flags WHERE nhs_number = ?1",
                    [digits],
                    |r| r.get(0),
                )
                .optional()?;
            json.map(|j| serde_json::from_str(&j).map_err(StoreError::from))
                .transpose()
        })
        .await
    }

    async fn la_last_upload(&self, ods: &OdsCode) -> StoreResult<Option<DateTime<Utc>>> {
        let ods = ods.clone();
        self.read(move |tx| {
            let at: Option<Option<String>> = tx
                .query_row(
                    "SELECT last_upload_at FROM local_authorities WHERE ods = ?1",
                    [ods.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            at.flatten().map(|t| parse_ts(&t)).transpose()
        })
        .await
    }

    async fn flag_count(&self) -> StoreResult<u64> {
        self.read(|tx| {
            Ok(tx.query_row("SELECT COUNT(*) FROM flags", [], |r| r.get::<_, i64>(0))? as u64)
        })
        .await
    }

    async fn expire_flags(
        &self,
        today: NaiveDate,
        rules: VisibilityRules,
        now: DateTime<Utc>,
    ) -> StoreResult<usize> {
        self.write(move |tx| {
            // Each LA's record on its own: an LA whose plans have all gone drops out of the person.
            let mut expired = Vec::new();
            {
                let mut stmt = tx.prepare("SELECT record_json FROM la_flags")?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                for json in rows {
                    let record: FlagRecord = serde_json::from_str(&json?)?;
                    if record.is_expired(today, &rules) {
                        expired.push((record.nhs_number, record.local_authority));
                    }
                }
            }
            let mut feed = FeedWriter::start(tx)?;
            for (nhs, la) in &expired {
                let before = regions_holding(tx, nhs)?;
                tx.prepare_cached("DELETE FROM la_flags WHERE nhs_number = ?1 AND la_ods = ?2")?
                    .execute(params![nhs.as_digits(), la.as_str()])?;
                republish(tx, &mut feed, nhs, &before, now)?;
            }
            feed.finish(tx)?;
            Ok(expired.len())
        })
        .await
    }

    async fn feed_page(&self, region: &Region, after: u64, limit: u32) -> StoreResult<FeedSlice> {
        let region = region.clone();
        self.read(move |tx| {
            let head: Option<i64> = tx.query_row(
                "SELECT MAX(seq) FROM region_feed WHERE region = ?1",
                [region.as_str()],
                |r| r.get(0),
            )?;
            let mut stmt = tx.prepare_cached(
                "SELECT seq, payload_json FROM region_feed WHERE region = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![region.as_str(), after as i64, i64::from(limit) + 1], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut ops = Vec::new();
            for row in rows {
                let (seq, json) = row?;
                ops.push(FeedOp { seq: seq as u64, change: serde_json::from_str(&json)? });
            }
            let has_more = ops.len() > limit as usize;
            ops.truncate(limit as usize);
            Ok(FeedSlice { ops, head: head.unwrap_or(0) as u64, has_more })
        })
        .await
    }

    async fn region_content(
        &self,
        region: &Region,
    ) -> StoreResult<(Vec<FlagRecord>, Vec<LocalAuthority>)> {
        let region = region.clone();
        self.read(move |tx| {
            let mut stmt = tx.prepare(
                "SELECT payload_json FROM region_feed WHERE region = ?1 AND op IN ('put_flag', 'put_la')",
            )?;
            let rows = stmt.query_map([region.as_str()], |r| r.get::<_, String>(0))?;
            let (mut flags, mut las) = (Vec::new(), Vec::new());
            for row in rows {
                match serde_json::from_str::<FeedChange>(&row?)? {
                    FeedChange::PutFlag { record } => flags.push(record),
                    FeedChange::PutLa { la } => las.push(la),
                    _ => {}
                }
            }
            Ok((flags, las))
        })
        .await
    }

    async fn create_enrolment(&self, e: NewEnrolment) -> StoreResult<()> {
        self.write(move |tx| {
            ensure_region(tx, &e.region, e.created_at)?;
            tx.execute(
                "INSERT INTO enrolment_codes (code_hash, region, org_ods, org_name, setting, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    e.code_hash,
                    e.region.as_str(),
                    e.org_ods.as_str(),
                    e.org_name,
                    e.setting.code(),
                    ts(e.created_at),
                    ts(e.expires_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn redeem_enrolment(
        &self,
        code_hash: &str,
        device: NewDevice,
        now: DateTime<Utc>,
    ) -> StoreResult<Result<DeviceRecord, EnrolRefusal>> {
        let code_hash = code_hash.to_string();
        self.write(move |tx| {
            let row: Option<(String, String, String, String, String, Option<String>)> = tx
                .query_row(
                    "SELECT region, org_ods, org_name, setting, expires_at, used_at FROM enrolment_codes WHERE code_hash = ?1",
                    [&code_hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()?;
            let Some((region, org_ods, org_name, setting, expires_at, used_at)) = row else {
                return Ok(Err(EnrolRefusal::Unknown));
            };
            if used_at.is_some() {
                return Ok(Err(EnrolRefusal::Used));
            }
            if parse_ts(&expires_at)? <= now {
                return Ok(Err(EnrolRefusal::Expired));
            }
            tx.execute(
                "UPDATE enrolment_codes SET used_at = ?1, device_id = ?2 WHERE code_hash = ?3",
                params![ts(now), device.id.to_string(), code_hash],
            )?;
            tx.execute(
                "INSERT INTO devices (device_id, public_key, region, org_ods, org_name, setting, lease_key, enrolled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    device.id.to_string(),
                    device.public_key.as_slice(),
                    region,
                    org_ods,
                    org_name,
                    setting,
                    device.lease_key.as_slice(),
                    ts(device.enrolled_at)
                ],
            )?;
            Ok(Ok(device_in(tx, device.id)?.ok_or_else(|| StoreError::Database("device vanished".into()))?))
        })
        .await
    }

    async fn device(&self, id: Uuid) -> StoreResult<Option<DeviceRecord>> {
        self.read(move |tx| device_in(tx, id)).await
    }

    async fn devices(&self) -> StoreResult<Vec<DeviceRecord>> {
        self.read(|tx| {
            let mut stmt = tx.prepare(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY enrolled_at, device_id"
            ))?;
            let rows = stmt.query_map([], device_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?.into_record()?);
            }
            Ok(out)
        })
        .await
    }

    async fn revoke_device(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?1) WHERE device_id = ?2",
                params![ts(now), id.to_string()],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn touch_device(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        unless_since: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE devices SET last_seen = ?1
                 WHERE device_id = ?2 AND (last_seen IS NULL OR last_seen < ?3)",
                params![ts(now), id.to_string(), ts(unless_since)],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn create_challenge(
        &self,
        device: Uuid,
        challenge: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let challenge = challenge.to_string();
        self.write(move |tx| {
            // Expired challenges are swept as new ones are made, so the table stays small.
            tx.execute("DELETE FROM auth_challenges WHERE expires_at < ?1", [ts(Utc::now())])?;
            tx.execute(
                "INSERT INTO auth_challenges (challenge, device_id, expires_at) VALUES (?1, ?2, ?3)",
                params![challenge, device.to_string(), ts(expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn take_challenge(&self, challenge: &str) -> StoreResult<Option<(Uuid, DateTime<Utc>)>> {
        let challenge = challenge.to_string();
        self.write(move |tx| {
            let row: Option<(String, String)> = tx
                .query_row(
                    "DELETE FROM auth_challenges WHERE challenge = ?1 RETURNING device_id, expires_at",
                    [challenge],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            row.map(|(d, e)| Ok((Uuid::parse_str(&d).map_err(corrupt)?, parse_ts(&e)?))).transpose()
        })
        .await
    }

    async fn create_device_token(
        &self,
        token_hash: &str,
        device: Uuid,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let token_hash = token_hash.to_string();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM device_tokens WHERE expires_at < ?1",
                [ts(Utc::now())],
            )?;
            tx.execute(
                "INSERT INTO device_tokens (token_hash, device_id, expires_at) VALUES (?1, ?2, ?3)",
                params![token_hash, device.to_string(), ts(expires_at)],
            )?;
            tx.execute(
                "UPDATE devices SET last_seen = ?1 WHERE device_id = ?2",
                params![ts(Utc::now()), device.to_string()],
            )?;
            Ok(())
        })
        .await
    }

    async fn device_for_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Uuid>> {
        let token_hash = token_hash.to_string();
        self.read(move |tx| {
            let d: Option<String> = tx
                .query_row(
                    "SELECT device_id FROM device_tokens WHERE token_hash = ?1 AND expires_at > ?2",
                    params![token_hash, ts(now)],
                    |r| r.get(0),
                )
                .optional()?;
            d.map(|d| Uuid::parse_str(&d).map_err(corrupt)).transpose()
        })
        .await
    }

    async fn open_user_session(&self, session: &UserSessionRow) -> StoreResult<()> {
        let session = session.clone();
        self.write(move |tx| {
            let device = session.device_id.to_string();
            // Ended sessions go as new ones open, so the table holds about one row per device.
            tx.execute(
                "DELETE FROM user_sessions WHERE device_id = ?1 OR expires_at < ?2 OR idle_until < ?2",
                params![device, ts(Utc::now())],
            )?;
            tx.execute(
                "INSERT INTO user_sessions (token_hash, device_id, user_id, idle_until, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    session.token_hash,
                    device,
                    session.user_id,
                    ts(session.idle_until),
                    ts(session.expires_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn use_user_session(
        &self,
        token_hash: &str,
        device: Uuid,
        now: DateTime<Utc>,
        idle_until_new: DateTime<Utc>,
    ) -> StoreResult<Option<String>> {
        let token_hash = token_hash.to_string();
        let key = token_hash.clone();
        let found: Option<(String, String)> = self
            .read(move |tx| {
                Ok(tx
                    .query_row(
                        "SELECT user_id, idle_until FROM user_sessions
                         WHERE token_hash = ?1 AND device_id = ?2 AND idle_until > ?3 AND expires_at > ?3",
                        params![key, device.to_string(), ts(now)],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?)
            })
            .await?;
        let Some((user_id, idle_until)) = found else {
            return Ok(None);
        };
        if idle_until_new - parse_ts(&idle_until)? > SESSION_IDLE_SLACK {
            self.write(move |tx| {
                tx.execute(
                    "UPDATE user_sessions
                     SET idle_until = CASE WHEN ?3 < expires_at THEN ?3 ELSE expires_at END
                     WHERE token_hash = ?1 AND device_id = ?2",
                    params![token_hash, device.to_string(), ts(idle_until_new)],
                )?;
                Ok(())
            })
            .await?;
        }
        Ok(Some(user_id))
    }

    async fn end_user_session(&self, token_hash: &str, device: Uuid) -> StoreResult<bool> {
        let token_hash = token_hash.to_string();
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM user_sessions WHERE token_hash = ?1 AND device_id = ?2",
                params![token_hash, device.to_string()],
            )? > 0)
        })
        .await
    }

    async fn upsert_user(&self, u: &UserRecord, now: DateTime<Utc>) -> StoreResult<()> {
        let u = u.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO users (user_id, name, role, activity, org_ods, pin_salt, pin_hash, pin_iterations, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, role = excluded.role,
                   activity = excluded.activity, org_ods = excluded.org_ods, pin_salt = excluded.pin_salt,
                   pin_hash = excluded.pin_hash, pin_iterations = excluded.pin_iterations, updated_at = excluded.updated_at",
                params![
                    u.id,
                    u.name,
                    u.role,
                    u.activity.to_string(),
                    u.org_ods.as_str(),
                    u.pin_salt,
                    u.pin_hash,
                    u.pin_iterations,
                    ts(now)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let id = id.to_string();
        self.read(move |tx| {
            let row: Option<(String, String, String, String, String, Vec<u8>, Vec<u8>, u32)> = tx
                .query_row(
                    "SELECT user_id, name, role, activity, org_ods, pin_salt, pin_hash, pin_iterations FROM users WHERE user_id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)),
                )
                .optional()?;
            row.map(|(id, name, role, activity, org, pin_salt, pin_hash, pin_iterations)| {
                Ok(UserRecord {
                    id,
                    name,
                    role,
                    activity: activity.parse().map_err(corrupt)?,
                    org_ods: OdsCode::parse(&org).map_err(corrupt)?,
                    pin_salt,
                    pin_hash,
                    pin_iterations,
                })
            })
            .transpose()
        })
        .await
    }

    async fn take_sign_in_attempt(
        &self,
        user_hash: &str,
        now: DateTime<Utc>,
        window_cutoff: DateTime<Utc>,
    ) -> StoreResult<u32> {
        let user_hash = user_hash.to_string();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM sign_in_attempts WHERE window_start <= ?1",
                [ts(window_cutoff)],
            )?;
            // The CASEs read the row as it was, so an ended window restarts at one from now.
            let attempts: u32 = tx.query_row(
                "INSERT INTO sign_in_attempts (user_hash, attempts, window_start) VALUES (?1, 1, ?2)
                 ON CONFLICT (user_hash) DO UPDATE SET
                    attempts = CASE WHEN sign_in_attempts.window_start <= ?3 THEN 1
                                    ELSE MIN(sign_in_attempts.attempts + 1, 1000000) END,
                    window_start = CASE WHEN sign_in_attempts.window_start <= ?3 THEN excluded.window_start
                                        ELSE sign_in_attempts.window_start END
                 RETURNING attempts",
                params![user_hash, ts(now), ts(window_cutoff)],
                |r| r.get(0),
            )?;
            Ok(attempts)
        })
        .await
    }

    async fn clear_sign_in_attempts(&self, user_hash: &str) -> StoreResult<()> {
        let user_hash = user_hash.to_string();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM sign_in_attempts WHERE user_hash = ?1",
                [user_hash],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_la_token(
        &self,
        token_hash: &str,
        la: &OdsCode,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (token_hash, la) = (token_hash.to_string(), la.clone());
        self.write(move |tx| {
            if la_region(tx, &la)?.is_none() {
                return Err(StoreError::UnknownLa(la));
            }
            tx.execute(
                "INSERT INTO la_tokens (token_hash, la_ods, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![token_hash, la.as_str(), ts(now), ts(expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn la_for_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<OdsCode>> {
        let token_hash = token_hash.to_string();
        self.read(move |tx| {
            let la: Option<String> = tx
                .query_row(
                    "SELECT la_ods FROM la_tokens WHERE token_hash = ?1 AND revoked_at IS NULL
                       AND (expires_at IS NULL OR expires_at > ?2)",
                    params![token_hash, ts(now)],
                    |r| r.get(0),
                )
                .optional()?;
            la.map(|l| OdsCode::parse(&l).map_err(corrupt)).transpose()
        })
        .await
    }

    async fn revoke_la_tokens(&self, la: &OdsCode, now: DateTime<Utc>) -> StoreResult<u64> {
        let la = la.clone();
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE la_tokens SET revoked_at = ?2 WHERE la_ods = ?1 AND revoked_at IS NULL",
                params![la.as_str(), ts(now)],
            )?;
            tx.execute(
                "DELETE FROM inbox_sessions WHERE la_ods = ?1",
                [la.as_str()],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn create_inbox_session(
        &self,
        session_hash: &str,
        la: &OdsCode,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (session_hash, la, token_hash) =
            (session_hash.to_string(), la.clone(), token_hash.to_string());
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM inbox_sessions WHERE expires_at <= ?1",
                [ts(now)],
            )?;
            tx.execute(
                "INSERT INTO inbox_sessions (session_hash, la_ods, token_hash, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![session_hash, la.as_str(), token_hash, ts(expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn inbox_session(
        &self,
        session_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<OdsCode>> {
        let session_hash = session_hash.to_string();
        self.read(move |tx| {
            let la: Option<String> = tx
                .query_row(
                    "SELECT s.la_ods FROM inbox_sessions s JOIN la_tokens t ON t.token_hash = s.token_hash
                     WHERE s.session_hash = ?1 AND s.expires_at > ?2 AND t.la_ods = s.la_ods
                       AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?2)",
                    params![session_hash, ts(now)],
                    |r| r.get(0),
                )
                .optional()?;
            la.map(|l| OdsCode::parse(&l).map_err(corrupt)).transpose()
        })
        .await
    }

    async fn end_inbox_session(&self, session_hash: &str) -> StoreResult<()> {
        let session_hash = session_hash.to_string();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM inbox_sessions WHERE session_hash = ?1",
                [session_hash],
            )?;
            Ok(())
        })
        .await
    }

    async fn begin_la_upload(
        &self,
        upload: &NewLaUpload,
        window_cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Option<i64>> {
        let u = upload.clone();
        // One writer at a time: the count and the insert cannot interleave with another upload's.
        self.write(move |tx| {
            let recent: u32 = tx.query_row(
                "SELECT COUNT(*) FROM la_uploads
                 WHERE la_ods = ?1 AND received_at > ?2 AND outcome <> 'rate_limited'",
                params![u.la.as_str(), ts(window_cutoff)],
                |r| r.get(0),
            )?;
            let outcome = if recent >= limit { "rate_limited" } else { "started" };
            tx.execute(
                "INSERT INTO la_uploads (la_ods, token_ref, received_at, outcome) VALUES (?1, ?2, ?3, ?4)",
                params![u.la.as_str(), u.token_ref, ts(u.received_at), outcome],
            )?;
            Ok((recent < limit).then(|| tx.last_insert_rowid()))
        })
        .await
    }

    async fn finish_la_upload(&self, id: i64, outcome: &LaUploadOutcome) -> StoreResult<()> {
        let o = outcome.clone();
        self.write(move |tx| {
            tx.execute(
                "UPDATE la_uploads SET outcome = ?2, rows = ?3, detail = ?4 WHERE id = ?1",
                params![id, o.outcome, o.rows.map(|r| r as i64), o.detail],
            )?;
            Ok(())
        })
        .await
    }

    async fn la_uploads(
        &self,
        la: Option<&OdsCode>,
        limit: u32,
    ) -> StoreResult<Vec<LaUploadRecord>> {
        let la = la.map(|l| l.as_str().to_string());
        self.read(move |tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT id, la_ods, token_ref, received_at, rows, outcome, detail FROM la_uploads
                 WHERE ?1 IS NULL OR la_ods = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![la, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, la, token_ref, at, rows, outcome, detail) = row?;
                out.push(LaUploadRecord {
                    id,
                    la: OdsCode::parse(&la).map_err(corrupt)?,
                    token_ref,
                    received_at: parse_ts(&at)?,
                    rows: rows.map(|r| r as u64),
                    outcome,
                    detail,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn create_fhir_client(
        &self,
        client: &FhirClientRecord,
        token_hash: &str,
    ) -> StoreResult<()> {
        let (c, token_hash) = (client.clone(), token_hash.to_string());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO fhir_clients (client_id, token_hash, org_ods, org_name, setting, created_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    c.client_id.to_string(),
                    token_hash,
                    c.org_ods.as_str(),
                    c.org_name,
                    c.setting.code(),
                    ts(c.created_at),
                    c.revoked_at.map(ts)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn fhir_client_for_token(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<FhirClientRecord>> {
        let token_hash = token_hash.to_string();
        self.read(move |tx| {
            let row = tx
                .query_row(
                    &format!(
                        "SELECT {FHIR_CLIENT_COLUMNS} FROM fhir_clients WHERE token_hash = ?1"
                    ),
                    [token_hash],
                    fhir_client_row,
                )
                .optional()?;
            row.map(fhir_client_record).transpose()
        })
        .await
    }

    async fn fhir_clients(&self) -> StoreResult<Vec<FhirClientRecord>> {
        self.read(|tx| {
            let mut stmt = tx.prepare(&format!(
                "SELECT {FHIR_CLIENT_COLUMNS} FROM fhir_clients ORDER BY created_at, client_id"
            ))?;
            let rows = stmt.query_map([], fhir_client_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(fhir_client_record(row?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn revoke_fhir_client(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool> {
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE fhir_clients SET revoked_at = COALESCE(revoked_at, ?1) WHERE client_id = ?2",
                params![ts(now), id.to_string()],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn ingest_events(
        &self,
        events: Vec<EventIntake>,
        received_at: DateTime<Utc>,
    ) -> StoreResult<Vec<Ingested>> {
        self.write(move |tx| {
            let mut out = Vec::with_capacity(events.len());
            let received = ts(received_at);
            for EventIntake { event, notifications } in events {
                let stored = tx
                    .prepare_cached(
                        "INSERT INTO access_events (event_id, device_id, device_seq, device_time, received_at,
                           nhs_number, user_id, unscheduled, notifies, payload_json)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (event_id) DO NOTHING",
                    )?
                    .execute(params![
                        event.id.to_string(),
                        event.device_id.to_string(),
                        event.device_seq as i64,
                        ts(event.device_time),
                        received,
                        event.nhs_number.as_digits(),
                        event.accessor.user_id,
                        event.accessor.setting.is_unscheduled(),
                        event.notifies,
                        serde_json::to_string(&event)?
                    ])?
                    == 1;
                if !stored {
                    out.push(Ingested::AlreadyStored);
                    continue;
                }
                out.push(Ingested::Stored);
                for (la, mut n) in notifications {
                    let seq: i64 = tx
                        .prepare_cached(
                            "UPDATE local_authorities SET notify_seq = notify_seq + 1 WHERE ods = ?1 RETURNING notify_seq",
                        )?
                        .query_row([la.as_str()], |r| r.get(0))?;
                    n.seq = seq as u64;
                    tx.prepare_cached(
                        "INSERT INTO notifications (la_ods, seq, event_id, payload_json, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![la.as_str(), seq, event.id.to_string(), serde_json::to_string(&n)?, received])?;
                }
            }
            Ok(out)
        })
        .await
    }

    async fn unscheduled_accesses(
        &self,
        nhs: &NhsNumber,
        limit: u32,
    ) -> StoreResult<Vec<AccessEvent>> {
        let digits = nhs.as_digits();
        self.read(move |tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT payload_json FROM access_events WHERE nhs_number = ?1 AND unscheduled = 1
                 ORDER BY device_time DESC, event_id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![digits, limit], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(serde_json::from_str(&row?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn record_lookup(&self, nhs: &NhsNumber, lookup: &LiveLookup) -> StoreResult<()> {
        let digits = nhs.as_digits();
        let lookup = lookup.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO live_lookups (nhs_number, at, device_id, user_id, found)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                digits,
                ts(lookup.at),
                lookup.device_id.to_string(),
                lookup.user_id,
                lookup.found
            ])?;
            Ok(())
        })
        .await
    }

    async fn lookups_of(&self, nhs: &NhsNumber, limit: u32) -> StoreResult<Vec<LiveLookup>> {
        let digits = nhs.as_digits();
        self.read(move |tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT at, device_id, user_id, found, search_id FROM live_lookups WHERE nhs_number = ?1
                 ORDER BY at DESC, id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![digits, limit], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (at, device_id, user_id, found, search_id) = row?;
                out.push(LiveLookup {
                    at: parse_ts(&at)?,
                    device_id: Uuid::parse_str(&device_id).map_err(|_| {
                        StoreError::Corrupt("a looked-up device id does not parse".into())
                    })?,
                    user_id,
                    found,
                    search_id,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn flags_born_on(&self, dates: &[NaiveDate]) -> StoreResult<Vec<FlagRecord>> {
        let dates: Vec<String> = dates
            .iter()
            .map(|d| d.format("%Y-%m-%d").to_string())
            .collect();
        self.read(move |tx| {
            // The same expression as the index (migration 0005), so the index answers.
            let mut stmt = tx.prepare_cached(
                "SELECT record_json FROM flags WHERE json_extract(record_json, '$.date_of_birth') = ?1",
            )?;
            let mut out = Vec::new();
            for d in &dates {
                let rows = stmt.query_map([d], |r| r.get::<_, String>(0))?;
                for json in rows {
                    out.push(serde_json::from_str(&json?)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn record_search(&self, search: &LiveSearch, returned: &[NhsNumber]) -> StoreResult<()> {
        let search = search.clone();
        let returned: Vec<String> = returned.iter().map(|n| n.as_digits()).collect();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO live_searches (at, device_id, user_id, query_json, outcome, candidates)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                ts(search.at),
                search.device_id.to_string(),
                search.user_id,
                serde_json::to_string(&search.query)?,
                serde_json::to_value(search.outcome)?.as_str().unwrap_or_default(),
                search.candidates as i64
            ])?;
            let id = tx.last_insert_rowid();
            for digits in returned {
                tx.prepare_cached(
                    "INSERT INTO live_lookups (nhs_number, at, device_id, user_id, found, search_id)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5)",
                )?
                .execute(params![
                    digits,
                    ts(search.at),
                    search.device_id.to_string(),
                    search.user_id,
                    id
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn searches(&self, limit: u32) -> StoreResult<Vec<LiveSearch>> {
        self.read(move |tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT id, at, device_id, user_id, query_json, outcome, candidates FROM live_searches
                 ORDER BY at DESC, id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, at, device_id, user_id, query, outcome, candidates) = row?;
                out.push(LiveSearch {
                    id: Some(id),
                    at: parse_ts(&at)?,
                    device_id: Uuid::parse_str(&device_id).map_err(|_| {
                        StoreError::Corrupt("a searching device id does not parse".into())
                    })?,
                    user_id,
                    query: serde_json::from_str(&query)?,
                    outcome: serde_json::from_value(serde_json::Value::String(outcome))?,
                    candidates: candidates as usize,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn event_count(&self) -> StoreResult<u64> {
        self.read(|tx| {
            Ok(tx.query_row("SELECT COUNT(*) FROM access_events", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
        })
        .await
    }

    async fn notification_page(
        &self,
        la: &OdsCode,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<Notification>> {
        let la = la.clone();
        self.read(move |tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT payload_json FROM notifications WHERE la_ods = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![la.as_str(), after as i64, limit], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(serde_json::from_str(&row?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn notification_count(&self) -> StoreResult<u64> {
        self.read(|tx| {
            Ok(tx.query_row("SELECT COUNT(*) FROM notifications", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<PendingDelivery>> {
        self.write(move |tx| {
            let claim = Uuid::new_v4();
            // One statement under the write lock: whichever instance (or process) runs it first
            // takes the rows, the next sees them claimed until the claim lapses.
            let mut stmt = tx.prepare_cached(
                "UPDATE notifications SET claim_id = ?1, claimed_until = ?2
                 WHERE rowid IN (
                   SELECT n.rowid FROM notifications n JOIN local_authorities l ON l.ods = n.la_ods
                   WHERE n.delivery_state = 'pending' AND l.webhook_url IS NOT NULL
                     AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= ?3)
                     AND (n.claimed_until IS NULL OR n.claimed_until <= ?3)
                   ORDER BY n.created_at, n.la_ods, n.seq LIMIT ?4)
                 RETURNING la_ods, seq, attempts, payload_json, created_at",
            )?;
            let rows = stmt.query_map(
                params![claim.to_string(), ts(claim_until), ts(now), limit],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, u32>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )?;
            let mut claimed = Vec::new();
            for row in rows {
                claimed.push(row?);
            }
            claimed.sort_by(|a, b| (&a.4, &a.0, a.1).cmp(&(&b.4, &b.0, b.1)));
            let mut hooks: HashMap<String, String> = HashMap::new();
            let mut out = Vec::with_capacity(claimed.len());
            for (la, seq, attempts, json, _) in claimed {
                if !hooks.contains_key(&la) {
                    let url: Option<String> = tx.query_row(
                        "SELECT webhook_url FROM local_authorities WHERE ods = ?1",
                        [&la],
                        |r| r.get(0),
                    )?;
                    hooks.insert(la.clone(), url.unwrap_or_default());
                }
                out.push(PendingDelivery {
                    webhook_url: hooks[&la].clone(),
                    la: OdsCode::parse(&la).map_err(corrupt)?,
                    seq: seq as u64,
                    attempts,
                    notification: serde_json::from_str(&json)?,
                    claim,
                    claimed_until: claim_until,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn record_delivery(
        &self,
        delivery: &PendingDelivery,
        outcome: DeliveryOutcome,
    ) -> StoreResult<bool> {
        let (la, seq, claim) = (delivery.la.clone(), delivery.seq, delivery.claim);
        self.write(move |tx| {
            let (state, attempts, next, delivered, error) = match outcome {
                DeliveryOutcome::Delivered { at } => ("delivered", None, None, Some(ts(at)), None),
                DeliveryOutcome::Retry { attempts, next_attempt_at, error } => {
                    ("pending", Some(attempts), Some(ts(next_attempt_at)), None, Some(error))
                }
                DeliveryOutcome::GaveUp { attempts, error } => ("failed", Some(attempts), None, None, Some(error)),
            };
            let n = tx.execute(
                "UPDATE notifications SET delivery_state = ?1, attempts = COALESCE(?2, attempts + 1),
                   next_attempt_at = ?3, delivered_at = ?4, last_error = ?5,
                   claim_id = NULL, claimed_until = NULL
                 WHERE la_ods = ?6 AND seq = ?7 AND claim_id = ?8 AND delivery_state = 'pending'",
                params![state, attempts, next, delivered, error, la.as_str(), seq as i64, claim.to_string()],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn delivery_backlog(&self) -> StoreResult<DeliveryBacklog> {
        self.read(|tx| {
            let (pending, failed, oldest): (i64, i64, Option<String>) = tx.query_row(
                "SELECT COALESCE(SUM(n.delivery_state = 'pending'), 0),
                        COALESCE(SUM(n.delivery_state = 'failed'), 0),
                        MIN(CASE WHEN n.delivery_state = 'pending' THEN n.created_at END)
                 FROM notifications n JOIN local_authorities l ON l.ods = n.la_ods
                 WHERE n.delivery_state IN ('pending', 'failed') AND l.webhook_url IS NOT NULL",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok(DeliveryBacklog {
                pending: pending as u64,
                failed: failed as u64,
                oldest_pending: opt_ts(oldest)?,
            })
        })
        .await
    }

    async fn feed_heads(&self) -> StoreResult<Vec<(Region, u64)>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT r.name, COALESCE((SELECT MAX(f.seq) FROM region_feed f WHERE f.region = r.name), 0)
                 FROM regions r ORDER BY r.name",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (name, head) = row?;
                out.push((Region::parse(&name).map_err(corrupt)?, head as u64));
            }
            Ok(out)
        })
        .await
    }

    async fn missing_migrations(&self) -> StoreResult<Vec<&'static str>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached("SELECT name FROM schema_migrations")?;
            let applied: HashSet<String> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(SQLITE
                .iter()
                .map(|m| m.name)
                .filter(|n| !applied.contains(*n))
                .collect())
        })
        .await
    }

    async fn delivery_state(&self, event_id: Uuid) -> StoreResult<Option<(String, u32)>> {
        self.read(move |tx| {
            Ok(tx
                .query_row(
                    "SELECT delivery_state, attempts FROM notifications WHERE event_id = ?1 ORDER BY la_ods LIMIT 1",
                    [event_id.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?)
        })
        .await
    }
}
