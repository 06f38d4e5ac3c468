//! The encrypted device store: one SQLite file (WAL, `synchronous=FULL`) holding the region's flags
//! and local authorities sealed under the data key and found through a blind index, the local audit
//! log of every check, the outbox of access events sealed to the central, the enrolment and sync
//! cursor, and the vault's wrapped keys. Beside it: `device.secret` (0600) and `device.key` (the
//! device's Ed25519 key, sealed under the secret).
//!
//! Submodules: `migrations` (schema, append-only), `cache` (feed pages, lookups, audit log),
//! `outbox` (access events), `unlock` (online sign-in, offline PIN unlock, lease).

mod cache;
mod migrations;
mod outbox;
mod sealed;
mod unlock;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use crate::crypto::hazmat;
use crate::la::{OdsCode, Region};
use crate::setting::CareSetting;
use crate::vault::{self, DeviceSecret};
use crate::wire::{EmergencyDirectory, SignedDirectory, UserProfile};

pub use crate::vault::{CacheKeys, DataKey, DobIndexKey, IndexKey, VaultError};
pub use cache::{region_digest, AuditEntry, PageApplied, SearchAudit, StagedIndex};
pub use migrations::{migration_sha256, MIGRATIONS};
pub use outbox::{DeadLetter, OutboxSummary};

const DB_FILE: &str = "device.sqlite";
const SECRET_FILE: &str = "device.secret";
const DEVICE_KEY_FILE: &str = "device.key";

/// Meta keys the store manages itself; `set_meta` refuses them so the cursor, lease and sequence
/// can only move through the operations that keep them consistent.
mod meta_keys {
    pub const DEVICE_ID: &str = "device_id";
    pub const REGION: &str = "region";
    pub const ORG_ODS: &str = "org_ods";
    pub const ORG_NAME: &str = "org_name";
    pub const SETTING: &str = "setting";
    pub const CENTRAL_URL: &str = "central_url";
    pub const CENTRAL_SIGNING_KEY: &str = "central_signing_key";
    pub const CENTRAL_SEALING_KEY: &str = "central_sealing_key";
    pub const CURSOR: &str = "cursor";
    pub const LAST_SYNC_AT: &str = "last_sync_at";
    pub const LEASE_EXPIRES_AT: &str = "lease_expires_at";
    pub const LEASE_MAC: &str = "lease_mac";
    pub const NEXT_DEVICE_SEQ: &str = "next_device_seq";
    /// Present while a first download is being staged (migration 0002).
    pub const STAGING: &str = "staging";
    /// The central's signed emergency directory (`wire::SignedDirectory` JSON), in clear: public
    /// numbers, readable without a PIN.
    pub const EMERGENCY_NUMBERS: &str = "emergency_numbers";
    /// The region's feed key, sealed under the data key: opened only by a user's unlock.
    pub const FEED_KEY: &str = "feed_key";

    pub const RESERVED: &[&str] = &[
        DEVICE_ID,
        REGION,
        ORG_ODS,
        ORG_NAME,
        SETTING,
        CENTRAL_URL,
        CENTRAL_SIGNING_KEY,
        CENTRAL_SEALING_KEY,
        CURSOR,
        LAST_SYNC_AT,
        LEASE_EXPIRES_AT,
        LEASE_MAC,
        NEXT_DEVICE_SEQ,
        STAGING,
        EMERGENCY_NUMBERS,
        FEED_KEY,
    ];
}

/// What the device learnt at enrolment. Nothing here identifies a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    pub device_id: Uuid,
    pub region: Region,
    pub org_ods: OdsCode,
    pub org_name: String,
    pub setting: CareSetting,
    pub central_url: String,
    /// The central's Ed25519 key that signs feed pages, pinned here.
    pub central_signing_key: [u8; 32],
    /// The central's X25519 key that access events are sealed to.
    pub central_sealing_key: [u8; 32],
}

