//! Table and property tests of normalisation and tiers. Synthetic names, NHS numbers from the 999
//! test range.

use super::*;
use crate::la::OdsCode;
use crate::nhs::NhsNumber;
use crate::plan::{Plan, PlanKind};
use proptest::prelude::*;

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn today() -> NaiveDate {
    date("2026-12-01")
}

fn person(i: u32, family: &str, given: &str, dob: &str) -> FlagRecord {
    FlagRecord {
        nhs_number: NhsNumber::test_range(i),
        family_name: family.into(),
        given_names: given.into(),
        date_of_birth: date(dob),
        local_id: None,
        local_authority: OdsCode::parse("L001").unwrap(),
        plans: vec![Plan {
            kind: PlanKind::ChildProtection,
            start: date("2025-01-01"),
            end: None,
            due: None,
            delete: None,
            local_authority: None,
        }],
    }
}

fn query(family: &str, given: Option<&str>, dob: &str) -> SearchQuery {
    SearchQuery::parse(family, dob, given, None, None, today()).unwrap()
}

#[test]
fn names_compare_through_case_accents_apostrophes_hyphens_spacing_and_sound() {
    use FieldMatch::*;
    let cases = [
        ("Sian", "SIAN", Same),
        ("Sian", "Siân", Normalised),
        ("Zoe", "Zoë", Normalised),
        ("ONeill", "O'Neill", Normalised),
        ("O Neill", "O'Neill", Normalised),
        ("Smith Jones", "Smith-Jones", Normalised),
        ("  mc donald ", "McDonald", Normalised),
        ("Jones", "Smith-Jones", Part),
        ("Smith", "Smith-Jones", Part),
        ("Mary", "Mary Ann", Part),
        ("Thomson", "Tomson", SoundsAlike),
        ("Jon", "John", SoundsAlike),
        ("Aimee", "Amy", SoundsAlike),
        ("Muhammad", "Mohammed", SoundsAlike),
        ("Smith", "Smyth", SoundsAlike),
        ("Phillips", "Philips", SoundsAlike),
        ("Stephens", "Stevens", SoundsAlike),
        ("Clarke", "Clark", SoundsAlike),
        ("Mackenzie", "McKenzie", SoundsAlike),
        ("Smith", "Brown", Different),
        ("Richards", "Richardson", Different),
        ("Amy", "Ben", Different),
    ];
    for (entered, held, want) in cases {
        assert_eq!(compare_names(entered, held), want, "{entered} vs {held}");
    }
}

#[test]
fn a_date_with_day_and_month_swapped_is_a_candidate_only_when_the_day_is_12_or_less() {
    assert_eq!(
        candidate_dates(date("2019-03-07")),
        vec![date("2019-03-07"), date("2019-07-03")]
    );
    assert_eq!(
        candidate_dates(date("2019-03-13")),
        vec![date("2019-03-13")]
    );
    assert_eq!(
        candidate_dates(date("2019-04-04")),
        vec![date("2019-04-04")]
    );
    assert_eq!(
        compare_dob(date("2019-03-07"), date("2019-07-03")),
        DobMatch::DayMonthSwapped
    );
    assert_eq!(
        compare_dob(date("2019-03-07"), date("2019-03-08")),
        DobMatch::Different
    );
}

#[test]
fn bad_input_is_refused_naming_the_field() {
    let t = today();
    let cases: Vec<(SearchError, &str)> = vec![
        (
            SearchQuery::parse(" ", "2019-01-01", None, None, None, t).unwrap_err(),
            "family name",
        ),
        (
            SearchQuery::parse("--", "2019-01-01", None, None, None, t).unwrap_err(),
            "family name",
        ),
        (
            SearchQuery::parse("Smith", "07/03/2019", None, None, None, t).unwrap_err(),
            "date of birth",
        ),
        (
            SearchQuery::parse("Smith", "2027-01-01", None, None, None, t).unwrap_err(),
            "date of birth",
        ),
        (
            SearchQuery::parse("Smith", "2019-01-01", Some("1234"), None, None, t).unwrap_err(),
            "given name",
        ),
        (
            SearchQuery::parse("Smith", "2019-01-01", None, Some("x"), None, t).unwrap_err(),
            "sex",
        ),
        (
            SearchQuery::parse("Smith", "2019-01-01", None, None, Some("12345"), t).unwrap_err(),
            "postcode district",
        ),
    ];
    for (err, field) in cases {
        assert!(err.to_string().starts_with(field), "{err} names {field}");
    }
    let q = SearchQuery::parse(
        " Smith ",
        "2019-01-01",
        Some(" "),
        Some("F"),
        Some("ls6"),
        t,
    )
    .unwrap();
    assert_eq!(q.family_name, "Smith");
    assert_eq!(q.given_name, None);
    assert_eq!(q.sex, Some(Sex::Female));
    assert_eq!(q.postcode_district.as_deref(), Some("LS6"));
}

