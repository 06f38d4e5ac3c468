//! A check never waits for the network: in the long-running engine (shared as the app shares it,
//! with the background sync running), checks answer from the device's copy while a first download
//! crawls over a link paced like a weak mobile signal and while replies are held as in a tunnel.
//! The assertions are about the order of events and the answers, never about a time threshold.
//!
//! Also here: the one rule set for live and cached answers, one regression test per rule.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpis_core::NhsNumber;
use cpis_device::check::{CENTRAL_NO_LONGER_HOLDS, LIVE_ANSWER_REFUSED};
use cpis_device::views::{CheckOutcome, NotificationState, Source, SyncPhase};
use cpis_device::{spawn_background_sync, CheckRequest, Device, DeviceConfig};
use cpis_tests::proxy::{Fault, FaultProxy};
use cpis_tests::CentralProcess;

const HEADER: &str = "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date\n";
const LA: &str = "L907";
const PIN: &str = "3579";
const USER: &str = "crawl.user";

fn person(i: u32) -> String {
    NhsNumber::test_range(700_000 + i).as_digits()
}

fn upload(central: &CentralProcess, dir: &Path, people: impl Iterator<Item = u32>, extra: &[&str]) {
    let mut csv = String::from(HEADER);
    for i in people {
        csv.push_str(&format!(
            "{},Crawl{i},Sam,2018-03-04,CPPI,2025-01-02,,,,\n",
            person(i)
        ));
    }
    let file = dir.join("upload.csv");
    std::fs::write(&file, csv).unwrap();
    let file = file.to_str().unwrap().to_string();
    central.admin(&[&["import", "--la", LA, &file], extra].concat(), &[]);
}

struct Fixture {
    tmp: tempfile::TempDir,
    central: CentralProcess,
    proxy: FaultProxy,
}

/// A central with `people` in region-c (and one person in another region, known only to the
/// central), a proxy in front of it, and an enrolled, signed-in device reached through the proxy.
async fn setup(people: u32, page_limit: u32) -> (Fixture, Device) {
    let tmp = tempfile::tempdir().unwrap();
    let mut central = CentralProcess::sqlite_in(tmp.path());
    central.add_la(LA, "Crawl Borough", "0300 555 0707", None, "region-c");
    central.add_la(
        "L908",
        "Elsewhere Council",
        "0300 555 0808",
        None,
        "region-x",
    );
    upload(&central, tmp.path(), 0..people, &[]);
    let other = tmp.path().join("other.csv");
    std::fs::write(
        &other,
        format!(
            "{HEADER}{},Away,Robin,2017-05-06,LACI,2024-01-01,,,,\n",
            NhsNumber::test_range(790_000).as_digits()
        ),
    )
    .unwrap();
    central.admin(&["import", "--la", "L908", other.to_str().unwrap()], &[]);
    central.add_user(USER, "RXC", "B0107", "Paramedic", PIN);
    let code = central.enrolment_code(&[
        "--region",
        "region-c",
        "--org",
        "RXC",
        "--setting",
        "ambulance",
    ]);
    central.start();
    let upstream = format!("127.0.0.1:{}", central.port).parse().unwrap();
    let proxy = FaultProxy::start(upstream).await;
    let mut config = DeviceConfig::new(tmp.path().join("device"));
    config.page_limit = page_limit;
    config.request_timeout = Duration::from_secs(5);
    let device = Device::open(config).unwrap();
    device.enrol(&proxy.url(), &code).await.unwrap();
    device.sign_in(USER, PIN).await.unwrap();
    (
        Fixture {
            tmp,
            central,
            proxy,
        },
        device,
    )
}

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Page(u64),
    Done,
    Answer(&'static str, CheckOutcome, Source),
    Status,
}

fn pages_so_far(log: &Mutex<Vec<Seen>>) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Seen::Page(_)))
        .count()
}

