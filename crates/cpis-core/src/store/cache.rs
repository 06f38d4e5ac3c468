//! The cached region: feed pages applied with their cursor in one transaction, lookups by blind
//! index, the cache digest compared with the central's, and the sealed local audit log.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::{get_meta, meta_keys, put_meta, ts, DeviceStore, SqlContext, StoreError};
use crate::crypto::hazmat;
use crate::la::{LocalAuthority, OdsCode};
use crate::nhs::NhsNumber;
use crate::plan::FlagRecord;
use crate::search::SearchQuery;
use crate::vault::{CacheKeys, DataKey};
use crate::wire::{FeedChange, FeedPage};

/// What applying a page did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageApplied {
    pub ops: usize,
    pub puts: usize,
    pub removes: usize,
    /// Sealed bytes written.
    pub bytes: usize,
}

/// Where each person staged by an unfinished first download sits (their newest staged row), shared
/// by the connection that applies pages and the ones that answer checks: a check seeks its person's
/// row instead of scanning everything staged so far, and once no download is staged it skips the
/// staged table altogether. Kept in memory, rebuilt from the store at start and after the cache is
/// cleared; while a staging page is being applied, or when anything is uncertain, checks fall back
/// to the scan, which is always right.
#[derive(Debug, Default)]
pub struct StagedIndex {
    state: RwLock<StagedState>,
}

#[derive(Debug, Default)]
enum StagedState {
    /// Not known: checks scan the staged table.
    #[default]
    Unknown,
    /// Nothing is staged: checks read `flags` alone.
    Idle,
    /// A first download is staged: blind index to the rowid of the person's newest staged row.
    Staging(HashMap<[u8; 32], i64>),
}

/// LAs opened by one connection's lookups, and the `data_version` they were read at.
#[derive(Debug, Default)]
pub(super) struct LaCache {
    data_version: i64,
    las: HashMap<OdsCode, Option<LocalAuthority>>,
}

/// How a lookup treats the staged table.
enum StagedProbe {
    Scan,
    Skip,
    Row(i64),
}

/// One check or search made on this device, hit or miss. Sealed at rest: it holds the NHS number,
/// or what was entered in a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub user_id: String,
    /// The person checked or chosen; `None` for a search that settled on no one.
    pub nhs_number: Option<NhsNumber>,
    /// e.g. "record_found", "no_record".
    pub outcome: String,
    /// Which source answered, e.g. "cache" or "live".
    pub source: String,
    /// For a search by name and date of birth: what was entered and what came of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchAudit>,
}

/// What the audit keeps of a search: what was entered, how many candidates, what was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchAudit {
    pub search_id: uuid::Uuid,
    pub entered: SearchQuery,
    /// People who matched at all (for "too many", how many there were).
    pub candidates: usize,
    /// e.g. "match", "possible_matches", "too_many", "no_match", "chosen", "none_of_these".
    pub step: String,
}

fn flag_aad(blind_index: &[u8; 32]) -> [u8; 37] {
    let mut aad = [0u8; 37];
    aad[..5].copy_from_slice(b"flag:");
    aad[5..].copy_from_slice(blind_index);
    aad
}

fn la_aad(ods: &OdsCode) -> Vec<u8> {
    format!("la:{}", ods.as_str()).into_bytes()
}

fn audit_aad(id: i64) -> Vec<u8> {
    format!("audit:{id}").into_bytes()
}

/// Audit entries are padded to a multiple of this before sealing, so a hit and a miss (and one
/// user id and another) seal to the same length. Trailing spaces are valid JSON whitespace, so
/// entries written before padding read the same way.
pub const AUDIT_PAD: usize = 1024;

fn padded_audit_json(entry: &AuditEntry) -> zeroize::Zeroizing<Vec<u8>> {
    let mut json =
        zeroize::Zeroizing::new(serde_json::to_vec(entry).expect("an entry always serialises"));
    let target = json.len().div_ceil(AUDIT_PAD).max(1) * AUDIT_PAD;
    json.resize(target, b' ');
    json
}

/// The time kept in the clear beside a sealed audit entry: the day only, enough for retention. The
/// exact time is inside the seal; a clear one could be matched against the outbox's to tell which
/// checks found someone.
pub(crate) fn audit_day(at: DateTime<Utc>) -> DateTime<Utc> {
    at.date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
}

