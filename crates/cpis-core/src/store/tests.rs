//! Tests of the device store: privacy at rest, sealing bound to rows, feed pages and the cursor,
//! the vault's PIN and lease rules, the outbox, and the migrations. Synthetic people only, NHS
//! numbers from the 999 test range.

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use zeroize::Zeroizing;

use super::*;
use crate::access::Accessor;
use crate::la::LocalAuthority;
use crate::nhs::NhsNumber;
use crate::plan::{FlagRecord, Plan, PlanKind};
use crate::setting::Activity;
use crate::vault;
use crate::wire::{FeedChange, FeedOp, FeedPage, SealedEvent};

const PIN: &str = "3141";
const FAST: StoreOptions = StoreOptions { pin_iterations: 10 };

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 10, 8, 0, 0).unwrap()
}

struct Central {
    sealing_secret: Zeroizing<[u8; 32]>,
    sealing_public: [u8; 32],
    lease_key: [u8; 32],
}

fn central() -> Central {
    let sealing_secret = hazmat::x25519_generate();
    let sealing_public = hazmat::x25519_public(&sealing_secret);
    Central {
        sealing_secret,
        sealing_public,
        lease_key: *hazmat::random_bytes::<32>(),
    }
}

fn region() -> Region {
    Region::parse("test-north").unwrap()
}

fn enrolment(c: &Central) -> Enrolment {
    Enrolment {
        device_id: Uuid::now_v7(),
        region: region(),
        org_ods: OdsCode::parse("RX9").unwrap(),
        org_name: "Synthetic Ambulance Service".into(),
        setting: CareSetting::Ambulance,
        central_url: "https://central.invalid".into(),
        central_signing_key: [1u8; 32],
        central_sealing_key: c.sealing_public,
    }
}

fn user(id: &str) -> UserProfile {
    UserProfile {
        id: id.into(),
        name: format!("Synthetic {id}"),
        role: "Paramedic".into(),
        activity: Activity::B0107,
        org_ods: OdsCode::parse("RX9").unwrap(),
    }
}

fn accessor() -> Accessor {
    Accessor {
        user_id: "para1".into(),
        role: "Paramedic".into(),
        activity: Activity::B0107,
        org_ods: OdsCode::parse("RX9").unwrap(),
        org_name: "Synthetic Ambulance Service".into(),
        setting: CareSetting::Ambulance,
    }
}

fn surname(i: u32) -> String {
    format!("Testfamily{i:04}")
}

fn given(i: u32) -> String {
    format!("Testgiven{i:04}")
}

fn dob(i: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2009, 1, 1).unwrap() + Duration::days(i64::from(i) * 5)
}

fn la_code(j: u32) -> OdsCode {
    OdsCode::parse(&format!("Z{j:02}")).unwrap()
}

fn emergency_phone(j: u32) -> String {
    format!("0300 555 {:04}", 7000 + j)
}

fn office_phone(j: u32) -> String {
    format!("020 7946 {:04}", 100 + j)
}

fn la(j: u32) -> LocalAuthority {
    LocalAuthority {
        ods: la_code(j),
        name: format!("Synthetic Council {j}"),
        emergency_phone: emergency_phone(j),
        office_phone: Some(office_phone(j)),
        region: region(),
    }
}

fn flag(i: u32) -> FlagRecord {
    FlagRecord {
        nhs_number: NhsNumber::test_range(i),
        family_name: surname(i),
        given_names: given(i),
        date_of_birth: dob(i),
        local_id: Some(format!("LC{i:05}")),
        local_authority: la_code(i % 10),
        plans: vec![Plan {
            kind: match i % 3 {
                0 => PlanKind::LookedAfter,
                _ => PlanKind::ChildProtection,
            },
            start: NaiveDate::from_ymd_opt(2025, 3, 1).unwrap(),
            end: None,
            due: None,
            delete: None,
            local_authority: None,
        }],
    }
}

fn page(after: u64, changes: Vec<FeedChange>) -> FeedPage {
    let last = after + changes.len() as u64;
    FeedPage {
        region: region(),
        after,
        last,
        head: last,
        has_more: false,
        generated_at: t0(),
        ops: changes
            .into_iter()
            .enumerate()
            .map(|(k, change)| FeedOp {
                seq: after + 1 + k as u64,
                change,
            })
            .collect(),
    }
}

/// A page of a feed whose head is `head`: more to come unless the page reaches it.
fn page_towards(after: u64, changes: Vec<FeedChange>, head: u64) -> FeedPage {
    let mut p = page(after, changes);
    p.head = head;
    p.has_more = p.last < head;
    p
}

fn put(i: u32) -> FeedChange {
    FeedChange::PutFlag { record: flag(i) }
}

fn open_store(dir: &Path) -> DeviceStore {
    DeviceStore::open_with(dir, FAST).unwrap()
}

fn lease_until(store: &DeviceStore, c: &Central, expires_at: DateTime<Utc>) -> [u8; 32] {
    vault::lease_mac(&c.lease_key, store.device_id_for_tests(), expires_at)
}

fn login(
    store: &mut DeviceStore,
    c: &Central,
    id: &str,
    pin: &str,
    expires_at: DateTime<Utc>,
) -> Unlocked {
    let mac = lease_until(store, c, expires_at);
    store
        .login_online(&user(id), pin, &c.lease_key, expires_at, &mac)
        .unwrap()
}

/// An enrolled store with `para1` signed in online, lease until t0 + 72 h.
fn ready(dir: &Path) -> (DeviceStore, Central, Unlocked) {
    let c = central();
    let mut store = open_store(dir);
    store.enrol(&enrolment(&c)).unwrap();
    let unlocked = login(&mut store, &c, "para1", PIN, t0() + Duration::hours(72));
    (store, c, unlocked)
}

// ---------------------------------------------------------------- privacy at rest

/// Needles grouped by length, so a scan is one hash lookup per window and length.
struct Needles {
    by_len: HashMap<usize, HashMap<Vec<u8>, String>>,
    first_bytes: HashSet<u8>,
}

impl Needles {
    fn new() -> Self {
        Self {
            by_len: HashMap::new(),
            first_bytes: HashSet::new(),
        }
    }

    fn add(&mut self, needle: String, label: String) {
        let bytes = needle.into_bytes();
        self.first_bytes.insert(bytes[0]);
        self.by_len
            .entry(bytes.len())
            .or_default()
            .insert(bytes, label);
    }

    /// The label of the first needle found in `hay` (labels never hold the value itself).
    fn find(&self, hay: &[u8]) -> Option<String> {
        for (start, b) in hay.iter().enumerate() {
            if !self.first_bytes.contains(b) {
                continue;
            }
            for (len, set) in &self.by_len {
                if let Some(window) = hay.get(start..start + len) {
                    if let Some(label) = set.get(window) {
                        return Some(label.clone());
                    }
                }
            }
        }
        None
    }
}

fn personal_needles(count: u32, las: u32) -> Needles {
    let mut n = Needles::new();
    for i in 0..count {
        let nhs = NhsNumber::test_range(i);
        n.add(
            nhs.as_digits(),
            format!("NHS number (10 digits) of flag {i}"),
        );
        n.add(nhs.to_string(), format!("NHS number (3-3-4) of flag {i}"));
        n.add(surname(i), format!("surname of flag {i}"));
        n.add(given(i), format!("given name of flag {i}"));
        // The forms a search compares: a name index in clear would hold these.
        n.add(
            surname(i).to_lowercase(),
            format!("normalised surname of flag {i}"),
        );
        n.add(
            given(i).to_lowercase(),
            format!("normalised given name of flag {i}"),
        );
        let d = dob(i);
        n.add(
            d.format("%Y-%m-%d").to_string(),
            format!("date of birth (ISO) of flag {i}"),
        );
        n.add(
            d.format("%Y%m%d").to_string(),
            format!("date of birth (compact) of flag {i}"),
        );
        n.add(
            d.format("%d/%m/%Y").to_string(),
            format!("date of birth (d/m/y) of flag {i}"),
        );
        n.add(
            d.format("%d%m%Y").to_string(),
            format!("date of birth (ddmmyyyy) of flag {i}"),
        );
    }
    for j in 0..las {
        for (kind, phone) in [
            ("emergency", emergency_phone(j)),
            ("office", office_phone(j)),
        ] {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            n.add(phone, format!("{kind} phone of LA {j}"));
            n.add(digits, format!("{kind} phone (digits) of LA {j}"));
        }
    }
    n
}

fn file_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            std::fs::read(entry.path()).unwrap(),
        ));
    }
    out
}

