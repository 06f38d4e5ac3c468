//! The synthetic register the benchmarks run on, and the plaintext floors they are compared with.
//!
//! The register is the central's own demo generator (`cpis_central::demo::generate`): 152 synthetic
//! LAs in 11 regions, NHS numbers from `NhsNumber::test_range` only, synthetic names. Using the same
//! generator with the same seed and date as `cpis central demo` means the floors here write and
//! read exactly the records the central serves. Nothing here prints a record.

use std::path::Path;

use anyhow::Context;
use chrono::{NaiveDate, Utc};
use cpis_central::demo::{self, DemoData};
use cpis_core::wire::{FeedChange, FeedOp, FeedPage};
use cpis_core::{FlagRecord, LocalAuthority, Region};
use rusqlite::{params, Connection};

/// The region a device must be enrolled in to receive every flag: it holds all 152 LAs.
pub const ALL_ENGLAND: &str = "all-england";

pub fn register(flags: u32, seed: u64, today: NaiveDate) -> DemoData {
    demo::generate(flags, seed, today)
}

/// The same register with every LA moved into one region.
pub fn all_in_one_region(mut data: DemoData, region: &Region) -> DemoData {
    for la in &mut data.las {
        la.region = region.clone();
    }
    data
}

/// The feed a device of `region` would receive for this register: its LAs first, then its flags,
/// `per_page` operations a page, sequence numbers from 1. Built in memory so a device benchmark can
/// apply it through `DeviceStore::apply_page`, the code path sync uses, without a central.
pub fn feed_pages(
    region: &Region,
    las: &[LocalAuthority],
    flags: &[FlagRecord],
    per_page: usize,
) -> Vec<FeedPage> {
    let ops: Vec<FeedChange> = las
        .iter()
        .map(|la| FeedChange::PutLa { la: la.clone() })
        .chain(
            flags
                .iter()
                .map(|f| FeedChange::PutFlag { record: f.clone() }),
        )
        .collect();
    let head = ops.len() as u64;
    let mut pages = Vec::new();
    let mut seq = 0u64;
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let after = seq;
        let chunk: Vec<FeedOp> = ops
            .by_ref()
            .take(per_page)
            .map(|change| {
                seq += 1;
                FeedOp { seq, change }
            })
            .collect();
        pages.push(FeedPage {
            region: region.clone(),
            after,
            last: seq,
            head,
            has_more: seq < head,
            generated_at: Utc::now(),
            ops: chunk,
        });
    }
    pages
}

/// An LA upload file (the CSV `cpis central import` takes): one row per plan.
pub fn la_csv(flags: &[&FlagRecord]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(cpis_central::upload::COLUMNS)?;
    let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    for f in flags {
        for p in &f.plans {
            w.write_record([
                f.nhs_number.as_digits(),
                f.family_name.clone(),
                f.given_names.clone(),
                f.date_of_birth.to_string(),
                p.kind.code().to_string(),
                p.start.to_string(),
                date(p.end),
                date(p.due),
                f.local_id.clone().unwrap_or_default(),
                date(p.delete),
            ])?;
        }
    }
    w.into_inner().context("finishing an upload file")
}

/// A plaintext SQLite database with the device store's durability settings (WAL, synchronous=FULL)
/// and one table keyed by NHS number holding each record's JSON: the floor for checks and sync.
pub fn open_plain(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS flags (nhs TEXT PRIMARY KEY, json BLOB NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, sealed BLOB NOT NULL);",
    )?;
    Ok(conn)
}

/// The rows the floor writes: NHS digits and the record's JSON, made before the clock starts.
pub fn plain_rows(flags: &[FlagRecord]) -> Vec<(String, Vec<u8>)> {
    flags
        .iter()
        .map(|f| {
            (
                f.nhs_number.as_digits(),
                serde_json::to_vec(f).expect("a record serialises"),
            )
        })
        .collect()
}

/// Inserts the rows in one transaction (the sync floor).
pub fn plain_insert(conn: &mut Connection, rows: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached("INSERT INTO flags (nhs, json) VALUES (?1, ?2)")?;
        for (nhs, json) in rows {
            stmt.execute(params![nhs, json])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Commits one row of `bytes` bytes on its own, durably: what any audit write costs on this disk.
pub fn plain_durable_row(conn: &mut Connection, id: i64, bytes: usize) -> anyhow::Result<()> {
    let tx = conn.transaction()?;
    tx.prepare_cached("INSERT INTO audit (id, at, sealed) VALUES (?1, ?2, ?3)")?
        .execute(params![id, Utc::now().to_rfc3339(), vec![0x5au8; bytes]])?;
    tx.commit()?;
    Ok(())
}

/// One primary-key read of the plain table (the check floor).
pub fn plain_lookup(conn: &Connection, nhs: &str) -> anyhow::Result<Option<Vec<u8>>> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached("SELECT json FROM flags WHERE nhs = ?1")?
        .query_row([nhs], |r| r.get(0))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_every_op_once_in_order_and_chain_cursors() {
        let d = register(1_000, 1, Utc::now().date_naive());
        let region = Region::parse(ALL_ENGLAND).unwrap();
        let d = all_in_one_region(d, &region);
        let pages = feed_pages(&region, &d.las, &d.flags, 300);
        let total: usize = pages.iter().map(|p| p.ops.len()).sum();
        assert_eq!(total, d.las.len() + d.flags.len());
        let mut cursor = 0;
        for p in &pages {
            assert_eq!(p.after, cursor);
            cursor = p.last;
        }
        assert!(!pages.last().unwrap().has_more);
    }

    #[test]
    fn upload_files_parse_back_to_the_same_people() {
        let d = register(300, 2, Utc::now().date_naive());
        let la = d.las[0].ods.clone();
        let mine: Vec<&FlagRecord> = d.flags.iter().filter(|f| f.local_authority == la).collect();
        let csv = la_csv(&mine).unwrap();
        let parsed = cpis_central::upload::parse_upload(&la, &csv).unwrap();
        assert_eq!(parsed.people.len(), mine.len());
        for p in parsed.people {
            let original = mine
                .iter()
                .find(|f| f.nhs_number == p.record.nhs_number)
                .unwrap();
            assert_eq!(&p.record, *original);
        }
    }
}
