//! The sync fault suite, over real HTTP on loopback: a `cpis central` process, a fault-injecting proxy,
//! and the device engine. Each fault — the central killed mid-page and mid-batch, connections cut,
//! replies delayed past the timeout, HTTP 500 and 503, a truncated body, a tampered page, a replayed
//! old page, a duplicated acknowledgement, the device clock two days fast and two days slow — is
//! followed by a clean sync, after which the device's cache must equal the central's region (digests)
//! and every access event must have reached the LA exactly once (by id).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use cpis_core::NhsNumber;
use cpis_device::views::{CheckOutcome, NotificationState};
use cpis_device::{CheckRequest, Device, DeviceConfig};
use cpis_tests::proxy::{Fault, FaultProxy};
use cpis_tests::CentralProcess;
use uuid::Uuid;

const HEADER: &str = "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date\n";
const LA: &str = "L904";
const PIN: &str = "5678";
/// Every device here: an ambulance service in the fault region.
const ENROL: &[&str] = &[
    "--region",
    "region-f",
    "--org",
    "RXF",
    "--setting",
    "ambulance",
];

fn nhs(i: u32) -> String {
    NhsNumber::test_range(500_000 + i).as_digits()
}

struct Fixture {
    tmp: tempfile::TempDir,
    central: CentralProcess,
    proxy: FaultProxy,
    people: u32,
    version: u32,
    events: Vec<Uuid>,
}

impl Fixture {
    /// Uploads the LA's full list again: `people` people, names marked with `version` so every
    /// upload changes some records and adds new ones.
    fn upload(&mut self, add: u32) {
        self.people += add;
        self.version += 1;
        let mut csv = String::from(HEADER);
        for i in 0..self.people {
            let given = if i % 7 == self.version % 7 {
                format!("Given{i}v{}", self.version)
            } else {
                format!("Given{i}")
            };
            csv.push_str(&format!(
                "{},Family{i},{given},2019-02-03,LACI,2024-05-06,,,,\n",
                nhs(i)
            ));
        }
        let file = self.tmp.path().join(format!("upload-{}.csv", self.version));
        std::fs::write(&file, csv).unwrap();
        self.central
            .admin(&["import", "--la", LA, file.to_str().unwrap()], &[]);
    }

    fn central_digest(&self) -> String {
        self.central
            .admin(&["region-digest", "--region", "region-f"], &[])
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string()
    }