#[test]
fn privacy_no_nhs_number_name_dob_or_phone_in_the_database_or_wal_and_all_found_again_with_the_pin()
{
    const FLAGS: u32 = 1_000;
    const LAS: u32 = 10;
    let dir = tempfile::tempdir().unwrap();
    let (mut store, c, unlocked) = ready(dir.path());

    let mut changes: Vec<FeedChange> = (0..LAS).map(|j| FeedChange::PutLa { la: la(j) }).collect();
    changes.extend((0..FLAGS).map(put));
    let mut cursor = 0;
    for chunk in changes.chunks(250) {
        let p = page(cursor, chunk.to_vec());
        store.apply_page(&unlocked.keys, &p, t0()).unwrap();
        cursor = p.last;
    }
    assert_eq!(store.flag_count().unwrap(), u64::from(FLAGS));
    for i in [0, 17, 999] {
        let nhs = NhsNumber::test_range(i);
        store
            .record_check(
                &unlocked.keys,
                &AuditEntry {
                    at: t0(),
                    user_id: "para1".into(),
                    nhs_number: Some(nhs),
                    outcome: "record_found".into(),
                    source: "cache".into(),
                    search: None,
                },
            )
            .unwrap();
        store
            .enqueue_access(nhs, accessor(), Some("INC-1".into()), t0())
            .unwrap();
    }
    // A search by name and date of birth: found through the date-of-birth index, its audit
    // entry holding what was entered.
    let entered = crate::search::SearchQuery {
        family_name: surname(17),
        given_name: Some(given(17)),
        date_of_birth: dob(17),
        sex: None,
        postcode_district: None,
    };
    let found = store
        .born_on(&unlocked.keys, &crate::search::candidate_dates(dob(17)))
        .unwrap();
    assert_eq!(
        found,
        vec![flag(17)],
        "the index finds the person born that day"
    );
    store
        .record_check(
            &unlocked.keys,
            &AuditEntry {
                at: t0(),
                user_id: "para1".into(),
                nhs_number: Some(NhsNumber::test_range(17)),
                outcome: "search_match".into(),
                source: "cache".into(),
                search: Some(SearchAudit {
                    search_id: Uuid::now_v7(),
                    entered,
                    candidates: 1,
                    step: "match".into(),
                }),
            },
        )
        .unwrap();
    // The index holds only short keyed values: never the date itself in any numeric form.
    let buckets: Vec<Option<i64>> = store
        .conn()
        .prepare("SELECT dob_bucket FROM flags")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(buckets.len(), FLAGS as usize);
    for (i, b) in buckets.iter().enumerate() {
        let b = b.expect("every flag is indexed");
        assert!((0..1 << vault::DOB_INDEX_BITS).contains(&b), "{b}");
        let d = dob(i as u32);
        assert_ne!(b, i64::from(d.num_days_from_ce()));
    }

    let needles = personal_needles(FLAGS, LAS);
    // The scan itself must be able to see plaintext, or a pass would prove nothing.
    assert!(needles
        .find(&serde_json::to_vec(&flag(500)).unwrap())
        .is_some());
    assert!(needles
        .find(&serde_json::to_vec(&la(3)).unwrap())
        .is_some_and(|l| l.contains("phone")));

    // While open, with no forced checkpoint, the WAL holds the pages just written.
    let while_open = file_bytes(dir.path());
    let wal = while_open
        .iter()
        .find(|(name, _)| name == "device.sqlite-wal")
        .expect("the WAL exists while the store is open");
    assert!(wal.1.len() > 100_000, "the WAL holds the written pages");
    drop(unlocked);
    drop(store);
    let after_close = file_bytes(dir.path());
    let db = after_close
        .iter()
        .find(|(name, _)| name == "device.sqlite")
        .unwrap();
    assert!(
        db.1.len() > 100_000,
        "the database holds the flags after close"
    );
    for (when, files) in [("while open", &while_open), ("after close", &after_close)] {
        for (name, bytes) in files {
            if let Some(found) = needles.find(bytes) {
                panic!("{found} found in plaintext in {name} ({when})");
            }
        }
    }

    let mut store = open_store(dir.path());
    let now = t0() + Duration::hours(1);
    assert!(matches!(
        store.unlock("para1", "0000", now),
        Err(VaultError::WrongPin { attempts_left: 4 })
    ));
    let unlocked = store.unlock("para1", PIN, now).unwrap();
    for i in 0..FLAGS {
        let (record, authority) = store
            .lookup(&unlocked.keys, &NhsNumber::test_range(i))
            .unwrap()
            .unwrap_or_else(|| panic!("flag {i} is found after reopening"));
        assert_eq!(record, flag(i));
        assert_eq!(authority, vec![la(i % 10)]);
    }
    assert_eq!(
        store
            .lookup(&unlocked.keys, &NhsNumber::test_range(FLAGS + 1))
            .unwrap(),
        None
    );
    let audit = store.audit_entries(&unlocked.keys).unwrap();
    assert_eq!(audit.len(), 4);
    assert_eq!(
        audit[3]
            .search
            .as_ref()
            .map(|s| s.entered.family_name.clone()),
        Some(surname(17)),
        "the search's audit entry keeps what was entered"
    );
    let _ = c;
}

#[test]
fn the_date_of_birth_index_puts_several_people_on_each_value_at_a_regions_size() {
    // A region of 12,000 children born over 18 years: each index value must stand for several
    // people, so that equal values (twins, a family) do not stand out.
    const FLAGS: u32 = 12_000;
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    let start = NaiveDate::from_ymd_opt(2008, 1, 1).unwrap();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let people: Vec<FlagRecord> = (0..FLAGS)
        .map(|i| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            FlagRecord {
                date_of_birth: start + Duration::days((rng % 6_570) as i64),
                ..flag(i)
            }
        })
        .collect();
    let mut cursor = 0;
    for chunk in people.chunks(2_000) {
        let changes = chunk
            .iter()
            .map(|r| FeedChange::PutFlag { record: r.clone() })
            .collect();
        let p = page(cursor, changes);
        store.apply_page(&unlocked.keys, &p, t0()).unwrap();
        cursor = p.last;
    }
    let counts: Vec<i64> = store
        .conn()
        .prepare("SELECT count(*) FROM flags GROUP BY dob_bucket")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let single = counts.iter().filter(|c| **c == 1).count();
    let mean = f64::from(FLAGS) / counts.len() as f64;
    assert!(mean >= 4.0, "{mean} people per index value");
    assert!(
        single * 10 < counts.len(),
        "{single} of {} values hold one person",
        counts.len()
    );
    // And the index still finds exactly the people born on a date, swapped day and month included.
    let asked = people[42].date_of_birth;
    let dates = crate::search::candidate_dates(asked);
    let mut found: Vec<NhsNumber> = store
        .born_on(&unlocked.keys, &dates)
        .unwrap()
        .into_iter()
        .map(|r| r.nhs_number)
        .collect();
    let mut want: Vec<NhsNumber> = people
        .iter()
        .filter(|r| dates.contains(&r.date_of_birth))
        .map(|r| r.nhs_number)
        .collect();
    found.sort();
    want.sort();
    assert_eq!(found, want);
}

#[test]
fn flags_cached_before_the_date_of_birth_index_are_found_and_then_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    store
        .apply_page(&unlocked.keys, &page(0, (0..20).map(put).collect()), t0())
        .unwrap();
    // As a database migrated from 0002 holds them: no index value yet.
    store
        .conn()
        .execute("UPDATE flags SET dob_bucket = NULL", [])
        .unwrap();
    assert_eq!(
        store.born_on(&unlocked.keys, &[dob(7)]).unwrap(),
        vec![flag(7)],
        "a search does not miss a person for want of an index value"
    );
    assert_eq!(store.index_dates_of_birth(&unlocked.keys).unwrap(), 20);
    assert_eq!(store.index_dates_of_birth(&unlocked.keys).unwrap(), 0);
    let unindexed: i64 = store
        .conn()
        .query_row(
            "SELECT count(*) FROM flags WHERE dob_bucket IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unindexed, 0);
    assert_eq!(
        store.born_on(&unlocked.keys, &[dob(7)]).unwrap(),
        vec![flag(7)]
    );
}

