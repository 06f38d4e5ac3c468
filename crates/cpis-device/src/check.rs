//! The check use case's wording and result building: visibility applied at check time, the honest
//! negative with its caveats, data age and staleness. No I/O here.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use cpis_core::plan::{FlagRecord, Visibility, VisibilityRules};
use cpis_core::wire::AccessHistoryEntry;
use cpis_core::LocalAuthority;

use crate::views::*;

pub const MISS_MESSAGE: &str = "No CP-IS record found for this NHS number";
pub const FOUND_MESSAGE: &str = "A CP-IS record exists for this NHS number";
pub const LOCKED_ADVICE: &str =
    "Phone the local authority's emergency duty team, or use your trust's safeguarding pathway.";

/// What a miss could not see. Shown with every "no record" so a miss never discourages a referral.
pub fn miss_caveats(source: Source, data_as_of: Option<DateTime<Utc>>) -> Vec<String> {
    let freshness = match (source, data_as_of) {
        (Source::Central, _) => "Changes made by the local authority since its last upload are not shown.".to_string(),
        (Source::Cache, Some(at)) => format!(
            "This answer comes from this device's copy, last updated {}: changes since then are not shown.",
            at.format("%d %b %Y at %H:%M UTC")
        ),
        (Source::Cache, None) => "This device's copy is incomplete: it has not yet finished a download from the central service, so most records may be missing.".to_string(),
    };
    vec![
        freshness,
        "Children whose record is marked sensitive cannot carry a CP-IS flag.".into(),
        "Children not matched to an NHS number by their local authority are not shown.".into(),
        "Children looked after or on a plan in Wales or Scotland are held on their own registers, not CP-IS.".into(),
        "Cached copies hold only this device's region; people from other regions are found only by the central service.".into(),
        "This is not an assessment of risk. If you have a safeguarding concern, make a referral as you normally would.".into(),
    ]
}

pub fn data_age(now: DateTime<Utc>, as_of: Option<DateTime<Utc>>) -> Option<i64> {
    as_of.map(|at| (now - at).num_seconds().max(0))
}

pub fn plan_views(record: &FlagRecord, today: NaiveDate, rules: &VisibilityRules) -> Vec<PlanView> {
    record
        .visible_plans(today, rules)
        .into_iter()
        .map(|(plan, visibility)| {
            let (status, ended_on, shown_until) = match visibility {
                Visibility::Ended { on, shown_until } => ("ended", Some(on), Some(shown_until)),
                _ => ("current", None, None),
            };
            PlanView {
                kind: plan.kind.code().to_string(),
                kind_in_words: plan.kind.in_words().to_string(),
                start: plan.start,
                end: plan.end,
                status: status.to_string(),
                ended_on,
                shown_until,
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
            stale: self.source == Source::Cache
                && age.map(|a| a > self.stale_after_secs).unwrap_or(true),
            opened: false,
            notifies: self.notifies,
            notification: None,
            event_id: None,
            person: None,
            plans: vec![],
            local_authority: None,
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
        la: Option<&LocalAuthority>,
        history: Vec<AccessHistoryEntry>,
        opened: bool,
        rules: &VisibilityRules,
    ) -> CheckView {
        let mut view = self.base(CheckOutcome::RecordFound, Some(nhs), FOUND_MESSAGE);
        view.local_authority = la.map(la_view);
        if opened {
            view.opened = true;
            view.person = Some(PersonView {
                family_name: record.family_name.clone(),
                given_names: record.given_names.clone(),
                date_of_birth: record.date_of_birth,
                local_id: record.local_id.clone(),
            });
            view.plans = plan_views(record, self.now.date_naive(), rules);
            view.access_history = history;
            if la.is_none() {
                view.caveats.push(
                    "The local authority's contact details have not reached this device yet: use your trust's safeguarding pathway.".into(),
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
}
