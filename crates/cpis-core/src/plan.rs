//! Plans (CPPI, LACI, UCPI), the flagged person who holds them, and visibility at a date: current,
//! ended but still shown, gone, or deleted by the local authority.

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::la::OdsCode;
use crate::nhs::NhsNumber;

/// The three kinds of plan. An unborn plan is held against the pregnant mother.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PlanKind {
    #[serde(rename = "CPPI")]
    ChildProtection,
    #[serde(rename = "LACI")]
    LookedAfter,
    #[serde(rename = "UCPI")]
    UnbornChildProtection,
}

impl PlanKind {
    pub const ALL: [PlanKind; 3] = [
        PlanKind::ChildProtection,
        PlanKind::LookedAfter,
        PlanKind::UnbornChildProtection,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::ChildProtection => "CPPI",
            Self::LookedAfter => "LACI",
            Self::UnbornChildProtection => "UCPI",
        }
    }

    /// The kind in words, as the clinician reads it.
    pub fn in_words(self) -> &'static str {
        match self {
            Self::ChildProtection => "Child protection plan",
            Self::LookedAfter => "Looked after child",
            Self::UnbornChildProtection => "Unborn child protection plan (pre-birth plan)",
        }
    }

    pub fn from_code(code: &str) -> Result<Self, PlanError> {
        match code.trim().to_ascii_uppercase().as_str() {
            "CPPI" => Ok(Self::ChildProtection),
            "LACI" => Ok(Self::LookedAfter),
            "UCPI" => Ok(Self::UnbornChildProtection),
            _ => Err(PlanError::UnknownKind(code.to_string())),
        }
    }
}

/// One plan held against one NHS number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub kind: PlanKind,
    pub start: NaiveDate,
    /// `None` while the plan is open.
    pub end: Option<NaiveDate>,
    /// Expected date of delivery, for unborn plans.
    pub due: Option<NaiveDate>,
    /// After this date the record must disappear from every device.
    pub delete: Option<NaiveDate>,
    /// The local authority that holds this plan, in a person's record merged across local
    /// authorities. `None` in one LA's own record (and in records kept before plans carried their
    /// LA): the plan is then the record's `local_authority`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_authority: Option<OdsCode>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("unknown plan kind '{0}': expected CPPI, LACI or UCPI")]
    UnknownKind(String),
    #[error("{kind} plan ends ({end}) before it starts ({start})")]
    EndBeforeStart {
        kind: &'static str,
        start: NaiveDate,
        end: NaiveDate,
    },
    #[error("two {0} plans for one person from one local authority: a local authority holds at most one plan of each kind for a person")]
    DuplicateKind(&'static str),
    #[error("a flagged person must have at least one plan")]
    NoPlans,
}

impl Plan {
    pub fn validate(&self) -> Result<(), PlanError> {
        if let Some(end) = self.end {
            if end < self.start {
                return Err(PlanError::EndBeforeStart {
                    kind: self.kind.code(),
                    start: self.start,
                    end,
                });
            }
        }
        Ok(())
    }

    /// Whether and how this plan shows on `today` (a UK calendar date: see `crate::ukdate`).
    pub fn visibility(&self, today: NaiveDate, rules: &VisibilityRules) -> Visibility {
        if let Some(delete) = self.delete {
            if today >= delete {
                return Visibility::Deleted { on: delete };
            }
        }
        if let Some(end) = self.end {
            if end < today {
                let window = match self.kind {
                    PlanKind::UnbornChildProtection => rules.unborn_window_days,
                    _ => rules.ended_window_days,
                };
                let shown_until = end + Duration::days(i64::from(window));
                return if today <= shown_until {
                    Visibility::Ended {
                        on: end,
                        shown_until,
                    }
                } else {
                    Visibility::Gone { ended: end }
                };
            }
        }
        // An unborn plan that has not ended is shown for the window after its due date: the baby may
        // have been born under another NHS number, so the mother's plan still matters.
        if self.kind == PlanKind::UnbornChildProtection && self.end.is_none() {
            if let Some(due) = self.due {
                if due < today {
                    let shown_until = due + Duration::days(i64::from(rules.unborn_window_days));
                    return if today <= shown_until {
                        Visibility::DuePassed { due, shown_until }
                    } else {
                        Visibility::Gone { ended: due }
                    };
                }
            }
        }
        if self.start > today {
            return Visibility::NotStarted { starts: self.start };
        }
        Visibility::Current
    }

    /// The local authority that holds this plan within `record`.
    pub fn holder<'a>(&'a self, record: &'a FlagRecord) -> &'a OdsCode {
        self.local_authority
            .as_ref()
            .unwrap_or(&record.local_authority)
    }
}

/// How long an ended plan stays visible. The CPP/LAC window is a setting (one supplier counts 364).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisibilityRules {
    pub ended_window_days: u32,
    pub unborn_window_days: u32,
}