#[test]
fn a_wrong_pin_opens_nothing_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    store
        .apply_page(&unlocked.keys, &page(0, vec![put(1)]), t0())
        .unwrap();
    let before: Vec<(String, Vec<u8>)> = {
        let mut stmt = store
            .conn()
            .prepare("SELECT 'flags', sealed FROM flags UNION ALL SELECT 'unlock', sealed FROM user_unlock UNION ALL SELECT 'device', sealed FROM device_unlock")
            .unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(Result::unwrap).collect()
    };
    let err = store.unlock("para1", "9999", t0()).unwrap_err();
    assert!(
        matches!(err, VaultError::WrongPin { attempts_left: 4 }),
        "{err}"
    );
    assert_eq!(err.code(), "wrong_pin");
    let after: Vec<(String, Vec<u8>)> = {
        let mut stmt = store
            .conn()
            .prepare("SELECT 'flags', sealed FROM flags UNION ALL SELECT 'unlock', sealed FROM user_unlock UNION ALL SELECT 'device', sealed FROM device_unlock")
            .unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert_eq!(
        before, after,
        "a wrong PIN rewrites no wrapped key and no data"
    );
    let again = store
        .unlock("para1", PIN, t0() + Duration::seconds(1))
        .unwrap();
    assert_eq!(again.keys.raw_for_tests(), unlocked.keys.raw_for_tests());
    assert!(store
        .lookup(&again.keys, &NhsNumber::test_range(1))
        .unwrap()
        .is_some());
}

// ---------------------------------------------------------------- sealing bound to rows

#[test]
fn a_sealed_flag_copied_to_another_row_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    store
        .apply_page(&unlocked.keys, &page(0, vec![put(1), put(2)]), t0())
        .unwrap();
    let keys = &unlocked.keys;
    let a = keys.index.blind_index(&NhsNumber::test_range(1));
    let b = keys.index.blind_index(&NhsNumber::test_range(2));
    store
        .conn()
        .execute(
            "UPDATE flags SET sealed = (SELECT sealed FROM flags WHERE blind_index = ?1) WHERE blind_index = ?2",
            params![&a[..], &b[..]],
        )
        .unwrap();
    let err = store.lookup(keys, &NhsNumber::test_range(2)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Tampered {
                what: "a cached flag"
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("integrity"));
    assert_eq!(
        store
            .lookup(keys, &NhsNumber::test_range(1))
            .unwrap()
            .unwrap()
            .0,
        flag(1)
    );
    assert!(matches!(
        store.cache_digest(keys),
        Err(StoreError::Tampered { .. })
    ));
}

#[test]
fn sealed_las_and_audit_entries_are_bound_to_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    let keys = &unlocked.keys;
    store
        .apply_page(
            keys,
            &page(
                0,
                vec![
                    FeedChange::PutLa { la: la(1) },
                    FeedChange::PutLa { la: la(2) },
                ],
            ),
            t0(),
        )
        .unwrap();
    store
        .conn()
        .execute(
            "UPDATE local_authorities SET sealed = (SELECT sealed FROM local_authorities WHERE ods = 'Z01') WHERE ods = 'Z02'",
            [],
        )
        .unwrap();
    assert!(matches!(
        store.local_authority(keys, &la_code(2)),
        Err(StoreError::Tampered { .. })
    ));

    for i in 0..2 {
        store
            .record_check(
                keys,
                &AuditEntry {
                    at: t0() + Duration::seconds(i64::from(i)),
                    user_id: "para1".into(),
                    nhs_number: Some(NhsNumber::test_range(i)),
                    outcome: "no_record".into(),
                    source: "cache".into(),
                    search: None,
                },
            )
            .unwrap();
    }
    let entries = store.audit_entries(keys).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].nhs_number, Some(NhsNumber::test_range(1)));
    store
        .conn()
        .execute("UPDATE audit_log SET sealed = (SELECT sealed FROM audit_log WHERE id = 1) WHERE id = 2", [])
        .unwrap();
    assert!(matches!(
        store.audit_entries(keys),
        Err(StoreError::Tampered { .. })
    ));
}

#[test]
fn another_devices_keys_open_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    store
        .apply_page(&unlocked.keys, &page(0, vec![put(1)]), t0())
        .unwrap();
    let other = CacheKeys::generate();
    // The blind index differs, so the record is simply not found rather than mis-read.
    assert_eq!(
        store.lookup(&other, &NhsNumber::test_range(1)).unwrap(),
        None
    );
    assert!(matches!(
        store.cache_digest(&other),
        Err(StoreError::Tampered { .. })
    ));
}

// ---------------------------------------------------------------- feed pages and the cursor

#[test]
fn apply_page_with_a_wrong_cursor_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    let keys = &unlocked.keys;
    store
        .apply_page(keys, &page(0, vec![put(1), put(2)]), t0())
        .unwrap();
    assert_eq!(store.cursor().unwrap(), 2);
    let synced = store.last_sync_at().unwrap();

    for after in [0, 1, 3, 10] {
        let err = store
            .apply_page(
                keys,
                &page(
                    after,
                    vec![
                        put(3),
                        FeedChange::RemoveFlag {
                            nhs_number: NhsNumber::test_range(1),
                        },
                    ],
                ),
                t0() + Duration::hours(1),
            )
            .unwrap_err();
        assert!(
            matches!(err, StoreError::CursorMismatch { expected: 2, got } if got == after),
            "{err}"
        );
    }
    assert_eq!(store.cursor().unwrap(), 2);
    assert_eq!(store.flag_count().unwrap(), 2);
    assert_eq!(store.last_sync_at().unwrap(), synced);
    assert!(store
        .lookup(keys, &NhsNumber::test_range(1))
        .unwrap()
        .is_some());
    assert!(store
        .lookup(keys, &NhsNumber::test_range(3))
        .unwrap()
        .is_none());

    let applied = store
        .apply_page(keys, &page(2, vec![put(3)]), t0() + Duration::hours(2))
        .unwrap();
    assert_eq!(applied.puts, 1);
    assert_eq!(store.cursor().unwrap(), 3);
    assert_eq!(
        store.last_sync_at().unwrap(),
        Some(t0() + Duration::hours(2))
    );
}

/// Regression: a download cut off before the central's head stamped the copy "last updated now",
/// so a miss on a half-filled copy looked fresh.
#[test]
fn a_download_cut_off_before_the_head_does_not_count_as_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    let keys = &unlocked.keys;
    store
        .apply_page(keys, &page_towards(0, vec![put(1), put(2)], 4), t0())
        .unwrap();
    assert_eq!(store.cursor().unwrap(), 2);
    assert_eq!(store.last_sync_at().unwrap(), None, "not caught up yet");

    store
        .apply_page(
            keys,
            &page(2, vec![put(3), put(4)]),
            t0() + Duration::hours(1),
        )
        .unwrap();
    assert_eq!(
        store.last_sync_at().unwrap(),
        Some(t0() + Duration::hours(1))
    );

    // A later delta cut off halfway keeps the time of the last complete catch-up.
    store
        .apply_page(
            keys,
            &page_towards(4, vec![put(5)], 6),
            t0() + Duration::hours(2),
        )
        .unwrap();
    assert_eq!(store.cursor().unwrap(), 5);
    assert_eq!(
        store.last_sync_at().unwrap(),
        Some(t0() + Duration::hours(1))
    );
}

#[test]
fn removals_delete_flags_and_local_authorities_and_puts_replace() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    let keys = &unlocked.keys;
    store
        .apply_page(
            keys,
            &page(
                0,
                vec![FeedChange::PutLa { la: la(1) }, put(1), put(11), put(21)],
            ),
            t0(),
        )
        .unwrap();
    let mut changed = flag(21);
    changed.family_name = "Testfamilychanged".into();
    let applied = store
        .apply_page(
            keys,
            &page(
                4,
                vec![
                    FeedChange::RemoveFlag {
                        nhs_number: NhsNumber::test_range(11),
                    },
                    FeedChange::RemoveLa { ods: la_code(1) },
                    FeedChange::PutFlag {
                        record: changed.clone(),
                    },
                ],
            ),
            t0(),
        )
        .unwrap();
    assert_eq!((applied.ops, applied.puts, applied.removes), (3, 1, 2));
    assert!(applied.bytes > 0);
    assert_eq!(store.flag_count().unwrap(), 2);
    assert_eq!(
        store.lookup(keys, &NhsNumber::test_range(11)).unwrap(),
        None
    );
    let (record, authority) = store
        .lookup(keys, &NhsNumber::test_range(1))
        .unwrap()
        .unwrap();
    assert_eq!(record, flag(1));
    assert!(authority.is_empty(), "the LA was removed");
    assert_eq!(
        store
            .lookup(keys, &NhsNumber::test_range(21))
            .unwrap()
            .unwrap()
            .0,
        changed
    );
    // Removing what is not there is harmless (a replayed removal).
    store
        .apply_page(
            keys,
            &page(
                7,
                vec![FeedChange::RemoveFlag {
                    nhs_number: NhsNumber::test_range(11),
                }],
            ),
            t0(),
        )
        .unwrap();
    assert_eq!(store.flag_count().unwrap(), 2);
}

