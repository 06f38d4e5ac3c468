//! Synthetic national register for demos and benchmarks: 152 LAs in 11 regions and N flagged people,
//! NHS numbers from the 999 test range, synthetic names, the same data for the same seed and date.

use chrono::{Duration, NaiveDate};
use cpis_core::plan::{Plan, PlanKind};
use cpis_core::{FlagRecord, LocalAuthority, NhsNumber, OdsCode, Region};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const DEMO_LAS: usize = 152;
pub const DEFAULT_FLAGS: u32 = 250_000;
pub const DEFAULT_SEED: u64 = 1;
/// Demo person `i` has `NhsNumber::test_range(i)`. Numbers from this index on are never used by demo
/// data, so tests and benchmarks can rely on them being misses.
pub const GUARANTEED_MISS_FROM: u32 = 800_000;

pub const REGIONS: [&str; 11] = [
    "north-east",
    "north-west",
    "yorkshire",
    "east-midlands",
    "west-midlands",
    "east",
    "london",
    "south-east-coast",
    "south-central",
    "south-west",
    "isle-of-wight",
];

const PLACE_FIRST: [&str; 8] = [
    "North", "South", "East", "West", "Upper", "Lower", "Great", "Little",
];
const PLACE_ROOT: [&str; 19] = [
    "brook", "field", "moor", "wood", "vale", "ford", "bridge", "ham", "stead", "marsh", "combe",
    "ley", "thorpe", "wick", "haven", "cliffe", "dale", "burn", "holt",
];
const COUNCIL: [&str; 4] = [
    "Borough Council",
    "County Council",
    "City Council",
    "Metropolitan Borough Council",
];
const FAMILY: [&str; 24] = [
    "Ashdown",
    "Birchley",
    "Calder",
    "Dunmore",
    "Ellery",
    "Fenwick",
    "Garside",
    "Hollins",
    "Ingram",
    "Jessop",
    "Kettle",
    "Lomax",
    "Marwood",
    "Nettleton",
    "Oakes",
    "Pendle",
    "Quarry",
    "Rook",
    "Sillitoe",
    "Thackray",
    "Underhill",
    "Varley",
    "Whitlock",
    "Yardley",
];
const GIVEN: [&str; 24] = [
    "Alex", "Bailey", "Casey", "Drew", "Eden", "Finley", "Gray", "Harper", "Indy", "Jordan", "Kai",
    "Logan", "Morgan", "Nico", "Oakley", "Parker", "Quinn", "Riley", "Sage", "Taylor", "Umar",
    "Vic", "Wren", "Zephyr",
];

/// A demo register.
pub struct DemoData {
    pub las: Vec<LocalAuthority>,
    pub flags: Vec<FlagRecord>,
}

/// The demo LAs: `L001`..`L152`, spread over the 11 regions.
pub fn demo_las() -> Vec<LocalAuthority> {
    (0..DEMO_LAS)
        .map(|i| {
            let place = format!("{}{}", PLACE_FIRST[i % 8], PLACE_ROOT[(i / 8) % 19]);
            LocalAuthority {
                ods: OdsCode::parse(&format!("L{:03}", i + 1)).expect("valid demo ODS code"),
                name: format!("{place} {}", COUNCIL[i % COUNCIL.len()]),
                emergency_phone: format!("0300 555 {:04}", 1000 + i),
                office_phone: (i % 3 != 0).then(|| format!("0300 556 {:04}", 1000 + i)),
                region: Region::parse(REGIONS[i % REGIONS.len()]).expect("valid demo region"),
            }
        })
        .collect()
}

fn days(rng: &mut ChaCha8Rng, lo: i64, hi: i64) -> Duration {
    Duration::days(rng.gen_range(lo..=hi))
}