/// (case, register, query, expected tier, NHS numbers shown in order)
type TierCase = (
    &'static str,
    Vec<FlagRecord>,
    SearchQuery,
    TierKind,
    Vec<u32>,
);

#[test]
fn tiers() {
    let twins = vec![
        person(1, "Testwood", "Amy", "2019-03-07"),
        person(2, "Testwood", "Ben", "2019-03-07"),
    ];
    let jon_and_john = vec![
        person(1, "Smith", "John", "2018-05-20"),
        person(2, "Smyth", "Jon", "2018-05-20"),
    ];
    let crowd: Vec<FlagRecord> = ["Amy", "Ben", "Cara", "Dev", "Ella", "Finn"]
        .iter()
        .zip(1..)
        .map(|(given, i)| person(i, "Testwood", given, "2017-10-10"))
        .collect();
    let cases: Vec<TierCase> = vec![
        (
            "one exact",
            vec![person(1, "Testwood", "Amy", "2019-03-07")],
            query("Testwood", Some("Amy"), "2019-03-07"),
            TierKind::Match,
            vec![1],
        ),
        (
            "accents, apostrophes and hyphens still one match",
            vec![person(1, "O'Neill-Jones", "Siân", "2019-03-07")],
            query("oneill jones", Some("Sian"), "2019-03-07"),
            TierKind::Match,
            vec![1],
        ),
        (
            "one part of a double-barrelled name",
            vec![person(1, "Smith-Jones", "Zoë", "2019-03-07")],
            query("Jones", Some("Zoe"), "2019-03-07"),
            TierKind::Match,
            vec![1],
        ),
        (
            "sounds alike",
            vec![person(1, "Thomson", "Amy", "2019-03-07")],
            query("Tomson", Some("Amy"), "2019-03-07"),
            TierKind::Match,
            vec![1],
        ),
        (
            "two children, same birthday, similar names: never one match",
            jon_and_john.clone(),
            query("Smith", Some("John"), "2018-05-20"),
            TierKind::PossibleMatches,
            vec![1, 2],
        ),
        (
            "twins: the named one is the match",
            twins.clone(),
            query("Testwood", Some("Amy"), "2019-03-07"),
            TierKind::Match,
            vec![1],
        ),
        (
            "twins, no given name: both are cards",
            twins.clone(),
            query("Testwood", None, "2019-03-07"),
            TierKind::PossibleMatches,
            vec![1, 2],
        ),
        (
            "day and month swapped: a card, never one match",
            vec![person(1, "Testwood", "Amy", "2019-07-03")],
            query("Testwood", Some("Amy"), "2019-03-07"),
            TierKind::PossibleMatches,
            vec![1],
        ),
        (
            "same names on the swapped date make the exact one a card too",
            vec![
                person(1, "Testwood", "Amy", "2019-03-07"),
                person(2, "Testwood", "Amy", "2019-07-03"),
            ],
            query("Testwood", Some("Amy"), "2019-03-07"),
            TierKind::PossibleMatches,
            vec![1, 2],
        ),
        (
            "given name differs: a card",
            vec![person(1, "Testwood", "Amy", "2019-03-07")],
            query("Testwood", Some("Grace"), "2019-03-07"),
            TierKind::PossibleMatches,
            vec![1],
        ),
        (
            "family name changed, given name the same: a card",
            vec![person(1, "Newname", "Amy", "2019-03-07")],
            query("Oldname", Some("Amy"), "2019-03-07"),
            TierKind::PossibleMatches,
            vec![1],
        ),
        (
            "six possible: too many, nothing shown",
            crowd.clone(),
            query("Testwood", None, "2017-10-10"),
            TierKind::TooMany,
            vec![],
        ),
        (
            "six on the date, one named: the match",
            crowd,
            query("Testwood", Some("Cara"), "2017-10-10"),
            TierKind::Match,
            vec![3],
        ),
        (
            "neither name matches",
            vec![person(1, "Testwood", "Amy", "2019-03-07")],
            query("Brown", Some("Grace"), "2019-03-07"),
            TierKind::NoMatch,
            vec![],
        ),
        (
            "another date",
            vec![person(1, "Testwood", "Amy", "2019-03-08")],
            query("Testwood", Some("Amy"), "2019-03-07"),
            TierKind::NoMatch,
            vec![],
        ),
        (
            "empty register",
            vec![],
            query("Testwood", Some("Amy"), "2019-03-07"),
            TierKind::NoMatch,
            vec![],
        ),
    ];
    for (case, register, q, kind, shown) in cases {
        let t = tier(&q, &register);
        assert_eq!(t.kind(), kind, "{case}");
        let got: Vec<u32> = match &t {
            Tiered::Match { index, .. } => vec![*index],
            Tiered::PossibleMatches(v) => v.iter().map(|(i, _)| *i).collect(),
            _ => vec![],
        }
        .into_iter()
        .map(|i| register[i].nhs_number)
        .map(|n| (1..=6).find(|k| NhsNumber::test_range(*k) == n).unwrap())
        .collect();
        assert_eq!(got, shown, "{case}");
    }
}