#[test]
fn a_page_dropped_mid_transaction_leaves_the_old_cursor_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    let keys = &unlocked.keys;
    store
        .apply_page(keys, &page(0, vec![put(1)]), t0())
        .unwrap();
    let next = page(1, (2..50).map(put).collect());
    {
        let tx = store.conn_mut().transaction().unwrap();
        let applied = cache::apply_page_in(&tx, keys, &next, t0()).unwrap();
        assert_eq!(applied.puts, 48);
        // The process dies here: the transaction is dropped without a commit.
        drop(tx);
    }
    assert_eq!(store.cursor().unwrap(), 1);
    assert_eq!(store.flag_count().unwrap(), 1);
    drop(store);
    let mut store = open_store(dir.path());
    assert_eq!(store.cursor().unwrap(), 1);
    store.apply_page(keys, &next, t0()).unwrap();
    assert_eq!(store.cursor().unwrap(), 49);
    assert_eq!(store.flag_count().unwrap(), 49);
}

#[test]
fn a_malformed_or_foreign_page_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    let keys = &unlocked.keys;
    let mut out_of_order = page(0, vec![put(1), put(2)]);
    out_of_order.ops.swap(0, 1);
    assert!(matches!(
        store.apply_page(keys, &out_of_order, t0()),
        Err(StoreError::BadPage(_))
    ));
    let mut beyond = page(0, vec![put(1)]);
    beyond.last = 0;
    assert!(matches!(
        store.apply_page(keys, &beyond, t0()),
        Err(StoreError::BadPage(_))
    ));
    let mut foreign = page(0, vec![put(1)]);
    foreign.region = Region::parse("test-south").unwrap();
    assert!(matches!(
        store.apply_page(keys, &foreign, t0()),
        Err(StoreError::WrongRegion { .. })
    ));
    assert_eq!(store.flag_count().unwrap(), 0);
    assert_eq!(store.cursor().unwrap(), 0);
    // An empty page still moves nothing but the sync time.
    store.apply_page(keys, &page(0, vec![]), t0()).unwrap();
    assert_eq!(store.cursor().unwrap(), 0);
    assert_eq!(store.last_sync_at().unwrap(), Some(t0()));
}

#[test]
fn the_cache_digest_matches_the_region_digest_of_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    let keys = &unlocked.keys;
    let mut changes: Vec<FeedChange> = (0..3).map(|j| FeedChange::PutLa { la: la(j) }).collect();
    changes.extend((0..40).rev().map(put));
    store.apply_page(keys, &page(0, changes), t0()).unwrap();
    let flags: Vec<FlagRecord> = (0..40).map(flag).collect();
    let las: Vec<LocalAuthority> = (0..3).rev().map(la).collect();
    assert_eq!(
        store.cache_digest(keys).unwrap(),
        region_digest(&flags, &las)
    );
    store
        .apply_page(
            keys,
            &page(
                43,
                vec![FeedChange::RemoveFlag {
                    nhs_number: NhsNumber::test_range(5),
                }],
            ),
            t0(),
        )
        .unwrap();
    assert_ne!(
        store.cache_digest(keys).unwrap(),
        region_digest(&flags, &las)
    );
    assert_eq!(store.cache_digest(keys).unwrap().len(), 64);
}

/// A check on its own connection, during a first download applied on another, gives the same answers
/// as scanning the staged rows (renames and removals included) by seeking only the rows the download
/// staged; once the download has moved into place it does not read the staged table at all.
#[test]
fn a_check_during_a_first_download_seeks_its_person_instead_of_scanning_the_download() {
    let dir = tempfile::tempdir().unwrap();
    let (mut syncer, _c, unlocked) = ready(dir.path());
    let keys = &unlocked.keys;
    let reader = open_store(dir.path());
    let index = StagedIndex::default();
    reader.load_staged_index(&index).unwrap();
    let remove = |i: u32| FeedChange::RemoveFlag {
        nhs_number: NhsNumber::test_range(i),
    };
    let mut renamed = flag(1);
    renamed.given_names = "Renamed".into();
    let pages = [
        vec![FeedChange::PutLa { la: la(1) }, put(1), put(2), put(3)],
        vec![remove(2), FeedChange::PutFlag { record: renamed }, put(4)],
        vec![put(5), remove(4), put(4)],
    ];
    let head = pages.iter().map(|p| p.len() as u64).sum::<u64>();
    // A row that no page staged: only a scan could find it.
    let stray = |store: &DeviceStore, i: u32| {
        let blind = keys.index.blind_index(&NhsNumber::test_range(i));
        store
            .conn()
            .execute(
                "INSERT INTO flags_staged (blind_index, sealed, seq) VALUES (?1, X'00', 0)",
                [&blind[..]],
            )
            .unwrap();
    };
    let mut cursor = 0;
    for (k, changes) in pages.iter().enumerate() {
        let p = page_towards(cursor, changes.clone(), head);
        syncer.apply_page_indexed(keys, &p, t0(), &index).unwrap();
        cursor = p.last;
        if k < pages.len() - 1 {
            for i in 1..=5 {
                let seek = reader
                    .lookup_indexed(keys, &NhsNumber::test_range(i), &index)
                    .unwrap();
                let scan = reader.lookup(keys, &NhsNumber::test_range(i)).unwrap();
                assert_eq!(seek, scan, "page {k}, person {i}");
            }
        }
    }
    let (found, _) = reader
        .lookup_indexed(keys, &NhsNumber::test_range(1), &index)
        .unwrap()
        .unwrap();
    assert_eq!(found.given_names, "Renamed");
    // Moved into place: a stray staged row is not read by a check (the scan would trip on it).
    stray(&syncer, 9);
    assert!(reader
        .lookup_indexed(keys, &NhsNumber::test_range(9), &index)
        .unwrap()
        .is_none());
    assert!(reader.lookup(keys, &NhsNumber::test_range(9)).is_err());
}

/// A first download of many pages is staged in feed order and moved into place when it reaches
/// the head; halfway, the staged records already answer, removals included, and the result is the
/// same copy as applying every page directly.
#[test]
fn a_first_download_of_many_pages_is_staged_and_moved_into_place_at_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    let keys = &unlocked.keys;
    let staged_rows = |store: &DeviceStore| -> i64 {
        store
            .conn()
            .query_row("SELECT count(*) FROM flags_staged", [], |r| r.get(0))
            .unwrap()
    };
    let remove = |i: u32| FeedChange::RemoveFlag {
        nhs_number: NhsNumber::test_range(i),
    };
    let mut renamed = flag(1);
    renamed.given_names = "Renamed".into();
    let pages = [
        vec![FeedChange::PutLa { la: la(1) }, put(1), put(2), put(3)],
        vec![
            remove(2),
            FeedChange::PutFlag {
                record: renamed.clone(),
            },
            put(4),
        ],
        vec![put(5), remove(4), put(4)],
    ];
    let head = pages.iter().map(|p| p.len() as u64).sum::<u64>();
    let mut cursor = 0;
    for (k, changes) in pages.iter().enumerate() {
        let p = page_towards(cursor, changes.clone(), head);
        store.apply_page(keys, &p, t0()).unwrap();
        cursor = p.last;
        if k == 1 {
            assert!(staged_rows(&store) > 0, "staged while the download runs");
            let (found, _) = store
                .lookup(keys, &NhsNumber::test_range(1))
                .unwrap()
                .unwrap();
            assert_eq!(
                found.given_names, "Renamed",
                "the newest staged row answers"
            );
            assert!(store
                .lookup(keys, &NhsNumber::test_range(2))
                .unwrap()
                .is_none());
        }
    }
    assert_eq!(staged_rows(&store), 0, "moved into place at the head");
    assert!(store.get_meta("staging").unwrap().is_none());
    let expected: Vec<FlagRecord> = vec![renamed, flag(3), flag(4), flag(5)];
    assert_eq!(store.flag_count().unwrap(), 4);
    assert_eq!(
        store.cache_digest(keys).unwrap(),
        region_digest(&expected, &[la(1)])
    );
    for r in &expected {
        let (found, la_found) = store.lookup(keys, &r.nhs_number).unwrap().unwrap();
        assert_eq!(&found, r);
        assert_eq!(!la_found.is_empty(), r.local_authority == la_code(1));
    }

    // Later deltas go straight into place.
    store
        .apply_page(keys, &page(cursor, vec![remove(3)]), t0())
        .unwrap();
    assert_eq!(staged_rows(&store), 0);
    assert!(store
        .lookup(keys, &NhsNumber::test_range(3))
        .unwrap()
        .is_none());
}

// ---------------------------------------------------------------- the vault

