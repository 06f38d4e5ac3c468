//! Test harness: a central on a random loopback port over SQLite (a temporary file) or PostgreSQL
//! (a schema made for the test and dropped after), reached over real HTTP with reqwest, and test
//! devices that enrol, authenticate, pull and send sealed events as a real device does.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::Utc;
use cpis_central::store::{PostgresStore, SqliteStore, Store};
use cpis_central::{spawn_with_store, Central, CentralConfig, RunningCentral};
use cpis_core::crypto::hazmat;
use cpis_core::vault::FeedKey;
use cpis_core::wire::{
    self, ChallengeRequest, ChallengeResponse, EnrolRequest, EnrolResponse, EventBatch,
    EventBatchResult, FeedChange, FeedPage, LoginRequest, LoginResponse, SealedEvent, SignedPage,
    TokenRequest, TokenResponse,
};
use cpis_core::{
    AccessEvent, Accessor, Activity, CareSetting, FlagRecord, LocalAuthority, NhsNumber, OdsCode,
    Region,
};
use serde::Serialize;
use uuid::Uuid;
use zeroize::Zeroizing;

/// The PIN every test user is given.
pub const TEST_PIN: &str = "2468";

pub const HEADER: &str =
    "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_url() -> String {
    std::env::var("CPIS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A PostgreSQL schema that exists for one test; dropped on drop, even when the test panics.
pub struct PgSchema {
    url: String,
    pub name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop cannot await; a short-lived runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Opens a fresh store of the backend, or `None` (having said so loudly) when PostgreSQL is not
/// reachable and `CPIS_REQUIRE_POSTGRES=1` is not set.
pub async fn fresh_store(
    backend: Backend,
) -> Option<(Arc<dyn Store>, tempfile::TempDir, Option<PgSchema>)> {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Sqlite => {
            let store = SqliteStore::open(dir.path().join("central.sqlite"))
                .await
                .unwrap();
            Some((Arc::new(store), dir, None))
        }
        Backend::Postgres => {
            let url = postgres_url();
            let reachable = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tokio_postgres::connect(&url, tokio_postgres::NoTls),
            )
            .await;
            let (client, conn) = match reachable {
                Ok(Ok(c)) => c,
                other => {
                    let why = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".into(),
                    };
                    if std::env::var("CPIS_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                        panic!(
                            "PostgreSQL not reachable at {url} ({why}) and CPIS_REQUIRE_POSTGRES=1"
                        );
                    }
                    eprintln!("SKIPPED: PostgreSQL not reachable at {url} ({why}); set CPIS_TEST_POSTGRES_URL or start it");
                    return None;
                }
            };
            tokio::spawn(conn);
            let name = format!(
                "cpis_test_{}",
                hex::encode(&hazmat::random_bytes::<6>()[..])
            );
            client
                .batch_execute(&format!("CREATE SCHEMA {name}"))
                .await
                .unwrap();
            let schema = PgSchema {
                url: url.clone(),
                name: name.clone(),
            };
            let store = PostgresStore::connect(&url, Some(&name)).await.unwrap();
            Some((Arc::new(store), dir, Some(schema)))
        }
    }
}

pub struct TestCentral {
    pub running: Option<RunningCentral>,
    pub store: Arc<dyn Store>,
    pub http: reqwest::Client,
    pub url: String,
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    _pg: Option<PgSchema>,
}

