//! Backup and restore of the embedded SQLite database, and the lock that tells a restore the
//! database is being served.
//!
//! A backup is SQLite's online backup API copying every page in one step, under one read
//! transaction: a consistent snapshot, taken while the central serves (WAL readers do not block
//! the writer, nor it them).
//!
//! A serving central holds a shared advisory lock (`flock`) on `DB.serving-lock` for as long as it
//! runs; a restore takes it exclusively, without waiting, and refuses when it cannot. An advisory
//! lock on a separate file, rather than a look at SQLite's own locks: an idle central holds no
//! SQLite lock at all, the lock is released by the kernel when the process dies however it dies
//! (a stale pid file would block a restore after a crash), and several instances serving one file
//! can all hold it shared.
//!
//! A restore puts the backup's content back, and keeps devices and LAs consistent with it rather
//! than with the clock turned back:
//! - the database it replaces is kept beside it (`DB.before-restore-TIME`);
//! - access events, their notifications and devices the backup does not hold are carried over
//!   from the replaced database, when it is readable: intake is exactly once by event id, so an
//!   event accepted after the backup must not vanish (its device has already let go of it) nor
//!   notify twice;
//! - every region's feed is renumbered above the replaced database's head, with removals for
//!   records devices may hold that the backup does not, so a device at any cursor receives the
//!   restored content again and converges on it (the cost: one full download per device);
//! - each LA's notification numbering continues from where the replaced database left it, so an
//!   LA system reading its notifications after a cursor does not skip new ones.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use cpis_core::wire::FeedChange;
use cpis_core::{NhsNumber, OdsCode};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{params, Connection, OpenFlags};

use crate::store::migrations::SQLITE;
use crate::store::sqlite::{feed_op_name, migrate, open_connection};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup and restore here are for the embedded SQLite database (sqlite:PATH); for PostgreSQL use pg_dump or pg_basebackup (see the README)")]
    NotSqlite,
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("a central is serving {0}: stop every `cpis central serve` on it before restoring")]
    Serving(PathBuf),
    #[error("a restore of {0} is under way: wait for it to finish before serving")]
    Restoring(PathBuf),
    #[error("{path} is not a CP-IS Field central database: {why}")]
    NotACentral { path: PathBuf, why: String },
    #[error("{path} was made by a newer central (it has migration {name}, which this one does not know): restore it with that version")]
    Newer { path: PathBuf, name: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Copies every page of `source` into `target` in one step: one read transaction on the source,
/// so the copy is one moment of it. Waits while the target is busy (a restore's target may still
/// be finishing a checkpoint).
fn copy_all(source: &Connection, target: &mut Connection) -> Result<(), BackupError> {
    let backup = Backup::new(source, target)?;
    for _ in 0..600 {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::Busy | StepResult::Locked => std::thread::sleep(Duration::from_millis(50)),
            _ => {}
        }
    }
    Err(BackupError::Sqlite(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some("the database stayed busy for 30 seconds".into()),
    )))
}

/// The file path in a `sqlite:PATH` database URL; None for any other database.
pub fn sqlite_path(db_url: &str) -> Option<PathBuf> {
    let path = db_url.strip_prefix("sqlite:")?;
    Some(PathBuf::from(path.strip_prefix("//").unwrap_or(path)))
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".serving-lock");
    PathBuf::from(name)
}

fn open_lock(db: &Path) -> Result<File, BackupError> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let path = lock_path(db);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))
}

/// Held by a central serving a SQLite database (shared: several may serve one file).
#[derive(Debug)]
pub struct ServingLock {
    _file: File,
}

impl ServingLock {
    pub fn acquire(db: &Path) -> Result<Self, BackupError> {
        let file = open_lock(db)?;
        fs4::FileExt::try_lock_shared(&file)
            .map_err(|_| BackupError::Restoring(db.to_path_buf()))?;
        Ok(Self { _file: file })
    }
}

/// What a backup holds, for the operator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupSummary {
    pub file: PathBuf,
    pub bytes: u64,
    pub access_events: u64,
    pub notifications: u64,
    pub migrations: Vec<String>,
}