#[test]
fn wrong_pins_count_down_and_the_right_pin_resets_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, _u) = ready(dir.path());
    let mut now = t0();
    for left in [4, 3] {
        assert!(matches!(
            store.unlock("para1", "1111", now),
            Err(VaultError::WrongPin { attempts_left }) if attempts_left == left
        ));
        now += Duration::minutes(1);
    }
    store.unlock("para1", PIN, now).unwrap();
    assert!(matches!(
        store.unlock("para1", "1111", now),
        Err(VaultError::WrongPin { attempts_left: 4 })
    ));
}

#[test]
fn five_wrong_pins_destroy_the_local_unlock_and_an_online_sign_in_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, c, unlocked) = ready(dir.path());
    store
        .apply_page(&unlocked.keys, &page(0, vec![put(1)]), t0())
        .unwrap();
    store
        .enqueue_access(NhsNumber::test_range(1), accessor(), None, t0())
        .unwrap();
    let mut now = t0();
    for left in [4, 3, 2, 1] {
        assert!(matches!(
            store.unlock("para1", "1111", now),
            Err(VaultError::WrongPin { attempts_left }) if attempts_left == left
        ));
        now += Duration::minutes(1);
    }
    assert!(matches!(
        store.unlock("para1", "1111", now),
        Err(VaultError::LockedOut)
    ));
    let rows: i64 = store
        .conn()
        .query_row(
            "SELECT count(*) FROM user_unlock WHERE user_id = 'para1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0, "the wrap is destroyed");
    now += Duration::minutes(1);
    assert!(matches!(
        store.unlock("para1", PIN, now),
        Err(VaultError::NoLocalUnlock)
    ));
    assert_eq!(
        store.outbox_summary().unwrap().queued,
        1,
        "queued events survive a lockout"
    );

    let restored = login(&mut store, &c, "para1", "2718", t0() + Duration::hours(72));
    assert_eq!(
        restored.keys.raw_for_tests(),
        unlocked.keys.raw_for_tests(),
        "the cache keys are recovered, not replaced"
    );
    let again = store.unlock("para1", "2718", now).unwrap();
    assert!(store
        .lookup(&again.keys, &NhsNumber::test_range(1))
        .unwrap()
        .is_some());
    assert!(matches!(
        store.unlock("para1", PIN, now),
        Err(VaultError::WrongPin { .. })
    ));
}

#[test]
fn wrong_pins_must_wait_a_growing_delay_before_the_next_try() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, _u) = ready(dir.path());
    let t = t0();
    assert!(matches!(
        store.unlock("para1", "1", t),
        Err(VaultError::WrongPin { attempts_left: 4 })
    ));
    // One slip costs no wait.
    assert!(matches!(
        store.unlock("para1", "2", t),
        Err(VaultError::WrongPin { attempts_left: 3 })
    ));
    // After two, 2 s: even the right PIN is not tried, and the counter does not move.
    assert!(matches!(
        store.unlock("para1", PIN, t + Duration::milliseconds(500)),
        Err(VaultError::TooSoon {
            retry_after_secs: 2
        })
    ));
    assert!(matches!(
        store.unlock("para1", "3", t + Duration::seconds(1)),
        Err(VaultError::TooSoon {
            retry_after_secs: 1
        })
    ));
    let t3 = t + Duration::seconds(2);
    assert!(matches!(
        store.unlock("para1", "3", t3),
        Err(VaultError::WrongPin { attempts_left: 2 })
    ));
    assert!(matches!(
        store.unlock("para1", "4", t3 + Duration::seconds(4)),
        Err(VaultError::TooSoon {
            retry_after_secs: 1
        })
    ));
    let t4 = t3 + Duration::seconds(5);
    assert!(matches!(
        store.unlock("para1", "4", t4),
        Err(VaultError::WrongPin { attempts_left: 1 })
    ));
    assert!(matches!(
        store.unlock("para1", PIN, t4 + Duration::seconds(14)),
        Err(VaultError::TooSoon {
            retry_after_secs: 1
        })
    ));
    // A clock set backwards restarts the wait from now instead of stretching it.
    assert!(matches!(
        store.unlock("para1", PIN, t4 - Duration::hours(3)),
        Err(VaultError::TooSoon {
            retry_after_secs: 15
        })
    ));
    store
        .unlock(
            "para1",
            PIN,
            t4 - Duration::hours(3) + Duration::seconds(15),
        )
        .unwrap();
}

#[test]
fn an_expired_lease_removes_the_user_unlocks_but_keeps_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, c, unlocked) = ready(dir.path());
    let expires = unlocked.lease_expires_at;
    login(&mut store, &c, "para2", "5555", expires);
    store
        .apply_page(&unlocked.keys, &page(0, vec![put(1)]), t0())
        .unwrap();
    let event = store
        .enqueue_access(NhsNumber::test_range(1), accessor(), None, t0())
        .unwrap();

    // At the last instant it still opens.
    store.unlock("para1", PIN, expires).unwrap();
    let err = store
        .unlock("para1", PIN, expires + Duration::seconds(1))
        .unwrap_err();
    assert!(
        matches!(err, VaultError::LeaseExpired { expired_at } if expired_at == expires),
        "{err}"
    );
    assert!(err.to_string().contains("emergency duty"));
    assert!(
        store.local_users().unwrap().is_empty(),
        "every user's wrap is gone"
    );
    assert!(matches!(
        store.unlock("para2", "5555", expires - Duration::hours(1)),
        Err(VaultError::NoLocalUnlock)
    ));
    // Events still send: sealed to the central, needing no key from the vault.
    let due = store.due_events(expires + Duration::hours(1), 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].open(&c.sealing_secret).unwrap(), event);
    assert_eq!(store.flag_count().unwrap(), 1);

    // Renewing while locked stores the lease; signing in online again opens the same cache.
    let later = expires + Duration::hours(72);
    let mac = lease_until(&store, &c, later);
    store.renew_lease(later, &mac).unwrap();
    assert_eq!(store.lease_expires_at().unwrap(), Some(later));
    let back = login(&mut store, &c, "para1", PIN, later);
    assert!(store
        .lookup(&back.keys, &NhsNumber::test_range(1))
        .unwrap()
        .is_some());
}

#[test]
fn a_renewed_lease_extends_offline_use() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, c, unlocked) = ready(dir.path());
    let later = unlocked.lease_expires_at + Duration::hours(24);
    let mac = lease_until(&store, &c, later);
    store.renew_lease(later, &mac).unwrap();
    let u = store
        .unlock("para1", PIN, unlocked.lease_expires_at + Duration::hours(1))
        .unwrap();
    assert_eq!(u.lease_expires_at, later);
}

#[test]
fn a_tampered_lease_expiry_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, c, unlocked) = ready(dir.path());
    let pushed = unlocked.lease_expires_at + Duration::days(365);
    store
        .conn()
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'lease_expires_at'",
            [pushed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)],
        )
        .unwrap();
    assert_eq!(store.lease_expires_at().unwrap(), Some(pushed));
    let err = store
        .unlock("para1", PIN, unlocked.lease_expires_at + Duration::days(2))
        .unwrap_err();
    assert!(matches!(err, VaultError::LeaseTampered), "{err}");
    // Also before the real expiry: a moved lease is never trusted.
    assert!(matches!(
        store.unlock("para1", PIN, t0()),
        Err(VaultError::LeaseTampered)
    ));

    // A renewal with a MAC under another key is caught too.
    let forged = vault::lease_mac(&[9u8; 32], store.device_id_for_tests(), pushed);
    store.renew_lease(pushed, &forged).unwrap();
    assert!(matches!(
        store.unlock("para1", PIN, t0()),
        Err(VaultError::LeaseTampered)
    ));
    // And a sign-in whose MAC does not match is refused before anything is written.
    assert!(matches!(
        store.login_online(&user("para1"), PIN, &c.lease_key, pushed, &forged),
        Err(VaultError::LeaseTampered)
    ));
}

#[test]
fn unlock_needs_enrolment_and_an_earlier_online_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let c = central();
    let mut store = open_store(dir.path());
    assert!(matches!(
        store.unlock("para1", PIN, t0()),
        Err(VaultError::NotEnrolled)
    ));
    assert!(matches!(
        store.login_online(&user("para1"), PIN, &c.lease_key, t0(), &[0u8; 32]),
        Err(VaultError::NotEnrolled)
    ));
    store.enrol(&enrolment(&c)).unwrap();
    assert!(matches!(
        store.unlock("para1", PIN, t0()),
        Err(VaultError::NoLocalUnlock)
    ));
    let u = login(&mut store, &c, "para1", PIN, t0() + Duration::hours(1));
    assert_eq!(u.user, user("para1"));
    assert!(matches!(
        store.unlock("para9", PIN, t0()),
        Err(VaultError::NoLocalUnlock)
    ));
}

