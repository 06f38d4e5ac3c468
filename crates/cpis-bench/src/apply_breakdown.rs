//! Where a first sync's device-side time goes, measured on the register in memory (no network):
//! the store's own `apply_page` of every flag, the cryptography alone (blind index, JSON, seal), and
//! the sealed rows written into a plain table keyed the way the store keys them (a random 32-byte
//! blind index), with SQLite's default page cache and with a larger one. Beside them the floor: the
//! same records' JSON inserted in NHS-number order in one transaction.
//!
//! These rows explain the B2 figure and test, on the same disk in the same run, the changes that
//! would close its gap; they are not targets themselves.

use std::path::Path;
use std::time::Instant;

use chrono::Utc;
use cpis_core::crypto::hazmat;
use cpis_core::store::{CacheKeys, DeviceStore};
use cpis_core::wire::FeedPage;
use cpis_core::FlagRecord;
use rusqlite::{params, Connection};

use crate::data;
use crate::report::Row;
use crate::stats::{self, fmt_bytes, Samples, Summary};

fn row(id: &str, figure: &str, n: usize, took: Summary, floor: Summary) -> Row {
    let mut r = Row::new(id, figure)
        .latency(took, "")
        .against("plain insert, one tx", floor);
    r.n = format!("{n} flags");
    r.p99 = "-".into();
    r
}

/// Applies `pages` through the store (filling the cache as a first sync would) and measures the
/// pieces. Returns the rows; the store is left holding every flag.
pub fn run(
    store: &mut DeviceStore,
    keys: &CacheKeys,
    pages: &[FeedPage],
    flags: &[FlagRecord],
    dir: &Path,
    page_ops: usize,
) -> anyhow::Result<Vec<Row>> {
    let n = flags.len();
    let written = stats::self_write_bytes();
    let started = Instant::now();
    for page in pages {
        store.apply_page(keys, page, Utc::now())?;
    }
    let apply = Summary::once(started.elapsed().as_secs_f64());
    let apply_written = stats::self_write_bytes() - written;

    let (floor, floor_written) = {
        let path = dir.join("plain-floor.sqlite");
        let mut conn = data::open_plain(&path)?;
        let rows = data::plain_rows(flags);
        let mut s = Samples::default();
        let written = stats::self_write_bytes();
        s.time(|| data::plain_insert(&mut conn, &rows))?;
        (s.summary(), stats::self_write_bytes() - written)
    };

    // The same work the store does per flag, without SQLite: HMAC blind index, JSON, AES-GCM seal.
    let data_key = hazmat::random_bytes::<32>();
    let started = Instant::now();
    let sealed: Vec<([u8; 32], Vec<u8>)> = flags
        .iter()
        .map(|f| {
            let blind = keys.index.blind_index(&f.nhs_number);
            let json = serde_json::to_vec(f).expect("a record serialises");
            let mut aad = b"flag:".to_vec();
            aad.extend_from_slice(&blind);
            (blind, hazmat::aead_seal(&data_key, &aad, &json))
        })
        .collect();
    let crypto = Summary::once(started.elapsed().as_secs_f64());

    // The sealed rows into the store's table shape, a page a transaction, as sync writes them.
    let write = |name: &str, cache_kib: Option<i64>| -> anyhow::Result<(Summary, u64)> {
        let path = dir.join(name);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let mut conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        if let Some(kib) = cache_kib {
            conn.pragma_update(None, "cache_size", -kib)?;
        }
        conn.execute_batch(
            "CREATE TABLE flags (blind_index BLOB PRIMARY KEY, sealed BLOB NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID",
        )?;
        let written = stats::self_write_bytes();
        let started = Instant::now();
        for (p, chunk) in sealed.chunks(page_ops).enumerate() {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR REPLACE INTO flags (blind_index, sealed, seq) VALUES (?1, ?2, ?3)",
                )?;
                for (i, (blind, sealed)) in chunk.iter().enumerate() {
                    stmt.execute(params![&blind[..], sealed, (p * page_ops + i) as i64])?;
                }
            }
            tx.commit()?;
        }
        Ok((
            Summary::once(started.elapsed().as_secs_f64()),
            stats::self_write_bytes() - written,
        ))
    };
    let (default_cache, default_written) = write("plain-blind-default.sqlite", None)?;
    let (big_cache, big_written) = write("plain-blind-64mb.sqlite", Some(64 * 1024))?;

    // What-if: a first download staged in feed order (append-only, a page a transaction with its
    // cursor, so still resumable), then moved into the blind-index table in one sorted statement.
    let (staged, staged_written) = {
        let path = dir.join("plain-staged.sqlite");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let mut conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE staging (seq INTEGER PRIMARY KEY, blind_index BLOB NOT NULL, sealed BLOB NOT NULL);
             CREATE TABLE flags (blind_index BLOB PRIMARY KEY, sealed BLOB NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;",
        )?;
        let written = stats::self_write_bytes();
        let started = Instant::now();
        for (p, chunk) in sealed.chunks(page_ops).enumerate() {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO staging (seq, blind_index, sealed) VALUES (?1, ?2, ?3)",
                )?;
                for (i, (blind, sealed)) in chunk.iter().enumerate() {
                    stmt.execute(params![(p * page_ops + i) as i64, &blind[..], sealed])?;
                }
            }
            tx.commit()?;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(
            "INSERT OR REPLACE INTO flags (blind_index, sealed, seq)
                 SELECT blind_index, sealed, seq FROM staging ORDER BY blind_index;
             DELETE FROM staging;",
        )?;
        tx.commit()?;
        (
            Summary::once(started.elapsed().as_secs_f64()),
            stats::self_write_bytes() - written,
        )
    };

    Ok(vec![
        row(
            "B2·a",
            &format!(
                "device write path alone: `apply_page` of every flag from memory, no network; {} written (floor {})",
                fmt_bytes(apply_written),
                fmt_bytes(floor_written)
            ),
            n,
            apply,
            floor,
        ),
        row(
            "B2·b",
            "of which cryptography alone: blind index + JSON + seal, no SQLite",
            n,
            crypto,
            floor,
        ),
        row(
            "B2·c",
            &format!(
                "sealed rows keyed by blind index, a page a tx, default 2 MB page cache; {} written",
                fmt_bytes(default_written)
            ),
            n,
            default_cache,
            floor,
        ),
        row(
            "B2·d",
            &format!(
                "the same with a 64 MB page cache (what-if); {} written",
                fmt_bytes(big_written)
            ),
            n,
            big_cache,
            floor,
        ),
        row(
            "B2·e",
            &format!(
                "what-if: staged in feed order a page a tx, then one sorted move into the blind-index table; {} written",
                fmt_bytes(staged_written)
            ),
            n,
            staged,
            floor,
        ),
    ])
}