impl Default for VisibilityRules {
    fn default() -> Self {
        Self {
            ended_window_days: 365,
            unborn_window_days: 28,
        }
    }
}

/// A plan's visibility on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Visibility {
    /// The plan is in force (or has an end date still to come).
    Current,
    /// The plan starts on a later day. Shown (it errs towards showing), but never as "Current".
    NotStarted { starts: NaiveDate },
    /// An unborn plan whose due date has passed without an end date: shown until `shown_until`.
    DuePassed {
        due: NaiveDate,
        shown_until: NaiveDate,
    },
    /// The plan has ended but is still shown until `shown_until` inclusive.
    Ended {
        on: NaiveDate,
        shown_until: NaiveDate,
    },
    /// Ended longer ago than the window: not shown.
    Gone { ended: NaiveDate },
    /// The local authority's delete date has passed: not shown, and removed from devices.
    Deleted { on: NaiveDate },
}

impl Visibility {
    pub fn is_shown(&self) -> bool {
        matches!(
            self,
            Self::Current | Self::NotStarted { .. } | Self::Ended { .. } | Self::DuePassed { .. }
        )
    }
}

/// A flagged person as the register holds them: identity, their plans, and the responsible LA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagRecord {
    pub nhs_number: NhsNumber,
    pub family_name: String,
    pub given_names: String,
    pub date_of_birth: NaiveDate,
    /// The LA's own case id, when it gives one.
    pub local_id: Option<String>,
    pub local_authority: OdsCode,
    pub plans: Vec<Plan>,
}

impl FlagRecord {
    /// Checks each plan and that no local authority holds two plans of one kind.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.plans.is_empty() {
            return Err(PlanError::NoPlans);
        }
        for (i, plan) in self.plans.iter().enumerate() {
            plan.validate()?;
            let holder = plan.holder(self);
            if self.plans[..i]
                .iter()
                .any(|p| p.kind == plan.kind && p.holder(self) == holder)
            {
                return Err(PlanError::DuplicateKind(plan.kind.code()));
            }
        }
        Ok(())
    }

    /// The local authorities holding a plan in this record, the record's own first.
    pub fn holders(&self) -> Vec<OdsCode> {
        let mut out = vec![self.local_authority.clone()];
        for plan in &self.plans {
            let la = plan.holder(self);
            if !out.contains(la) {
                out.push(la.clone());
            }
        }
        out.retain(|la| self.plans.iter().any(|p| p.holder(self) == la));
        out
    }

    /// The plans that show on `today`, with their visibility. Applied at check time so an old cache
    /// never shows what should have gone, nor hides what should show.
    pub fn visible_plans(
        &self,
        today: NaiveDate,
        rules: &VisibilityRules,
    ) -> Vec<(Plan, Visibility)> {
        self.plans
            .iter()
            .map(|p| (p.clone(), p.visibility(today, rules)))
            .filter(|(_, v)| v.is_shown())
            .collect()
    }

    /// True when nothing of this record may show any more (every plan gone or deleted).
    pub fn is_expired(&self, today: NaiveDate, rules: &VisibilityRules) -> bool {
        self.plans
            .iter()
            .all(|p| !p.visibility(today, rules).is_shown())
    }
}

/// One person as the region feed and the devices carry them: every local authority's plans for
/// one NHS number, each plan tagged with its LA. A child who moves keeps the old LA's ended plan
/// beside the new LA's current one. The record's own LA (and the name and date of birth shown) is
/// that of the LA whose plan started most recently, ties broken by ODS code, so the result never
/// depends on the order the LAs' records are given in. `None` when no LA holds a plan.
pub fn merge_person(records: &[FlagRecord]) -> Option<FlagRecord> {
    let latest_start = |r: &FlagRecord| {
        r.plans
            .iter()
            .map(|p| p.start)
            .max()
            .unwrap_or(NaiveDate::MIN)
    };
    let primary = records
        .iter()
        .filter(|r| !r.plans.is_empty())
        .max_by(|a, b| {
            latest_start(a)
                .cmp(&latest_start(b))
                .then_with(|| b.local_authority.cmp(&a.local_authority))
        })?;
    let mut others: Vec<&FlagRecord> = records
        .iter()
        .filter(|r| !r.plans.is_empty() && r.local_authority != primary.local_authority)
        .collect();
    others.sort_by(|a, b| a.local_authority.cmp(&b.local_authority));
    let mut merged = FlagRecord {
        plans: Vec::new(),
        ..primary.clone()
    };
    for record in std::iter::once(primary).chain(others) {
        for plan in &record.plans {
            let la = plan.holder(record).clone();
            merged.plans.push(Plan {
                local_authority: Some(la),
                ..plan.clone()
            });
        }
    }
    Some(merged)
}

