//! Fuzz target: the LA upload file parser (`cpis_central::upload::parse_upload`). Any bytes an LA
//! sends must give a report or a refusal, never a panic; what it accepts must be valid records
//! that survive the JSON the feed carries them in and the visibility rules applied at check time.
#![no_main]

use std::collections::BTreeSet;

use chrono::NaiveDate;
use cpis_central::upload::parse_upload;
use cpis_core::{FlagRecord, OdsCode, VisibilityRules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let la = OdsCode::parse("L001").unwrap();
    let parsed = match parse_upload(&la, data) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };

    let lines: Vec<usize> = parsed.rows.iter().map(|r| r.line).collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "one result per line, in order");
    assert!(parsed.keep.windows(2).all(|w| w[0] < w[1]), "keep is sorted and unique");

    let rules = VisibilityRules::default();
    let days = [
        NaiveDate::from_ymd_opt(1900, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
        NaiveDate::from_ymd_opt(2200, 1, 1).unwrap(),
    ];
    let mut people = BTreeSet::new();
    for person in &parsed.people {
        let record = &person.record;
        record.validate().expect("an accepted person is a valid record");
        assert_eq!(record.local_authority, la);
        assert!(people.insert(record.nhs_number), "a person appears once");
        assert!(parsed.keep.binary_search(&record.nhs_number).is_err());
        assert_eq!(person.lines.len(), record.plans.len());
        for line in &person.lines {
            let row = parsed.rows.iter().find(|r| r.line == *line).expect("a result per line");
            assert!(row.accepted && row.reason.is_none());
        }
        for today in days {
            let _ = record.visible_plans(today, &rules);
            let _ = record.is_expired(today, &rules);
        }
        let json = serde_json::to_vec(record).unwrap();
        let back: FlagRecord = serde_json::from_slice(&json).expect("an accepted record decodes again");
        assert_eq!(&back, record);
    }
    for row in &parsed.rows {
        assert_eq!(row.accepted, row.reason.is_none());
    }
});