fn open_flag(
    data: &DataKey,
    blind_index: &[u8; 32],
    sealed: &[u8],
) -> Result<FlagRecord, StoreError> {
    let json = data
        .open(&flag_aad(blind_index), sealed)
        .map_err(|_| StoreError::Tampered {
            what: "a cached flag",
        })?;
    serde_json::from_slice(&json)
        .map_err(|_| StoreError::Corrupt("a cached flag does not decode".into()))
}

fn open_la(data: &DataKey, ods: &OdsCode, sealed: &[u8]) -> Result<LocalAuthority, StoreError> {
    let json = data
        .open(&la_aad(ods), sealed)
        .map_err(|_| StoreError::Tampered {
            what: "a cached local authority",
        })?;
    serde_json::from_slice(&json)
        .map_err(|_| StoreError::Corrupt("a cached local authority does not decode".into()))
}

/// Drops every cached flag and LA and rewinds the cursor, so the next sync downloads afresh.
pub(super) fn clear_cache(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "DELETE FROM flags; DELETE FROM flags_staged; DELETE FROM local_authorities;
         DELETE FROM meta WHERE key IN ('cursor', 'last_sync_at', 'staging');",
    )
    .ctx("clearing the cache")
}

/// The staged flags as they stand: the newest row of each blind index, removals left out, in
/// blind-index order (so moving them into `flags` appends to its B-tree).
const STAGED_FLAGS: &str = "SELECT blind_index, sealed, seq, dob_bucket FROM (
        SELECT blind_index, sealed, seq, dob_bucket,
               row_number() OVER (PARTITION BY blind_index ORDER BY seq DESC) AS newest
        FROM flags_staged)
    WHERE newest = 1 AND sealed IS NOT NULL
    ORDER BY blind_index";

fn flags_empty(conn: &Connection) -> Result<bool, StoreError> {
    conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM flags)", [], |r| r.get(0))
        .ctx("reading whether the cache is empty")
}

/// Checks the page against the cursor and region, then writes its operations and the new cursor.
/// Runs inside the caller's transaction; nothing is visible until that commits.
pub(super) fn apply_page_in(
    tx: &Transaction<'_>,
    keys: &CacheKeys,
    page: &FeedPage,
    now: DateTime<Utc>,
) -> Result<PageApplied, StoreError> {
    apply_page_collecting(tx, keys, page, now, None)
}

