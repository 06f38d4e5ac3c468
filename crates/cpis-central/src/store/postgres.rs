//! The PostgreSQL store, for when one machine's SQLite is not enough. Same behaviour as the SQLite
//! store (the same integration suite runs on both). Feed writers serialise on the `counters` row
//! (`FOR UPDATE`), so sequence numbers commit in order and a reader never skips one. Event intake
//! takes its locks in a fixed order (events by id, then LAs by code) so concurrent deliveries of the
//! same batch wait for each other instead of deadlocking.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use cpis_core::plan::VisibilityRules;
use cpis_core::wire::{FeedChange, FeedOp, Notification};
use cpis_core::{AccessEvent, CareSetting, FlagRecord, LocalAuthority, NhsNumber, OdsCode, Region};
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Transaction,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::migrations::POSTGRES;
use super::pg_tls::{DatabaseTarget, DatabaseTls};
use super::sqlite::feed_op_name;
use super::{
    flag_key, la_key, DeliveryBacklog, DeliveryOutcome, DeviceRecord, EnrolRefusal, EventIntake,
    FeedSlice, FhirClientRecord, Ingested, LaRecord, LaUploadOutcome, LaUploadRecord, LiveLookup,
    LiveSearch, NewDevice, NewEnrolment, NewLaUpload, PendingDelivery, RegionRecord, Store,
    StoreError, StoreResult, StoredKeys, UploadOps, UserRecord, UserSessionRow, WebhookChange,
    SESSION_IDLE_SLACK,
};

const POOL_SIZE: usize = 16;
const RETRIES: usize = 5;
/// Rows per multi-row statement in bulk writes.
const CHUNK: usize = 5_000;

pub struct PostgresStore {
    pool: Pool,
}

fn corrupt<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn pool_err<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Database(format!("PostgreSQL connection pool: {e}"))
}

/// Deadlocks and serialisation failures are worth a retry of the whole transaction.
fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

impl PostgresStore {
    /// Connects (with `search_path` set to `schema` when given) and applies migrations, with no
    /// TLS options beyond the URL's own.
    pub async fn connect(url: &str, schema: Option<&str>) -> StoreResult<Self> {
        Self::connect_with(url, schema, &DatabaseTls::default()).await
    }

    /// Connects as the URL's `sslmode` and `tls` say (see `pg_tls`), refusing a connection that
    /// could travel in the clear to a server off this machine unless allowed, and applies
    /// migrations.
    pub async fn connect_with(
        url: &str,
        schema: Option<&str>,
        tls: &DatabaseTls,
    ) -> StoreResult<Self> {
        let mut target = DatabaseTarget::parse(url, tls)?;
        if let Some(schema) = schema {
            if !schema
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(StoreError::BadUrl(format!("schema name '{schema}'")));
            }
            target
                .config_mut()
                .options(format!("-c search_path={schema}"));
        }
        if target.config().get_connect_timeout().is_none() {
            target
                .config_mut()
                .connect_timeout(std::time::Duration::from_secs(10));
        }
        if target.plain_off_this_machine() {
            tracing::warn!(server = %target.server(), sslmode = target.mode().as_str(),
                "the database connection may travel in the clear to another machine, as --db-allow-plain allows");
        } else {
            tracing::info!(server = %target.server(), sslmode = target.mode().as_str(), "connecting to PostgreSQL");
        }
        let manager = Manager::from_config(
            target.config().clone(),
            target.connector()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(pool_err)?;
        // The first connection says why it failed in words the operator can act on (an untrusted
        // certificate, a wrong name); it then goes back to the pool for the migrations.
        drop(pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => StoreError::from(target.explain(&e)),
            other => pool_err(other),
        })?);
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        let tx = client.transaction().await?;
        // One migrator at a time, whichever process starts first.
        tx.execute("SELECT pg_advisory_xact_lock(7275010001)", &[])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)",
        )
        .await?;
        for m in POSTGRES {
            let applied = tx
                .query_opt(
                    "SELECT sha256 FROM schema_migrations WHERE name = $1",
                    &[&m.name],
                )
                .await?;
            match applied.map(|r| r.get::<_, String>(0)) {
                Some(sha) if sha == m.sha256() => {}
                Some(_) => {
                    return Err(StoreError::MigrationChanged {
                        name: m.name.into(),
                    })
                }
                None => {
                    tx.batch_execute(m.sql).await?;
                    tx.execute(
                        "INSERT INTO schema_migrations (name, sha256, applied_at) VALUES ($1, $2, $3)",
                        &[&m.name, &m.sha256(), &Utc::now()],
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_err)
    }
}

// ---- feed writing ----

/// Feed rows gathered in one transaction and written together; seqs come from the counter row,
/// locked for the rest of the transaction.
struct FeedWriter {
    next: i64,
    regions: Vec<String>,
    keys: Vec<String>,
    seqs: Vec<i64>,
    ops: Vec<String>,
    payloads: Vec<String>,
}

impl FeedWriter {
    async fn start(tx: &Transaction<'_>) -> StoreResult<Self> {
        let row = tx
            .query_one(
                "SELECT value FROM counters WHERE name = 'feed' FOR UPDATE",
                &[],
            )
            .await?;
        Ok(Self {
            next: row.get::<_, i64>(0) + 1,
            regions: Vec::new(),
            keys: Vec::new(),
            seqs: Vec::new(),
            ops: Vec::new(),
            payloads: Vec::new(),
        })
    }

    fn write(&mut self, region: &Region, key: String, change: &FeedChange) -> StoreResult<()> {
        self.regions.push(region.as_str().to_string());
        self.keys.push(key);
        self.seqs.push(self.next);
        self.next += 1;
        self.ops.push(feed_op_name(change).to_string());
        self.payloads.push(serde_json::to_string(change)?);
        Ok(())
    }

    async fn finish(self, tx: &Transaction<'_>) -> StoreResult<()> {
        if self.seqs.is_empty() {
            return Ok(());
        }
        // A key written twice in one transaction keeps its last write (ON CONFLICT cannot touch a
        // row twice in one statement).
        let mut last: HashMap<(&str, &str), usize> = HashMap::new();
        for i in 0..self.keys.len() {
            last.insert((&self.regions[i], &self.keys[i]), i);
        }
        let mut keep: Vec<usize> = last.into_values().collect();
        keep.sort_unstable();
        for chunk in keep.chunks(CHUNK) {
            let pick =
                |v: &Vec<String>| chunk.iter().map(|i| v[*i].clone()).collect::<Vec<String>>();
            let seqs: Vec<i64> = chunk.iter().map(|i| self.seqs[*i]).collect();
            tx.execute(
                "INSERT INTO region_feed (region, key, seq, op, payload_json)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[])
                 ON CONFLICT (region, key) DO UPDATE SET seq = EXCLUDED.seq, op = EXCLUDED.op,
                   payload_json = EXCLUDED.payload_json",
                &[
                    &pick(&self.regions),
                    &pick(&self.keys),
                    &seqs,
                    &pick(&self.ops),
                    &pick(&self.payloads),
                ],
            )
            .await?;
        }
        tx.execute(
            "UPDATE counters SET value = $1 WHERE name = 'feed'",
            &[&(self.next - 1)],
        )
        .await?;
        Ok(())
    }
}

async fn ensure_region<C: GenericClient>(
    tx: &C,
    region: &Region,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO regions (name, lease_hours, created_at) VALUES ($1, 72, $2) ON CONFLICT (name) DO NOTHING",
        &[&region.as_str(), &now],
    )
    .await?;
    Ok(())
}

