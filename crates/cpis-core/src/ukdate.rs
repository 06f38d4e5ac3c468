//! UK dates and times. Every rule that depends on "today" (plan current or ended, visibility
//! windows, delete dates) takes the Europe/London calendar date, and every time shown to a person
//! is UK time marked GMT or BST. At 23:30 UTC in summer it is already tomorrow in the UK.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Europe::London;

/// The UK calendar date at `now`.
pub fn uk_today(now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&London).date_naive()
}

/// A moment as a UK reader expects it: "14:05 BST, 3 Jul 2026".
pub fn uk_time_text(at: DateTime<Utc>) -> String {
    at.with_timezone(&London)
        .format("%H:%M %Z, %-d %b %Y")
        .to_string()
}

/// A date in words: "3 Jul 2026".
pub fn date_text(date: NaiveDate) -> String {
    date.format("%-d %b %Y").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn uk_today_at_half_past_eleven_utc_in_summer_is_tomorrow() {
        assert_eq!(uk_today(utc("2026-07-03T23:30:00Z")), d("2026-07-04"));
        assert_eq!(
            uk_time_text(utc("2026-07-03T23:30:00Z")),
            "00:30 BST, 4 Jul 2026"
        );
    }

    #[test]
    fn uk_today_at_half_past_eleven_utc_in_winter_is_today() {
        assert_eq!(uk_today(utc("2026-12-01T23:30:00Z")), d("2026-12-01"));
        assert_eq!(
            uk_time_text(utc("2026-12-01T23:30:00Z")),
            "23:30 GMT, 1 Dec 2026"
        );
    }

    #[test]
    fn uk_dates_across_both_clock_changes() {
        // Clocks go forward at 01:00 UTC on the last Sunday of March (29 Mar 2026).
        let cases = [
            (
                "2026-03-29T00:59:00Z",
                "2026-03-29",
                "00:59 GMT, 29 Mar 2026",
            ),
            (
                "2026-03-29T01:00:00Z",
                "2026-03-29",
                "02:00 BST, 29 Mar 2026",
            ),
            (
                "2026-03-28T23:30:00Z",
                "2026-03-28",
                "23:30 GMT, 28 Mar 2026",
            ),
            (
                "2026-03-29T23:30:00Z",
                "2026-03-30",
                "00:30 BST, 30 Mar 2026",
            ),
            // Clocks go back at 01:00 UTC on the last Sunday of October (25 Oct 2026).
            (
                "2026-10-25T00:59:00Z",
                "2026-10-25",
                "01:59 BST, 25 Oct 2026",
            ),
            (
                "2026-10-25T01:00:00Z",
                "2026-10-25",
                "01:00 GMT, 25 Oct 2026",
            ),
            (
                "2026-10-24T23:30:00Z",
                "2026-10-25",
                "00:30 BST, 25 Oct 2026",
            ),
            (
                "2026-10-25T23:30:00Z",
                "2026-10-25",
                "23:30 GMT, 25 Oct 2026",
            ),
        ];
        for (at, day, text) in cases {
            assert_eq!(uk_today(utc(at)), d(day), "{at}");
            assert_eq!(uk_time_text(utc(at)), text, "{at}");
        }
    }

    #[test]
    fn a_plan_whose_end_date_has_passed_in_the_uk_shows_ended_at_half_past_eleven_utc_in_summer() {
        use crate::plan::{Plan, PlanKind, Visibility, VisibilityRules};
        // The plan ends on 4 Jul; at 23:30 UTC on 4 Jul it is 00:30 on 5 Jul in the UK: ended.
        let plan = Plan {
            kind: PlanKind::ChildProtection,
            start: d("2026-01-01"),
            end: Some(d("2026-07-04")),
            due: None,
            delete: None,
            local_authority: None,
        };
        let rules = VisibilityRules::default();
        let late = Utc.with_ymd_and_hms(2026, 7, 4, 23, 30, 0).unwrap();
        assert_eq!(
            plan.visibility(late.date_naive(), &rules),
            Visibility::Current,
            "the UTC date still says current"
        );
        assert!(matches!(
            plan.visibility(uk_today(late), &rules),
            Visibility::Ended { .. }
        ));
    }
}