/// An open vault: the cache keys, who signed in, and until when the cache may be used offline.
#[derive(Debug)]
pub struct Unlocked {
    pub keys: CacheKeys,
    pub user: UserProfile,
    pub lease_expires_at: DateTime<Utc>,
}

/// Options for opening a store; tests lower the PIN work factor.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// PBKDF2 iterations for new PIN wraps (existing wraps keep the count stored beside them).
    pub pin_iterations: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            pin_iterations: vault::DEFAULT_PIN_ITERATIONS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("device store: {context}: {source}")]
    Sqlite {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("device store: {context} ({path}): {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} can be read by other users (mode {mode:o}); it must be 0600 — fix with `chmod 600` after checking nobody copied it")]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("migration {name} differs from the one applied to this database (sha256 {applied}, now {shipped}); shipped migrations are append-only: add a new file instead")]
    MigrationChanged {
        name: String,
        applied: String,
        shipped: String,
    },
    #[error("this database has migration {version} ({name}) which this version does not know: it was written by a newer version of CP-IS Field")]
    UnknownMigration { version: i64, name: String },
    #[error("the page continues from cursor {got} but this device is at {expected}: nothing was applied")]
    CursorMismatch { expected: u64, got: u64 },
    #[error("the page is for region {got} but this device is enrolled in {expected}: nothing was applied")]
    WrongRegion { expected: String, got: String },
    #[error("the page is malformed: {0}; nothing was applied")]
    BadPage(String),
    #[error("this device is not enrolled")]
    NotEnrolled,
    #[error("{what} failed its integrity check: it was changed, moved from another row, or sealed under another key")]
    Tampered { what: &'static str },
    #[error("the device store is damaged: {0}")]
    Corrupt(String),
    #[error("meta key '{0}' is managed by the store and cannot be set directly")]
    ReservedMeta(String),
    #[error("the emergency numbers cannot be trusted ({0}); they are not shown. Connect to the network so this device fetches them again; until then use your trust's safeguarding pathway")]
    EmergencyNumbers(String),
}

impl StoreError {
    pub(crate) fn io(context: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            context,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Attaches what the store was doing to a SQLite error.
pub(crate) trait SqlContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> SqlContext<T> for Result<T, rusqlite::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { context, source })
    }
}

/// Fixed-width UTC timestamps, so SQL text comparison orders them correctly.
pub(crate) fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("a stored timestamp does not parse: {s:?}")))
}

/// How long a statement waits for another connection's write transaction.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The device's store. `Send`, not `Sync`: share it behind a mutex.
pub struct DeviceStore {
    conn: Connection,
    dir: PathBuf,
    secret: DeviceSecret,
    options: StoreOptions,
    /// LA contact details already opened by this connection's lookups, valid while no other
    /// connection has committed (`PRAGMA data_version`). Public numbers, not personal data.
    la_cache: std::cell::RefCell<cache::LaCache>,
}