/// The part of a merged person's record that one local authority holds, as that LA's own record.
pub fn part_of(record: &FlagRecord, la: &OdsCode) -> Option<FlagRecord> {
    let plans: Vec<Plan> = record
        .plans
        .iter()
        .filter(|p| p.holder(record) == la)
        .map(|p| Plan {
            local_authority: None,
            ..p.clone()
        })
        .collect();
    (!plans.is_empty()).then(|| FlagRecord {
        local_authority: la.clone(),
        plans,
        ..record.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn plan(kind: PlanKind, end: Option<&str>, due: Option<&str>, delete: Option<&str>) -> Plan {
        Plan {
            kind,
            start: d("2024-01-01"),
            end: end.map(d),
            due: due.map(d),
            delete: delete.map(d),
            local_authority: None,
        }
    }

    #[test]
    fn visibility_at_the_window_boundaries() {
        let rules = VisibilityRules::default();
        let end = d("2025-01-01");
        use PlanKind::*;
        // (plan, days after the end date, shown?)
        let cases = [
            (ChildProtection, 0, true),
            (ChildProtection, 364, true),
            (ChildProtection, 365, true),
            (ChildProtection, 366, false),
            (LookedAfter, 364, true),
            (LookedAfter, 365, true),
            (LookedAfter, 366, false),
            (UnbornChildProtection, 27, true),
            (UnbornChildProtection, 28, true),
            (UnbornChildProtection, 29, false),
        ];
        for (kind, days, shown) in cases {
            let p = plan(kind, Some("2025-01-01"), None, None);
            let today = end + Duration::days(days);
            let v = p.visibility(today, &rules);
            assert_eq!(v.is_shown(), shown, "{kind:?} {days} days after end: {v:?}");
            if days > 0 && shown {
                assert!(matches!(v, Visibility::Ended { on, .. } if on == end));
            }
        }
    }

    #[test]
    fn unborn_plan_window_runs_from_the_due_date_when_not_ended() {
        let rules = VisibilityRules::default();
        let p = plan(
            PlanKind::UnbornChildProtection,
            None,
            Some("2025-03-01"),
            None,
        );
        let due = d("2025-03-01");
        for (days, shown) in [(-1, true), (0, true), (27, true), (28, true), (29, false)] {
            let v = p.visibility(due + Duration::days(days), &rules);
            assert_eq!(v.is_shown(), shown, "{days} days after due: {v:?}");
        }
    }

    #[test]
    fn the_ended_window_is_a_setting() {
        let rules = VisibilityRules {
            ended_window_days: 364,
            ..Default::default()
        };
        let p = plan(PlanKind::ChildProtection, Some("2025-01-01"), None, None);
        assert!(p
            .visibility(d("2025-01-01") + Duration::days(364), &rules)
            .is_shown());
        assert!(!p
            .visibility(d("2025-01-01") + Duration::days(365), &rules)
            .is_shown());
    }

    #[test]
    fn delete_dates_hide_current_and_ended_plans_from_that_day() {
        let rules = VisibilityRules::default();
        let open = plan(PlanKind::LookedAfter, None, None, Some("2025-06-01"));
        assert_eq!(
            open.visibility(d("2025-05-31"), &rules),
            Visibility::Current
        );
        assert_eq!(
            open.visibility(d("2025-06-01"), &rules),
            Visibility::Deleted {
                on: d("2025-06-01")
            }
        );
        let ended = plan(
            PlanKind::ChildProtection,
            Some("2025-01-01"),
            None,
            Some("2025-02-01"),
        );
        assert!(ended.visibility(d("2025-01-31"), &rules).is_shown());
        assert!(!ended.visibility(d("2025-02-01"), &rules).is_shown());
    }

    #[test]
    fn open_plan_is_current_for_ever() {
        let p = plan(PlanKind::ChildProtection, None, None, None);
        assert_eq!(
            p.visibility(d("2040-01-01"), &VisibilityRules::default()),
            Visibility::Current
        );
    }

    #[test]
    fn a_person_has_at_most_one_plan_of_each_kind() {
        let record = FlagRecord {
            nhs_number: NhsNumber::test_range(1),
            family_name: "Testperson".into(),
            given_names: "Alex".into(),
            date_of_birth: d("2019-05-05"),
            local_id: None,
            local_authority: OdsCode::parse("X01").unwrap(),
            plans: vec![
                plan(PlanKind::ChildProtection, None, None, None),
                plan(PlanKind::LookedAfter, None, None, None),
                plan(PlanKind::ChildProtection, None, None, None),
            ],
        };
        assert_eq!(record.validate(), Err(PlanError::DuplicateKind("CPPI")));
        let mut ok = record.clone();
        ok.plans.pop();
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn end_before_start_is_refused() {
        let p = plan(PlanKind::ChildProtection, Some("2023-12-31"), None, None);
        assert!(matches!(
            p.validate(),
            Err(PlanError::EndBeforeStart { .. })
        ));
    }

    #[test]
    fn unknown_plan_kind_names_the_kind() {
        let err = PlanKind::from_code("XYZ").unwrap_err();
        assert!(err.to_string().contains("XYZ"));
    }
}
