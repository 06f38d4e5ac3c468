//! The device schema's migrations: the SQL files of `migrations/device/`, embedded at build time,
//! applied in order at open and recorded with their SHA-256. Shipped migrations never change; a
//! database whose recorded checksum differs from the shipped text is refused rather than guessed at.

use rusqlite::{params, Connection, TransactionBehavior};

use super::{SqlContext, StoreError};
use crate::crypto::hazmat;

/// Every device migration, in order: (file name, SQL text). Append only.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init.sql",
        include_str!("../../../../migrations/device/0001_init.sql"),
    ),
    (
        "0002_staged_download.sql",
        include_str!("../../../../migrations/device/0002_staged_download.sql"),
    ),
    (
        "0003_dob_index.sql",
        include_str!("../../../../migrations/device/0003_dob_index.sql"),
    ),
    (
        "0004_coarse_audit_times.sql",
        include_str!("../../../../migrations/device/0004_coarse_audit_times.sql"),
    ),
    (
        "0005_sealed_pages.sql",
        include_str!("../../../../migrations/device/0005_sealed_pages.sql"),
    ),
];

/// The checksum recorded for a migration: SHA-256 hex of its text with line endings normalised, so a
/// checkout that rewrites LF to CRLF does not look like an edited migration.
pub fn migration_sha256(sql: &str) -> String {
    hex::encode(hazmat::sha256(sql.replace("\r\n", "\n").as_bytes()))
}

fn version_of(name: &str) -> i64 {
    name.split('_')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("migration files are named NNNN_name.sql")
}

pub(super) fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    // IMMEDIATE so two processes opening a fresh store do not both try to migrate it.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("starting migrations")?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            sha256     TEXT NOT NULL,
            applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        )",
    )
    .ctx("creating schema_migrations")?;
    let applied: Vec<(i64, String, String)> = {
        let mut stmt = tx
            .prepare("SELECT version, name, sha256 FROM schema_migrations ORDER BY version")
            .ctx("reading schema_migrations")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .ctx("reading schema_migrations")?;
        rows.collect::<Result<_, _>>()
            .ctx("reading schema_migrations")?
    };
    for (version, name, sha) in &applied {
        match MIGRATIONS.iter().find(|(n, _)| version_of(n) == *version) {
            None => {
                return Err(StoreError::UnknownMigration {
                    version: *version,
                    name: name.clone(),
                })
            }
            Some((shipped_name, sql)) => {
                let shipped = migration_sha256(sql);
                if &shipped != sha {
                    return Err(StoreError::MigrationChanged {
                        name: shipped_name.to_string(),
                        applied: sha.clone(),
                        shipped,
                    });
                }
            }
        }
    }
    for (name, sql) in MIGRATIONS {
        let version = version_of(name);
        if applied.iter().any(|(v, _, _)| *v == version) {
            continue;
        }
        tx.execute_batch(sql).ctx("applying a migration")?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, sha256) VALUES (?1, ?2, ?3)",
            params![version, name, migration_sha256(sql)],
        )
        .ctx("recording a migration")?;
        tracing::info!(migration = %name, "device store migrated");
    }
    tx.commit().ctx("committing migrations")
}