/// `apply_page_in`, also noting (blind index, rowid) of every row it stages.
fn apply_page_collecting(
    tx: &Transaction<'_>,
    keys: &CacheKeys,
    page: &FeedPage,
    now: DateTime<Utc>,
    mut staged_rows: Option<&mut Vec<([u8; 32], i64)>>,
) -> Result<PageApplied, StoreError> {
    let cursor = super::get_meta_u64(tx, meta_keys::CURSOR)?.unwrap_or(0);
    if page.after != cursor {
        return Err(StoreError::CursorMismatch {
            expected: cursor,
            got: page.after,
        });
    }
    if let Some(region) = get_meta(tx, meta_keys::REGION)? {
        if region != page.region.as_str() {
            return Err(StoreError::WrongRegion {
                expected: region,
                got: page.region.as_str().to_string(),
            });
        }
    }
    if page.last < page.after {
        return Err(StoreError::BadPage(format!(
            "it ends at {} before it starts after {}",
            page.last, page.after
        )));
    }
    let mut previous = page.after;
    for op in &page.ops {
        if op.seq <= previous || op.seq > page.last {
            return Err(StoreError::BadPage(format!(
                "operation {} is out of order or outside ({}, {}]",
                op.seq, page.after, page.last
            )));
        }
        previous = op.seq;
    }

    let mut applied = PageApplied {
        ops: page.ops.len(),
        ..Default::default()
    };
    // A download from nothing that spans several pages is staged (migration 0002 says why).
    let staging = match get_meta(tx, meta_keys::STAGING)? {
        Some(_) => true,
        None if page.after == 0 && page.has_more && flags_empty(tx)? => {
            put_meta(tx, meta_keys::STAGING, "1")?;
            true
        }
        None => false,
    };
    let (put_sql, remove_sql) = if staging {
        (
            "INSERT INTO flags_staged (blind_index, sealed, seq, dob_bucket) VALUES (?1, ?2, ?3, ?4)",
            "INSERT INTO flags_staged (blind_index, sealed, seq) VALUES (?1, NULL, ?2)",
        )
    } else {
        (
            "INSERT OR REPLACE INTO flags (blind_index, sealed, seq, dob_bucket) VALUES (?1, ?2, ?3, ?4)",
            "DELETE FROM flags WHERE blind_index = ?1",
        )
    };
    let mut put_flag = tx.prepare_cached(put_sql).ctx("preparing flag writes")?;
    let mut remove_flag = tx
        .prepare_cached(remove_sql)
        .ctx("preparing flag removals")?;
    let mut put_la = tx
        .prepare_cached("INSERT OR REPLACE INTO local_authorities (ods, sealed) VALUES (?1, ?2)")
        .ctx("preparing LA writes")?;
    let mut remove_la = tx
        .prepare_cached("DELETE FROM local_authorities WHERE ods = ?1")
        .ctx("preparing LA removals")?;
    let dob_key = keys.index.dob_index_key();
    for op in &page.ops {
        match &op.change {
            FeedChange::PutFlag { record } => {
                let blind = keys.index.blind_index(&record.nhs_number);
                let bucket = dob_key.bucket(record.date_of_birth);
                let json = zeroize::Zeroizing::new(
                    serde_json::to_vec(record).expect("a record always serialises"),
                );
                let sealed = keys.data.seal(&flag_aad(&blind), &json);
                applied.bytes += sealed.len();
                put_flag
                    .execute(params![&blind[..], sealed, op.seq as i64, bucket])
                    .ctx("writing a flag")?;
                if let (true, Some(rows)) = (staging, staged_rows.as_deref_mut()) {
                    rows.push((blind, tx.last_insert_rowid()));
                }
                applied.puts += 1;
            }
            FeedChange::RemoveFlag { nhs_number } => {
                let blind = keys.index.blind_index(nhs_number);
                if staging {
                    remove_flag.execute(params![&blind[..], op.seq as i64])
                } else {
                    remove_flag.execute(params![&blind[..]])
                }
                .ctx("removing a flag")?;
                if let (true, Some(rows)) = (staging, staged_rows.as_deref_mut()) {
                    rows.push((blind, tx.last_insert_rowid()));
                }
                applied.removes += 1;
            }
            FeedChange::PutLa { la } => {
                let json = serde_json::to_vec(la).expect("an LA always serialises");
                let sealed = keys.data.seal(&la_aad(&la.ods), &json);
                applied.bytes += sealed.len();
                put_la
                    .execute(params![la.ods.as_str(), sealed])
                    .ctx("writing an LA")?;
                applied.puts += 1;
            }
            FeedChange::RemoveLa { ods } => {
                remove_la
                    .execute(params![ods.as_str()])
                    .ctx("removing an LA")?;
                applied.removes += 1;
            }
        }
    }
    drop((put_flag, remove_flag, put_la, remove_la));
    if staging && !page.has_more {
        // Caught up: one sorted move, in this page's transaction.
        tx.execute(
            &format!("INSERT OR REPLACE INTO flags (blind_index, sealed, seq, dob_bucket) SELECT blind_index, sealed, seq, dob_bucket FROM ({STAGED_FLAGS})"),
            [],
        )
        .ctx("moving the staged download into place")?;
        tx.execute_batch("DELETE FROM flags_staged; DELETE FROM meta WHERE key = 'staging';")
            .ctx("clearing the staged download")?;
    }
    put_meta(tx, meta_keys::CURSOR, &page.last.to_string())?;
    // The copy is "as of" a moment only once it has caught up with the central's head: halfway
    // through a download part of it is newer and part older, and a miss must not look fresh then.
    if !page.has_more {
        put_meta(tx, meta_keys::LAST_SYNC_AT, &ts(now))?;
    }
    Ok(applied)
}