/// `flags` people (at most `GUARANTEED_MISS_FROM`), about 55% looked after, 37% on a protection plan,
/// 3% unborn plans and the rest ended but inside the visibility window; some with two plans. Dates
/// are relative to `today`, so the records stay visible whenever the demo is made.
pub fn generate(flags: u32, seed: u64, today: NaiveDate) -> DemoData {
    assert!(
        flags <= GUARANTEED_MISS_FROM,
        "at most {GUARANTEED_MISS_FROM} demo flags"
    );
    let las = demo_las();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(flags as usize);
    for i in 0..flags {
        let la = &las[rng.gen_range(0..las.len())];
        let roll = rng.gen_range(0..100u32);
        let child_dob = today - days(&mut rng, 30, 17 * 365);
        let (dob, mut plans) = match roll {
            0..=54 => {
                let start = child_dob + days(&mut rng, 0, (today - child_dob).num_days());
                (
                    child_dob,
                    vec![Plan {
                        kind: PlanKind::LookedAfter,
                        start,
                        end: None,
                        due: None,
                        delete: None,
                        local_authority: None,
                    }],
                )
            }
            55..=91 => {
                let start = today - days(&mut rng, 0, 700.min((today - child_dob).num_days()));
                let end = rng.gen_bool(0.2).then(|| today + days(&mut rng, 1, 200));
                (
                    child_dob,
                    vec![Plan {
                        kind: PlanKind::ChildProtection,
                        start,
                        end,
                        due: None,
                        delete: None,
                        local_authority: None,
                    }],
                )
            }
            92..=94 => {
                let mother_dob = today - days(&mut rng, 16 * 365, 42 * 365);
                let start = today - days(&mut rng, 0, 200);
                let due = today + days(&mut rng, 1, 240);
                (
                    mother_dob,
                    vec![Plan {
                        kind: PlanKind::UnbornChildProtection,
                        start,
                        end: None,
                        due: Some(due),
                        delete: None,
                        local_authority: None,
                    }],
                )
            }
            _ => {
                let kind = *[PlanKind::ChildProtection, PlanKind::LookedAfter]
                    .choose(&mut rng)
                    .expect("non-empty");
                let end = today - days(&mut rng, 1, 330);
                let start = end - days(&mut rng, 30, 900);
                (
                    child_dob.min(start),
                    vec![Plan {
                        kind,
                        start,
                        end: Some(end),
                        due: None,
                        delete: None,
                        local_authority: None,
                    }],
                )
            }
        };
        // Some children hold both a protection plan and a looked-after plan.
        if plans[0].kind != PlanKind::UnbornChildProtection && rng.gen_range(0..100) < 6 {
            let other = if plans[0].kind == PlanKind::LookedAfter {
                PlanKind::ChildProtection
            } else {
                PlanKind::LookedAfter
            };
            let end = today - days(&mut rng, 1, 300);
            let start = end - days(&mut rng, 30, 600);
            plans.push(Plan {
                kind: other,
                start: start.max(dob),
                end: Some(end.max(dob)),
                due: None,
                delete: None,
                local_authority: None,
            });
        }
        if rng.gen_range(0..1000) < 5 {
            plans[0].delete = Some(today + days(&mut rng, 30, 400));
        }
        out.push(FlagRecord {
            nhs_number: NhsNumber::test_range(i),
            family_name: FAMILY[rng.gen_range(0..FAMILY.len())].to_string(),
            given_names: if rng.gen_bool(0.3) {
                format!(
                    "{} {}",
                    GIVEN[rng.gen_range(0..GIVEN.len())],
                    GIVEN[rng.gen_range(0..GIVEN.len())]
                )
            } else {
                GIVEN[rng.gen_range(0..GIVEN.len())].to_string()
            },
            date_of_birth: dob,
            local_id: rng
                .gen_bool(0.8)
                .then(|| format!("C{:07}", rng.gen_range(0..10_000_000))),
            local_authority: la.ods.clone(),
            plans,
        });
    }
    DemoData { las, flags: out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpis_core::plan::VisibilityRules;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_register_and_another_seed_does_not() {
        let a = generate(2_000, 7, today());
        let b = generate(2_000, 7, today());
        let c = generate(2_000, 8, today());
        assert_eq!(a.flags, b.flags);
        assert_eq!(a.las, b.las);
        assert_ne!(a.flags, c.flags);
    }

    #[test]
    fn demo_records_are_valid_visible_and_in_the_test_range_with_the_documented_mix() {
        let d = generate(20_000, 3, today());
        assert_eq!(d.las.len(), 152);
        let regions: std::collections::HashSet<_> =
            d.las.iter().map(|l| l.region.clone()).collect();
        assert_eq!(regions.len(), 11);
        let names: std::collections::HashSet<_> = d.las.iter().map(|l| l.name.clone()).collect();
        assert_eq!(names.len(), 152);
        let rules = VisibilityRules::default();
        let mut first_kind = std::collections::HashMap::new();
        for f in &d.flags {
            f.validate().unwrap();
            assert!(f.nhs_number.is_test_range());
            assert!(!f.is_expired(today(), &rules));
            d.las
                .iter()
                .find(|l| l.ods == f.local_authority)
                .unwrap()
                .validate()
                .unwrap();
            let ended = f.plans[0].end.is_some_and(|e| e < today());
            *first_kind.entry((f.plans[0].kind, ended)).or_insert(0u32) += 1;
        }
        let share = |k: PlanKind, ended: bool| {
            f64::from(*first_kind.get(&(k, ended)).unwrap_or(&0)) / 20_000.0
        };
        assert!((share(PlanKind::LookedAfter, false) - 0.55).abs() < 0.02);
        assert!((share(PlanKind::ChildProtection, false) - 0.37).abs() < 0.02);
        assert!((share(PlanKind::UnbornChildProtection, false) - 0.03).abs() < 0.01);
        assert!(d.flags.iter().any(|f| f.plans.len() == 2));
        assert!(d
            .flags
            .iter()
            .all(|f| f.nhs_number != NhsNumber::test_range(GUARANTEED_MISS_FROM)));
    }
}
