//! The check use case's wording and result building: visibility applied at check time, the honest
//! negative with its caveats, data age and staleness. No I/O here.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use cpis_core::plan::{FlagRecord, Visibility, VisibilityRules};
use cpis_core::ukdate::{date_text, uk_time_text, uk_today};
use cpis_core::wire::{AccessHistoryEntry, LiveCheckResponse, LiveOutcome};
use cpis_core::{LocalAuthority, NhsNumber, OdsCode};

use crate::views::*;

pub const MISS_MESSAGE: &str = "No CP-IS record found for this NHS number";
pub const FOUND_MESSAGE: &str = "A CP-IS record exists for this NHS number";
pub const LOCKED_ADVICE: &str =
    "Phone the local authority's emergency duty team, or use your trust's safeguarding pathway.";

/// Shown when the central answers "no record" for someone this device's copy holds: the flag stays
/// on screen, because a record removed by mistake costs more than one shown a little too long.
pub const CENTRAL_NO_LONGER_HOLDS: &str = "The central service no longer holds this record, but this device's copy does: it may have been removed since the copy was updated. Phone the local authority's emergency duty team to confirm.";
/// Shown when the central's answer was about a different NHS number and was not used.
pub const LIVE_ANSWER_REFUSED: &str = "The central service's answer did not match this NHS number and was not used: this answer comes from this device's copy.";

pub const SEARCH_MATCH_MESSAGE: &str = "One person matches these details and has a CP-IS record";
pub const SEARCH_POSSIBLE_MESSAGE: &str =
    "Possible matches: confirm which one is your patient, or choose none of these";
pub const SEARCH_CONFIRM_CAVEAT: &str = "No plan details are shown until you confirm the person is your patient. If none of them is, choose none of these.";
pub const SEARCH_TOO_MANY_MESSAGE: &str = "Too many people match these details to show any of them";
pub const SEARCH_TOO_MANY_ADVICE: &str = "Add the given name, check the spelling and the date of birth, or check by NHS number when you have it.";
pub const SEARCH_MISS_MESSAGE: &str = "No CP-IS record found for these details";

/// A name search's miss: what a number check could not see, and what a name search cannot either.
pub fn search_miss_caveats(source: Source, data_as_of: Option<DateTime<Utc>>) -> Vec<String> {
    let mut out = miss_caveats(source, data_as_of);
    let last = out.pop();
    out.extend(cpis_core::search::name_search_caveats());
    out.extend(last);
    out
}

/// A record as a check showed it, kept so that opening the alert opens exactly this record.
#[derive(Debug, Clone)]
pub struct Shown {
    pub source: Source,
    pub data_as_of: Option<DateTime<Utc>>,
    pub record: FlagRecord,
    /// The local authorities holding the record's plans, as far as they are known.
    pub las: Vec<LocalAuthority>,
    pub history: Vec<AccessHistoryEntry>,
}

/// What a check or an opened alert shows, decided from what the device already holds (the cache, or
/// the record the check showed) and the central's live answer, if one came.
#[derive(Debug, Clone)]
pub struct Decision {
    pub source: Source,
    pub data_as_of: Option<DateTime<Utc>>,
    pub record: Option<Shown>,
    pub caveats: Vec<String>,
    /// The central answered about someone else; its answer was dropped (logged and audited).
    pub live_refused: bool,
    /// The central said "no record" where the device held one; the device's record is shown.
    pub kept_over_central_miss: bool,
}

impl Decision {
    /// What the local audit records as the answer's source.
    pub fn audit_source(&self) -> &'static str {
        match (self.source, self.live_refused, self.kept_over_central_miss) {
            (_, true, _) => "cache_central_answer_refused",
            (_, _, true) => "cache_kept_over_central_no_record",
            (Source::Cache, _, _) => "cache",
            (Source::Central, _, _) => "central",
        }
    }
}