impl TestCentral {
    pub async fn start(backend: Backend) -> Option<Self> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("CPIS_LOG")
                    .unwrap_or_else(|_| "off".into()),
            )
            .with_test_writer()
            .try_init();
        let (store, dir, pg) = fresh_store(backend).await?;
        let mut config = CentralConfig::new("unused");
        config.webhook_interval = std::time::Duration::from_millis(100);
        config.webhook_base_delay = std::time::Duration::from_millis(50);
        let running = spawn_with_store(store.clone(), config).await.unwrap();
        let url = running.url();
        Some(Self {
            running: Some(running),
            store,
            // No idle connections kept: these tests restart the central on the same port and cut
            // oversized uploads short, and a pooled connection to the old one fails the next request.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            url,
            backend,
            dir,
            _pg: pg,
        })
    }

    /// The PostgreSQL schema this test's central uses (None on SQLite).
    pub fn schema_name(&self) -> Option<String> {
        self._pg.as_ref().map(|s| s.name.clone())
    }

    pub fn central(&self) -> &Central {
        &self.running.as_ref().expect("running").central
    }

    /// Stops the central and starts it again on the same port over the same database.
    pub async fn restart(&mut self) {
        let running = self.running.take().expect("running");
        let addr = running.addr;
        running.shutdown().await.unwrap();
        let config = CentralConfig::new("unused").listen(addr);
        self.running = Some(spawn_with_store(self.store.clone(), config).await.unwrap());
    }

    pub async fn add_la(&self, ods: &str, region: &str) -> LocalAuthority {
        let la = la(ods, region);
        self.central()
            .upsert_la(&la, cpis_central::store::WebhookChange::Keep)
            .await
            .unwrap();
        la
    }

    /// Registers a user at organisation `org` with a fixed synthetic PIN.
    pub async fn add_user(&self, id: &str, org: &str, activity: Activity) {
        let role = match activity {
            Activity::B0107 => "Paramedic",
            Activity::B0170 => "General practitioner",
        };
        self.central()
            .add_user(
                id,
                "Synthetic Clinician",
                role,
                activity,
                &OdsCode::parse(org).unwrap(),
                TEST_PIN,
            )
            .await
            .unwrap();
    }

    pub async fn la_token(&self, ods: &str) -> String {
        self.central()
            .create_la_token(&OdsCode::parse(ods).unwrap())
            .await
            .unwrap()
    }

    pub async fn enrolment_code(&self, region: &str, org: &str, setting: CareSetting) -> String {
        self.central()
            .create_enrolment(
                &Region::parse(region).unwrap(),
                &OdsCode::parse(org).unwrap(),
                &format!("Synthetic Trust {org}"),
                setting,
                chrono::Duration::hours(24),
            )
            .await
            .unwrap()
            .code
    }

    pub async fn device(&self, region: &str, org: &str, setting: CareSetting) -> TestDevice {
        let code = self.enrolment_code(region, org, setting).await;
        let mut d = TestDevice::enrol(&self.http, &self.url, &code)
            .await
            .expect("enrols");
        d.authenticate(&self.http, &self.url)
            .await
            .expect("authenticates");
        // Tests of the feed itself read pages without a user: they hold the region's key as a
        // signed-in device would.
        d.feed_key = Some(
            self.central()
                .keys
                .feed_key(&Region::parse(region).unwrap()),
        );
        d
    }

    pub async fn upload(
        &self,
        la: &str,
        token: &str,
        csv: &str,
        allow_large_removal: bool,
    ) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/v1/la/{la}/upload?allow_large_removal={allow_large_removal}",
                self.url
            ))
            .bearer_auth(token)
            .header("content-type", "text/csv")
            .body(csv.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap();
        }
    }
}

pub fn la(ods: &str, region: &str) -> LocalAuthority {
    LocalAuthority {
        ods: OdsCode::parse(ods).unwrap(),
        name: format!("{ods} Synthetic Borough Council"),
        emergency_phone: "0300 555 0100".into(),
        office_phone: Some("0300 555 0101".into()),
        region: Region::parse(region).unwrap(),
    }
}

pub fn nhs(i: u32) -> NhsNumber {
    NhsNumber::test_range(i)
}

/// One CSV row: an open plan of `kind` started in 2025.
pub fn row(i: u32, kind: &str) -> String {
    format!(
        "{},Testfamily{i},Sam,2019-02-03,{kind},2025-01-01,,,,\n",
        nhs(i).as_digits()
    )
}

/// Adds `la` in `region` with an LA token, and uploads `people` as its list. Returns the token.
pub async fn setup_register(
    c: &TestCentral,
    la: &str,
    region: &str,
    people: std::ops::Range<u32>,
) -> String {
    c.add_la(la, region).await;
    let token = c.la_token(la).await;
    let r = c.upload(la, &token, &csv_of(people), false).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    token
}

pub fn csv_of(people: impl IntoIterator<Item = u32>) -> String {
    let mut csv = HEADER.to_string();
    for i in people {
        csv.push_str(&row(i, "CPPI"));
    }
    csv
}