fn summary(conn: &Connection, file: &Path) -> Result<BackupSummary, BackupError> {
    let count = |table: &str| -> Result<u64, rusqlite::Error> {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n as u64)
    };
    Ok(BackupSummary {
        file: file.to_path_buf(),
        bytes: std::fs::metadata(file).map_err(io(file))?.len(),
        access_events: count("access_events")?,
        notifications: count("notifications")?,
        migrations: migrations_of(conn, file)?,
    })
}

/// The migrations a database has applied, refusing a file that is not a central's database.
fn migrations_of(conn: &Connection, path: &Path) -> Result<Vec<String>, BackupError> {
    let not_central = |why: String| BackupError::NotACentral {
        path: path.to_path_buf(),
        why,
    };
    let mut stmt = conn
        .prepare("SELECT name FROM schema_migrations ORDER BY name")
        .map_err(|e| not_central(e.to_string()))?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    if names.is_empty() {
        return Err(not_central("it has no migrations applied".into()));
    }
    Ok(names)
}

/// Copies the database at `db` to `to` while it may be served: one consistent snapshot. Written
/// beside `to` first and renamed into place, so `to` is never a half-written file.
pub fn backup(db: &Path, to: &Path) -> Result<BackupSummary, BackupError> {
    if !db.exists() {
        return Err(BackupError::Missing(db.to_path_buf()));
    }
    let source = open_connection(db)?;
    let mut partial = to.as_os_str().to_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    {
        let mut target = Connection::open(&partial)?;
        // All pages in one step: one read transaction, so the copy is one moment of the database.
        copy_all(&source, &mut target)?;
        let check: String = target.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(BackupError::NotACentral {
                path: db.to_path_buf(),
                why: format!("the copy fails SQLite's check: {check}"),
            });
        }
        migrations_of(&target, db)?;
    }
    File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io(&partial))?;
    std::fs::rename(&partial, to).map_err(io(to))?;
    let conn = Connection::open_with_flags(to, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    summary(&conn, to)
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreSummary {
    pub restored: BackupSummary,
    /// Where the replaced database was kept (None when there was none).
    pub replaced_kept_at: Option<PathBuf>,
    pub events_carried_over: u64,
    pub notifications_carried_over: u64,
    pub devices_carried_over: u64,
    /// Records devices may hold that the backup does not: removed through the feed.
    pub removals_published: u64,
}

/// Replaces the database at `db` with the backup `from`, refusing while a central serves `db`.
pub fn restore(from: &Path, db: &Path) -> Result<RestoreSummary, BackupError> {
    if !from.exists() {
        return Err(BackupError::Missing(from.to_path_buf()));
    }
    // Held until the restore is done: a central starting meanwhile refuses to serve.
    let lock = open_lock(db)?;
    fs4::FileExt::try_lock(&lock).map_err(|_| BackupError::Serving(db.to_path_buf()))?;

    {
        let backup = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let known: HashSet<&str> = SQLITE.iter().map(|m| m.name).collect();
        for name in migrations_of(&backup, from)? {
            if !known.contains(name.as_str()) {
                return Err(BackupError::Newer {
                    path: from.to_path_buf(),
                    name,
                });
            }
        }
    }

    // The replaced database, kept as it was.
    let replaced = if db.exists() {
        let kept = PathBuf::from(format!(
            "{}.before-restore-{}",
            db.display(),
            Utc::now().format("%Y%m%dT%H%M%SZ")
        ));
        let live = open_connection(db)?;
        let mut copy = Connection::open(&kept)?;
        copy_all(&live, &mut copy)?;
        Some(kept)
    } else {
        None
    };

    // Build the restored database beside the target, then put it in place with one copy.
    let staging = PathBuf::from(format!("{}.restoring", db.display()));
    let _ = std::fs::remove_file(&staging);
    let mut summary_counts = (0, 0, 0, 0);
    {
        let source = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut staged = Connection::open(&staging)?;
        copy_all(&source, &mut staged)?;
        drop(source);
        migrate(&mut staged, SQLITE)?;
        if let Some(kept) = &replaced {
            summary_counts = reconcile(&mut staged, kept)?;
        }
    }
    {
        let staged = Connection::open_with_flags(&staging, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut target = open_connection(db)?;
        copy_all(&staged, &mut target)?;
    }
    let _ = std::fs::remove_file(&staging);
    let conn = open_connection(db)?;
    let (events, notifications, devices, removals) = summary_counts;
    let restored = summary(&conn, db)?;
    drop(lock);
    Ok(RestoreSummary {
        restored,
        replaced_kept_at: replaced,
        events_carried_over: events,
        notifications_carried_over: notifications,
        devices_carried_over: devices,
        removals_published: removals,
    })
}

/// Makes the restored database (`staged`) consistent with what devices and LAs already saw from
/// the replaced one (`kept`). Returns (events, notifications, devices, removals).
fn reconcile(staged: &mut Connection, kept: &Path) -> Result<(u64, u64, u64, u64), BackupError> {
    // The replaced database was served by this version (it is the live one), so its tables have
    // the same columns; one it cannot read is left alone, and the restore is the backup alone.
    let readable = Connection::open_with_flags(kept, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()
        .and_then(|c| migrations_of(&c, kept).ok());
    let staged_migrations = migrations_of(staged, kept)?;
    if readable.as_ref() != Some(&staged_migrations) {
        tracing::warn!(
            "the replaced database is unreadable or at another schema: nothing carried over from it"
        );
        return Ok((0, 0, 0, 0));
    }
    staged.execute(
        "ATTACH DATABASE ?1 AS replaced",
        [kept.to_string_lossy().as_ref()],
    )?;
    let tx = staged.transaction()?;
    let devices = tx.execute(
        "INSERT OR IGNORE INTO main.devices SELECT * FROM replaced.devices
         WHERE region IN (SELECT name FROM main.regions)",
        [],
    )? as u64;
    let events = tx.execute(
        "INSERT OR IGNORE INTO main.access_events SELECT * FROM replaced.access_events",
        [],
    )? as u64;
    let notifications = tx.execute(
        "INSERT OR IGNORE INTO main.notifications SELECT * FROM replaced.notifications",
        [],
    )? as u64;
    // Each LA's numbering continues past anything either database handed out.
    tx.execute(
        "UPDATE main.local_authorities SET notify_seq = MAX(notify_seq,
            COALESCE((SELECT r.notify_seq FROM replaced.local_authorities r WHERE r.ods = local_authorities.ods), 0),
            COALESCE((SELECT MAX(n.seq) FROM main.notifications n WHERE n.la_ods = local_authorities.ods), 0))",
        [],
    )?;
    // The feed: renumbered above both heads, so every device re-reads the restored content.
    let counter = |schema: &str| -> Result<i64, rusqlite::Error> {
        tx.query_row(
            &format!("SELECT value FROM {schema}.counters WHERE name = 'feed'"),
            [],
            |r| r.get(0),
        )
    };
    let restored_counter = counter("main")?;
    let offset = counter("replaced")?.max(restored_counter);
    tx.execute("UPDATE main.region_feed SET seq = seq + ?1", [offset])?;
    let mut next = offset + restored_counter;
    // Records devices may hold from the replaced database that the backup has no row for at all.
    let mut stmt = tx.prepare(
        "SELECT r.region, r.key FROM replaced.region_feed r
         WHERE r.op IN ('put_flag', 'put_la') AND r.region IN (SELECT name FROM main.regions)
           AND NOT EXISTS (SELECT 1 FROM main.region_feed m WHERE m.region = r.region AND m.key = r.key)
         ORDER BY r.seq",
    )?;
    let gone = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    drop(stmt);
    let mut removals = 0;
    for (region, key) in gone {
        let change = if let Some(digits) = key.strip_prefix("flag:") {
            NhsNumber::parse(digits)
                .ok()
                .map(|nhs_number| FeedChange::RemoveFlag { nhs_number })
        } else if let Some(ods) = key.strip_prefix("la:") {
            OdsCode::parse(ods)
                .ok()
                .map(|ods| FeedChange::RemoveLa { ods })
        } else {
            None
        };
        let Some(change) = change else { continue };
        next += 1;
        tx.execute(
            "INSERT INTO main.region_feed (region, key, seq, op, payload_json) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                region,
                key,
                next,
                feed_op_name(&change),
                serde_json::to_string(&change).map_err(|e| BackupError::NotACentral {
                    path: kept.to_path_buf(),
                    why: e.to_string()
                })?
            ],
        )?;
        removals += 1;
    }
    tx.execute(
        "UPDATE main.counters SET value = ?1 WHERE name = 'feed'",
        [next],
    )?;
    tx.commit()?;
    staged.execute("DETACH DATABASE replaced", [])?;
    Ok((events, notifications, devices, removals))
}