/// SHA-256 hex over the sorted flags and LAs of a region, in a form both sides compute the same
/// way: for each flag by NHS number `"flag\n{digits}\n{json}\n"`, then for each LA by ODS code
/// `"la\n{ods}\n{json}\n"`, where json is serde_json of the shared domain type.
pub fn region_digest<'a>(
    flags: impl IntoIterator<Item = &'a FlagRecord>,
    las: impl IntoIterator<Item = &'a LocalAuthority>,
) -> String {
    let mut flags: Vec<&FlagRecord> = flags.into_iter().collect();
    flags.sort_by_key(|f| f.nhs_number);
    let mut las: Vec<&LocalAuthority> = las.into_iter().collect();
    las.sort_by(|a, b| a.ods.cmp(&b.ods));
    let mut text = zeroize::Zeroizing::new(Vec::new());
    for f in flags {
        text.extend_from_slice(b"flag\n");
        text.extend_from_slice(f.nhs_number.as_digits().as_bytes());
        text.push(b'\n');
        text.extend(serde_json::to_vec(f).expect("a record always serialises"));
        text.push(b'\n');
    }
    for la in las {
        text.extend_from_slice(b"la\n");
        text.extend_from_slice(la.ods.as_str().as_bytes());
        text.push(b'\n');
        text.extend(serde_json::to_vec(la).expect("an LA always serialises"));
        text.push(b'\n');
    }
    hex::encode(hazmat::sha256(&text))
}

/// A person's newest staged row during a first download, by scanning what is staged.
const STAGED_LOOKUP: &str =
    "SELECT sealed FROM flags_staged WHERE blind_index = ?1 ORDER BY seq DESC LIMIT 1";

/// Writes `entries` in `tx` and commits. Each id is chosen before its insert so it can be bound into
/// the AAD.
fn write_audit_entries_in(
    tx: Transaction<'_>,
    entries: &[(&CacheKeys, &AuditEntry)],
) -> Result<bool, StoreError> {
    tx.busy_timeout(super::BUSY_TIMEOUT)
        .ctx("setting the busy timeout")?;
    let mut id: i64 = tx
        .prepare_cached("SELECT coalesce(max(id), 0) FROM audit_log")
        .ctx("numbering audit entries")?
        .query_row([], |r| r.get(0))
        .ctx("numbering audit entries")?;
    for (keys, entry) in entries {
        id += 1;
        let json = padded_audit_json(entry);
        let sealed = keys.data.seal(&audit_aad(id), &json);
        tx.prepare_cached("INSERT INTO audit_log (id, at, sealed) VALUES (?1, ?2, ?3)")
            .ctx("writing an audit entry")?
            .execute(params![id, ts(audit_day(entry.at)), sealed])
            .ctx("writing an audit entry")?;
    }
    tx.commit().ctx("committing audit entries")?;
    Ok(true)
}