async fn la_region<C: GenericClient>(tx: &C, ods: &OdsCode) -> StoreResult<Option<Region>> {
    let row = tx
        .query_opt(
            "SELECT region FROM local_authorities WHERE ods = $1",
            &[&ods.as_str()],
        )
        .await?;
    row.map(|r| Region::parse(&r.get::<_, String>(0)).map_err(corrupt))
        .transpose()
}

/// One LA's own records, as its uploads gave them.
async fn flags_of_la<C: GenericClient>(tx: &C, ods: &OdsCode) -> StoreResult<Vec<FlagRecord>> {
    let rows = tx
        .query(
            "SELECT record_json FROM la_flags WHERE la_ods = $1",
            &[&ods.as_str()],
        )
        .await?;
    rows.iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(StoreError::from))
        .collect()
}

fn digits(nhs: &[NhsNumber]) -> Vec<String> {
    nhs.iter().map(|n| n.as_digits()).collect()
}

/// The regions whose devices carry each person: those of every LA holding a plan for them.
async fn regions_holding(
    tx: &Transaction<'_>,
    nhs: &[NhsNumber],
) -> StoreResult<HashMap<NhsNumber, BTreeSet<Region>>> {
    let mut out: HashMap<NhsNumber, BTreeSet<Region>> = HashMap::new();
    for chunk in nhs.chunks(CHUNK) {
        let rows = tx
            .query(
                "SELECT DISTINCT f.nhs_number, l.region FROM la_flags f
                 JOIN local_authorities l ON l.ods = f.la_ods WHERE f.nhs_number = ANY($1)",
                &[&digits(chunk)],
            )
            .await?;
        for r in rows {
            let n = NhsNumber::parse(r.get::<_, &str>(0)).map_err(corrupt)?;
            let region = Region::parse(r.get::<_, &str>(1)).map_err(corrupt)?;
            out.entry(n).or_default().insert(region);
        }
    }
    Ok(out)
}

/// Stores LAs' own records of people, one row per (person, LA).
async fn upsert_la_flags(
    tx: &Transaction<'_>,
    records: &[FlagRecord],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    // One statement cannot touch a row twice: the last record for a (person, LA) wins.
    let mut last: BTreeMap<(NhsNumber, &OdsCode), &FlagRecord> = BTreeMap::new();
    for r in records {
        last.insert((r.nhs_number, &r.local_authority), r);
    }
    let records: Vec<&FlagRecord> = last.into_values().collect();
    for chunk in records.chunks(CHUNK) {
        let nhs: Vec<String> = chunk.iter().map(|r| r.nhs_number.as_digits()).collect();
        let la: Vec<String> = chunk
            .iter()
            .map(|r| r.local_authority.to_string())
            .collect();
        let json: Vec<String> = chunk
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        tx.execute(
            "INSERT INTO la_flags (nhs_number, la_ods, record_json, updated_at)
             SELECT n, l, j, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(n, l, j)
             ON CONFLICT (nhs_number, la_ods) DO UPDATE SET record_json = EXCLUDED.record_json,
               updated_at = EXCLUDED.updated_at",
            &[&nhs, &la, &json, &now],
        )
        .await?;
    }
    Ok(())
}

/// Rebuilds each person from every LA's record of them and publishes the result: put in each
/// region of an LA that holds them, removed from any region in `before` that no longer carries
/// them.
async fn republish(
    tx: &Transaction<'_>,
    feed: &mut FeedWriter,
    nhs: &[NhsNumber],
    before: &HashMap<NhsNumber, BTreeSet<Region>>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut unique: Vec<NhsNumber> = nhs.to_vec();
    unique.sort();
    unique.dedup();
    let mut parts: HashMap<NhsNumber, Vec<FlagRecord>> = HashMap::new();
    for chunk in unique.chunks(CHUNK) {
        let rows = tx
            .query(
                "SELECT record_json FROM la_flags WHERE nhs_number = ANY($1)",
                &[&digits(chunk)],
            )
            .await?;
        for r in rows {
            let record: FlagRecord = serde_json::from_str(r.get::<_, &str>(0))?;
            parts.entry(record.nhs_number).or_default().push(record);
        }
    }
    let after = regions_holding(tx, &unique).await?;
    let none = BTreeSet::new();
    let mut merged = Vec::new();
    let mut gone = Vec::new();
    for n in &unique {
        let regions = after.get(n).unwrap_or(&none);
        match parts.get(n).and_then(|p| cpis_core::plan::merge_person(p)) {
            Some(person) => {
                for region in regions {
                    feed.write(
                        region,
                        flag_key(n),
                        &FeedChange::PutFlag {
                            record: person.clone(),
                        },
                    )?;
                }
                merged.push(person);
            }
            None => gone.push(*n),
        }
        for region in before.get(n).unwrap_or(&none).difference(regions) {
            feed.write(
                region,
                flag_key(n),
                &FeedChange::RemoveFlag { nhs_number: *n },
            )?;
        }
    }
    upsert_flags(tx, &merged, now).await?;
    delete_flags(tx, &gone).await?;
    Ok(())
}

async fn upsert_flags(
    tx: &Transaction<'_>,
    records: &[FlagRecord],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for chunk in records.chunks(CHUNK) {
        let nhs: Vec<String> = chunk.iter().map(|r| r.nhs_number.as_digits()).collect();
        let la: Vec<String> = chunk
            .iter()
            .map(|r| r.local_authority.to_string())
            .collect();
        let json: Vec<String> = chunk
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        tx.execute(
            "INSERT INTO flags (nhs_number, la_ods, record_json, updated_at)
             SELECT n, l, j, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(n, l, j)
             ON CONFLICT (nhs_number) DO UPDATE SET la_ods = EXCLUDED.la_ods,
               record_json = EXCLUDED.record_json, updated_at = EXCLUDED.updated_at",
            &[&nhs, &la, &json, &now],
        )
        .await?;
    }
    Ok(())
}

async fn delete_flags(tx: &Transaction<'_>, nhs: &[NhsNumber]) -> StoreResult<()> {
    for chunk in nhs.chunks(CHUNK) {
        let digits: Vec<String> = chunk.iter().map(|n| n.as_digits()).collect();
        tx.execute("DELETE FROM flags WHERE nhs_number = ANY($1)", &[&digits])
            .await?;
    }
    Ok(())
}

fn la_record(r: &Row) -> StoreResult<LaRecord> {
    Ok(LaRecord {
        la: LocalAuthority {
            ods: OdsCode::parse(r.get::<_, &str>(0)).map_err(corrupt)?,
            name: r.get(1),
            emergency_phone: r.get(2),
            office_phone: r.get(3),
            region: Region::parse(r.get::<_, &str>(4)).map_err(corrupt)?,
        },
        webhook_url: r.get(5),
    })
}

const LA_COLUMNS: &str = "ods, name, emergency_phone, office_phone, region, webhook_url";
const DEVICE_COLUMNS: &str =
    "device_id, public_key, region, org_ods, org_name, setting, lease_key, enrolled_at, last_seen, revoked_at";

const FHIR_CLIENT_COLUMNS: &str = "client_id, org_ods, org_name, setting, created_at, revoked_at";