/// The one rule set for live and cached answers, used by the check and by opening an alert:
/// - a live answer is used only when its record is about the NHS number asked;
/// - a live record that shows today wins (it is fresher, and carries the access history);
/// - a live "no record" never hides what the device holds: the held record is shown with a caveat;
/// - with no usable live answer, what the device holds answers, as of its own time.
pub fn decide(
    asked: &NhsNumber,
    held: Option<Shown>,
    held_as_of: Option<DateTime<Utc>>,
    live: Option<LiveCheckResponse>,
    today: NaiveDate,
    rules: &VisibilityRules,
) -> Decision {
    let fallback = |held: Option<Shown>, caveat: Option<&str>| Decision {
        source: held.as_ref().map(|h| h.source).unwrap_or(Source::Cache),
        data_as_of: held.as_ref().map(|h| h.data_as_of).unwrap_or(held_as_of),
        record: held,
        caveats: caveat.map(|c| vec![c.to_string()]).unwrap_or_default(),
        live_refused: false,
        kept_over_central_miss: false,
    };
    let Some(answer) = live else {
        return fallback(held, None);
    };
    if answer
        .record
        .as_ref()
        .is_some_and(|r| r.nhs_number != *asked)
    {
        return Decision {
            live_refused: true,
            ..fallback(held, Some(LIVE_ANSWER_REFUSED))
        };
    }
    let live_record = match answer.outcome {
        LiveOutcome::RecordFound => answer.record.filter(|r| !r.is_expired(today, rules)),
        LiveOutcome::NoRecord => None,
    };
    match (live_record, held) {
        (Some(record), _) => Decision {
            source: Source::Central,
            data_as_of: Some(answer.as_of),
            record: Some(Shown {
                source: Source::Central,
                data_as_of: Some(answer.as_of),
                record,
                las: if answer.local_authorities.is_empty() {
                    answer.local_authority.into_iter().collect()
                } else {
                    answer.local_authorities
                },
                history: answer.access_history,
            }),
            caveats: vec![],
            live_refused: false,
            kept_over_central_miss: false,
        },
        (None, Some(held)) => Decision {
            kept_over_central_miss: true,
            ..fallback(Some(held), Some(CENTRAL_NO_LONGER_HOLDS))
        },
        (None, None) => Decision {
            source: Source::Central,
            data_as_of: Some(answer.as_of),
            record: None,
            caveats: vec![],
            live_refused: false,
            kept_over_central_miss: false,
        },
    }
}

type MissCaveatsKey = (Source, Option<DateTime<Utc>>);

thread_local! {
    /// The caveats change only with the answer's source and data age: the last set is reused
    /// rather than worded and formatted again for every miss.
    static LAST_MISS_CAVEATS: std::cell::RefCell<Option<(MissCaveatsKey, Vec<String>)>> =
        const { std::cell::RefCell::new(None) };
}

/// What a miss could not see. Shown with every "no record" so a miss never discourages a referral.
pub fn miss_caveats(source: Source, data_as_of: Option<DateTime<Utc>>) -> Vec<String> {
    LAST_MISS_CAVEATS.with(|last| {
        if let Some((key, caveats)) = &*last.borrow() {
            if *key == (source, data_as_of) {
                return caveats.clone();
            }
        }
        let caveats = word_miss_caveats(source, data_as_of);
        *last.borrow_mut() = Some(((source, data_as_of), caveats.clone()));
        caveats
    })
}

fn word_miss_caveats(source: Source, data_as_of: Option<DateTime<Utc>>) -> Vec<String> {
    let freshness = match (source, data_as_of) {
        (Source::Central, _) => "Changes made by the local authority since its last upload are not shown.".to_string(),
        (Source::Cache, Some(at)) => format!(
            "This answer comes from this device's copy, last updated {}: changes since then are not shown.",
            uk_time_text(at)
        ),
        (Source::Cache, None) => "This device's copy is incomplete: it has not yet finished a download from the central service, so most records may be missing.".to_string(),
    };
    let mut caveats = vec![
        freshness,
        "Children whose record is marked sensitive cannot carry a CP-IS flag.".into(),
        "Children not matched to an NHS number by their local authority are not shown.".into(),
        "A newborn's own NHS number does not show the mother's unborn child protection plan: check the mother's NHS number too.".into(),
        "Only the NHS number checked is matched: a record held under a superseded or merged NHS number is not found.".into(),
        "Children looked after or on a plan in Wales or Scotland are held on their own registers, not CP-IS.".into(),
    ];
    if source == Source::Cache {
        caveats.push("Cached copies hold only this device's region; people from other regions are found only by the central service.".into());
    }
    caveats.push("This is not an assessment of risk. If you have a safeguarding concern, make a referral as you normally would.".into());
    caveats
}