    fn notification_counts(&self) -> HashMap<String, usize> {
        let list = self.central.notifications(LA);
        let mut counts = HashMap::new();
        for n in list {
            *counts
                .entry(n["event_id"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        counts
    }

    /// Opens alerts while live checks fail, so the events wait in the outbox for the next push.
    async fn queue_events(&mut self, device: &Device, n: u32) {
        self.proxy.inject("/v1/check", Fault::Status(503), n * 2);
        for k in 0..n {
            let who = nhs((self.version * 13 + k * 31) % self.people);
            let view = device
                .check(
                    &who,
                    CheckRequest {
                        open: true,
                        ..Default::default()
                    },
                )
                .await;
            assert_eq!(view.outcome, CheckOutcome::RecordFound, "{view:?}");
            assert_eq!(view.notification, Some(NotificationState::Queued));
            self.events
                .push(view.event_id.expect("a notifying open queues an event"));
        }
        self.proxy.clear();
    }

    /// The invariant after every fault: a clean sync makes the cache equal the central's region and
    /// every event reach the LA exactly once.
    async fn assert_converges(&self, device: &Device, scenario: &str) {
        self.proxy.clear();
        let summary = device
            .sync(&|_| {})
            .await
            .unwrap_or_else(|e| panic!("{scenario}: clean sync failed: {e}"));
        assert_eq!(summary.events_queued, 0, "{scenario}: events left queued");
        assert_eq!(
            device.cache_digest().unwrap(),
            self.central_digest(),
            "{scenario}: cache differs from the central's region"
        );
        let counts = self.notification_counts();
        for id in &self.events {
            assert_eq!(
                counts.get(&id.to_string()).copied().unwrap_or(0),
                1,
                "{scenario}: event {id} not delivered exactly once"
            );
        }
        assert_eq!(
            counts.len(),
            self.events.len(),
            "{scenario}: the LA has events the device never made"
        );
    }
}

/// Small pages and short deadlines, so faults bite mid-download and tests stay quick.
fn device_config(dir: &Path) -> DeviceConfig {
    let mut config = DeviceConfig::new(dir);
    config.page_limit = 50;
    config.request_timeout = Duration::from_millis(1500);
    config.live_check_deadline = Duration::from_millis(800);
    config
}

async fn setup(dir: &Path) -> (Fixture, Device) {
    let tmp = tempfile::tempdir_in(dir).unwrap();
    let mut central = CentralProcess::sqlite_in(tmp.path());
    central.add_la(LA, "Faultshire Council", "0300 555 0490", None, "region-f");
    central.add_user("fault.user", "RXF", "B0107", "Paramedic", PIN);
    let code = central.enrolment_code(ENROL);
    central.start();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", central.port).parse().unwrap()).await;
    let mut fixture = Fixture {
        tmp,
        central,
        proxy,
        people: 0,
        version: 0,
        events: vec![],
    };
    fixture.upload(400);
    let device = Device::open(device_config(&fixture.tmp.path().join("device"))).unwrap();
    device.enrol(&fixture.proxy.url(), &code).await.unwrap();
    device.sign_in("fault.user", PIN).await.unwrap();
    fixture.assert_converges(&device, "first download").await;
    (fixture, device)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_ends_with_the_cache_equal_to_the_region_and_events_exactly_once() {
    let base = tempfile::tempdir().unwrap();
    let (mut f, mut device) = setup(base.path()).await;

    // The central killed mid-page: the page request is held, the central dies, then comes back.
    f.upload(200);
    f.queue_events(&device, 3).await;
    f.proxy
        .inject("/v1/feed", Fault::Delay(Duration::from_millis(600)), 1);
    let pid = f.central.pid().unwrap().to_string();
    let killer = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
    });
    let mid = device.sync(&|_| {}).await;
    killer.await.unwrap();
    f.central.kill();
    assert!(mid.is_err() || device.store().cursor().unwrap() > 0);
    f.central.start();
    f.assert_converges(&device, "central killed mid-page").await;

    // The central killed mid-batch: the batch reaches the central, which dies before answering.
    f.upload(20);
    f.queue_events(&device, 4).await;
    f.proxy.inject("/v1/events", Fault::CutAfterForward, 1);
    let _ = device.sync(&|_| {}).await;
    f.central.kill();
    f.central.start();
    f.assert_converges(&device, "central killed mid-batch")
        .await;

    // Connections cut before the central sees the request.
    f.upload(20);
    f.queue_events(&device, 2).await;
    f.proxy.inject("/v1/feed", Fault::CutBeforeForward, 2);
    f.proxy.inject("/v1/events", Fault::CutBeforeForward, 2);
    assert!(device.sync(&|_| {}).await.is_err());
    f.assert_converges(&device, "connections cut").await;

    // Replies delayed past the device's timeout (the central acted on them).
    f.upload(20);
    f.queue_events(&device, 2).await;
    f.proxy
        .inject("/v1/events", Fault::Delay(Duration::from_millis(2500)), 1);
    assert!(
        device.sync(&|_| {}).await.is_err(),
        "a reply past the timeout is a failure"
    );
    f.proxy
        .inject("/v1/feed", Fault::Delay(Duration::from_millis(2500)), 1);
    assert!(device.sync(&|_| {}).await.is_err());
    f.assert_converges(&device, "replies delayed past the timeout")
        .await;

    // HTTP 500 after the central stored the batch, and 503 on the feed.
    f.upload(20);
    f.queue_events(&device, 3).await;
    f.proxy
        .inject("/v1/events", Fault::StatusAfterForward(500), 1);
    f.proxy.inject("/v1/feed", Fault::Status(503), 1);
    assert!(device.sync(&|_| {}).await.is_err());
    assert!(
        device.status().queued_events > 0,
        "a 500 must not count as delivered"
    );
    f.assert_converges(&device, "HTTP 500 and 503").await;

    // A truncated body.
    f.upload(20);
    f.proxy.inject("/v1/feed", Fault::Truncate, 1);
    assert!(device.sync(&|_| {}).await.is_err());
    f.assert_converges(&device, "truncated body").await;

    // A tampered page is rejected whole: nothing already cached is lost or changed.
    let before = device.cache_digest().unwrap();
    let cursor = device.store().cursor().unwrap();
    f.upload(20);
    f.proxy.inject("/v1/feed", Fault::TamperPage, 1);
    let err = device
        .sync(&|_| {})
        .await
        .expect_err("a tampered page must be refused");
    assert_eq!(err.view().code, "untrusted", "{err}");
    assert_eq!(device.cache_digest().unwrap(), before);
    assert_eq!(device.store().cursor().unwrap(), cursor);
    f.assert_converges(&device, "tampered page").await;

    // A replayed old page (the very first page of the feed) is refused by cursor continuity.
    f.upload(20);
    let before = device.cache_digest().unwrap();
    f.proxy.inject("/v1/feed", Fault::ReplayFirstPage, 1);
    let err = device
        .sync(&|_| {})
        .await
        .expect_err("a replayed page must be refused");
    assert_eq!(err.view().code, "untrusted", "{err}");
    assert_eq!(device.cache_digest().unwrap(), before);
    f.assert_converges(&device, "replayed old page").await;

    // A replayed empty page at the device's own cursor passes continuity, but it carries the
    // central's time of then, so it must not make the copy look fresher than it is.
    device.sync(&|_| {}).await.unwrap();
    let as_of = device.status().last_sync_at.expect("synced");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.upload(20);
    f.proxy.inject("/v1/feed", Fault::ReplayLatestPage, 1);
    let replayed = device.sync(&|_| {}).await.unwrap();
    assert_eq!(replayed.records, 0);
    // (The first stamp is the earlier of the page's time and the device's clock at the start of
    // that sync, so the two may differ by the few milliseconds the page took; never by the second
    // slept since.)
    let after = device.status().last_sync_at.expect("synced");
    assert!(
        after - as_of < chrono::Duration::milliseconds(500),
        "a replayed page must not freshen the data age: {as_of} then {after}"
    );
    f.assert_converges(&device, "replayed empty page at the cursor")
        .await;
    assert!(device.status().last_sync_at.unwrap() > as_of);

    // A duplicated acknowledgement: the batch arrives twice; the second answer says duplicate.
    f.queue_events(&device, 3).await;
    f.proxy.inject("/v1/events", Fault::Duplicate, 1);
    device.sync(&|_| {}).await.unwrap();
    f.assert_converges(&device, "duplicated acknowledgement")
        .await;

    // The device clock two days fast, then two days slow: the LA is told the device's time of each check.
    let dir = f.tmp.path().join("device");
    for (label, offset) in [("clock two days fast", 2), ("clock two days slow", -2)] {
        drop(device);
        let mut config = device_config(&dir);
        config.clock_offset = chrono::Duration::days(offset);
        device = Device::open(config).unwrap();
        device.sign_in("fault.user", PIN).await.unwrap();
        f.upload(20);
        let first = f.events.len();
        f.queue_events(&device, 2).await;
        f.assert_converges(&device, label).await;
        let list = f.central.notifications(LA);
        for id in &f.events[first..] {
            let n = list
                .iter()
                .find(|n| n["event_id"] == id.to_string())
                .unwrap();
            let seen: chrono::DateTime<chrono::Utc> =
                n["seen_at"].as_str().unwrap().parse().unwrap();
            let skew = seen - chrono::Utc::now();
            assert!(
                (skew - chrono::Duration::days(offset)).num_minutes().abs() < 5,
                "{label}: seen_at {seen}"
            );
        }
    }
}

/// Regression: a first download cut off after its first page left the copy stamped "last updated
/// just now", so a miss on a mostly empty copy looked fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_download_cut_off_halfway_leaves_a_miss_stale_and_saying_the_copy_is_incomplete() {
    let base = tempfile::tempdir().unwrap();
    let (f, _first_device) = setup(base.path()).await;
    let code = f.central.enrolment_code(ENROL);
    let device = Device::open(device_config(&f.tmp.path().join("second-device"))).unwrap();
    device.enrol(&f.proxy.url(), &code).await.unwrap();
    device.sign_in("fault.user", PIN).await.unwrap();
    f.proxy.clear();
    f.proxy
        .inject("/v1/feed?after=50", Fault::CutBeforeForward, 100);
    assert!(device.sync(&|_| {}).await.is_err());
    let status = device.status();
    assert_eq!(status.cursor, 50, "the first page was applied");
    assert_eq!(status.last_sync_at, None);
    assert!(status.stale);

    let view = cached_miss(&f.proxy, &device).await;
    assert_eq!(view.outcome, CheckOutcome::NoRecord, "{view:?}");
    assert!(view.stale, "a miss on a half-downloaded copy is stale");
    assert!(
        view.caveats.iter().any(|c| c.contains("incomplete")),
        "{:?}",
        view.caveats
    );

    f.proxy.clear();
    device.sync(&|_| {}).await.unwrap();
    assert_eq!(device.cache_digest().unwrap(), f.central_digest());
    let view = cached_miss(&f.proxy, &device).await;
    assert_eq!(view.outcome, CheckOutcome::NoRecord);
    assert!(!view.stale);
    assert!(!view.caveats.iter().any(|c| c.contains("incomplete")));
}

/// A check of someone on no register, answered by the cache (the live check is refused).
async fn cached_miss(proxy: &FaultProxy, device: &Device) -> cpis_device::views::CheckView {
    proxy.inject("/v1/check", Fault::Status(503), 2);
    let unknown = NhsNumber::test_range(900_000 - 1).as_digits();
    let view = device.check(&unknown, CheckRequest::default()).await;
    proxy.clear();
    view
}
