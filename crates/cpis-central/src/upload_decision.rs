//! What an LA's upload does to that LA's own stored records: the one place the rule lives, pure,
//! so both stores only apply its result. The rule errs towards showing a flag:
//! - a person in the file gets the file's plans; a plan the file leaves out is ended on the upload
//!   date when it was open, and kept as stored when it had already ended (an extract that leaves
//!   out ended plans must not break the 365-day rule);
//! - a person left out of the file has their open plans ended on the upload date, never removed;
//! - a person with a rejected row keeps what is stored;
//! - only a delete date, or every plan ending longer ago than it stays shown, removes a person;
//! - ending open plans for more than a tenth of the LA's people needs the large-removal flag.
//!
//! Nothing here looks at other LAs: the results an LA sees depend only on its own file and its
//! own records, so an upload never tells it whether another LA holds a number.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use cpis_core::plan::{Plan, Visibility, VisibilityRules};
use cpis_core::wire::PersonChange;
use cpis_core::{FlagRecord, NhsNumber};

use crate::upload::PersonRows;

/// The operations an upload comes to, for the store to apply in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UploadDecision {
    /// This LA's records to store (new, changed or with plans ended).
    pub puts: Vec<FlagRecord>,
    /// This LA's records to delete.
    pub removes: Vec<NhsNumber>,
    /// Per person, what was ended, kept or removed and why.
    pub changes: Vec<PersonChange>,
    /// People one of whose open plans this upload ended.
    pub ended: usize,
}

/// Why a whole upload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefusal {
    #[error("the upload would end the open plans of {would_end} of the {stored} people this local authority holds (more than 10%): if that is intended, upload again with allow_large_removal")]
    LargeEnding { would_end: usize, stored: usize },
}

/// One upload as the rule sees it.
pub struct UploadInput<'a> {
    /// This LA's records as stored before the upload.
    pub stored: &'a [FlagRecord],
    /// People whose rows were all valid.
    pub people: &'a [PersonRows],
    /// People with a rejected row: what is stored for them is kept.
    pub keep: &'a [NhsNumber],
    /// The upload date (UK).
    pub today: NaiveDate,
    pub rules: VisibilityRules,
    pub allow_large_removal: bool,
}

fn kinds(plans: &[&Plan]) -> Vec<String> {
    plans.iter().map(|p| p.kind.code().to_string()).collect()
}

/// Ends `plan` on `today` when it is open; `None` when it had already ended.
fn end_if_open(plan: &Plan, today: NaiveDate) -> Option<Plan> {
    match plan.end {
        Some(_) => None,
        None => Some(Plan {
            end: Some(today.max(plan.start)),
            ..plan.clone()
        }),
    }
}

fn removal_reason(record: &FlagRecord, today: NaiveDate, rules: &VisibilityRules) -> String {
    let deleted = record
        .plans
        .iter()
        .any(|p| matches!(p.visibility(today, rules), Visibility::Deleted { .. }));
    if deleted {
        "the local authority's delete date has passed".into()
    } else {
        "every plan ended longer ago than it stays shown".into()
    }
}

/// Decides what an upload does. Pure: the same input always gives the same operations.
pub fn decide_upload(input: UploadInput<'_>) -> Result<UploadDecision, UploadRefusal> {
    let UploadInput {
        stored,
        people,
        keep,
        today,
        rules,
        allow_large_removal,
    } = input;
    let stored_by: BTreeMap<NhsNumber, &FlagRecord> =
        stored.iter().map(|r| (r.nhs_number, r)).collect();
    let in_file: BTreeSet<NhsNumber> = people
        .iter()
        .map(|p| p.record.nhs_number)
        .chain(keep.iter().copied())
        .collect();
    let mut decision = UploadDecision::default();

    // People the file left out: their open plans end today.
    let mut would_end = 0;
    for record in stored.iter().filter(|r| !in_file.contains(&r.nhs_number)) {
        let ended: Vec<Plan> = record
            .plans
            .iter()
            .filter_map(|p| end_if_open(p, today))
            .collect();
        if !ended.is_empty() {
            would_end += 1;
        }
        let updated = FlagRecord {
            plans: record
                .plans
                .iter()
                .map(|p| end_if_open(p, today).unwrap_or_else(|| p.clone()))
                .collect(),
            ..(*record).clone()
        };
        settle(
            &mut decision,
            Some(record),
            updated,
            Vec::new(),
            &ended.iter().collect::<Vec<_>>(),
            "not in this upload: the open plan was ended on the upload date and stays shown for its window",
            today,
            &rules,
        );
    }
    if !allow_large_removal && would_end * 10 > stored.len() {
        return Err(UploadRefusal::LargeEnding {
            would_end,
            stored: stored.len(),
        });
    }

    // People the file gives.
    for person in people {
        let given = &person.record;
        let old = stored_by.get(&given.nhs_number).copied();
        let mut record = given.clone();
        let mut ended = Vec::new();
        let mut kept = Vec::new();
        if let Some(old) = old {
            for plan in &old.plans {
                if record.plans.iter().any(|p| p.kind == plan.kind) {
                    continue;
                }
                match end_if_open(plan, today) {
                    Some(e) => {
                        ended.push(plan.clone());
                        record.plans.push(e);
                    }
                    None => {
                        kept.push(plan.clone());
                        record.plans.push(plan.clone());
                    }
                }
            }
        }
        if !kept.is_empty() && !record.is_expired(today, &rules) {
            decision.changes.push(PersonChange {
                nhs_number: given.nhs_number,
                lines: person.lines.clone(),
                action: "kept".into(),
                plans: kinds(&kept.iter().collect::<Vec<_>>()),
                reason: "an ended plan the file left out is kept until its window closes".into(),
            });
        }
        settle(
            &mut decision,
            old,
            record,
            person.lines.clone(),
            &ended.iter().collect::<Vec<_>>(),
            "left out of this person's rows: the open plan was ended on the upload date and stays shown for its window",
            today,
            &rules,
        );
    }

    // People with a rejected row keep what is stored.
    for nhs in keep {
        if let Some(old) = stored_by.get(nhs) {
            decision.changes.push(PersonChange {
                nhs_number: *nhs,
                lines: Vec::new(),
                action: "kept".into(),
                plans: kinds(&old.plans.iter().collect::<Vec<_>>()),
                reason: "a row for this person was rejected: what was stored is kept unchanged"
                    .into(),
            });
        }
    }
    Ok(decision)
}