/// A device as the central sees one: its Ed25519 key, its token, and the keys pinned at enrolment.
pub struct TestDevice {
    pub id: Uuid,
    pub key: Zeroizing<Vec<u8>>,
    pub token: String,
    pub enrolment: EnrolResponse,
    pub central_signing: Vec<u8>,
    pub central_sealing: [u8; 32],
    pub seq: u64,
    pub url: String,
    pub http: reqwest::Client,
    /// The user session of the last sign-in (`sign_in`), sent on every call when present.
    pub user_session: Option<String>,
    /// The region's feed key: from a sign-in, or handed over by `TestCentral::device` for tests of
    /// the feed itself.
    pub feed_key: Option<FeedKey>,
}

impl TestDevice {
    /// Signs `user` in with the test PIN and keeps the session and the feed key it returns.
    pub async fn sign_in(&mut self, user: &str) -> LoginResponse {
        self.sign_in_with(user, TEST_PIN).await
    }

    pub async fn sign_in_with(&mut self, user: &str, pin: &str) -> LoginResponse {
        let r = self
            .post(
                "/v1/login",
                &LoginRequest {
                    user_id: user.into(),
                    pin: pin.into(),
                },
            )
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let login: LoginResponse = r.json().await.unwrap();
        self.user_session = Some(login.user_session.token.clone());
        self.feed_key =
            Some(FeedKey::from_base64(&login.feed_key.id, &login.feed_key.key).unwrap());
        login
    }

    pub async fn enrol(
        http: &reqwest::Client,
        url: &str,
        code: &str,
    ) -> Result<Self, (u16, wire::ApiError)> {
        let key = hazmat::ed25519_generate();
        let public = hazmat::ed25519_public(&key).unwrap();
        let r = http
            .post(format!("{url}/v1/enrol"))
            .json(&EnrolRequest {
                code: code.into(),
                device_public_key: B64.encode(public),
            })
            .send()
            .await
            .unwrap();
        if !r.status().is_success() {
            let status = r.status().as_u16();
            return Err((status, r.json().await.expect("a JSON error")));
        }
        let enrolment: EnrolResponse = r.json().await.unwrap();
        Ok(Self {
            id: enrolment.device_id,
            key,
            token: String::new(),
            central_signing: B64.decode(&enrolment.central_signing_key).unwrap(),
            central_sealing: B64
                .decode(&enrolment.central_sealing_key)
                .unwrap()
                .try_into()
                .unwrap(),
            enrolment,
            seq: 0,
            url: url.to_string(),
            http: http.clone(),
            user_session: None,
            feed_key: None,
        })
    }