#[test]
fn users_share_the_cache_keys_with_their_own_pins() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, c, first) = ready(dir.path());
    let second = login(&mut store, &c, "para2", "8080", first.lease_expires_at);
    assert_eq!(first.keys.raw_for_tests(), second.keys.raw_for_tests());
    assert_eq!(
        store.unlock("para2", "8080", t0()).unwrap().user.id,
        "para2"
    );
    assert!(matches!(
        store.unlock("para2", PIN, t0()),
        Err(VaultError::WrongPin { .. })
    ));
    assert_eq!(
        store.local_users().unwrap(),
        vec!["para1".to_string(), "para2".to_string()]
    );
    let iterations: i64 = store
        .conn()
        .query_row(
            "SELECT iterations FROM user_unlock WHERE user_id = 'para2'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        iterations, 10,
        "the PBKDF2 parameters are stored beside the wrap"
    );
}

#[test]
fn a_new_lease_key_from_the_central_starts_a_fresh_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut c, first) = ready(dir.path());
    store
        .apply_page(&first.keys, &page(0, vec![put(1)]), t0())
        .unwrap();
    store
        .enqueue_access(NhsNumber::test_range(1), accessor(), None, t0())
        .unwrap();
    login(&mut store, &c, "para2", "8080", first.lease_expires_at);
    c.lease_key = *hazmat::random_bytes::<32>();
    let rekeyed = login(&mut store, &c, "para1", PIN, first.lease_expires_at);
    assert_ne!(rekeyed.keys.raw_for_tests(), first.keys.raw_for_tests());
    assert_eq!(store.flag_count().unwrap(), 0);
    assert_eq!(
        store.cursor().unwrap(),
        0,
        "the next sync downloads the region again"
    );
    assert_eq!(store.local_users().unwrap(), vec!["para1".to_string()]);
    assert_eq!(store.outbox_summary().unwrap().queued, 1);
}

#[test]
fn the_device_secret_is_private_and_refused_when_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    store.device_public_key().unwrap();
    for name in ["device.secret", "device.key", "device.sqlite"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let secret = std::fs::read(dir.path().join("device.secret")).unwrap();
    assert_eq!(secret.len(), 32);
    drop(store);
    // Reopening reads the same secret rather than making a new one.
    let store = open_store(dir.path());
    drop(store);
    assert_eq!(
        std::fs::read(dir.path().join("device.secret")).unwrap(),
        secret
    );
    std::fs::set_permissions(
        dir.path().join("device.secret"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = DeviceStore::open_with(dir.path(), FAST).unwrap_err();
    assert!(
        matches!(err, StoreError::InsecurePermissions { mode: 0o644, .. }),
        "{err}"
    );
}

#[test]
fn the_vault_needs_the_device_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _c, _u) = ready(dir.path());
    drop(store);
    let path = dir.path().join("device.secret");
    std::fs::remove_file(&path).unwrap();
    vault::write_private_file_new(&path, &[7u8; 32]).unwrap();
    let mut store = open_store(dir.path());
    // A database copied without its secret (or with another) opens nothing, even with the PIN.
    assert!(matches!(
        store.unlock("para1", PIN, t0()),
        Err(VaultError::WrongPin { .. })
    ));
    assert!(matches!(
        store.device_public_key(),
        Err(StoreError::Tampered { .. })
    ));
}

#[test]
fn the_device_key_signs_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let public = store.device_public_key().unwrap();
    let sig = store.sign(b"cpis-field/auth/v1 challenge").unwrap();
    hazmat::ed25519_verify(&public, b"cpis-field/auth/v1 challenge", &sig).unwrap();
    drop(store);
    let store = open_store(dir.path());
    assert_eq!(store.device_public_key().unwrap(), public);
    let raw = std::fs::read(dir.path().join("device.key")).unwrap();
    let pkcs8_public_tail = &public[..8];
    assert!(
        !raw.windows(8).any(|w| w == pkcs8_public_tail),
        "the key file is sealed, not plain PKCS#8"
    );
}

#[test]
fn enrolment_round_trips_and_managed_meta_cannot_be_set_directly() {
    let dir = tempfile::tempdir().unwrap();
    let c = central();
    let mut store = open_store(dir.path());
    let e = enrolment(&c);
    store.enrol(&e).unwrap();
    assert_eq!(store.enrolment().unwrap(), Some(e));
    assert!(
        dir.path().join("device.key").exists(),
        "enrolment makes the device key"
    );
    for key in ["cursor", "lease_expires_at", "next_device_seq", "device_id"] {
        assert!(matches!(
            store.set_meta(key, "1"),
            Err(StoreError::ReservedMeta(_))
        ));
    }
    store
        .set_meta("last_contact_at", "2026-01-10T08:00:00Z")
        .unwrap();
    assert_eq!(
        store.get_meta("last_contact_at").unwrap().as_deref(),
        Some("2026-01-10T08:00:00Z")
    );
    assert_eq!(store.get_meta("absent").unwrap(), None);
}

#[test]
fn wipe_removes_cache_keys_and_lease_and_keeps_the_outbox_only_when_asked() {
    for keep_outbox in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _c, unlocked) = ready(dir.path());
        let device_key = store.device_public_key().unwrap();
        store
            .apply_page(&unlocked.keys, &page(0, vec![put(1)]), t0())
            .unwrap();
        store
            .record_check(
                &unlocked.keys,
                &AuditEntry {
                    at: t0(),
                    user_id: "para1".into(),
                    nhs_number: Some(NhsNumber::test_range(1)),
                    outcome: "record_found".into(),
                    source: "cache".into(),
                    search: None,
                },
            )
            .unwrap();
        store
            .enqueue_access(NhsNumber::test_range(1), accessor(), None, t0())
            .unwrap();
        store.wipe(keep_outbox).unwrap();
        assert_eq!(store.flag_count().unwrap(), 0);
        assert_eq!(store.cursor().unwrap(), 0);
        assert_eq!(store.lease_expires_at().unwrap(), None);
        assert!(store.audit_entries(&unlocked.keys).unwrap().is_empty());
        assert!(matches!(
            store.unlock("para1", PIN, t0()),
            Err(VaultError::NoLocalUnlock)
        ));
        let device_unlocks: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM device_unlock", [], |r| r.get(0))
            .unwrap();
        assert_eq!(device_unlocks, 0);
        assert!(!dir.path().join("device.key").exists());
        assert_ne!(store.device_public_key().unwrap(), device_key);
        assert_eq!(
            store.outbox_summary().unwrap().queued,
            u64::from(keep_outbox)
        );
    }
}

// ---------------------------------------------------------------- the outbox

#[test]
fn device_seq_strictly_increases_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, _u) = ready(dir.path());
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(
            store
                .enqueue_access(NhsNumber::test_range(i), accessor(), None, t0())
                .unwrap()
                .device_seq,
        );
    }
    let delivered: Vec<Uuid> = store
        .queued_events(10)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    store.mark_delivered(&delivered, t0()).unwrap();
    store.prune_delivered(t0() + Duration::seconds(1)).unwrap();
    drop(store);
    let mut store = open_store(dir.path());
    for i in 3..5 {
        seqs.push(
            store
                .enqueue_access(NhsNumber::test_range(i), accessor(), None, t0())
                .unwrap()
                .device_seq,
        );
    }
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
}

#[test]
fn sealed_events_open_with_the_central_secret_and_not_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, c, _u) = ready(dir.path());
    let event = store
        .enqueue_access(
            NhsNumber::test_range(4),
            accessor(),
            Some("INC-42".into()),
            t0(),
        )
        .unwrap();
    assert_eq!(event.id.get_version_num(), 7);
    assert_eq!(event.device_time, t0());
    assert_eq!(
        event.device_id,
        store.enrolment().unwrap().unwrap().device_id
    );
    assert!(event.notifies);
    let queued = store.queued_events(10).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].open(&c.sealing_secret).unwrap(), event);
    let other = hazmat::x25519_generate();
    assert!(queued[0].open(&other).is_err());
    // The stored text is the envelope's, byte for byte, so retries send the same event.
    let stored: String = store
        .conn()
        .query_row("SELECT sealed FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, queued[0].sealed);
    let moved = SealedEvent {
        id: Uuid::now_v7(),
        ..queued[0].clone()
    };
    assert!(moved.open(&c.sealing_secret).is_err());
}