pub fn data_age(now: DateTime<Utc>, as_of: Option<DateTime<Utc>>) -> Option<i64> {
    as_of.map(|at| (now - at).num_seconds().max(0))
}

/// The plans shown on `today` (a UK date), each with its status in words and its LA.
pub fn plan_views(
    record: &FlagRecord,
    las: &[LocalAuthority],
    today: NaiveDate,
    rules: &VisibilityRules,
) -> Vec<PlanView> {
    record
        .visible_plans(today, rules)
        .into_iter()
        .map(|(plan, visibility)| {
            let (status, status_text, ended_on, shown_until) = match visibility {
                Visibility::Ended { on, shown_until } => (
                    "ended",
                    format!(
                        "Ended on {}; shown until {}",
                        date_text(on),
                        date_text(shown_until)
                    ),
                    Some(on),
                    Some(shown_until),
                ),
                Visibility::DuePassed { due, shown_until } => (
                    "due_passed",
                    format!(
                        "Due date passed on {}; shown until {}",
                        date_text(due),
                        date_text(shown_until)
                    ),
                    None,
                    Some(shown_until),
                ),
                Visibility::NotStarted { starts } => (
                    "not_started",
                    format!("Starts on {}", date_text(starts)),
                    None,
                    None,
                ),
                _ => ("current", "Current".to_string(), None, None),
            };
            let holder = plan.holder(record).clone();
            PlanView {
                kind: plan.kind.code().to_string(),
                kind_in_words: plan.kind.in_words().to_string(),
                start: plan.start,
                end: plan.end,
                due: plan.due,
                status: status.to_string(),
                status_text,
                ended_on,
                shown_until,
                local_authority: las.iter().find(|la| la.ods == holder).map(la_view),
                local_authority_ods: holder.to_string(),
            }
        })
        .collect()
}

pub fn la_view(la: &LocalAuthority) -> LocalAuthorityView {
    LocalAuthorityView {
        ods: la.ods.to_string(),
        name: la.name.clone(),
        emergency_phone: la.emergency_phone.clone(),
        office_phone: la.office_phone.clone(),
    }
}

/// Common fields of a result.
pub struct ResultContext {
    pub check_id: Uuid,
    pub now: DateTime<Utc>,
    pub source: Source,
    pub data_as_of: Option<DateTime<Utc>>,
    pub stale_after_secs: i64,
    pub notifies: bool,
}

impl ResultContext {
    fn base(&self, outcome: CheckOutcome, nhs: Option<String>, message: &str) -> CheckView {
        let age = data_age(self.now, self.data_as_of);
        CheckView {
            check_id: self.check_id,
            outcome,
            nhs_number: nhs,
            reason: None,
            source: self.source,
            data_as_of: self.data_as_of,
            data_age_seconds: age,
            // The same warning age for both sources: a central answer is as old as the
            // responsible local authority's last upload.
            stale: age.map(|a| a > self.stale_after_secs).unwrap_or(true),
            opened: false,
            notifies: self.notifies,
            notification: None,
            event_id: None,
            person: None,
            plans: vec![],
            local_authority: None,
            local_authorities: vec![],
            access_history: vec![],
            caveats: vec![],
            message: message.to_string(),
        }
    }