impl std::fmt::Debug for DeviceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DeviceStore {
    /// Opens (creating when absent) the store in `dir`: the directory (0700), the device secret,
    /// the database, and any migrations not yet applied.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, StoreOptions::default())
    }

    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        create_private_dir(dir)?;
        let secret = DeviceSecret::load_or_create(&dir.join(SECRET_FILE))?;
        let db_path = dir.join(DB_FILE);
        let mut conn = Connection::open(&db_path).ctx("opening the database")?;
        // WAL keeps readers off the writer's path; FULL syncs the WAL at each commit so a committed
        // outbox row survives power loss or SIGKILL. secure_delete overwrites freed pages, and
        // temp_store keeps sort spills off the disk.
        conn.pragma_update(None, "journal_mode", "WAL")
            .ctx("enabling WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")
            .ctx("setting synchronous=FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")
            .ctx("enabling secure_delete")?;
        conn.pragma_update(None, "temp_store", "MEMORY")
            .ctx("setting temp_store")?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .ctx("enabling foreign keys")?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .ctx("setting the busy timeout")?;
        conn.set_prepared_statement_cache_capacity(64);
        migrations::apply(&mut conn)?;
        #[cfg(unix)]
        restrict_db_files(dir);
        Ok(Self {
            conn,
            dir: dir.to_path_buf(),
            secret,
            options,
            la_cache: Default::default(),
        })
    }

    /// Readies this connection for the check's lookups: the database file is memory-mapped, so a
    /// probe of the blind-index table (sealed records, a few to a page) reads the page where the
    /// operating system already holds it instead of copying it in with a system call per page. The
    /// price: an I/O error while reading a mapped page ends the process rather than the lookup.
    pub fn tune_for_lookups(&self) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "mmap_size", 1i64 << 30)
            .ctx("mapping the database for lookups")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn enrolment(&self) -> Result<Option<Enrolment>, StoreError> {
        let Some(device_id) = self.get_meta(meta_keys::DEVICE_ID)? else {
            return Ok(None);
        };
        let need = |key: &'static str| -> Result<String, StoreError> {
            self.get_meta(key)?
                .ok_or_else(|| StoreError::Corrupt(format!("the enrolment lacks {key}")))
        };
        let bad =
            |what: &str| StoreError::Corrupt(format!("the enrolment's {what} does not parse"));
        let key32 = |key: &'static str| -> Result<[u8; 32], StoreError> {
            let bytes = B64.decode(need(key)?).map_err(|_| bad(key))?;
            bytes.try_into().map_err(|_| bad(key))
        };
        Ok(Some(Enrolment {
            device_id: Uuid::from_str(&device_id).map_err(|_| bad("device id"))?,
            region: Region::parse(&need(meta_keys::REGION)?).map_err(|_| bad("region"))?,
            org_ods: OdsCode::parse(&need(meta_keys::ORG_ODS)?).map_err(|_| bad("organisation"))?,
            org_name: need(meta_keys::ORG_NAME)?,
            setting: serde_json::from_value(serde_json::Value::String(need(meta_keys::SETTING)?))
                .map_err(|_| bad("care setting"))?,
            central_url: need(meta_keys::CENTRAL_URL)?,
            central_signing_key: key32(meta_keys::CENTRAL_SIGNING_KEY)?,
            central_sealing_key: key32(meta_keys::CENTRAL_SEALING_KEY)?,
        }))
    }

    /// Records the enrolment and makes sure the device has its signing key. Enrolling again as
    /// another device or into another region drops the cache, the unlocks and the lease (they
    /// belonged to the old enrolment); the outbox is kept.
    pub fn enrol(&mut self, e: &Enrolment) -> Result<(), StoreError> {
        self.ensure_device_key()?;
        let previous = self.enrolment()?;
        let tx = self.conn.transaction().ctx("starting the enrolment")?;
        if let Some(prev) = previous {
            if prev.device_id != e.device_id || prev.region != e.region {
                cache::clear_cache(&tx)?;
                unlock::clear_unlocks(&tx, true)?;
            }
            // Another region's numbers, or ones signed by another central, would be refused on read.
            if prev.region != e.region || prev.central_signing_key != e.central_signing_key {
                tx.execute(
                    "DELETE FROM meta WHERE key = ?1",
                    [meta_keys::EMERGENCY_NUMBERS],
                )
                .ctx("dropping the old region's emergency numbers")?;
            }
        }
        let values = [
            (meta_keys::DEVICE_ID, e.device_id.to_string()),
            (meta_keys::REGION, e.region.as_str().to_string()),
            (meta_keys::ORG_ODS, e.org_ods.as_str().to_string()),
            (meta_keys::ORG_NAME, e.org_name.clone()),
            (meta_keys::SETTING, e.setting.code().to_string()),
            (meta_keys::CENTRAL_URL, e.central_url.clone()),
            (
                meta_keys::CENTRAL_SIGNING_KEY,
                B64.encode(e.central_signing_key),
            ),
            (
                meta_keys::CENTRAL_SEALING_KEY,
                B64.encode(e.central_sealing_key),
            ),
        ];
        for (key, value) in values {
            put_meta(&tx, key, &value)?;
        }
        tx.commit().ctx("committing the enrolment")?;
        tracing::info!(device_id = %e.device_id, region = %e.region, "device enrolled");
        Ok(())
    }

    /// The device's Ed25519 public key, creating the key pair when absent (it is sent to enrol).
    pub fn device_public_key(&self) -> Result<[u8; 32], StoreError> {
        let pkcs8 = self.ensure_device_key()?;
        hazmat::ed25519_public(&pkcs8)
            .map_err(|_| StoreError::Corrupt("the device key does not parse".into()))
    }

    /// Signs with the device key (to prove the device to the central).
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], StoreError> {
        let pkcs8 = self.ensure_device_key()?;
        hazmat::ed25519_sign(&pkcs8, message)
            .map_err(|_| StoreError::Corrupt("the device key does not parse".into()))
    }

    fn ensure_device_key(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, StoreError> {
        let path = self.dir.join(DEVICE_KEY_FILE);
        if !path.exists() {
            let pkcs8 = hazmat::ed25519_generate();
            vault::write_private_file_new(&path, &vault::seal_device_key(&self.secret, &pkcs8))?;
        }
        vault::check_private(&path)?;
        let sealed =
            std::fs::read(&path).map_err(|e| StoreError::io("reading the device key", &path, e))?;
        vault::open_device_key(&self.secret, &sealed).map_err(|_| StoreError::Tampered {
            what: "the device key",
        })
    }

    pub fn cursor(&self) -> Result<u64, StoreError> {
        get_meta_u64(&self.conn, meta_keys::CURSOR).map(|c| c.unwrap_or(0))
    }

    pub fn last_sync_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.get_meta(meta_keys::LAST_SYNC_AT)?
            .map(|s| parse_ts(&s))
            .transpose()
    }

    /// Stores a small non-personal value (e.g. `last_contact_at`). Keys the store manages are refused.
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        if meta_keys::RESERVED.contains(&key) {
            return Err(StoreError::ReservedMeta(key.to_string()));
        }
        put_meta(&self.conn, key, value)
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        get_meta(&self.conn, key)
    }

    /// Removes audit entries and delivered events older than `before`: the retention rule, run by
    /// the device engine at open and before every sync round. How many of each went.
    pub fn apply_retention(&mut self, before: DateTime<Utc>) -> Result<(usize, usize), StoreError> {
        let audit = self.prune_audit(before)?;
        let delivered = self.prune_delivered(before)?;
        Ok((audit, delivered))
    }

    /// Keeps the central's emergency directory in clear beside the enrolment, so a device that
    /// cannot open its cache still lists the region's numbers. It must verify against the pinned
    /// central key, be for this device's region, and be no older than the one kept: an older one
    /// (a replay) is ignored and `false` returned.
    pub fn keep_emergency_numbers(&mut self, signed: &SignedDirectory) -> Result<bool, StoreError> {
        let enrolment = self.enrolment()?.ok_or(StoreError::NotEnrolled)?;
        let directory = signed
            .verify(&enrolment.central_signing_key)
            .map_err(|e| StoreError::EmergencyNumbers(e.to_string()))?;
        if directory.region != enrolment.region {
            return Err(StoreError::EmergencyNumbers(format!(
                "they are for region {} but this device is enrolled in {}",
                directory.region, enrolment.region
            )));
        }
        if let Ok(Some(kept)) = self.emergency_numbers() {
            if kept.generated_at > directory.generated_at {
                return Ok(false);
            }
        }
        let json = serde_json::to_string(signed).expect("a signed directory always serialises");
        put_meta(&self.conn, meta_keys::EMERGENCY_NUMBERS, &json)?;
        Ok(true)
    }

    /// The emergency directory kept on this device, verified again against the pinned central key
    /// (it sits in clear, so it is checked on every read). `None` before the first one arrives.
    pub fn emergency_numbers(&self) -> Result<Option<EmergencyDirectory>, StoreError> {
        let Some(json) = self.get_meta(meta_keys::EMERGENCY_NUMBERS)? else {
            return Ok(None);
        };
        let enrolment = self.enrolment()?.ok_or(StoreError::NotEnrolled)?;
        let signed: SignedDirectory = serde_json::from_str(&json).map_err(|e| {
            StoreError::EmergencyNumbers(format!("the kept copy does not decode: {e}"))
        })?;
        let directory = signed
            .verify(&enrolment.central_signing_key)
            .map_err(|e| StoreError::EmergencyNumbers(e.to_string()))?;
        if directory.region != enrolment.region {
            return Err(StoreError::EmergencyNumbers(format!(
                "the kept copy is for region {} but this device is enrolled in {}",
                directory.region, enrolment.region
            )));
        }
        Ok(Some(directory))
    }

    /// Revocation: removes the cache, the audit log, every unlock, the lease, the device key and
    /// delivered events; events still to send only when `keep_outbox` is false. The enrolment stays so status can still name
    /// the device. Freed pages are overwritten (secure_delete) and the WAL truncated.
    pub fn wipe(&mut self, keep_outbox: bool) -> Result<(), StoreError> {
        let tx = self.conn.transaction().ctx("starting the wipe")?;
        cache::clear_cache(&tx)?;
        tx.execute("DELETE FROM audit_log", [])
            .ctx("wiping the audit log")?;
        tx.execute("DELETE FROM sealed_pages", [])
            .ctx("wiping sealed feed pages")?;
        unlock::clear_unlocks(&tx, true)?;
        if keep_outbox {
            // Delivered events are the central's now; only what is still to send stays.
            tx.execute("DELETE FROM outbox WHERE state = 'delivered'", [])
                .ctx("wiping delivered events")?;
        } else {
            tx.execute("DELETE FROM outbox", [])
                .ctx("wiping the outbox")?;
        }
        tx.commit().ctx("committing the wipe")?;
        let key_path = self.dir.join(DEVICE_KEY_FILE);
        match std::fs::remove_file(&key_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("removing the device key", &key_path, e)),
        }
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
            .ctx("compacting after the wipe")?;
        tracing::warn!(keep_outbox, "device store wiped");
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    #[cfg(test)]
    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// Creates the data directory readable by this user only (0700), and narrows one that already