impl DeviceStore {
    /// Applies a verified page in ONE transaction with its cursor: fails with
    /// `CursorMismatch { expected, got }` (nothing written) unless `page.after` equals the cursor;
    /// applies its operations; sets the cursor to `page.last` and, when the page reaches the central's
    /// head (`!has_more`), `last_sync_at` to `now`.
    pub fn apply_page(
        &mut self,
        keys: &CacheKeys,
        page: &FeedPage,
        now: DateTime<Utc>,
    ) -> Result<PageApplied, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a page")?;
        let applied = apply_page_in(&tx, keys, page, now)?;
        tx.commit().ctx("committing a page")?;
        tracing::debug!(ops = applied.ops, cursor = page.last, "feed page applied");
        Ok(applied)
    }

    /// `apply_page`, keeping `index` in step with what is staged: while a page that may stage is
    /// applied, checks scan; afterwards they seek again (or skip the staged table once the download
    /// has moved into place).
    pub fn apply_page_indexed(
        &mut self,
        keys: &CacheKeys,
        page: &FeedPage,
        now: DateTime<Utc>,
        index: &StagedIndex,
    ) -> Result<PageApplied, StoreError> {
        let may_stage = page.after == 0
            || matches!(
                *index.state.read().unwrap_or_else(|p| p.into_inner()),
                StagedState::Staging(_) | StagedState::Unknown
            );
        if !may_stage {
            return self.apply_page(keys, page, now);
        }
        // Checks holding the read lock finish first; from here until the new state is set they scan.
        let mut map =
            match std::mem::take(&mut *index.state.write().unwrap_or_else(|p| p.into_inner())) {
                StagedState::Staging(map) => Some(map),
                StagedState::Idle => Some(HashMap::new()),
                StagedState::Unknown => None,
            };
        let mut rows = Vec::new();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx("starting a page")?;
            let applied = apply_page_collecting(&tx, keys, page, now, Some(&mut rows))?;
            tx.commit().ctx("committing a page")?;
            Ok(applied)
        })();
        match (&result, map.as_mut()) {
            (Ok(_), Some(map)) => {
                let state = if get_meta(&self.conn, meta_keys::STAGING)?.is_some() {
                    map.extend(rows);
                    StagedState::Staging(std::mem::take(map))
                } else {
                    StagedState::Idle
                };
                *index.state.write().unwrap_or_else(|p| p.into_inner()) = state;
            }
            // Not known what is staged: read it back from the store.
            _ => self.load_staged_index(index)?,
        }
        result
    }

    /// Rebuilds `index` from what the store has staged (at start, and after the cache is cleared).
    pub fn load_staged_index(&self, index: &StagedIndex) -> Result<(), StoreError> {
        let mut state = index.state.write().unwrap_or_else(|p| p.into_inner());
        *state = if get_meta(&self.conn, meta_keys::STAGING)?.is_some() {
            let mut map = HashMap::new();
            let mut stmt = self
                .conn
                .prepare("SELECT blind_index, rowid FROM flags_staged ORDER BY seq")
                .ctx("reading the staged download")?;
            let mut rows = stmt.query([]).ctx("reading the staged download")?;
            while let Some(row) = rows.next().ctx("reading the staged download")? {
                let blind: Vec<u8> = row.get(0).ctx("reading the staged download")?;
                let blind: [u8; 32] = blind
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("a blind index is not 32 bytes".into()))?;
                map.insert(blind, row.get(1).ctx("reading the staged download")?);
            }
            StagedState::Staging(map)
        } else {
            StagedState::Idle
        };
        Ok(())
    }

    /// The cached record for `nhs` and the LAs holding its plans (those whose details are held),
    /// scanning any staged download. Checks use
    /// `lookup_indexed`.
    pub fn lookup(
        &self,
        keys: &CacheKeys,
        nhs: &NhsNumber,
    ) -> Result<Option<(FlagRecord, Vec<LocalAuthority>)>, StoreError> {
        self.lookup_with(keys, nhs, |_| StagedProbe::Scan)
    }

    /// The hot path of a check: one indexed read of `flags`, then, only while a first download is
    /// staged, one seek of the person's staged row.
    pub fn lookup_indexed(
        &self,
        keys: &CacheKeys,
        nhs: &NhsNumber,
        index: &StagedIndex,
    ) -> Result<Option<(FlagRecord, Vec<LocalAuthority>)>, StoreError> {
        // Held for the lookup, so a page that may stage cannot commit between reading the state and
        // reading the rows.
        let state = index.state.read().unwrap_or_else(|p| p.into_inner());
        self.lookup_with(keys, nhs, |blind| match &*state {
            StagedState::Unknown => StagedProbe::Scan,
            StagedState::Idle => StagedProbe::Skip,
            StagedState::Staging(map) => match map.get(blind) {
                Some(rowid) => StagedProbe::Row(*rowid),
                None => StagedProbe::Skip,
            },
        })
    }

    fn lookup_with(
        &self,
        keys: &CacheKeys,
        nhs: &NhsNumber,
        staged: impl FnOnce(&[u8; 32]) -> StagedProbe,
    ) -> Result<Option<(FlagRecord, Vec<LocalAuthority>)>, StoreError> {
        let blind = keys.index.blind_index(nhs);
        let sealed: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT sealed FROM flags WHERE blind_index = ?1")
            .ctx("preparing a lookup")?
            .query_row([&blind[..]], |r| r.get(0))
            .optional()
            .ctx("looking up a flag")?;
        let sealed = match (sealed, staged(&blind)) {
            (Some(s), _) => Some(s),
            (None, StagedProbe::Skip) => None,
            // Halfway through a staged first download the person may be waiting to move into
            // place. A NULL sealed row is a staged removal.
            (None, StagedProbe::Row(rowid)) => self
                .conn
                .prepare_cached(
                    "SELECT sealed FROM flags_staged WHERE rowid = ?1 AND blind_index = ?2",
                )
                .ctx("preparing a staged lookup")?
                .query_row(params![rowid, &blind[..]], |r| {
                    r.get::<_, Option<Vec<u8>>>(0)
                })
                .optional()
                .ctx("looking up a staged flag")?
                .flatten(),
            (None, StagedProbe::Scan) => self
                .conn
                .prepare_cached(STAGED_LOOKUP)
                .ctx("preparing a staged lookup")?
                .query_row([&blind[..]], |r| r.get::<_, Option<Vec<u8>>>(0))
                .optional()
                .ctx("looking up a staged flag")?
                .flatten(),
        };
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let record = open_flag(&keys.data, &blind, &sealed)?;
        if record.nhs_number != *nhs {
            // The AAD binds the payload to its row, so this means the index key is not the one that
            // wrote the row: never answer with someone else's record.
            return Err(StoreError::Tampered {
                what: "a cached flag",
            });
        }
        let mut las = Vec::with_capacity(1);
        for ods in record.holders() {
            if let Some(la) = self.cached_local_authority(keys, &ods)? {
                las.push(la);
            }
        }
        Ok(Some((record, las)))
    }

    /// The cached people born on one of `dates`, found through the date-of-birth index: every
    /// person on the dates' index values is opened and those born on another date dropped. Rows
    /// not yet indexed (NULL) are read too, so a search never misses someone for want of an index.
    pub fn born_on(
        &self,
        keys: &CacheKeys,
        dates: &[chrono::NaiveDate],
    ) -> Result<Vec<FlagRecord>, StoreError> {
        let dob_key = keys.index.dob_index_key();
        let mut buckets: Vec<i64> = dates.iter().map(|d| dob_key.bucket(*d)).collect();
        buckets.sort_unstable();
        buckets.dedup();
        let staging = get_meta(&self.conn, meta_keys::STAGING)?.is_some();
        let mut out: Vec<FlagRecord> = Vec::new();
        let mut read = |sql: &str, bucket: Option<i64>| -> Result<(), StoreError> {
            let mut stmt = self.conn.prepare_cached(sql).ctx("preparing a search")?;
            let mut rows = match bucket {
                Some(b) => stmt.query([b]),
                None => stmt.query([]),
            }
            .ctx("searching the cache")?;
            while let Some(row) = rows.next().ctx("searching the cache")? {
                let blind: Vec<u8> = row.get(0).ctx("searching the cache")?;
                let sealed: Vec<u8> = row.get(1).ctx("searching the cache")?;
                let blind: [u8; 32] = blind
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("a blind index is not 32 bytes".into()))?;
                let record = open_flag(&keys.data, &blind, &sealed)?;
                if dates.contains(&record.date_of_birth)
                    && !out.iter().any(|r| r.nhs_number == record.nhs_number)
                {
                    out.push(record);
                }
            }
            Ok(())
        };
        for b in &buckets {
            read(
                "SELECT blind_index, sealed FROM flags WHERE dob_bucket = ?1",
                Some(*b),
            )?;
        }
        read(
            "SELECT blind_index, sealed FROM flags WHERE dob_bucket IS NULL",
            None,
        )?;
        if staging {
            // Halfway through a first download: the staged people too (a scan, only then).
            for b in &buckets {
                read(
                    &format!("SELECT blind_index, sealed FROM ({STAGED_FLAGS}) WHERE dob_bucket = ?1 OR dob_bucket IS NULL"),
                    Some(*b),
                )?;
            }
        }
        Ok(out)
    }

    /// Fills in the date-of-birth index of rows cached before it existed (migration 0003). Needs
    /// the keys, so it runs once a user has signed in; returns how many rows it indexed.
    pub fn index_dates_of_birth(&mut self, keys: &CacheKeys) -> Result<usize, StoreError> {
        let dob_key = keys.index.dob_index_key();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting to index dates of birth")?;
        let mut done = 0;
        for (table, cond) in [
            ("flags", "dob_bucket IS NULL"),
            ("flags_staged", "dob_bucket IS NULL AND sealed IS NOT NULL"),
        ] {
            let rows: Vec<(Vec<u8>, Vec<u8>, i64)> = {
                let mut stmt = tx
                    .prepare(&format!(
                        "SELECT blind_index, sealed, seq FROM {table} WHERE {cond}"
                    ))
                    .ctx("reading rows to index")?;
                let mapped = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .ctx("reading rows to index")?;
                mapped
                    .collect::<Result<_, _>>()
                    .ctx("reading rows to index")?
            };
            let mut update = tx
                .prepare(&format!(
                    "UPDATE {table} SET dob_bucket = ?1 WHERE blind_index = ?2 AND seq = ?3"
                ))
                .ctx("preparing the index update")?;
            for (blind, sealed, seq) in rows {
                let blind32: [u8; 32] = blind
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("a blind index is not 32 bytes".into()))?;
                let record = open_flag(&keys.data, &blind32, &sealed)?;
                update
                    .execute(params![dob_key.bucket(record.date_of_birth), blind, seq])
                    .ctx("indexing a date of birth")?;
                done += 1;
            }
        }
        tx.commit().ctx("committing the date-of-birth index")?;
        if done > 0 {
            tracing::info!(rows = done, "dates of birth indexed for search");
        }
        Ok(done)
    }

    /// `local_authority`, remembered until another connection commits: a check of a flagged person
    /// then reads one row, not two.
    fn cached_local_authority(
        &self,
        keys: &CacheKeys,
        ods: &OdsCode,
    ) -> Result<Option<LocalAuthority>, StoreError> {
        let version: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")
            .ctx("reading the data version")?
            .query_row([], |r| r.get(0))
            .ctx("reading the data version")?;
        let mut cache = self.la_cache.borrow_mut();
        if cache.data_version != version {
            cache.las.clear();
            cache.data_version = version;
        }
        if let Some(la) = cache.las.get(ods) {
            return Ok(la.clone());
        }
        let la = self.local_authority(keys, ods)?;
        cache.las.insert(ods.clone(), la.clone());
        Ok(la)
    }

    pub fn local_authority(
        &self,
        keys: &CacheKeys,
        ods: &OdsCode,
    ) -> Result<Option<LocalAuthority>, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT sealed FROM local_authorities WHERE ods = ?1")
            .ctx("preparing an LA lookup")?
            .query_row([ods.as_str()], |r| r.get(0))
            .optional()
            .ctx("looking up an LA")?;
        sealed.map(|s| open_la(&keys.data, ods, &s)).transpose()
    }

    pub fn flag_count(&self) -> Result<u64, StoreError> {
        self.conn
            // Halfway through a staged download this counts people staged (a person put and then
            // removed within the same download counts until the move): a progress figure, cheap.
            .prepare_cached(
                "SELECT (SELECT count(*) FROM flags)
                      + (SELECT count(DISTINCT blind_index) FROM flags_staged WHERE sealed IS NOT NULL)",
            )
            .ctx("counting flags")?
            .query_row([], |r| r.get::<_, i64>(0))
            .ctx("counting flags")
            .map(|n| n as u64)
    }

    /// SHA-256 over the sorted (NHS digits, record JSON) of every cached flag plus the LAs: compare
    /// with `region_digest` of the central's region at the same cursor.
    pub fn cache_digest(&self, keys: &CacheKeys) -> Result<String, StoreError> {
        let mut flags = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare(&format!(
                    "SELECT blind_index, sealed FROM flags
                     UNION ALL SELECT blind_index, sealed FROM ({STAGED_FLAGS})"
                ))
                .ctx("reading flags")?;
            let mut rows = stmt.query([]).ctx("reading flags")?;
            while let Some(row) = rows.next().ctx("reading flags")? {
                let blind: Vec<u8> = row.get(0).ctx("reading flags")?;
                let sealed: Vec<u8> = row.get(1).ctx("reading flags")?;
                let blind: [u8; 32] = blind
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("a blind index is not 32 bytes".into()))?;
                flags.push(open_flag(&keys.data, &blind, &sealed)?);
            }
        }
        let mut las = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT ods, sealed FROM local_authorities")
                .ctx("reading LAs")?;
            let mut rows = stmt.query([]).ctx("reading LAs")?;
            while let Some(row) = rows.next().ctx("reading LAs")? {
                let ods: String = row.get(0).ctx("reading LAs")?;
                let sealed: Vec<u8> = row.get(1).ctx("reading LAs")?;
                let ods = OdsCode::parse(&ods)
                    .map_err(|_| StoreError::Corrupt("a cached LA code does not parse".into()))?;
                las.push(open_la(&keys.data, &ods, &sealed)?);
            }
        }
        Ok(region_digest(&flags, &las))
    }

    /// Appends a check to the sealed local audit log.
    pub fn record_check(&mut self, keys: &CacheKeys, entry: &AuditEntry) -> Result<(), StoreError> {
        // The audit record of a check commits without its own fsync (WAL, synchronous=NORMAL): it
        // survives the app being killed, and only a power cut in the next moment could lose it. That
        // keeps the check itself fast; the access events the LA depends on stay synchronous=FULL.
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .ctx("relaxing synchronous for an audit entry")?;
        let written = self.write_audit_entry(keys, entry);
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .ctx("restoring synchronous=FULL")?;
        written
    }

    /// Appends checks to the sealed audit log in one transaction, unless another connection is
    /// writing at this moment: then nothing is written and `Ok(false)` says to try again shortly.
    /// This lets the connection that answers checks keep the audit log itself (a connection's own
    /// commits leave its page cache warm; another connection's commit makes SQLite drop it) without
    /// ever waiting behind the sync's transaction. Commits without its own fsync, as `record_check`.
    pub fn try_record_checks(
        &mut self,
        entries: &[(&CacheKeys, &AuditEntry)],
    ) -> Result<bool, StoreError> {
        if entries.is_empty() {
            return Ok(true);
        }
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .ctx("relaxing synchronous for audit entries")?;
        let written = self.try_write_audit_entries(entries);
        let restored = self.conn.pragma_update(None, "synchronous", "FULL");
        let written = written?;
        restored.ctx("restoring synchronous=FULL")?;
        Ok(written)
    }

    fn try_write_audit_entries(
        &mut self,
        entries: &[(&CacheKeys, &AuditEntry)],
    ) -> Result<bool, StoreError> {
        self.conn
            .busy_timeout(std::time::Duration::ZERO)
            .ctx("setting the busy timeout")?;
        let refused = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => return write_audit_entries_in(tx, entries),
            Err(e) => e,
        };
        self.conn
            .busy_timeout(super::BUSY_TIMEOUT)
            .ctx("setting the busy timeout")?;
        match refused.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Ok(false)
            }
            _ => Err(refused).ctx("starting audit entries"),
        }
    }

    fn write_audit_entry(
        &mut self,
        keys: &CacheKeys,
        entry: &AuditEntry,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting an audit entry")?;
        write_audit_entries_in(tx, &[(keys, entry)]).map(|_| ())
    }

    /// The local audit log, oldest first.
    pub fn audit_entries(&self, keys: &CacheKeys) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, sealed FROM audit_log ORDER BY id")
            .ctx("reading the audit log")?;
        let mut rows = stmt.query([]).ctx("reading the audit log")?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().ctx("reading the audit log")? {
            let id: i64 = row.get(0).ctx("reading the audit log")?;
            let sealed: Vec<u8> = row.get(1).ctx("reading the audit log")?;
            let json =
                keys.data
                    .open(&audit_aad(id), &sealed)
                    .map_err(|_| StoreError::Tampered {
                        what: "an audit entry",
                    })?;
            out.push(
                serde_json::from_slice(&json)
                    .map_err(|_| StoreError::Corrupt("an audit entry does not decode".into()))?,
            );
        }
        Ok(out)
    }

    /// Audit entries from days before `before`'s day are removed (the clear time is the day only,
    /// so an entry goes with the rest of its day).
    pub fn prune_audit(&mut self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM audit_log WHERE at < ?1",
                [ts(audit_day(before))],
            )
            .ctx("pruning the audit log")
    }
}