fn fhir_client_record(r: &Row) -> StoreResult<FhirClientRecord> {
    Ok(FhirClientRecord {
        client_id: r.get(0),
        org_ods: OdsCode::parse(r.get::<_, &str>(1)).map_err(corrupt)?,
        org_name: r.get(2),
        setting: r
            .get::<_, &str>(3)
            .parse::<CareSetting>()
            .map_err(corrupt)?,
        created_at: r.get(4),
        revoked_at: r.get(5),
    })
}

fn device_record(r: &Row) -> StoreResult<DeviceRecord> {
    Ok(DeviceRecord {
        id: r.get(0),
        public_key: r.get(1),
        region: Region::parse(r.get::<_, &str>(2)).map_err(corrupt)?,
        org_ods: OdsCode::parse(r.get::<_, &str>(3)).map_err(corrupt)?,
        org_name: r.get(4),
        setting: r
            .get::<_, &str>(5)
            .parse::<CareSetting>()
            .map_err(corrupt)?,
        lease_key: Zeroizing::new(r.get(6)),
        enrolled_at: r.get(7),
        last_seen: r.get(8),
        revoked_at: r.get(9),
    })
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn central_keys(&self, fresh: StoredKeys) -> StoreResult<StoredKeys> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO central_keys (id, signing_pkcs8, sealing_secret, created_at) VALUES (1, $1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&fresh.signing_pkcs8.as_slice(), &fresh.sealing_secret.as_slice(), &Utc::now()],
            )
            .await?;
        let row = client
            .query_one(
                "SELECT signing_pkcs8, sealing_secret FROM central_keys WHERE id = 1",
                &[],
            )
            .await?;
        let sealing: Vec<u8> = row.get(1);
        let sealing: [u8; 32] = sealing
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("sealing secret is not 32 bytes".into()))?;
        Ok(StoredKeys {
            signing_pkcs8: Zeroizing::new(row.get(0)),
            sealing_secret: Zeroizing::new(sealing),
        })
    }

    async fn upsert_la(
        &self,
        la: &LocalAuthority,
        webhook: WebhookChange,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut feed = FeedWriter::start(&tx).await?;
        ensure_region(&tx, &la.region, now).await?;
        let old = tx
            .query_opt(
                &format!("SELECT {LA_COLUMNS} FROM local_authorities WHERE ods = $1 FOR UPDATE"),
                &[&la.ods.as_str()],
            )
            .await?
            .map(|r| la_record(&r))
            .transpose()?;
        let webhook_url = match (&webhook, &old) {
            (WebhookChange::Set(w), _) => w.clone(),
            (WebhookChange::Keep, Some(old)) => old.webhook_url.clone(),
            (WebhookChange::Keep, None) => None,
        };
        tx.execute(
            "INSERT INTO local_authorities (ods, name, emergency_phone, office_phone, region, webhook_url, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (ods) DO UPDATE SET name = EXCLUDED.name, emergency_phone = EXCLUDED.emergency_phone,
               office_phone = EXCLUDED.office_phone, region = EXCLUDED.region,
               webhook_url = EXCLUDED.webhook_url, updated_at = EXCLUDED.updated_at",
            &[&la.ods.as_str(), &la.name, &la.emergency_phone, &la.office_phone, &la.region.as_str(), &webhook_url, &now],
        )
        .await?;
        match old {
            Some(old) if old.la.region != la.region => {
                // Moved: its people are republished from where every LA holding them now sits.
                feed.write(
                    &old.la.region,
                    la_key(&la.ods),
                    &FeedChange::RemoveLa {
                        ods: la.ods.clone(),
                    },
                )?;
                feed.write(
                    &la.region,
                    la_key(&la.ods),
                    &FeedChange::PutLa { la: la.clone() },
                )?;
                let people: Vec<NhsNumber> = flags_of_la(&tx, &la.ods)
                    .await?
                    .iter()
                    .map(|p| p.nhs_number)
                    .collect();
                let mut before = regions_holding(&tx, &people).await?;
                for n in &people {
                    before.entry(*n).or_default().insert(old.la.region.clone());
                }
                republish(&tx, &mut feed, &people, &before, now).await?;
            }
            Some(old) if old.la == *la => {}
            _ => feed.write(
                &la.region,
                la_key(&la.ods),
                &FeedChange::PutLa { la: la.clone() },
            )?,
        }
        feed.finish(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_lease_hours(
        &self,
        region: &Region,
        hours: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        ensure_region(&client, region, now).await?;
        client
            .execute(
                "UPDATE regions SET lease_hours = $1 WHERE name = $2",
                &[&(hours as i32), &region.as_str()],
            )
            .await?;
        Ok(())
    }

    async fn region(&self, region: &Region) -> StoreResult<Option<RegionRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT lease_hours FROM regions WHERE name = $1",
                &[&region.as_str()],
            )
            .await?;
        Ok(row.map(|r| RegionRecord {
            region: region.clone(),
            lease_hours: r.get::<_, i32>(0) as u32,
        }))
    }

    async fn regions(&self) -> StoreResult<Vec<RegionRecord>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT name, lease_hours FROM regions ORDER BY name", &[])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RegionRecord {
                    region: Region::parse(r.get::<_, &str>(0)).map_err(corrupt)?,
                    lease_hours: r.get::<_, i32>(1) as u32,
                })
            })
            .collect()
    }

    async fn local_authority(&self, ods: &OdsCode) -> StoreResult<Option<LaRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {LA_COLUMNS} FROM local_authorities WHERE ods = $1"),
                &[&ods.as_str()],
            )
            .await?;
        row.map(|r| la_record(&r)).transpose()
    }

    async fn local_authorities(&self) -> StoreResult<Vec<LaRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {LA_COLUMNS} FROM local_authorities ORDER BY ods"),
                &[],
            )
            .await?;
        rows.iter().map(la_record).collect()
    }

    async fn la_records(
        &self,
        la: &OdsCode,
    ) -> StoreResult<(Vec<FlagRecord>, Option<DateTime<Utc>>)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let at = tx
            .query_opt(
                "SELECT last_upload_at FROM local_authorities WHERE ods = $1",
                &[&la.as_str()],
            )
            .await?
            .ok_or_else(|| StoreError::UnknownLa(la.clone()))?
            .get::<_, Option<DateTime<Utc>>>(0);
        let records = flags_of_la(&tx, la).await?;
        tx.commit().await?;
        Ok((records, at))
    }

    async fn apply_upload(
        &self,
        la: &OdsCode,
        ops: UploadOps,
        now: DateTime<Utc>,
    ) -> StoreResult<usize> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The LA row is locked first: a second upload for the LA waits, then sees the new time.
        let at = tx
            .query_opt(
                "SELECT last_upload_at FROM local_authorities WHERE ods = $1 FOR UPDATE",
                &[&la.as_str()],
            )
            .await?
            .ok_or_else(|| StoreError::UnknownLa(la.clone()))?
            .get::<_, Option<DateTime<Utc>>>(0);
        if at != ops.based_on {
            return Err(StoreError::UploadRaced);
        }
        let mut feed = FeedWriter::start(&tx).await?;
        let touched: Vec<NhsNumber> = ops
            .puts
            .iter()
            .map(|r| r.nhs_number)
            .chain(ops.removes.iter().copied())
            .collect();
        let before = regions_holding(&tx, &touched).await?;
        upsert_la_flags(&tx, &ops.puts, now).await?;
        for chunk in ops.removes.chunks(CHUNK) {
            tx.execute(
                "DELETE FROM la_flags WHERE la_ods = $1 AND nhs_number = ANY($2)",
                &[&la.as_str(), &digits(chunk)],
            )
            .await?;
        }
        republish(&tx, &mut feed, &touched, &before, now).await?;
        feed.finish(&tx).await?;
        tx.execute(
            "UPDATE local_authorities SET last_upload_at = $2 WHERE ods = $1",
            &[&la.as_str(), &now],
        )
        .await?;
        let people = tx
            .query_one(
                "SELECT COUNT(*) FROM la_flags WHERE la_ods = $1",
                &[&la.as_str()],
            )
            .await?
            .get::<_, i64>(0) as usize;
        tx.commit().await?;
        Ok(people)
    }

    async fn bulk_load(
        &self,
        las: Vec<LocalAuthority>,
        flags: Vec<FlagRecord>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut feed = FeedWriter::start(&tx).await?;
        let mut regions: HashMap<OdsCode, Region> = HashMap::new();
        for la in &las {
            ensure_region(&tx, &la.region, now).await?;
            if let Some(old) = la_region(&tx, &la.ods).await? {
                if old != la.region {
                    feed.write(
                        &old,
                        la_key(&la.ods),
                        &FeedChange::RemoveLa {
                            ods: la.ods.clone(),
                        },
                    )?;
                }
            }
            tx.execute(
                "INSERT INTO local_authorities (ods, name, emergency_phone, office_phone, region, updated_at, last_upload_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)
                 ON CONFLICT (ods) DO UPDATE SET name = EXCLUDED.name, emergency_phone = EXCLUDED.emergency_phone,
                   office_phone = EXCLUDED.office_phone, region = EXCLUDED.region, updated_at = EXCLUDED.updated_at,
                   last_upload_at = EXCLUDED.last_upload_at",
                &[&la.ods.as_str(), &la.name, &la.emergency_phone, &la.office_phone, &la.region.as_str(), &now],
            )
            .await?;
            feed.write(
                &la.region,
                la_key(&la.ods),
                &FeedChange::PutLa { la: la.clone() },
            )?;
            regions.insert(la.ods.clone(), la.region.clone());
        }
        for record in &flags {
            if !regions.contains_key(&record.local_authority) {
                let r = la_region(&tx, &record.local_authority)
                    .await?
                    .ok_or_else(|| StoreError::UnknownLa(record.local_authority.clone()))?;
                regions.insert(record.local_authority.clone(), r);
            }
        }
        let touched: Vec<NhsNumber> = flags.iter().map(|r| r.nhs_number).collect();
        let before = regions_holding(&tx, &touched).await?;
        upsert_la_flags(&tx, &flags, now).await?;
        republish(&tx, &mut feed, &touched, &before, now).await?;
        feed.finish(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn flag(&self, nhs: &NhsNumber) -> StoreResult<Option<FlagRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT record_json FROM flags WHERE nhs_number = $1",
                &[&nhs.as_digits()],
            )
            .await?;
        row.map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(StoreError::from))
            .transpose()
    }

    async fn la_last_upload(&self, ods: &OdsCode) -> StoreResult<Option<DateTime<Utc>>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT last_upload_at FROM local_authorities WHERE ods = $1",
                &[&ods.as_str()],
            )
            .await?;
        Ok(row.and_then(|r| r.get::<_, Option<DateTime<Utc>>>(0)))
    }

    async fn flag_count(&self) -> StoreResult<u64> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT COUNT(*) FROM flags", &[])
            .await?
            .get::<_, i64>(0) as u64)
    }

    async fn expire_flags(
        &self,
        today: NaiveDate,
        rules: VisibilityRules,
        now: DateTime<Utc>,
    ) -> StoreResult<usize> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut feed = FeedWriter::start(&tx).await?;
        // Each LA's record on its own: an LA whose plans have all gone drops out of the person.
        let rows = tx.query("SELECT record_json FROM la_flags", &[]).await?;
        let mut expired: Vec<(NhsNumber, OdsCode)> = Vec::new();
        for r in rows {
            let record: FlagRecord = serde_json::from_str(r.get::<_, &str>(0))?;
            if record.is_expired(today, &rules) {
                expired.push((record.nhs_number, record.local_authority));
            }
        }
        let touched: Vec<NhsNumber> = expired.iter().map(|(n, _)| *n).collect();
        let before = regions_holding(&tx, &touched).await?;
        for (nhs, la) in &expired {
            tx.execute(
                "DELETE FROM la_flags WHERE nhs_number = $1 AND la_ods = $2",
                &[&nhs.as_digits(), &la.as_str()],
            )
            .await?;
        }
        republish(&tx, &mut feed, &touched, &before, now).await?;
        feed.finish(&tx).await?;
        tx.commit().await?;
        Ok(expired.len())
    }

    async fn feed_page(&self, region: &Region, after: u64, limit: u32) -> StoreResult<FeedSlice> {
        let mut client = self.client().await?;
        // One snapshot for the head and the rows.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await?;
        let head: Option<i64> = tx
            .query_one(
                "SELECT MAX(seq) FROM region_feed WHERE region = $1",
                &[&region.as_str()],
            )
            .await?
            .get(0);
        let rows = tx
            .query(
                "SELECT seq, payload_json FROM region_feed WHERE region = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&region.as_str(), &(after as i64), &(i64::from(limit) + 1)],
            )
            .await?;
        tx.commit().await?;
        let mut ops = rows
            .iter()
            .map(|r| {
                Ok(FeedOp {
                    seq: r.get::<_, i64>(0) as u64,
                    change: serde_json::from_str(r.get::<_, &str>(1))?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let has_more = ops.len() > limit as usize;
        ops.truncate(limit as usize);
        Ok(FeedSlice {
            ops,
            head: head.unwrap_or(0) as u64,
            has_more,
        })
    }

    async fn region_content(
        &self,
        region: &Region,
    ) -> StoreResult<(Vec<FlagRecord>, Vec<LocalAuthority>)> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT payload_json FROM region_feed WHERE region = $1 AND op IN ('put_flag', 'put_la')",
                &[&region.as_str()],
            )
            .await?;
        let (mut flags, mut las) = (Vec::new(), Vec::new());
        for r in rows {
            match serde_json::from_str::<FeedChange>(r.get::<_, &str>(0))? {
                FeedChange::PutFlag { record } => flags.push(record),
                FeedChange::PutLa { la } => las.push(la),
                _ => {}
            }
        }
        Ok((flags, las))
    }

    async fn create_enrolment(&self, e: NewEnrolment) -> StoreResult<()> {
        let client = self.client().await?;
        ensure_region(&client, &e.region, e.created_at).await?;
        client
            .execute(
                "INSERT INTO enrolment_codes (code_hash, region, org_ods, org_name, setting, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&e.code_hash, &e.region.as_str(), &e.org_ods.as_str(), &e.org_name, &e.setting.code(), &e.created_at, &e.expires_at],
            )
            .await?;
        Ok(())
    }

    async fn redeem_enrolment(
        &self,
        code_hash: &str,
        device: NewDevice,
        now: DateTime<Utc>,
    ) -> StoreResult<Result<DeviceRecord, EnrolRefusal>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT region, org_ods, org_name, setting, expires_at, used_at FROM enrolment_codes
                 WHERE code_hash = $1 FOR UPDATE",
                &[&code_hash],
            )
            .await?;
        let Some(row) = row else {
            return Ok(Err(EnrolRefusal::Unknown));
        };
        if row.get::<_, Option<DateTime<Utc>>>(5).is_some() {
            return Ok(Err(EnrolRefusal::Used));
        }
        if row.get::<_, DateTime<Utc>>(4) <= now {
            return Ok(Err(EnrolRefusal::Expired));
        }
        tx.execute(
            "UPDATE enrolment_codes SET used_at = $1, device_id = $2 WHERE code_hash = $3",
            &[&now, &device.id, &code_hash],
        )
        .await?;
        tx.execute(
            "INSERT INTO devices (device_id, public_key, region, org_ods, org_name, setting, lease_key, enrolled_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &device.id,
                &device.public_key.as_slice(),
                &row.get::<_, &str>(0),
                &row.get::<_, &str>(1),
                &row.get::<_, &str>(2),
                &row.get::<_, &str>(3),
                &device.lease_key.as_slice(),
                &device.enrolled_at,
            ],
        )
        .await?;
        let record = tx
            .query_one(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1"),
                &[&device.id],
            )
            .await?;
        let record = device_record(&record)?;
        tx.commit().await?;
        Ok(Ok(record))
    }

    async fn device(&self, id: Uuid) -> StoreResult<Option<DeviceRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = $1"),
                &[&id],
            )
            .await?;
        row.map(|r| device_record(&r)).transpose()
    }

    async fn devices(&self) -> StoreResult<Vec<DeviceRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY enrolled_at, device_id"),
                &[],
            )
            .await?;
        rows.iter().map(device_record).collect()
    }

    async fn revoke_device(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, $1) WHERE device_id = $2",
                &[&now, &id],
            )
            .await?;
        Ok(n > 0)
    }

    async fn touch_device(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        unless_since: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE devices SET last_seen = $1
                 WHERE device_id = $2 AND (last_seen IS NULL OR last_seen < $3)",
                &[&now, &id, &unless_since],
            )
            .await?;
        Ok(n > 0)
    }

    async fn create_challenge(
        &self,
        device: Uuid,
        challenge: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM auth_challenges WHERE expires_at < $1",
                &[&Utc::now()],
            )
            .await?;
        client
            .execute(
                "INSERT INTO auth_challenges (challenge, device_id, expires_at) VALUES ($1, $2, $3)",
                &[&challenge, &device, &expires_at],
            )
            .await?;
        Ok(())
    }

    async fn take_challenge(&self, challenge: &str) -> StoreResult<Option<(Uuid, DateTime<Utc>)>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "DELETE FROM auth_challenges WHERE challenge = $1 RETURNING device_id, expires_at",
                &[&challenge],
            )
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    async fn create_device_token(
        &self,
        token_hash: &str,
        device: Uuid,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM device_tokens WHERE expires_at < $1",
                &[&Utc::now()],
            )
            .await?;
        client
            .execute(
                "INSERT INTO device_tokens (token_hash, device_id, expires_at) VALUES ($1, $2, $3)",
                &[&token_hash, &device, &expires_at],
            )
            .await?;
        client
            .execute(
                "UPDATE devices SET last_seen = $1 WHERE device_id = $2",
                &[&Utc::now(), &device],
            )
            .await?;
        Ok(())
    }

    async fn device_for_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Uuid>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT device_id FROM device_tokens WHERE token_hash = $1 AND expires_at > $2",
                &[&token_hash, &now],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn open_user_session(&self, session: &UserSessionRow) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Ended sessions go as new ones open, so the table holds about one row per device.
        tx.execute(
            "DELETE FROM user_sessions WHERE device_id = $1 OR expires_at < $2 OR idle_until < $2",
            &[&session.device_id, &Utc::now()],
        )
        .await?;
        tx.execute(
            "INSERT INTO user_sessions (token_hash, device_id, user_id, idle_until, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &session.token_hash,
                &session.device_id,
                &session.user_id,
                &session.idle_until,
                &session.expires_at,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn use_user_session(
        &self,
        token_hash: &str,
        device: Uuid,
        now: DateTime<Utc>,
        idle_until_new: DateTime<Utc>,
    ) -> StoreResult<Option<String>> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                "SELECT user_id, idle_until FROM user_sessions
                 WHERE token_hash = $1 AND device_id = $2 AND idle_until > $3 AND expires_at > $3",
                &[&token_hash, &device, &now],
            )
            .await?
        else {
            return Ok(None);
        };
        let idle_until: DateTime<Utc> = row.get(1);
        if idle_until_new - idle_until > SESSION_IDLE_SLACK {
            client
                .execute(
                    "UPDATE user_sessions SET idle_until = LEAST($3, expires_at)
                     WHERE token_hash = $1 AND device_id = $2",
                    &[&token_hash, &device, &idle_until_new],
                )
                .await?;
        }
        Ok(Some(row.get(0)))
    }

    async fn end_user_session(&self, token_hash: &str, device: Uuid) -> StoreResult<bool> {
        let client = self.client().await?;
        Ok(client
            .execute(
                "DELETE FROM user_sessions WHERE token_hash = $1 AND device_id = $2",
                &[&token_hash, &device],
            )
            .await?
            > 0)
    }

    async fn upsert_user(&self, u: &UserRecord, now: DateTime<Utc>) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO users (user_id, name, role, activity, org_ods, pin_salt, pin_hash, pin_iterations, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (user_id) DO UPDATE SET name = EXCLUDED.name, role = EXCLUDED.role,
                   activity = EXCLUDED.activity, org_ods = EXCLUDED.org_ods, pin_salt = EXCLUDED.pin_salt,
                   pin_hash = EXCLUDED.pin_hash, pin_iterations = EXCLUDED.pin_iterations, updated_at = EXCLUDED.updated_at",
                &[
                    &u.id,
                    &u.name,
                    &u.role,
                    &u.activity.to_string(),
                    &u.org_ods.as_str(),
                    &u.pin_salt,
                    &u.pin_hash,
                    &(u.pin_iterations as i32),
                    &now,
                ],
            )
            .await?;
        Ok(())
    }

    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT user_id, name, role, activity, org_ods, pin_salt, pin_hash, pin_iterations FROM users WHERE user_id = $1",
                &[&id],
            )
            .await?;
        row.map(|r| {
            Ok(UserRecord {
                id: r.get(0),
                name: r.get(1),
                role: r.get(2),
                activity: r.get::<_, &str>(3).parse().map_err(corrupt)?,
                org_ods: OdsCode::parse(r.get::<_, &str>(4)).map_err(corrupt)?,
                pin_salt: r.get(5),
                pin_hash: r.get(6),
                pin_iterations: r.get::<_, i32>(7) as u32,
            })
        })
        .transpose()
    }

    async fn take_sign_in_attempt(
        &self,
        user_hash: &str,
        now: DateTime<Utc>,
        window_cutoff: DateTime<Utc>,
    ) -> StoreResult<u32> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM sign_in_attempts WHERE window_start <= $1",
                &[&window_cutoff],
            )
            .await?;
        // One statement: concurrent attempts queue on the row, each seeing the count before it. The
        // CASEs read the row as it was, so an ended window restarts at one from now.
        let row = client
            .query_one(
                "INSERT INTO sign_in_attempts (user_hash, attempts, window_start) VALUES ($1, 1, $2)
                 ON CONFLICT (user_hash) DO UPDATE SET
                    attempts = CASE WHEN sign_in_attempts.window_start <= $3 THEN 1
                                    ELSE LEAST(sign_in_attempts.attempts + 1, 1000000) END,
                    window_start = CASE WHEN sign_in_attempts.window_start <= $3 THEN EXCLUDED.window_start
                                        ELSE sign_in_attempts.window_start END
                 RETURNING attempts",
                &[&user_hash, &now, &window_cutoff],
            )
            .await?;
        Ok(u32::try_from(row.get::<_, i32>(0)).unwrap_or(0))
    }

    async fn clear_sign_in_attempts(&self, user_hash: &str) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM sign_in_attempts WHERE user_hash = $1",
                &[&user_hash],
            )
            .await?;
        Ok(())
    }

    async fn create_la_token(
        &self,
        token_hash: &str,
        la: &OdsCode,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        if la_region(&client, la).await?.is_none() {
            return Err(StoreError::UnknownLa(la.clone()));
        }
        client
            .execute(
                "INSERT INTO la_tokens (token_hash, la_ods, created_at, expires_at) VALUES ($1, $2, $3, $4)",
                &[&token_hash, &la.as_str(), &now, &expires_at],
            )
            .await?;
        Ok(())
    }

    async fn la_for_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<OdsCode>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT la_ods FROM la_tokens WHERE token_hash = $1 AND revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > $2)",
                &[&token_hash, &now],
            )
            .await?;
        row.map(|r| OdsCode::parse(r.get::<_, &str>(0)).map_err(corrupt))
            .transpose()
    }

    async fn revoke_la_tokens(&self, la: &OdsCode, now: DateTime<Utc>) -> StoreResult<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE la_tokens SET revoked_at = $2 WHERE la_ods = $1 AND revoked_at IS NULL",
                &[&la.as_str(), &now],
            )
            .await?;
        tx.execute(
            "DELETE FROM inbox_sessions WHERE la_ods = $1",
            &[&la.as_str()],
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn create_inbox_session(
        &self,
        session_hash: &str,
        la: &OdsCode,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM inbox_sessions WHERE expires_at <= $1", &[&now])
            .await?;
        client
            .execute(
                "INSERT INTO inbox_sessions (session_hash, la_ods, token_hash, expires_at) VALUES ($1, $2, $3, $4)",
                &[&session_hash, &la.as_str(), &token_hash, &expires_at],
            )
            .await?;
        Ok(())
    }

    async fn inbox_session(
        &self,
        session_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<OdsCode>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT s.la_ods FROM inbox_sessions s JOIN la_tokens t ON t.token_hash = s.token_hash
                 WHERE s.session_hash = $1 AND s.expires_at > $2 AND t.la_ods = s.la_ods
                   AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)",
                &[&session_hash, &now],
            )
            .await?;
        row.map(|r| OdsCode::parse(r.get::<_, &str>(0)).map_err(corrupt))
            .transpose()
    }

    async fn end_inbox_session(&self, session_hash: &str) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM inbox_sessions WHERE session_hash = $1",
                &[&session_hash],
            )
            .await?;
        Ok(())
    }

    async fn begin_la_upload(
        &self,
        upload: &NewLaUpload,
        window_cutoff: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Option<i64>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Uploads of one LA take turns here (a lock per LA for this transaction), so the count and
        // the insert cannot interleave with another central's.
        tx.execute(
            "SELECT pg_advisory_xact_lock(72750, hashtext($1))",
            &[&upload.la.as_str()],
        )
        .await?;
        let recent: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM la_uploads
                 WHERE la_ods = $1 AND received_at > $2 AND outcome <> 'rate_limited'",
                &[&upload.la.as_str(), &window_cutoff],
            )
            .await?
            .get(0);
        let allowed = recent < i64::from(limit);
        let outcome = if allowed { "started" } else { "rate_limited" };
        let id: i64 = tx
            .query_one(
                "INSERT INTO la_uploads (la_ods, token_ref, received_at, outcome) VALUES ($1, $2, $3, $4)
                 RETURNING id",
                &[
                    &upload.la.as_str(),
                    &upload.token_ref,
                    &upload.received_at,
                    &outcome,
                ],
            )
            .await?
            .get(0);
        tx.commit().await?;
        Ok(allowed.then_some(id))
    }

    async fn finish_la_upload(&self, id: i64, o: &LaUploadOutcome) -> StoreResult<()> {
        let client = self.client().await?;
        let rows = o.rows.map(|r| i32::try_from(r).unwrap_or(i32::MAX));
        client
            .execute(
                "UPDATE la_uploads SET outcome = $2, rows = $3, detail = $4 WHERE id = $1",
                &[&id, &o.outcome, &rows, &o.detail],
            )
            .await?;
        Ok(())
    }

    async fn la_uploads(
        &self,
        la: Option<&OdsCode>,
        limit: u32,
    ) -> StoreResult<Vec<LaUploadRecord>> {
        let client = self.client().await?;
        let la = la.map(|l| l.as_str().to_string());
        let rows = client
            .query(
                "SELECT id, la_ods, token_ref, received_at, rows, outcome, detail FROM la_uploads
                 WHERE $1::TEXT IS NULL OR la_ods = $1 ORDER BY id DESC LIMIT $2",
                &[&la, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LaUploadRecord {
                    id: r.get(0),
                    la: OdsCode::parse(r.get::<_, &str>(1)).map_err(corrupt)?,
                    token_ref: r.get(2),
                    received_at: r.get(3),
                    rows: r.get::<_, Option<i32>>(4).map(|n| n.max(0) as u64),
                    outcome: r.get(5),
                    detail: r.get(6),
                })
            })
            .collect()
    }

    async fn create_fhir_client(&self, c: &FhirClientRecord, token_hash: &str) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO fhir_clients (client_id, token_hash, org_ods, org_name, setting, created_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &c.client_id,
                    &token_hash,
                    &c.org_ods.as_str(),
                    &c.org_name,
                    &c.setting.code(),
                    &c.created_at,
                    &c.revoked_at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn fhir_client_for_token(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<FhirClientRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {FHIR_CLIENT_COLUMNS} FROM fhir_clients WHERE token_hash = $1"),
                &[&token_hash],
            )
            .await?;
        row.as_ref().map(fhir_client_record).transpose()
    }

    async fn fhir_clients(&self) -> StoreResult<Vec<FhirClientRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {FHIR_CLIENT_COLUMNS} FROM fhir_clients ORDER BY created_at, client_id"
                ),
                &[],
            )
            .await?;
        rows.iter().map(fhir_client_record).collect()
    }

    async fn revoke_fhir_client(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE fhir_clients SET revoked_at = COALESCE(revoked_at, $1) WHERE client_id = $2",
                &[&now, &id],
            )
            .await?;
        Ok(n > 0)
    }

    async fn ingest_events(
        &self,
        events: Vec<EventIntake>,
        received_at: DateTime<Utc>,
    ) -> StoreResult<Vec<Ingested>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.ingest_once(&events, received_at).await {
                Err(IngestError::Pg(e)) if retryable(&e) && attempt < RETRIES => {
                    tracing::info!(
                        attempt,
                        "event intake transaction retried after a lock conflict"
                    );
                    continue;
                }
                Err(IngestError::Pg(e)) => return Err(e.into()),
                Err(IngestError::Store(e)) => return Err(e),
                Ok(out) => return Ok(out),
            }
        }
    }

    async fn unscheduled_accesses(
        &self,
        nhs: &NhsNumber,
        limit: u32,
    ) -> StoreResult<Vec<AccessEvent>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT payload_json FROM access_events WHERE nhs_number = $1 AND unscheduled
                 ORDER BY device_time DESC, event_id DESC LIMIT $2",
                &[&nhs.as_digits(), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(StoreError::from))
            .collect()
    }

    async fn record_lookup(&self, nhs: &NhsNumber, lookup: &LiveLookup) -> StoreResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO live_lookups (nhs_number, at, device_id, user_id, found)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &nhs.as_digits(),
                    &lookup.at,
                    &lookup.device_id,
                    &lookup.user_id,
                    &lookup.found,
                ],
            )
            .await?;
        Ok(())
    }

    async fn lookups_of(&self, nhs: &NhsNumber, limit: u32) -> StoreResult<Vec<LiveLookup>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT at, device_id, user_id, found, search_id FROM live_lookups WHERE nhs_number = $1
                 ORDER BY at DESC, id DESC LIMIT $2",
                &[&nhs.as_digits(), &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| LiveLookup {
                at: r.get(0),
                device_id: r.get(1),
                user_id: r.get(2),
                found: r.get(3),
                search_id: r.get(4),
            })
            .collect())
    }

    async fn flags_born_on(&self, dates: &[NaiveDate]) -> StoreResult<Vec<FlagRecord>> {
        let client = self.client().await?;
        let dates: Vec<String> = dates
            .iter()
            .map(|d| d.format("%Y-%m-%d").to_string())
            .collect();
        // The same expression as the index (migration 0005), so the index answers.
        let rows = client
            .query(
                "SELECT record_json FROM flags WHERE ((record_json::jsonb) ->> 'date_of_birth') = ANY($1)",
                &[&dates],
            )
            .await?;
        rows.iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(StoreError::from))
            .collect()
    }

    async fn record_search(&self, search: &LiveSearch, returned: &[NhsNumber]) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let query = serde_json::to_string(&search.query)?;
        let outcome = serde_json::to_value(search.outcome)?;
        let outcome = outcome.as_str().unwrap_or_default();
        let row = tx
            .query_one(
                "INSERT INTO live_searches (at, device_id, user_id, query_json, outcome, candidates)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &search.at,
                    &search.device_id,
                    &search.user_id,
                    &query,
                    &outcome,
                    &(search.candidates as i64),
                ],
            )
            .await?;
        let id: i64 = row.get(0);
        for nhs in returned {
            tx.execute(
                "INSERT INTO live_lookups (nhs_number, at, device_id, user_id, found, search_id)
                 VALUES ($1, $2, $3, $4, TRUE, $5)",
                &[
                    &nhs.as_digits(),
                    &search.at,
                    &search.device_id,
                    &search.user_id,
                    &id,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn searches(&self, limit: u32) -> StoreResult<Vec<LiveSearch>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, at, device_id, user_id, query_json, outcome, candidates FROM live_searches
                 ORDER BY at DESC, id DESC LIMIT $1",
                &[&i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LiveSearch {
                    id: Some(r.get(0)),
                    at: r.get(1),
                    device_id: r.get(2),
                    user_id: r.get(3),
                    query: serde_json::from_str(r.get::<_, &str>(4))?,
                    outcome: serde_json::from_value(serde_json::Value::String(
                        r.get::<_, String>(5),
                    ))?,
                    candidates: r.get::<_, i64>(6) as usize,
                })
            })
            .collect()
    }

    async fn event_count(&self) -> StoreResult<u64> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT COUNT(*) FROM access_events", &[])
            .await?
            .get::<_, i64>(0) as u64)
    }

    async fn notification_page(
        &self,
        la: &OdsCode,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<Notification>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT payload_json FROM notifications WHERE la_ods = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&la.as_str(), &(after as i64), &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(StoreError::from))
            .collect()
    }

    async fn notification_count(&self) -> StoreResult<u64> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT COUNT(*) FROM notifications", &[])
            .await?
            .get::<_, i64>(0) as u64)
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<PendingDelivery>> {
        let client = self.client().await?;
        let claim = Uuid::new_v4();
        // Rows another instance is claiming at this moment are skipped, not waited for; rows it
        // claimed earlier are skipped until their claim lapses.
        let rows = client
            .query(
                "WITH due AS (
                   SELECT n.la_ods, n.seq, l.webhook_url
                   FROM notifications n JOIN local_authorities l ON l.ods = n.la_ods
                   WHERE n.delivery_state = 'pending' AND l.webhook_url IS NOT NULL
                     AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= $1)
                     AND (n.claimed_until IS NULL OR n.claimed_until <= $1)
                   ORDER BY n.created_at, n.la_ods, n.seq LIMIT $2
                   FOR UPDATE OF n SKIP LOCKED)
                 UPDATE notifications n SET claim_id = $3, claimed_until = $4
                 FROM due WHERE n.la_ods = due.la_ods AND n.seq = due.seq
                 RETURNING n.la_ods, n.seq, n.attempts, due.webhook_url, n.payload_json, n.created_at",
                &[&now, &i64::from(limit), &claim, &claim_until],
            )
            .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok((
                    r.get::<_, DateTime<Utc>>(5),
                    PendingDelivery {
                        la: OdsCode::parse(r.get::<_, &str>(0)).map_err(corrupt)?,
                        seq: r.get::<_, i64>(1) as u64,
                        attempts: r.get::<_, i32>(2) as u32,
                        webhook_url: r.get(3),
                        notification: serde_json::from_str(r.get::<_, &str>(4))?,
                        claim,
                        claimed_until: claim_until,
                    },
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        out.sort_by(|a, b| (a.0, &a.1.la, a.1.seq).cmp(&(b.0, &b.1.la, b.1.seq)));
        Ok(out.into_iter().map(|(_, d)| d).collect())
    }

    async fn record_delivery(
        &self,
        delivery: &PendingDelivery,
        outcome: DeliveryOutcome,
    ) -> StoreResult<bool> {
        let client = self.client().await?;
        let (state, attempts, next, delivered, error): (
            &str,
            Option<i32>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            Option<String>,
        ) = match outcome {
            DeliveryOutcome::Delivered { at } => ("delivered", None, None, Some(at), None),
            DeliveryOutcome::Retry {
                attempts,
                next_attempt_at,
                error,
            } => (
                "pending",
                Some(attempts as i32),
                Some(next_attempt_at),
                None,
                Some(error),
            ),
            DeliveryOutcome::GaveUp { attempts, error } => {
                ("failed", Some(attempts as i32), None, None, Some(error))
            }
        };
        let n = client
            .execute(
                "UPDATE notifications SET delivery_state = $1, attempts = COALESCE($2, attempts + 1),
                   next_attempt_at = $3, delivered_at = $4, last_error = $5,
                   claim_id = NULL, claimed_until = NULL
                 WHERE la_ods = $6 AND seq = $7 AND claim_id = $8 AND delivery_state = 'pending'",
                &[
                    &state,
                    &attempts,
                    &next,
                    &delivered,
                    &error,
                    &delivery.la.as_str(),
                    &(delivery.seq as i64),
                    &delivery.claim,
                ],
            )
            .await?;
        Ok(n > 0)
    }

    async fn delivery_backlog(&self) -> StoreResult<DeliveryBacklog> {
        let client = self.client().await?;
        let r = client
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE n.delivery_state = 'pending'),
                        COUNT(*) FILTER (WHERE n.delivery_state = 'failed'),
                        MIN(n.created_at) FILTER (WHERE n.delivery_state = 'pending')
                 FROM notifications n JOIN local_authorities l ON l.ods = n.la_ods
                 WHERE n.delivery_state IN ('pending', 'failed') AND l.webhook_url IS NOT NULL",
                &[],
            )
            .await?;
        Ok(DeliveryBacklog {
            pending: r.get::<_, i64>(0) as u64,
            failed: r.get::<_, i64>(1) as u64,
            oldest_pending: r.get(2),
        })
    }

    async fn feed_heads(&self) -> StoreResult<Vec<(Region, u64)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT r.name, COALESCE((SELECT MAX(f.seq) FROM region_feed f WHERE f.region = r.name), 0)
                 FROM regions r ORDER BY r.name",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    Region::parse(r.get::<_, &str>(0)).map_err(corrupt)?,
                    r.get::<_, i64>(1) as u64,
                ))
            })
            .collect()
    }

    async fn missing_migrations(&self) -> StoreResult<Vec<&'static str>> {
        let client = self.client().await?;
        let applied: HashSet<String> = client
            .query("SELECT name FROM schema_migrations", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(POSTGRES
            .iter()
            .map(|m| m.name)
            .filter(|n| !applied.contains(*n))
            .collect())
    }

    async fn delivery_state(&self, event_id: Uuid) -> StoreResult<Option<(String, u32)>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT delivery_state, attempts FROM notifications WHERE event_id = $1 ORDER BY la_ods LIMIT 1",
                &[&event_id],
            )
            .await?;
        Ok(row.map(|r| (r.get(0), r.get::<_, i32>(1) as u32)))
    }
}