    pub fn miss(&self, nhs: String) -> CheckView {
        let mut view = self.base(CheckOutcome::NoRecord, Some(nhs), MISS_MESSAGE);
        view.caveats = miss_caveats(self.source, self.data_as_of);
        view
    }

    /// A record exists and shows today. Details stay hidden until the alert is opened.
    pub fn found(
        &self,
        nhs: String,
        record: &FlagRecord,
        las: &[LocalAuthority],
        history: Vec<AccessHistoryEntry>,
        opened: bool,
        rules: &VisibilityRules,
    ) -> CheckView {
        let mut view = self.base(CheckOutcome::RecordFound, Some(nhs), FOUND_MESSAGE);
        let today = uk_today(self.now);
        // The LAs holding a plan shown today, the record's own (most recent) first.
        let shown_holders: Vec<OdsCode> = record
            .holders()
            .into_iter()
            .filter(|la| {
                record
                    .plans
                    .iter()
                    .any(|p| p.holder(record) == la && p.visibility(today, rules).is_shown())
            })
            .collect();
        view.local_authorities = shown_holders
            .iter()
            .filter_map(|ods| las.iter().find(|la| &la.ods == ods))
            .map(la_view)
            .collect();
        view.local_authority = view.local_authorities.first().cloned();
        if opened {
            view.opened = true;
            view.person = Some(PersonView {
                family_name: record.family_name.clone(),
                given_names: record.given_names.clone(),
                date_of_birth: record.date_of_birth,
                local_id: record.local_id.clone(),
            });
            view.plans = plan_views(record, las, today, rules);
            view.access_history = history;
            if view.local_authorities.len() < shown_holders.len() {
                view.caveats.push(
                    "A local authority's contact details have not reached this device yet: use your trust's safeguarding pathway.".into(),
                );
            }
        }
        view
    }
}

/// A view with no answer about a person: an invalid number or a locked cache.
fn refusal(check_id: Uuid, outcome: CheckOutcome, reason: String, message: &str) -> CheckView {
    CheckView {
        check_id,
        outcome,
        nhs_number: None,
        reason: Some(reason),
        source: Source::Cache,
        data_as_of: None,
        data_age_seconds: None,
        stale: false,
        opened: false,
        notifies: false,
        notification: None,
        event_id: None,
        person: None,
        plans: vec![],
        local_authority: None,
        local_authorities: vec![],
        access_history: vec![],
        caveats: vec![],
        message: message.to_string(),
    }
}

pub fn invalid(check_id: Uuid, reason: String) -> CheckView {
    refusal(
        check_id,
        CheckOutcome::InvalidNhsNumber,
        reason,
        "This is not a valid NHS number",
    )
}