    pub async fn challenge(&self) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/auth/challenge", self.url))
            .json(&ChallengeRequest { device_id: self.id })
            .send()
            .await
            .unwrap()
    }

    pub async fn authenticate(
        &mut self,
        http: &reqwest::Client,
        url: &str,
    ) -> Result<(), (u16, wire::ApiError)> {
        let r = self.challenge().await;
        if !r.status().is_success() {
            let status = r.status().as_u16();
            return Err((status, r.json().await.unwrap()));
        }
        let ChallengeResponse { challenge } = r.json().await.unwrap();
        let signature =
            hazmat::ed25519_sign(&self.key, &wire::auth_message(self.id, &challenge)).unwrap();
        let r = http
            .post(format!("{url}/v1/auth/token"))
            .json(&TokenRequest {
                device_id: self.id,
                challenge,
                signature: B64.encode(signature),
            })
            .send()
            .await
            .unwrap();
        if !r.status().is_success() {
            let status = r.status().as_u16();
            return Err((status, r.json().await.unwrap()));
        }
        let t: TokenResponse = r.json().await.unwrap();
        self.token = t.token;
        Ok(())
    }

    pub fn accessor(&self, user: &str, activity: Activity) -> Accessor {
        Accessor {
            user_id: user.into(),
            role: "Paramedic".into(),
            activity,
            org_ods: self.enrolment.org_ods.clone(),
            org_name: self.enrolment.org_name.clone(),
            setting: self.enrolment.setting,
        }
    }

    /// A new access event by `user` (B0107) opening `nhs`'s alert on this device.
    pub fn event(&mut self, nhs: NhsNumber, user: &str) -> AccessEvent {
        self.seq += 1;
        AccessEvent::new(
            self.id,
            self.seq,
            Utc::now(),
            self.seq * 10,
            nhs,
            self.accessor(user, Activity::B0107),
            None,
        )
    }

    pub fn seal(&self, event: &AccessEvent) -> SealedEvent {
        SealedEvent::seal(event, &self.central_sealing)
    }

    pub async fn post<T: Serialize>(&self, path: &str, body: &T) -> reqwest::Response {
        self.post_text(path, &serde_json::to_string(body).unwrap())
            .await
    }

    /// A POST whose body is this text, sent as JSON whether or not it is.
    pub async fn post_text(&self, path: &str, body: &str) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.url));
        if let Some(session) = &self.user_session {
            request = request.header(wire::USER_SESSION_HEADER, session);
        }
        request
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// POSTs these sealed envelopes as one batch to `/v1/events` and reads the per-event results.
    pub async fn deliver_sealed(&self, events: Vec<SealedEvent>) -> EventBatchResult {
        let r = self.post("/v1/events", &EventBatch { events }).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// Seals these events to the central and delivers them as one batch.
    pub async fn deliver(&self, events: &[&AccessEvent]) -> EventBatchResult {
        self.deliver_sealed(events.iter().map(|e| self.seal(e)).collect())
            .await
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.url));
        if let Some(session) = &self.user_session {
            request = request.header(wire::USER_SESSION_HEADER, session);
        }
        request.bearer_auth(&self.token).send().await.unwrap()
    }

    /// A verified feed page.
    pub async fn page(&self, after: u64, limit: u32) -> FeedPage {
        let r = self
            .get(&format!("/v1/feed?after={after}&limit={limit}"))
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let signed: SignedPage = r.json().await.unwrap();
        let feed_key = self
            .feed_key
            .as_ref()
            .expect("a feed key: sign a user in first");
        signed
            .open(&self.central_signing, feed_key)
            .expect("the page verifies against the pinned key and opens with the feed key")
    }

    /// Pulls the whole feed from `after`, page by page, applying ops as a device cache does.
    pub async fn pull(&self, cache: &mut Cache, limit: u32) -> usize {
        let mut pages = 0;
        loop {
            let page = self.page(cache.cursor, limit).await;
            assert_eq!(page.after, cache.cursor);
            assert_eq!(page.region, self.enrolment.region);
            let mut last = page.after;
            for op in &page.ops {
                assert!(op.seq > last, "ops in seq order");
                last = op.seq;
                match &op.change {
                    FeedChange::PutFlag { record } => {
                        cache
                            .flags
                            .insert(record.nhs_number.as_digits(), record.clone());
                    }
                    FeedChange::RemoveFlag { nhs_number } => {
                        cache.flags.remove(&nhs_number.as_digits());
                    }
                    FeedChange::PutLa { la } => {
                        cache.las.insert(la.ods.to_string(), la.clone());
                    }
                    FeedChange::RemoveLa { ods } => {
                        cache.las.remove(ods.as_str());
                    }
                }
            }
            assert_eq!(page.last, last);
            cache.cursor = page.last;
            pages += 1;
            if !page.has_more {
                assert_eq!(page.last, page.head);
                return pages;
            }
        }
    }
}

/// What a device holds after applying a region's feed.
#[derive(Default, Debug)]
pub struct Cache {
    pub cursor: u64,
    pub flags: BTreeMap<String, FlagRecord>,
    pub las: BTreeMap<String, LocalAuthority>,
}

impl Cache {
    pub fn digest(&self) -> String {
        let flags: Vec<FlagRecord> = self.flags.values().cloned().collect();
        let las: Vec<LocalAuthority> = self.las.values().cloned().collect();
        cpis_central::digest::region_digest(&flags, &las)
    }
}

/// Reads an `ApiError` response, checking the status.
pub async fn refused(r: reqwest::Response, status: u16) -> wire::ApiError {
    assert_eq!(r.status().as_u16(), status, "unexpected status");
    r.json().await.expect("refusals are JSON ApiErrors")
}

/// Declares each test function (taking a `TestCentral`) once per store: `sqlite::name` and
/// `postgres::name`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(c) = $crate::common::TestCentral::start($crate::common::Backend::Sqlite).await {
                        super::$name(c).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(c) = $crate::common::TestCentral::start($crate::common::Backend::Postgres).await {
                        super::$name(c).await;
                    }
                }
            )*
        }
    };
}