#[test]
fn the_outbox_backs_off_delivers_and_keeps_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, _u) = ready(dir.path());
    let ids: Vec<Uuid> = (0..4)
        .map(|i| {
            store
                .enqueue_access(
                    NhsNumber::test_range(i),
                    accessor(),
                    None,
                    t0() + Duration::seconds(i64::from(i)),
                )
                .unwrap()
                .id
        })
        .collect();
    let now = t0() + Duration::minutes(1);
    assert_eq!(store.due_events(now, 10).unwrap().len(), 4);
    assert_eq!(
        store
            .due_events(now, 2)
            .unwrap()
            .iter()
            .map(|e| e.device_seq)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(store
        .due_events(t0() - Duration::seconds(1), 10)
        .unwrap()
        .is_empty());

    store
        .defer_events(&ids[..1], now + Duration::minutes(5), "central unreachable")
        .unwrap();
    store
        .defer_events(&ids[..1], now + Duration::minutes(5), "central unreachable")
        .unwrap();
    assert_eq!(
        store.event_attempts(ids[0]).unwrap(),
        Some((2, Some("central unreachable".into())))
    );
    let due: Vec<Uuid> = store
        .due_events(now, 10)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(due, ids[1..].to_vec());
    assert_eq!(
        store.queued_events(10).unwrap().len(),
        4,
        "queued regardless of backoff"
    );
    assert_eq!(
        store
            .due_events(now + Duration::minutes(5), 10)
            .unwrap()
            .len(),
        4
    );

    store.mark_delivered(&ids[1..3], now).unwrap();
    store.mark_dead(ids[3], "rejected: unknown device").unwrap();
    assert_eq!(
        store.event_state(ids[1]).unwrap().as_deref(),
        Some("delivered")
    );
    assert_eq!(store.event_state(ids[3]).unwrap().as_deref(), Some("dead"));
    assert_eq!(
        store.event_state(ids[0]).unwrap().as_deref(),
        Some("queued")
    );
    assert_eq!(store.event_state(Uuid::now_v7()).unwrap(), None);
    let summary = store.outbox_summary().unwrap();
    assert_eq!(summary.queued, 1);
    assert_eq!(summary.delivered, 2);
    assert_eq!(summary.oldest_queued_at, Some(t0()));
    assert_eq!(
        summary.dead,
        vec![DeadLetter {
            event_id: ids[3],
            reason: "rejected: unknown device".into(),
            created_at: t0() + Duration::seconds(3),
        }]
    );
    assert_eq!(
        store
            .due_events(now + Duration::hours(1), 10)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.prune_delivered(now + Duration::seconds(1)).unwrap(),
        2
    );
}

#[test]
fn an_unenrolled_device_cannot_queue_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_store(dir.path());
    assert!(matches!(
        store.enqueue_access(NhsNumber::test_range(1), accessor(), None, t0()),
        Err(StoreError::NotEnrolled)
    ));
}

// ---------------------------------------------------------------- migrations

/// Shipped migrations are append-only: their text is part of every installed device's history.
#[test]
fn shipped_migrations_never_change() {
    const SHIPPED: &[(&str, &str)] = &[
        (
            "0001_init.sql",
            "80227c5c0ad1cb99af1c5d64571e33b056565be59d56a6749090be1b97522d0e",
        ),
        (
            "0002_staged_download.sql",
            "0f9f35f9d1e3908716e4ebe531dfe3852c80f7773bb6236a2d197502adbe6559",
        ),
        (
            "0003_dob_index.sql",
            "6856aa1c176a845d67d012314cb0f18f81522980a981b44808ffa895c83df48c",
        ),
        (
            "0004_coarse_audit_times.sql",
            "a491b5ae751bba7c3c2c50f834e9bb31dd6a4b152c868eacbba5dfe7e56a522d",
        ),
        (
            "0005_sealed_pages.sql",
            "063f1afec4b3e5965d6d6ff5187eb4f582a894fd517e7ad7a508834f7c0777b6",
        ),
    ];
    assert_eq!(
        MIGRATIONS.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        SHIPPED.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "every migration file needs its checksum here (and a shipped one is never removed)"
    );
    for ((name, sql), (_, sha)) in MIGRATIONS.iter().zip(SHIPPED) {
        assert_eq!(
            migration_sha256(sql),
            *sha,
            "migration {name} changed: migrations are append-only, add a new file instead"
        );
    }
    let on_disk: Vec<String> = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/device"
    ))
    .unwrap()
    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
    .filter(|n| n.ends_with(".sql"))
    .collect();
    for name in &on_disk {
        assert!(
            MIGRATIONS.iter().any(|(n, _)| n == name),
            "{name} is in migrations/device but not embedded in store::migrations::MIGRATIONS"
        );
    }
}

#[test]
fn a_database_whose_migration_differs_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    store
        .conn()
        .execute(
            "UPDATE schema_migrations SET sha256 = 'edited' WHERE version = 1",
            [],
        )
        .unwrap();
    drop(store);
    let err = DeviceStore::open_with(dir.path(), FAST).unwrap_err();
    assert!(matches!(err, StoreError::MigrationChanged { .. }), "{err}");
    assert!(err.to_string().contains("append-only"));

    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    store
        .conn()
        .execute("INSERT INTO schema_migrations (version, name, sha256) VALUES (999, '0999_future.sql', 'x')", [])
        .unwrap();
    drop(store);
    assert!(matches!(
        DeviceStore::open_with(dir.path(), FAST),
        Err(StoreError::UnknownMigration { version: 999, .. })
    ));
}

#[test]
fn migrations_are_applied_once_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_store(dir.path()));
    let store = open_store(dir.path());
    let rows: Vec<(i64, String, String)> = {
        let mut stmt = store
            .conn()
            .prepare("SELECT version, name, sha256 FROM schema_migrations")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert_eq!(rows.len(), MIGRATIONS.len());
    assert_eq!(rows[0].1, "0001_init.sql");
    assert_eq!(rows[0].2, migration_sha256(MIGRATIONS[0].1));
    let journal: String = store
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let synchronous: i64 = store
        .conn()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(synchronous, 2, "synchronous=FULL");
}

// ---------------------------------------------------------------- the store as a whole

#[test]
fn the_store_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<DeviceStore>();
}

/// Lookup latency in a release build: `cargo test --release -p cpis-core lookup_latency -- --ignored --nocapture`.
#[test]
#[ignore]
fn lookup_latency() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    let mut changes: Vec<FeedChange> = (0..10).map(|j| FeedChange::PutLa { la: la(j) }).collect();
    changes.extend((0..20_000).map(put));
    let mut cursor = 0;
    for chunk in changes.chunks(5_000) {
        let p = page(cursor, chunk.to_vec());
        store.apply_page(&unlocked.keys, &p, t0()).unwrap();
        cursor = p.last;
    }
    let numbers: Vec<NhsNumber> = (0..20_000).step_by(7).map(NhsNumber::test_range).collect();
    let started = std::time::Instant::now();
    for n in &numbers {
        assert!(store.lookup(&unlocked.keys, n).unwrap().is_some());
    }
    let per = started.elapsed() / numbers.len() as u32;
    println!("lookup: {per:?} per check over {} checks", numbers.len());
    assert!(per < std::time::Duration::from_micros(50));
}

/// The check's audit write relaxes fsync for itself only: the access events written after it must
/// still commit with synchronous=FULL.
#[test]
fn a_check_audit_write_leaves_the_outbox_connection_at_synchronous_full() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _central, unlocked) = ready(dir.path());
    store
        .record_check(
            &unlocked.keys,
            &AuditEntry {
                at: t0(),
                user_id: "para1".into(),
                nhs_number: Some(NhsNumber::test_range(5)),
                outcome: "record_found".into(),
                source: "cache".into(),
                search: None,
            },
        )
        .unwrap();
    let synchronous: i64 = store
        .conn()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(synchronous, 2, "synchronous=FULL after an audit write");
    assert_eq!(store.audit_entries(&unlocked.keys).unwrap().len(), 1);
}

#[test]
fn the_data_directory_is_made_0700_and_a_wider_one_is_narrowed() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let fresh = parent.path().join("fresh");
    drop(open_store(&fresh));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&fresh), 0o700);
    // A directory made beforehand with the usual 0755 (as the app once did) is narrowed on open.
    let wide = parent.path().join("wide");
    std::fs::create_dir(&wide).unwrap();
    std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o755)).unwrap();
    drop(open_store(&wide));
    assert_eq!(mode(&wide), 0o700);
}

fn audit(at: DateTime<Utc>, user: &str, nhs: Option<u32>, outcome: &str) -> AuditEntry {
    AuditEntry {
        at,
        user_id: user.into(),
        nhs_number: nhs.map(NhsNumber::test_range),
        outcome: outcome.into(),
        source: "cache".into(),
        search: None,
    }
}