async fn wait_for_pages(log: &Mutex<Vec<Seen>>, n: usize) {
    for _ in 0..1_200 {
        if pages_so_far(log) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the first download did not get {n} pages in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_answer_while_the_first_download_crawls_and_while_replies_are_held() {
    // 400 people in pages of 40: ten pages of about 16 kB, each taking most of a second at 20 kB/s.
    let (f, device) = setup(400, 40).await;
    let device = Arc::new(device);
    f.proxy.inject("/", Fault::Pace(20_000), u32::MAX);

    let log = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let progress_log = log.clone();
    let worker = spawn_background_sync(
        device.clone(),
        Arc::new(move |p| {
            let seen = match p.phase {
                SyncPhase::Pull => Seen::Page(p.cursor),
                SyncPhase::Done => Seen::Done,
                SyncPhase::Push => return,
            };
            progress_log.lock().unwrap().push(seen);
        }),
    );

    // Crawling: the first pages are in; a person from them is found while later pages still come.
    wait_for_pages(&log, 2).await;
    let early = device.check(&person(1), CheckRequest::default()).await;
    log.lock()
        .unwrap()
        .push(Seen::Answer("crawl", early.outcome, early.source));
    assert_eq!(early.outcome, CheckOutcome::RecordFound);
    let status = device.status();
    log.lock().unwrap().push(Seen::Status);
    assert!(status.cached_flags > 0 && status.cached_flags < 400);

    // Held: every reply from now on is held like a tunnel; the sync is stuck mid-download.
    f.proxy.clear();
    f.proxy.inject("/", Fault::Hold, u32::MAX);
    let held_from = pages_so_far(&log);
    let found = device.check(&person(2), CheckRequest::default()).await;
    log.lock()
        .unwrap()
        .push(Seen::Answer("held", found.outcome, found.source));
    let missing = device.check(&person(399), CheckRequest::default()).await;
    log.lock()
        .unwrap()
        .push(Seen::Answer("held-miss", missing.outcome, missing.source));
    let status = device.status();
    log.lock().unwrap().push(Seen::Status);

    // Answers from the copy, and a miss on the incomplete copy says so.
    assert_eq!(found.outcome, CheckOutcome::RecordFound);
    assert_eq!(found.source, Source::Cache);
    assert_eq!(missing.outcome, CheckOutcome::NoRecord);
    assert_eq!(missing.source, Source::Cache);
    assert!(missing.stale, "a miss on an incomplete copy is stale");
    assert!(
        missing.caveats.iter().any(|c| c.contains("incomplete")),
        "{:?}",
        missing.caveats
    );
    assert!(!status.online, "the held link is reported as unreachable");
    assert!(pages_so_far(&log) <= held_from + 1, "the sync is held");

    // Released: the download finishes after the checks were answered.
    f.proxy.clear();
    for _ in 0..1_200 {
        if log.lock().unwrap().contains(&Seen::Done) {
            break;
        }
        device.wake_handle().notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.abort();
    let log = log.lock().unwrap().clone();
    let at = |e: &dyn Fn(&Seen) -> bool| log.iter().position(e).expect("event seen");
    let crawl_answer = at(&|e| matches!(e, Seen::Answer("crawl", ..)));
    let held_answer = at(&|e| matches!(e, Seen::Answer("held-miss", ..)));
    let done = at(&|e| *e == Seen::Done);
    let last_page = log
        .iter()
        .rposition(|e| matches!(e, Seen::Page(_)))
        .unwrap();
    assert!(
        crawl_answer < last_page && held_answer < last_page && held_answer < done,
        "checks were answered while the download was still under way: {log:?}"
    );
    assert_eq!(device.store().flag_count().unwrap(), 400);
    drop(f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_status_do_not_wait_for_a_held_download() {
    let (f, device) = setup(200, 20).await;
    let device = Arc::new(device);
    f.proxy.inject("/v1/feed", Fault::Hold, u32::MAX);
    let syncing = {
        let device = device.clone();
        tokio::spawn(async move { device.sync(&|_| {}).await })
    };
    // The sync is now waiting on a held page; sign-in (online: the central still answers it) stops
    // the round instead of waiting behind it, and the status answers from memory.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!syncing.is_finished());
    let status = device.status();
    assert!(status.signed_in_user.is_some());
    device.sign_in(USER, PIN).await.unwrap();
    let interrupted = syncing.await.unwrap();
    assert!(
        matches!(interrupted, Err(cpis_device::DeviceError::Interrupted)),
        "{interrupted:?}"
    );
    drop(f);
}

// ---- the one rule set for live and cached answers ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_answer_about_another_nhs_number_is_refused() {
    let (f, device) = setup(20, 2_000).await;
    device.sync(&|_| {}).await.unwrap();
    // The central's reply is rewritten to be about person 2 while person 1 was asked.
    f.proxy.inject(
        "/v1/check",
        Fault::Rewrite {
            from: person(1),
            to: person(2),
        },
        10,
    );
    let view = device.check(&person(1), CheckRequest::default()).await;
    assert_eq!(view.outcome, CheckOutcome::RecordFound);
    assert_eq!(view.source, Source::Cache, "the live answer was not used");
    assert!(view.caveats.iter().any(|c| c == LIVE_ANSWER_REFUSED));
    let opened = device.open_alert(view.check_id).await.unwrap();
    assert_eq!(
        opened.nhs_number.as_deref(),
        Some(&*format_3_3_4(&person(1)))
    );
    assert_eq!(opened.person.unwrap().family_name, "Crawl1");
    let audit = device.audit_entries().unwrap();
    assert!(audit
        .iter()
        .any(|e| e.source == "cache_central_answer_refused"));
    drop(f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_central_no_record_never_hides_a_flag_the_copy_holds() {
    let (f, device) = setup(20, 2_000).await;
    device.sync(&|_| {}).await.unwrap();
    // The LA's next list gives person 3 a delete date that has passed: the central no longer holds
    // them (leaving them out would only end the plan); the device has not synced since.
    let yesterday = cpis_core::ukdate::uk_today(chrono::Utc::now()) - chrono::Duration::days(1);
    let mut csv = String::from(HEADER);
    for i in 0..20 {
        let delete = if i == 3 {
            yesterday.to_string()
        } else {
            String::new()
        };
        csv.push_str(&format!(
            "{},Crawl{i},Sam,2018-03-04,CPPI,2025-01-02,,,,{delete}\n",
            person(i)
        ));
    }
    let file = f.tmp.path().join("delete.csv");
    std::fs::write(&file, csv).unwrap();
    f.central
        .admin(&["import", "--la", LA, file.to_str().unwrap()], &[]);
    let view = device.check(&person(3), CheckRequest::default()).await;
    assert_eq!(view.outcome, CheckOutcome::RecordFound);
    assert_eq!(view.source, Source::Cache);
    assert!(view.caveats.iter().any(|c| c == CENTRAL_NO_LONGER_HOLDS));
    let audit = device.audit_entries().unwrap();
    let last = audit.last().unwrap();
    assert_eq!(last.outcome, "record_found");
    assert_eq!(last.source, "cache_kept_over_central_no_record");
    // Opening it still opens it, with the same caveat.
    let opened = device.open_alert(view.check_id).await.unwrap();
    assert!(opened.opened);
    assert!(opened.caveats.iter().any(|c| c == CENTRAL_NO_LONGER_HOLDS));
    drop(f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_an_alert_after_the_link_went_opens_the_record_the_check_showed() {
    let (mut f, device) = setup(5, 2_000).await;
    device.sync(&|_| {}).await.unwrap();
    // Someone from another region: only the central's live answer knows them.
    let away = NhsNumber::test_range(790_000).as_digits();
    let view = device.check(&away, CheckRequest::default()).await;
    assert_eq!(view.outcome, CheckOutcome::RecordFound);
    assert_eq!(view.source, Source::Central);
    f.central.kill();
    let opened = device.open_alert(view.check_id).await.unwrap();
    assert!(opened.opened);
    assert_eq!(opened.person.as_ref().unwrap().family_name, "Away");
    assert_eq!(opened.notification, Some(NotificationState::Queued));
    assert_eq!(device.status().queued_events, 1);
    drop(f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_central_answer_is_as_old_as_its_las_last_upload() {
    let (f, _) = setup(5, 2_000).await;
    let uploaded_by = chrono::Utc::now();
    // The same device a day and more later: the LA has not uploaded since.
    let mut config = DeviceConfig::new(f.tmp.path().join("device"));
    config.clock_offset = chrono::Duration::hours(25);
    let later = Device::open(config).unwrap();
    later.sign_in(USER, PIN).await.unwrap();
    let view = later.check(&person(1), CheckRequest::default()).await;
    assert_eq!(view.source, Source::Central);
    let as_of = view.data_as_of.expect("a central answer has an age");
    assert!(as_of <= uploaded_by, "{as_of} is the LA's upload, not now");
    assert!(view.data_age_seconds.unwrap() > 24 * 3600);
    assert!(
        view.stale,
        "past the warning age, a central answer is stale too"
    );
    drop(f);
}

fn format_3_3_4(digits: &str) -> String {
    format!("{} {} {}", &digits[..3], &digits[3..6], &digits[6..])
}