pub fn locked(
    check_id: Uuid,
    reason: String,
    data_as_of: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> CheckView {
    CheckView {
        data_as_of,
        data_age_seconds: data_age(now, data_as_of),
        stale: true,
        caveats: vec![LOCKED_ADVICE.to_string()],
        ..refusal(
            check_id,
            CheckOutcome::Locked,
            reason,
            "This device's copy cannot be opened",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_never_says_not_at_risk_and_always_has_caveats() {
        let ctx = ResultContext {
            check_id: Uuid::now_v7(),
            now: Utc::now(),
            source: Source::Cache,
            data_as_of: Some(Utc::now()),
            stale_after_secs: 86_400,
            notifies: true,
        };
        let view = ctx.miss("999 000 0018".into());
        let text = serde_json::to_string(&view).unwrap().to_lowercase();
        assert_eq!(view.message, MISS_MESSAGE);
        assert!(view.caveats.len() >= 5);
        for banned in ["not at risk", "no concerns", "is safe"] {
            assert!(!text.contains(banned), "{banned}");
        }
        assert!(text.contains("sensitive"));
        assert!(text.contains("wales or scotland"));
    }

    fn ctx(source: Source) -> ResultContext {
        ResultContext {
            check_id: Uuid::now_v7(),
            now: Utc::now(),
            source,
            data_as_of: Some(Utc::now()),
            stale_after_secs: 86_400,
            notifies: true,
        }
    }

    #[test]
    fn a_miss_says_a_newborns_number_does_not_show_the_mothers_unborn_plan_and_superseded_numbers_are_not_matched(
    ) {
        for source in [Source::Cache, Source::Central] {
            let caveats = ctx(source).miss("999 000 0018".into()).caveats.join(" ");
            assert!(caveats.contains("newborn's own NHS number does not show the mother's unborn child protection plan"), "{caveats}");
            assert!(caveats.contains("superseded"), "{caveats}");
        }
    }

    #[test]
    fn a_central_miss_does_not_say_cached_copies_hold_only_this_region() {
        let central = ctx(Source::Central)
            .miss("999 000 0018".into())
            .caveats
            .join(" ");
        assert!(!central.contains("Cached copies hold only"), "{central}");
        let cache = ctx(Source::Cache)
            .miss("999 000 0018".into())
            .caveats
            .join(" ");
        assert!(
            cache.contains("Cached copies hold only this device's region"),
            "{cache}"
        );
    }

    #[test]
    fn a_plan_not_started_reads_starts_on_and_an_unborn_plan_past_its_due_date_reads_due_date_passed(
    ) {
        use cpis_core::plan::{Plan, PlanKind};
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let plan = |kind, start: &str, end: Option<&str>, due: Option<&str>| Plan {
            kind,
            start: d(start),
            end: end.map(d),
            due: due.map(d),
            delete: None,
            local_authority: None,
        };
        let record = FlagRecord {
            nhs_number: NhsNumber::test_range(5),
            family_name: "Testperson".into(),
            given_names: "Jo".into(),
            date_of_birth: d("1995-05-05"),
            local_id: None,
            local_authority: OdsCode::parse("L001").unwrap(),
            plans: vec![
                plan(
                    PlanKind::UnbornChildProtection,
                    "2026-06-01",
                    None,
                    Some("2026-11-10"),
                ),
                plan(PlanKind::ChildProtection, "2027-01-04", None, None),
            ],
        };
        let views = plan_views(&record, &[], d("2026-12-01"), &VisibilityRules::default());
        let words: Vec<(&str, &str)> = views
            .iter()
            .map(|v| (v.status.as_str(), v.status_text.as_str()))
            .collect();
        assert_eq!(
            words,
            [
                (
                    "due_passed",
                    "Due date passed on 10 Nov 2026; shown until 8 Dec 2026"
                ),
                ("not_started", "Starts on 4 Jan 2027"),
            ]
        );
        assert_eq!(views[0].due, Some(d("2026-11-10")));
        assert_eq!(views[0].local_authority_ods, "L001");
    }

    #[test]
    fn cache_data_older_than_the_warning_age_is_stale() {
        let now = Utc::now();
        let mk = |age_h: i64| ResultContext {
            check_id: Uuid::now_v7(),
            now,
            source: Source::Cache,
            data_as_of: Some(now - chrono::Duration::hours(age_h)),
            stale_after_secs: 86_400,
            notifies: false,
        };
        assert!(!mk(23).miss("x".into()).stale);
        assert!(mk(25).miss("x".into()).stale);
    }

    mod decide {
        use super::super::*;
        use chrono::TimeZone;
        use cpis_core::plan::{Plan, PlanKind};
        use cpis_core::OdsCode;

        fn record(i: u32) -> FlagRecord {
            FlagRecord {
                nhs_number: NhsNumber::test_range(i),
                family_name: format!("Family{i}"),
                given_names: "Alex".into(),
                date_of_birth: NaiveDate::from_ymd_opt(2019, 1, 1).unwrap(),
                local_id: None,
                local_authority: OdsCode::parse("L001").unwrap(),
                plans: vec![Plan {
                    kind: PlanKind::ChildProtection,
                    start: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
                    end: None,
                    due: None,
                    delete: None,
                    local_authority: None,
                }],
            }
        }

        fn held(i: u32, source: Source) -> Shown {
            Shown {
                source,
                data_as_of: Some(Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap()),
                record: record(i),
                las: vec![],
                history: vec![],
            }
        }

        fn live(outcome: LiveOutcome, about: Option<u32>) -> LiveCheckResponse {
            LiveCheckResponse {
                outcome,
                record: about.map(record),
                local_authority: None,
                local_authorities: vec![],
                access_history: vec![],
                access_recorded: false,
                as_of: Utc.with_ymd_and_hms(2026, 11, 29, 18, 0, 0).unwrap(),
            }
        }

        /// (case, held, live) -> (source, shown person, caveat, audit source)
        type Case = (
            &'static str,
            Option<Shown>,
            Option<LiveCheckResponse>,
            Source,
            Option<u32>,
            Option<&'static str>,
            &'static str,
        );

        #[test]
        fn one_rule_set_for_live_and_held_answers() {
            use LiveOutcome::*;
            let cases: Vec<Case> = vec![
                (
                    "no live answer: the copy",
                    Some(held(1, Source::Cache)),
                    None,
                    Source::Cache,
                    Some(1),
                    None,
                    "cache",
                ),
                (
                    "no live answer, nothing held",
                    None,
                    None,
                    Source::Cache,
                    None,
                    None,
                    "cache",
                ),
                (
                    "live found wins",
                    Some(held(1, Source::Cache)),
                    Some(live(RecordFound, Some(1))),
                    Source::Central,
                    Some(1),
                    None,
                    "central",
                ),
                (
                    "live found, nothing held",
                    None,
                    Some(live(RecordFound, Some(1))),
                    Source::Central,
                    Some(1),
                    None,
                    "central",
                ),
                (
                    "live about someone else is refused",
                    Some(held(1, Source::Cache)),
                    Some(live(RecordFound, Some(2))),
                    Source::Cache,
                    Some(1),
                    Some(LIVE_ANSWER_REFUSED),
                    "cache_central_answer_refused",
                ),
                (
                    "live about someone else, nothing held",
                    None,
                    Some(live(RecordFound, Some(2))),
                    Source::Cache,
                    None,
                    Some(LIVE_ANSWER_REFUSED),
                    "cache_central_answer_refused",
                ),
                (
                    "live no record keeps the held flag",
                    Some(held(1, Source::Cache)),
                    Some(live(NoRecord, None)),
                    Source::Cache,
                    Some(1),
                    Some(CENTRAL_NO_LONGER_HOLDS),
                    "cache_kept_over_central_no_record",
                ),
                (
                    "live no record keeps an earlier live answer",
                    Some(held(1, Source::Central)),
                    Some(live(NoRecord, None)),
                    Source::Central,
                    Some(1),
                    Some(CENTRAL_NO_LONGER_HOLDS),
                    "cache_kept_over_central_no_record",
                ),
                (
                    "live no record, nothing held: a central miss",
                    None,
                    Some(live(NoRecord, None)),
                    Source::Central,
                    None,
                    None,
                    "central",
                ),
            ];
            let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
            for (case, held, live, source, shown, caveat, audit) in cases {
                let d = decide(
                    &NhsNumber::test_range(1),
                    held,
                    None,
                    live,
                    today,
                    &VisibilityRules::default(),
                );
                assert_eq!(d.source, source, "{case}");
                assert_eq!(
                    d.record.as_ref().map(|s| s.record.nhs_number),
                    shown.map(NhsNumber::test_range),
                    "{case}"
                );
                assert_eq!(d.caveats.first().map(String::as_str), caveat, "{case}");
                assert_eq!(d.audit_source(), audit, "{case}");
            }
        }

        #[test]
        fn a_live_record_is_as_old_as_the_central_says() {
            let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
            let answer = live(LiveOutcome::RecordFound, Some(1));
            let as_of = answer.as_of;
            let d = decide(
                &NhsNumber::test_range(1),
                None,
                None,
                Some(answer),
                today,
                &VisibilityRules::default(),
            );
            assert_eq!(d.data_as_of, Some(as_of));
        }
    }
}