enum IngestError {
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for IngestError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Pg(e)
    }
}

impl From<StoreError> for IngestError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<serde_json::Error> for IngestError {
    fn from(e: serde_json::Error) -> Self {
        Self::Store(e.into())
    }
}

impl PostgresStore {
    /// One attempt at storing a batch: events first in id order, then notifications LA by LA.
    async fn ingest_once(
        &self,
        events: &[EventIntake],
        received_at: DateTime<Utc>,
    ) -> Result<Vec<Ingested>, IngestError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // One statement for the whole batch (a round trip per event made concurrent batches queue),
        // rows in event-id order so overlapping batches take the unique index's locks in one order.
        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_by_key(|i| events[*i].event.id);
        let mut ids = Vec::with_capacity(order.len());
        let mut devices = Vec::with_capacity(order.len());
        let mut seqs = Vec::with_capacity(order.len());
        let mut times = Vec::with_capacity(order.len());
        let mut people = Vec::with_capacity(order.len());
        let mut users = Vec::with_capacity(order.len());
        let mut unscheduled = Vec::with_capacity(order.len());
        let mut notifies = Vec::with_capacity(order.len());
        let mut payloads = Vec::with_capacity(order.len());
        for &i in &order {
            let e = &events[i].event;
            ids.push(e.id);
            devices.push(e.device_id);
            seqs.push(e.device_seq as i64);
            times.push(e.device_time);
            people.push(e.nhs_number.as_digits());
            users.push(e.accessor.user_id.as_str());
            unscheduled.push(e.accessor.setting.is_unscheduled());
            notifies.push(e.notifies);
            payloads.push(serde_json::to_string(e)?);
        }
        let stored: HashSet<Uuid> = tx
            .query(
                "INSERT INTO access_events (event_id, device_id, device_seq, device_time, received_at,
                   nhs_number, user_id, unscheduled, notifies, payload_json)
                 SELECT e, d, s, t, $5, n, u, us, nt, p
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::timestamptz[], $6::text[],
                             $7::text[], $8::bool[], $9::bool[], $10::text[])
                      AS b(e, d, s, t, n, u, us, nt, p)
                 ON CONFLICT (event_id) DO NOTHING
                 RETURNING event_id",
                &[
                    &ids,
                    &devices,
                    &seqs,
                    &times,
                    &received_at,
                    &people,
                    &users,
                    &unscheduled,
                    &notifies,
                    &payloads,
                ],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut out = vec![Ingested::AlreadyStored; events.len()];
        let mut notifying = Vec::new();
        for i in order {
            if stored.contains(&events[i].event.id) {
                out[i] = Ingested::Stored;
                if !events[i].notifications.is_empty() {
                    notifying.push(i);
                }
            }
        }
        // The notifications the service decided on, grouped by LA in code order.
        let mut by_la: BTreeMap<String, Vec<(usize, &Notification)>> = BTreeMap::new();
        for i in notifying {
            for (la, n) in &events[i].notifications {
                by_la.entry(la.to_string()).or_default().push((i, n));
            }
        }
        if !by_la.is_empty() {
            // The LA rows are locked in ODS order by one statement (concurrent batches never
            // deadlock), then every LA's numbers are taken by one more and every notification
            // written by a third: the locks are held for three round trips and the commit, not two
            // round trips per LA.
            let las: Vec<&str> = by_la.keys().map(String::as_str).collect();
            let counts: Vec<i64> = by_la.values().map(|items| items.len() as i64).collect();
            tx.execute(
                "SELECT 1 FROM local_authorities WHERE ods = ANY($1) ORDER BY ods FOR UPDATE",
                &[&las],
            )
            .await?;
            let last: HashMap<String, i64> = tx
                .query(
                    "UPDATE local_authorities AS l SET notify_seq = l.notify_seq + c.n
                     FROM UNNEST($1::text[], $2::bigint[]) AS c(ods, n) WHERE l.ods = c.ods
                     RETURNING l.ods, l.notify_seq",
                    &[&las, &counts],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let mut la_codes = Vec::new();
            let mut seqs = Vec::new();
            let mut ids = Vec::new();
            let mut payloads = Vec::new();
            for (la, items) in by_la {
                let Some(last) = last.get(&la) else {
                    return Err(IngestError::Store(StoreError::Corrupt(format!(
                        "a notification names local authority {la}, which is not held"
                    ))));
                };
                let first = last - items.len() as i64 + 1;
                for (k, (i, n)) in items.into_iter().enumerate() {
                    let seq = first + k as i64;
                    let n = Notification {
                        seq: seq as u64,
                        ..n.clone()
                    };
                    la_codes.push(la.clone());
                    seqs.push(seq);
                    ids.push(events[i].event.id);
                    payloads.push(serde_json::to_string(&n)?);
                }
            }
            tx.execute(
                "INSERT INTO notifications (la_ods, seq, event_id, payload_json, created_at)
                 SELECT l, s, e, p, $5
                 FROM UNNEST($1::text[], $2::bigint[], $3::uuid[], $4::text[]) AS t(l, s, e, p)",
                &[&la_codes, &seqs, &ids, &payloads, &received_at],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}