#[test]
fn a_card_says_what_matched_and_what_differed() {
    let q = SearchQuery::parse(
        "Tomson",
        "2019-03-07",
        Some("Amy"),
        Some("female"),
        None,
        today(),
    )
    .unwrap();
    let m = CandidateMatch::of(&q, &person(1, "Thomson", "Grace", "2019-07-03"));
    assert_eq!(
        m.matched_words(),
        vec!["Family name: sounds alike, spelt differently"]
    );
    assert_eq!(
        m.differed_words(),
        vec![
            "Date of birth: day and month swapped",
            "Given name: different",
            "Sex: not held by CP-IS, not compared"
        ]
    );
}

#[test]
fn merging_keeps_each_person_once_and_prefers_the_fresher_copy() {
    let old = person(1, "Testwood", "Amy", "2019-03-07");
    let mut new = old.clone();
    new.given_names = "Amy Louise".into();
    let merged = merge_candidates(
        vec![old, person(2, "Testwood", "Ben", "2019-03-07")],
        vec![new.clone()],
    );
    assert_eq!(merged.len(), 2);
    assert!(merged.contains(&new));
}

fn decorate(name: &str, seed: &[u8]) -> String {
    // Case, accents, apostrophes, hyphens and spaces a clerk might add or drop.
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        let s = seed.get(i).copied().unwrap_or(0);
        let c = if s & 1 == 1 {
            c.to_ascii_uppercase()
        } else {
            c
        };
        let c = match (s & 2 == 2, c) {
            (true, 'e') => 'ë',
            (true, 'a') => 'â',
            (true, 'o') => 'ö',
            _ => c,
        };
        out.push(c);
        if i + 1 < name.len() {
            match s >> 5 {
                1 => out.push('-'),
                2 => out.push('\''),
                3 => out.push(' '),
                _ => {}
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn decoration_never_changes_a_normalised_name(
        name in "[a-z]{2,12}",
        seed in proptest::collection::vec(any::<u8>(), 12),
    ) {
        let decorated = decorate(&name, &seed);
        prop_assert_eq!(normalise(&decorated).joined, name.clone());
        prop_assert!(compare_names(&decorated, &name).matches());
    }

    #[test]
    fn two_children_with_the_same_birthday_and_matching_names_are_never_one_match(
        family in "[A-Z][a-z]{2,8}",
        given in "[A-Z][a-z]{2,8}",
        seed_a in proptest::collection::vec(any::<u8>(), 12),
        seed_b in proptest::collection::vec(any::<u8>(), 12),
        others in proptest::collection::vec(("[A-Z][a-z]{2,8}", "[A-Z][a-z]{2,8}"), 0..4),
        day in 1u32..28,
        month in 1u32..=12,
    ) {
        let dob = format!("2018-{month:02}-{day:02}");
        let mut register = vec![
            person(1, &decorate(&family, &seed_a), &decorate(&given, &seed_a), &dob),
            person(2, &decorate(&family, &seed_b), &decorate(&given, &seed_b), &dob),
        ];
        for (k, (f, g)) in others.iter().enumerate() {
            register.push(person(3 + k as u32, f, g, &dob));
        }
        let q = query(&family, Some(&given), &dob);
        let t = tier(&q, &register);
        prop_assert!(!matches!(t, Tiered::Match { .. }), "{:?}", t);
        if let Tiered::PossibleMatches(v) = &t {
            prop_assert!(v.len() <= MAX_POSSIBLE_MATCHES);
            prop_assert!(v.iter().any(|(i, _)| *i == 0) && v.iter().any(|(i, _)| *i == 1));
        }
    }

    #[test]
    fn a_match_always_matches_date_and_both_names_and_cards_never_exceed_five(
        register in proptest::collection::vec(("[A-C][a-c]{1,3}", "[A-C][a-c]{1,3}", 1u32..4), 0..10),
        family in "[A-C][a-c]{1,3}",
        given in proptest::option::of("[A-C][a-c]{1,3}"),
    ) {
        let register: Vec<FlagRecord> = register
            .iter()
            .enumerate()
            .map(|(k, (f, g, d))| person(k as u32 + 1, f, g, &format!("2018-01-{d:02}")))
            .collect();
        let q = query(&family, given.as_deref(), "2018-01-02");
        match tier(&q, &register) {
            Tiered::Match { index, how } => {
                prop_assert!(how.is_full());
                prop_assert_eq!(register[index].date_of_birth, q.date_of_birth);
            }
            Tiered::PossibleMatches(v) => {
                prop_assert!(!v.is_empty() && v.len() <= MAX_POSSIBLE_MATCHES);
            }
            Tiered::TooMany { candidates } => prop_assert!(candidates > MAX_POSSIBLE_MATCHES),
            Tiered::NoMatch => {}
        }
    }
}