/// exists: nothing in it is for anyone else.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| StoreError::io("creating the data directory", dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::io("making the data directory private", dir, e))?;
    }
    Ok(())
}

/// The database holds only sealed data, but there is no reason for other users to read it.
#[cfg(unix)]
fn restrict_db_files(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for name in [DB_FILE, "device.sqlite-wal", "device.sqlite-shm"] {
        let _ = std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o600));
    }
}

pub(crate) fn get_meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .ctx("reading meta")?
        .query_row([key], |r| r.get(0))
        .optional()
        .ctx("reading meta")
}

pub(crate) fn put_meta(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .ctx("writing meta")?
    .execute(params![key, value])
    .ctx("writing meta")?;
    Ok(())
}

pub(crate) fn delete_meta(conn: &Connection, key: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM meta WHERE key = ?1", [key])
        .ctx("deleting meta")?;
    Ok(())
}

pub(crate) fn get_meta_u64(conn: &Connection, key: &str) -> Result<Option<u64>, StoreError> {
    get_meta(conn, key)?
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| StoreError::Corrupt(format!("meta {key} is not a number")))
        })
        .transpose()
}

/// The enrolled device id, read inside whatever transaction the caller holds.
pub(crate) fn enrolled_device_id(conn: &Connection) -> Result<Option<Uuid>, StoreError> {
    get_meta(conn, meta_keys::DEVICE_ID)?
        .map(|s| {
            Uuid::from_str(&s)
                .map_err(|_| StoreError::Corrupt("the device id does not parse".into()))
        })
        .transpose()
}