/// Records the outcome for one person: a put when the record changed, a removal when nothing of it
/// may show any more, nothing when it is as stored.
#[allow(clippy::too_many_arguments)]
fn settle(
    decision: &mut UploadDecision,
    old: Option<&FlagRecord>,
    record: FlagRecord,
    lines: Vec<usize>,
    ended: &[&Plan],
    why_ended: &str,
    today: NaiveDate,
    rules: &VisibilityRules,
) {
    let mut record = record;
    // Plans in kind order, so a file that lists them in another order is not a change.
    record.plans.sort_by_key(|p| p.kind);
    let unchanged = old.is_some_and(|o| {
        let mut o = o.clone();
        o.plans.sort_by_key(|p| p.kind);
        o == record
    });
    let nhs = record.nhs_number;
    if record.is_expired(today, rules) {
        if old.is_some() {
            decision.changes.push(PersonChange {
                nhs_number: nhs,
                lines,
                action: "removed".into(),
                plans: kinds(&record.plans.iter().collect::<Vec<_>>()),
                reason: removal_reason(&record, today, rules),
            });
            decision.removes.push(nhs);
        }
        return;
    }
    if !ended.is_empty() {
        decision.ended += 1;
        decision.changes.push(PersonChange {
            nhs_number: nhs,
            lines,
            action: "ended".into(),
            plans: kinds(ended),
            reason: why_ended.into(),
        });
    }
    if !unchanged {
        decision.puts.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpis_core::plan::PlanKind;
    use cpis_core::OdsCode;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    const TODAY: &str = "2026-12-01";

    fn plan(kind: PlanKind, end: Option<&str>, delete: Option<&str>) -> Plan {
        Plan {
            kind,
            start: d("2026-01-01"),
            end: end.map(d),
            due: None,
            delete: delete.map(d),
            local_authority: None,
        }
    }

    fn person(i: u32, plans: Vec<Plan>) -> FlagRecord {
        FlagRecord {
            nhs_number: NhsNumber::test_range(i),
            family_name: "Testperson".into(),
            given_names: format!("Child {i}"),
            date_of_birth: d("2018-04-04"),
            local_id: None,
            local_authority: OdsCode::parse("L001").unwrap(),
            plans,
        }
    }

    fn rows(records: &[FlagRecord]) -> Vec<PersonRows> {
        records
            .iter()
            .enumerate()
            .map(|(i, r)| PersonRows {
                record: r.clone(),
                lines: vec![i + 2],
            })
            .collect()
    }

    fn decide(
        stored: &[FlagRecord],
        file: &[FlagRecord],
        keep: &[NhsNumber],
        allow: bool,
    ) -> Result<UploadDecision, UploadRefusal> {
        let people = rows(file);
        decide_upload(UploadInput {
            stored,
            people: &people,
            keep,
            today: d(TODAY),
            rules: VisibilityRules::default(),
            allow_large_removal: allow,
        })
    }

    use PlanKind::{ChildProtection as Cppi, LookedAfter as Laci};

    /// (case, stored, file, keep, expected puts, expected removes, expected actions)
    #[test]
    fn what_an_upload_does_per_person() {
        let open = |i| person(i, vec![plan(Cppi, None, None)]);
        let ended_today = |i| person(i, vec![plan(Cppi, Some(TODAY), None)]);
        let ended_long_ago = |i| person(i, vec![plan(Cppi, Some("2025-01-01"), None)]);
        let ended_recently = |i| person(i, vec![plan(Cppi, Some("2026-06-01"), None)]);
        let deleted = |i| person(i, vec![plan(Cppi, None, Some("2026-11-30"))]);
        let many = |n: u32| (1..=n).map(open).collect::<Vec<_>>();
        type Case = (
            &'static str,
            Vec<FlagRecord>,
            Vec<FlagRecord>,
            Vec<NhsNumber>,
            Vec<FlagRecord>,
            Vec<NhsNumber>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "a new person is put",
                vec![],
                vec![open(1)],
                vec![],
                vec![open(1)],
                vec![],
                vec![],
            ),
            (
                "an unchanged person is left alone",
                vec![open(1)],
                vec![open(1)],
                vec![],
                vec![],
                vec![],
                vec![],
            ),
            (
                "absence ends the open plan on the upload date, never removes",
                [many(20), vec![open(21)]].concat(),
                many(20),
                vec![],
                vec![ended_today(21)],
                vec![],
                vec!["ended"],
            ),
            (
                "absence keeps an already ended plan as stored",
                [many(20), vec![ended_recently(21)]].concat(),
                many(20),
                vec![],
                vec![],
                vec![],
                vec![],
            ),
            (
                "absence of a long-ended plan removes it",
                [many(20), vec![ended_long_ago(21)]].concat(),
                many(20),
                vec![],
                vec![],
                vec![NhsNumber::test_range(21)],
                vec!["removed"],
            ),
            (
                "a person with a rejected row keeps what is stored",
                many(3),
                many(2),
                vec![NhsNumber::test_range(3)],
                vec![],
                vec![],
                vec!["kept"],
            ),
            (
                "a delete date that has passed removes the person",
                vec![open(1)],
                vec![deleted(1)],
                vec![],
                vec![],
                vec![NhsNumber::test_range(1)],
                vec!["removed"],
            ),
            (
                "a plan the file leaves out of a person's rows is ended, the others put",
                vec![person(
                    1,
                    vec![plan(Cppi, None, None), plan(Laci, None, None)],
                )],
                vec![person(1, vec![plan(Laci, None, None)])],
                vec![],
                vec![person(
                    1,
                    vec![plan(Cppi, Some(TODAY), None), plan(Laci, None, None)],
                )],
                vec![],
                vec!["ended"],
            ),
            (
                "an ended plan the file leaves out of a person's rows is kept",
                vec![person(
                    1,
                    vec![plan(Cppi, Some("2026-06-01"), None), plan(Laci, None, None)],
                )],
                vec![person(1, vec![plan(Laci, None, None)])],
                vec![],
                vec![],
                vec![],
                vec!["kept"],
            ),
        ];
        for (case, stored, file, keep, puts, removes, actions) in cases {
            let got =
                decide(&stored, &file, &keep, false).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(got.puts, puts, "{case}: puts");
            assert_eq!(got.removes, removes, "{case}: removes");
            let got_actions: Vec<&str> = got.changes.iter().map(|c| c.action.as_str()).collect();
            assert_eq!(got_actions, actions, "{case}: actions");
        }
    }

    #[test]
    fn a_bad_nhs_number_in_an_upload_never_removes_a_correctly_stored_child() {
        // The LA's row for child 2 carries a mistyped number (rejected by Modulus 11 before this
        // rule sees it), so child 2 is absent: their plan is ended on the upload date and stays
        // shown for 365 days, and the result says so.
        let stored: Vec<FlagRecord> = (1..=20)
            .map(|i| person(i, vec![plan(Cppi, None, None)]))
            .collect();
        let file: Vec<FlagRecord> = stored
            .iter()
            .filter(|r| r.nhs_number != NhsNumber::test_range(2))
            .cloned()
            .collect();
        let got = decide(&stored, &file, &[], false).unwrap();
        assert!(
            got.removes.is_empty(),
            "absence removed a child: {:?}",
            got.removes
        );
        assert_eq!(got.puts.len(), 1);
        assert_eq!(got.puts[0].plans[0].end, Some(d(TODAY)));
        assert!(
            got.puts[0]
                .visible_plans(
                    d(TODAY) + chrono::Duration::days(365),
                    &VisibilityRules::default()
                )
                .len()
                == 1
        );
        assert_eq!(got.changes[0].action, "ended");
        assert!(got.changes[0].reason.contains("not in this upload"));
    }

    #[test]
    fn ending_more_than_a_tenth_by_absence_needs_the_large_removal_flag() {
        let stored: Vec<FlagRecord> = (1..=10)
            .map(|i| person(i, vec![plan(Cppi, None, None)]))
            .collect();
        let err = decide(&stored, &stored[..8], &[], false).unwrap_err();
        assert_eq!(
            err,
            UploadRefusal::LargeEnding {
                would_end: 2,
                stored: 10
            }
        );
        assert!(err.to_string().contains("allow_large_removal"));
        let ok = decide(&stored, &stored[..8], &[], true).unwrap();
        assert_eq!(ok.ended, 2);
        assert!(ok.removes.is_empty());
    }
}