#[test]
fn sealed_audit_entries_have_one_length_and_a_clear_time_of_the_day_only_whatever_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    let keys = &unlocked.keys;
    let entries = [
        audit(
            t0() + Duration::minutes(7),
            "para1",
            Some(1),
            "record_found",
        ),
        audit(t0() + Duration::minutes(9), "para1", Some(2), "no_record"),
        audit(
            t0() + Duration::minutes(11),
            "a-much-longer-user-id-7",
            None,
            "none_of_these",
        ),
    ];
    for e in &entries {
        store.record_check(keys, e).unwrap();
    }
    let rows: Vec<(String, usize)> = {
        let mut stmt = store
            .conn()
            .prepare("SELECT at, length(sealed) FROM audit_log ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|(_, len)| *len == rows[0].1), "{rows:?}");
    assert!(
        rows.iter()
            .all(|(at, _)| at == "2026-01-10T00:00:00.000000Z"),
        "{rows:?}"
    );
    // The exact times are still there for whoever holds the keys.
    assert_eq!(store.audit_entries(keys).unwrap(), entries);
}

#[test]
fn retention_removes_old_audit_entries_and_delivered_events_and_keeps_what_is_still_to_send() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    let keys = &unlocked.keys;
    let old = t0() - Duration::days(100);
    store
        .record_check(keys, &audit(old, "para1", Some(1), "record_found"))
        .unwrap();
    store
        .record_check(keys, &audit(t0(), "para1", Some(2), "no_record"))
        .unwrap();
    let delivered = store
        .enqueue_access(NhsNumber::test_range(1), accessor(), None, old)
        .unwrap();
    store.mark_delivered(&[delivered.id], old).unwrap();
    store
        .enqueue_access(NhsNumber::test_range(3), accessor(), None, old)
        .unwrap();
    assert_eq!(
        store.apply_retention(t0() - Duration::days(90)).unwrap(),
        (1, 1)
    );
    let left = store.audit_entries(keys).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].at, t0());
    let summary = store.outbox_summary().unwrap();
    assert_eq!((summary.queued, summary.delivered), (1, 0));
}

#[test]
fn a_wipe_keeping_the_outbox_still_removes_delivered_events() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, _unlocked) = ready(dir.path());
    let delivered = store
        .enqueue_access(NhsNumber::test_range(1), accessor(), None, t0())
        .unwrap();
    store.mark_delivered(&[delivered.id], t0()).unwrap();
    store
        .enqueue_access(NhsNumber::test_range(2), accessor(), None, t0())
        .unwrap();
    store.wipe(true).unwrap();
    let rows: i64 = store
        .conn()
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(store.outbox_summary().unwrap().queued, 1);
}

// ---------------------------------------------------------------- emergency numbers

#[test]
fn the_emergency_numbers_are_read_without_any_unlock_and_a_tampered_or_replayed_copy_is_refused() {
    use crate::wire::{EmergencyContact, EmergencyDirectory, SignedDirectory};
    let dir = tempfile::tempdir().unwrap();
    let c = central();
    let signing = hazmat::ed25519_generate();
    let mut e = enrolment(&c);
    e.central_signing_key = hazmat::ed25519_public(&signing).unwrap();
    let mut store = open_store(dir.path());
    store.enrol(&e).unwrap();
    assert_eq!(store.emergency_numbers().unwrap(), None);

    let directory = |at: DateTime<Utc>, region: Region| EmergencyDirectory {
        region,
        generated_at: at,
        local_authorities: vec![
            EmergencyContact::from(&la(1)),
            EmergencyContact::from(&la(2)),
        ],
    };
    let signed = SignedDirectory::sign(&directory(t0(), region()), &signing).unwrap();
    assert!(store.keep_emergency_numbers(&signed).unwrap());
    // Nobody has signed in on this store: the numbers are there all the same.
    let kept = store.emergency_numbers().unwrap().unwrap();
    assert_eq!(
        kept.local_authorities[0].emergency_phone,
        emergency_phone(1)
    );
    assert_eq!(kept.local_authorities.len(), 2);

    // An older directory (a replay) does not replace a newer one.
    let older =
        SignedDirectory::sign(&directory(t0() - Duration::days(1), region()), &signing).unwrap();
    assert!(!store.keep_emergency_numbers(&older).unwrap());
    assert_eq!(
        store.emergency_numbers().unwrap().unwrap().generated_at,
        t0()
    );

    // Another region's, or another key's, is refused on arrival.
    let elsewhere = SignedDirectory::sign(
        &directory(
            t0() + Duration::hours(1),
            Region::parse("test-south").unwrap(),
        ),
        &signing,
    )
    .unwrap();
    assert!(matches!(
        store.keep_emergency_numbers(&elsewhere),
        Err(StoreError::EmergencyNumbers(_))
    ));
    let forged = SignedDirectory::sign(
        &directory(t0() + Duration::hours(1), region()),
        &hazmat::ed25519_generate(),
    )
    .unwrap();
    assert!(matches!(
        store.keep_emergency_numbers(&forged),
        Err(StoreError::EmergencyNumbers(_))
    ));

    // A number changed in the stored copy is refused when read.
    let json: String = store
        .conn()
        .query_row(
            "SELECT value FROM meta WHERE key = 'emergency_numbers'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut stored: SignedDirectory = serde_json::from_str(&json).unwrap();
    let body = String::from_utf8(B64.decode(&stored.body).unwrap())
        .unwrap()
        .replace(&emergency_phone(1), "0300 555 9999");
    stored.body = B64.encode(body);
    store
        .conn()
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'emergency_numbers'",
            [serde_json::to_string(&stored).unwrap()],
        )
        .unwrap();
    let err = store.emergency_numbers().unwrap_err();
    assert!(matches!(err, StoreError::EmergencyNumbers(_)), "{err}");
    assert!(err.to_string().contains("safeguarding pathway"), "{err}");
    // The store will not let the kept copy be set through the general meta door either.
    assert!(matches!(
        store.set_meta("emergency_numbers", "{}"),
        Err(StoreError::ReservedMeta(_))
    ));
}

// ---------------------------------------------------------------- the feed key and sealed pages

#[test]
fn the_feed_key_is_kept_sealed_under_the_data_key_opens_after_an_offline_unlock_and_goes_with_a_wipe(
) {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, unlocked) = ready(dir.path());
    assert!(store.feed_key(&unlocked.keys).unwrap().is_none());
    let key = vault::FeedKey::new("v1", hazmat::random_bytes::<32>());
    store.keep_feed_key(&unlocked.keys, &key).unwrap();
    // The key's bytes are nowhere in the store's files.
    let secret = key.to_base64();
    for (name, bytes) in file_bytes(dir.path()) {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{name} holds the feed key in the clear"
        );
    }
    // Another device's keys do not open it; this user's offline unlock does.
    let other_dir = tempfile::tempdir().unwrap();
    let (_other, _oc, other_unlocked) = ready(other_dir.path());
    assert!(store.feed_key(&other_unlocked.keys).is_err());
    let again = store.unlock("para1", PIN, t0()).unwrap();
    let kept = store.feed_key(&again.keys).unwrap().unwrap();
    assert_eq!(kept.id(), "v1");
    assert_eq!(*kept.to_base64(), *key.to_base64());
    // Reserved: nothing outside the vault may overwrite it.
    assert!(store.set_meta("feed_key", "x").is_err());
    store.wipe(true).unwrap();
    assert!(store.get_meta("feed_key").unwrap().is_none());
}

#[test]
fn sealed_pages_are_kept_in_feed_order_until_dropped_and_a_wipe_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _c, _unlocked) = ready(dir.path());
    assert_eq!(store.sealed_pages_end().unwrap(), None);
    let signed = |n: u64| crate::wire::SignedPage {
        body: format!("body-{n}"),
        signature: format!("signature-{n}"),
    };
    store.keep_sealed_page(&signed(2), 20, 30).unwrap();
    store.keep_sealed_page(&signed(1), 0, 20).unwrap();
    assert_eq!(store.sealed_pages_end().unwrap(), Some(30));
    let bodies: Vec<String> = store
        .sealed_pages()
        .unwrap()
        .into_iter()
        .map(|p| p.body)
        .collect();
    assert_eq!(bodies, ["body-1", "body-2"]);
    assert_eq!(store.drop_sealed_pages().unwrap(), 2);
    assert_eq!(store.sealed_pages_end().unwrap(), None);
    store.keep_sealed_page(&signed(3), 0, 5).unwrap();
    store.wipe(true).unwrap();
    assert!(store.sealed_pages().unwrap().is_empty());
}
