//! Replays the fuzz seeds (`fuzz/seeds/<target>/`) and any saved crash inputs
//! (`fuzz/regressions/<target>/`) through the same decoders the fuzz targets drive, so a plain
//! `cargo test` on stable keeps every input that once mattered from panicking again.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::NaiveDate;
use cpis_central::service::access_history;
use cpis_central::upload::parse_upload;
use cpis_core::crypto::hazmat;
use cpis_core::wire::{EventBatch, FeedChange, FeedPage, SealedEvent, SignedPage};
use cpis_core::{AccessEvent, FlagRecord, NhsNumber, OdsCode, VisibilityRules};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()
}

#[test]
fn nhs_number_fuzz_inputs_parse_or_refuse_and_round_trip() {
    let all = inputs("nhs_number");
    assert!(!all.is_empty(), "the nhs_number seeds are missing");
    for (path, data) in all {
        let text = String::from_utf8_lossy(&data);
        if let Ok(n) = NhsNumber::parse(&text) {
            assert_eq!(
                NhsNumber::parse(&n.to_string()),
                Ok(n),
                "{}",
                path.display()
            );
            assert!(
                n.is_test_range(),
                "{}: fuzz inputs use the 999 range",
                path.display()
            );
        }
    }
}

#[test]
fn la_upload_fuzz_inputs_give_a_report_or_a_refusal() {
    let la = OdsCode::parse("L001").unwrap();
    let all = inputs("la_upload");
    assert!(!all.is_empty(), "the la_upload seeds are missing");
    let mut accepted = 0;
    for (path, data) in all {
        let Ok(parsed) = parse_upload(&la, &data) else {
            continue;
        };
        for person in &parsed.people {
            person.record.validate().unwrap();
            assert!(
                person.record.nhs_number.is_test_range(),
                "{}",
                path.display()
            );
            let json = serde_json::to_vec(&person.record).unwrap();
            assert_eq!(
                serde_json::from_slice::<FlagRecord>(&json).unwrap(),
                person.record
            );
            let _ = person
                .record
                .visible_plans(today(), &VisibilityRules::default());
            accepted += 1;
        }
    }
    assert!(accepted > 0, "the good seed file should give people");
}

/// The public half of the harness's fixed fuzz key (seed 0x5a × 32, see fuzz_targets/region_page.rs).
const FUZZ_PAGE_KEY: &str = "0d7550754e0800a5d237eef5826035766b9b3e5a15868a940ab289958788e3b0";

/// The harness's fixed feed key (0x33 × 32, id "v1", see fuzz/seeds/make_seeds.py).
fn fuzz_feed_key() -> cpis_core::vault::FeedKey {
    cpis_core::vault::FeedKey::new("v1", zeroize::Zeroizing::new([0x33u8; 32]))
}

#[test]
fn region_page_fuzz_inputs_decode_or_refuse_and_forgeries_never_verify() {
    let harness = hex::decode(FUZZ_PAGE_KEY).unwrap();
    let pinned = hazmat::ed25519_public(&hazmat::ed25519_generate()).unwrap();
    let all = inputs("region_page");
    assert!(!all.is_empty(), "the region_page seeds are missing");
    let mut verified = 0;
    for (path, data) in all {
        if let Ok(signed) = serde_json::from_slice::<SignedPage>(&data) {
            assert!(signed.verify(&pinned).is_err(), "{}", path.display());
            // Only the seed signed by the harness key verifies, so the fuzzer starts past the signature;
            // it opens with the harness's fixed feed key.
            if let Ok(envelope) = signed.verify(&harness) {
                let page = envelope
                    .open(&fuzz_feed_key())
                    .expect("the signed seed opens");
                assert!(!page.ops.is_empty());
                verified += 1;
            }
        }
        if let Ok(page) = serde_json::from_slice::<FeedPage>(&data) {
            for op in &page.ops {
                if let FeedChange::PutFlag { record } = &op.change {
                    let _ = record.validate();
                    let _ = record.visible_plans(today(), &VisibilityRules::default());
                }
            }
        }
    }
    assert_eq!(verified, 1, "exactly one seed is validly signed");
}

#[test]
fn event_batch_fuzz_inputs_open_only_with_the_right_key() {
    // The harness's fixed secret: the sealed seeds were made for it.
    let secret = [0x42u8; 32];
    let other = [0x24u8; 32];
    let all = inputs("event_batch");
    assert!(!all.is_empty(), "the event_batch seeds are missing");
    let mut opened = 0;
    for (path, data) in all {
        if let Ok(batch) = serde_json::from_slice::<EventBatch>(&data) {
            let mut events = Vec::new();
            for sealed in &batch.events {
                assert!(sealed.open(&other).is_err(), "{}", path.display());
                if let Ok(event) = sealed.open(&secret) {
                    assert_eq!(event.id, sealed.id);
                    events.push(event);
                }
            }
            opened += events.len();
            let _ = access_history(&events);
        }
        let raw = SealedEvent {
            id: uuid::Uuid::nil(),
            device_seq: 0,
            sealed: B64.encode(&data),
        };
        assert!(raw.open(&secret).is_err());
        if let Ok(event) = serde_json::from_slice::<AccessEvent>(&data) {
            let sealed = SealedEvent::seal(&event, &hazmat::x25519_public(&secret));
            assert_eq!(sealed.open(&secret).unwrap(), event);
        }
    }
    assert!(opened > 0, "the sealed seed batch should open");
}
