//! Search by name and date of birth: the query and its validation, name normalisation, and the one
//! pure rule that compares candidates with the query and answers in tiers (one match, possible
//! matches, too many, no match), never a score. The device engine and the central both call
//! `tier`; stores only find the candidates born on `candidate_dates`.
//!
//! Why tiers: a wrong match shows a stranger's child-protection status, and a missed match must
//! never read as "no plan". A single answer is given only when exactly one person matches date of
//! birth, family name and given name and nobody else matches both names; everything less certain is
//! shown as cards for the clinician to confirm, or as a request for more details.

use chrono::{Datelike, NaiveDate};
use rphonetic::DoubleMetaphone;
use serde::{Deserialize, Serialize};

use crate::plan::FlagRecord;

/// At most this many possible matches are shown; more is "too many" and shows nothing.
pub const MAX_POSSIBLE_MATCHES: usize = 5;
/// Longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("family name: enter the family name (surname)")]
    MissingFamilyName,
    #[error("{field}: it must contain at least one letter")]
    NoLetters { field: &'static str },
    #[error("{field}: it is longer than {MAX_NAME_CHARS} characters")]
    TooLong { field: &'static str },
    #[error("date of birth: enter it as YYYY-MM-DD, for example 2019-03-07 (got {0:?})")]
    BadDate(String),
    #[error("date of birth: it is in the future")]
    FutureDate,
    #[error("date of birth: it is before 1900")]
    TooOld,
    #[error("sex: enter female, male or unknown (got {0:?})")]
    BadSex(String),
    #[error("postcode district: enter the first half of the postcode, for example LS6 or SW1A (got {0:?})")]
    BadPostcode(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Female,
    Male,
    Unknown,
}

impl Sex {
    pub fn parse(s: &str) -> Result<Self, SearchError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f" | "female" => Ok(Self::Female),
            "m" | "male" => Ok(Self::Male),
            "u" | "unknown" | "not known" => Ok(Self::Unknown),
            _ => Err(SearchError::BadSex(s.to_string())),
        }
    }
}

/// What the clinician entered, validated. Family name and date of birth are required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    pub family_name: String,
    pub given_name: Option<String>,
    pub date_of_birth: NaiveDate,
    pub sex: Option<Sex>,
    /// The outward half of a postcode, e.g. "LS6".
    pub postcode_district: Option<String>,
}

impl SearchQuery {
    /// Validates raw input; `today` is the date in England. Each error names the field.
    pub fn parse(
        family_name: &str,
        date_of_birth: &str,
        given_name: Option<&str>,
        sex: Option<&str>,
        postcode_district: Option<&str>,
        today: NaiveDate,
    ) -> Result<Self, SearchError> {
        let family_name = family_name.trim();
        if family_name.is_empty() {
            return Err(SearchError::MissingFamilyName);
        }
        check_name("family name", family_name)?;
        let given_name = given_name.map(str::trim).filter(|g| !g.is_empty());
        if let Some(g) = given_name {
            check_name("given name", g)?;
        }
        let dob_text = date_of_birth.trim();
        let date_of_birth = NaiveDate::parse_from_str(dob_text, "%Y-%m-%d")
            .map_err(|_| SearchError::BadDate(dob_text.to_string()))?;
        if date_of_birth > today {
            return Err(SearchError::FutureDate);
        }
        if date_of_birth.year() < 1900 {
            return Err(SearchError::TooOld);
        }
        let sex = sex
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Sex::parse)
            .transpose()?;
        let postcode_district = postcode_district
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse_postcode_district)
            .transpose()?;
        Ok(Self {
            family_name: family_name.to_string(),
            given_name: given_name.map(str::to_string),
            date_of_birth,
            sex,
            postcode_district,
        })
    }
}

fn check_name(field: &'static str, name: &str) -> Result<(), SearchError> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(SearchError::TooLong { field });
    }
    if normalise(name).tokens.is_empty() {
        return Err(SearchError::NoLetters { field });
    }
    Ok(())
}

fn parse_postcode_district(p: &str) -> Result<String, SearchError> {
    let up: String = p.to_ascii_uppercase().split_whitespace().collect();
    let b = up.as_bytes();
    let letters = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let rest = &b[letters..];
    let ok = (1..=2).contains(&letters)
        && !rest.is_empty()
        && rest.len() <= 2
        && rest[0].is_ascii_digit()
        && rest.iter().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(up)
    } else {
        Err(SearchError::BadPostcode(p.to_string()))
    }
}

/// The dates a candidate may be born on: the date entered and, when the day is 12 or less and
/// differs from the month, the date with day and month swapped (a common transcription slip).
pub fn candidate_dates(dob: NaiveDate) -> Vec<NaiveDate> {
    let mut out = vec![dob];
    if dob.day() <= 12 && dob.day() != dob.month() {
        if let Some(swapped) = NaiveDate::from_ymd_opt(dob.year(), dob.day(), dob.month()) {
            out.push(swapped);
        }
    }
    out
}

/// A name as compared: ASCII lower-case letters, split into parts at anything that is not a letter
/// (hyphens, spaces), apostrophes dropped so O'Neill and ONeill are one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalName {
    /// The parts joined: "Smith-Jones" and "Smith Jones" are both "smithjones".
    pub joined: String,
    pub tokens: Vec<String>,
}

pub fn normalise(name: &str) -> NormalName {
    // Transliteration folds accents (Siân, Zoë) and other scripts' Latin spellings to ASCII.
    let ascii = deunicode::deunicode(name);
    let mut tokens = Vec::new();
    let mut current = String::new();
    for c in ascii.chars() {
        if c.is_ascii_alphabetic() {
            current.push(c.to_ascii_lowercase());
        } else if matches!(c, '\'' | '`') {
            // Apostrophes join: O'Neill is one part.
        } else if !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    NormalName {
        joined: tokens.concat(),
        tokens,
    }
}

/// Double Metaphone codes (primary and alternate, unlimited length so longer names are not cut to
/// the same four letters) of the joined name and of each part of two letters or more.
fn phonetic_codes(name: &NormalName) -> Vec<String> {
    let dm = DoubleMetaphone::new(None);
    let mut out = Vec::new();
    let parts = std::iter::once(&name.joined).chain(name.tokens.iter().filter(|t| t.len() >= 2));
    for part in parts {
        let r = dm.double_metaphone(part);
        for code in [r.primary(), r.alternate()] {
            if !code.is_empty() && !out.contains(&code) {
                out.push(code);
            }
        }
    }
    out
}

/// How one field of a candidate compares with what was entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldMatch {
    /// Equal ignoring case.
    Same,
    /// Equal once accents, apostrophes, hyphens and spaces are set aside.
    Normalised,
    /// One part in common (Smith-Jones and Jones; Mary Ann and Mary).
    Part,
    /// Sounds alike (Double Metaphone): Thompson and Tomson.
    SoundsAlike,
    Different,
    NotEntered,
    /// The register does not hold this field, so it was not compared.
    NotHeld,
}

impl FieldMatch {
    /// Whether the field counts as matching.
    pub fn matches(self) -> bool {
        matches!(
            self,
            Self::Same | Self::Normalised | Self::Part | Self::SoundsAlike
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DobMatch {
    Same,
    DayMonthSwapped,
    Different,
}

pub fn compare_names(entered: &str, held: &str) -> FieldMatch {
    if entered.trim().to_lowercase() == held.trim().to_lowercase() {
        return FieldMatch::Same;
    }
    let (a, b) = (normalise(entered), normalise(held));
    if a.joined.is_empty() || b.joined.is_empty() {
        return FieldMatch::Different;
    }
    if a.joined == b.joined {
        return FieldMatch::Normalised;
    }
    let long = |t: &&String| t.len() >= 2;
    if a.tokens
        .iter()
        .filter(long)
        .any(|t| b.tokens.iter().filter(long).any(|u| u == t))
    {
        return FieldMatch::Part;
    }
    let (pa, pb) = (phonetic_codes(&a), phonetic_codes(&b));
    if pa.iter().any(|c| pb.contains(c)) {
        return FieldMatch::SoundsAlike;
    }
    FieldMatch::Different
}

pub fn compare_dob(entered: NaiveDate, held: NaiveDate) -> DobMatch {
    if entered == held {
        DobMatch::Same
    } else if candidate_dates(entered).contains(&held) {
        DobMatch::DayMonthSwapped
    } else {
        DobMatch::Different
    }
}

/// What matched and what differed for one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateMatch {
    pub date_of_birth: DobMatch,
    pub family_name: FieldMatch,
    pub given_name: FieldMatch,
    pub sex: FieldMatch,
    pub postcode_district: FieldMatch,
}

impl CandidateMatch {
    pub fn of(query: &SearchQuery, record: &FlagRecord) -> Self {
        // The register holds neither sex nor postcode: they are recorded with the search but
        // cannot narrow or widen it.
        let not_held = |entered: bool| {
            if entered {
                FieldMatch::NotHeld
            } else {
                FieldMatch::NotEntered
            }
        };
        Self {
            date_of_birth: compare_dob(query.date_of_birth, record.date_of_birth),
            family_name: compare_names(&query.family_name, &record.family_name),
            given_name: match &query.given_name {
                Some(g) => compare_names(g, &record.given_names),
                None => FieldMatch::NotEntered,
            },
            sex: not_held(query.sex.is_some()),
            postcode_district: not_held(query.postcode_district.is_some()),
        }
    }

    fn both_names(&self) -> bool {
        self.family_name.matches() && self.given_name.matches()
    }

    /// Date of birth, family name and given name all match: the only kind that can be one match.
    pub fn is_full(&self) -> bool {
        self.date_of_birth == DobMatch::Same && self.both_names()
    }

    /// Worth showing as a card: born on a candidate date and at least one name matching (names
    /// change, so a family name that differs does not rule a child out when the given name matches).
    pub fn is_possible(&self) -> bool {
        self.date_of_birth != DobMatch::Different
            && (self.family_name.matches() || self.given_name.matches())
    }

    /// What matched, in words, for the card.
    pub fn matched_words(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.date_of_birth {
            DobMatch::Same => out.push("Date of birth: the same".to_string()),
            DobMatch::DayMonthSwapped => {}
            DobMatch::Different => {}
        }
        for (label, m) in [
            ("Family name", self.family_name),
            ("Given name", self.given_name),
        ] {
            if let Some(how) = match m {
                FieldMatch::Same => Some("the same"),
                FieldMatch::Normalised => {
                    Some("the same apart from accents, spaces or punctuation")
                }
                FieldMatch::Part => Some("one part the same"),
                FieldMatch::SoundsAlike => Some("sounds alike, spelt differently"),
                _ => None,
            } {
                out.push(format!("{label}: {how}"));
            }
        }
        out
    }

    /// What differed or was not compared, in words, for the card.
    pub fn differed_words(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.date_of_birth == DobMatch::DayMonthSwapped {
            out.push("Date of birth: day and month swapped".to_string());
        }
        for (label, m) in [
            ("Family name", self.family_name),
            ("Given name", self.given_name),
        ] {
            match m {
                FieldMatch::Different => out.push(format!("{label}: different")),
                FieldMatch::NotEntered => out.push(format!("{label}: not entered")),
                _ => {}
            }
        }
        for (label, m) in [
            ("Sex", self.sex),
            ("Postcode district", self.postcode_district),
        ] {
            if m == FieldMatch::NotHeld {
                out.push(format!("{label}: not held by CP-IS, not compared"));
            }
        }
        out
    }

    /// Orders cards: same date of birth first, then both names, then family name. A fixed order of
    /// kinds of agreement, not a score: no number is shown or compared with a threshold.
    fn order_key(&self) -> (bool, bool, bool, bool) {
        (
            self.date_of_birth != DobMatch::Same,
            !self.both_names(),
            !self.family_name.matches(),
            !self.given_name.matches(),
        )
    }
}

/// The answer in tiers. Indexes point into the records given to `tier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tiered {
    /// Exactly one person matches date of birth, family name and given name, and no one else
    /// matches both names.
    Match {
        index: usize,
        how: CandidateMatch,
    },
    /// Up to `MAX_POSSIBLE_MATCHES`, best kinds of agreement first.
    PossibleMatches(Vec<(usize, CandidateMatch)>),
    /// More possible matches than can be shown: ask for more details, show nothing.
    TooMany {
        candidates: usize,
    },
    NoMatch,
}

impl Tiered {
    pub fn kind(&self) -> TierKind {
        match self {
            Self::Match { .. } => TierKind::Match,
            Self::PossibleMatches(_) => TierKind::PossibleMatches,
            Self::TooMany { .. } => TierKind::TooMany,
            Self::NoMatch => TierKind::NoMatch,
        }
    }

    /// How many candidates were considered matching at all.
    pub fn candidates(&self) -> usize {
        match self {
            Self::Match { .. } => 1,
            Self::PossibleMatches(v) => v.len(),
            Self::TooMany { candidates } => *candidates,
            Self::NoMatch => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierKind {
    Match,
    PossibleMatches,
    TooMany,
    NoMatch,
}

/// The one matching and tiering rule. `records` are the people born on one of `candidate_dates`
/// (others are ignored), each once, already filtered to those visible today.
pub fn tier(query: &SearchQuery, records: &[FlagRecord]) -> Tiered {
    let mut possible: Vec<(usize, CandidateMatch)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (i, CandidateMatch::of(query, r)))
        .filter(|(_, m)| m.is_possible())
        .collect();
    let full: Vec<usize> = possible
        .iter()
        .filter(|(_, m)| m.is_full())
        .map(|(i, _)| *i)
        .collect();
    // Anyone else whose names both match (even on a swapped date) makes a single answer unsafe:
    // two children with similar names and birthdays must never come back as one.
    let names_match = possible.iter().filter(|(_, m)| m.both_names()).count();
    if full.len() == 1 && names_match == 1 {
        let index = full[0];
        let how = possible
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, m)| *m)
            .expect("a full match is a possible match");
        return Tiered::Match { index, how };
    }
    match possible.len() {
        0 => Tiered::NoMatch,
        n if n > MAX_POSSIBLE_MATCHES => Tiered::TooMany { candidates: n },
        _ => {
            possible.sort_by(|(ia, a), (ib, b)| {
                a.order_key().cmp(&b.order_key()).then_with(|| {
                    let (ra, rb) = (&records[*ia], &records[*ib]);
                    (&ra.family_name, &ra.given_names, ra.nhs_number).cmp(&(
                        &rb.family_name,
                        &rb.given_names,
                        rb.nhs_number,
                    ))
                })
            });
            Tiered::PossibleMatches(possible)
        }
    }
}

/// Caveats shown with every name search that finds no one, beside those of an NHS-number miss.
pub fn name_search_caveats() -> Vec<String> {
    vec![
        "Names change (adoption, a new family name, a parent's choice): a child may be held under another name.".into(),
        "Names are spelt and transliterated in different ways: try other spellings, or search by NHS number when you have it.".into(),
        "The local authority may not have matched the child to an NHS number; such children cannot be found by any search here.".into(),
    ]
}

/// Joins candidates found in two places (this device's copy and the central), each person once,
/// the second list's version winning (it is the fresher).
pub fn merge_candidates(held: Vec<FlagRecord>, fresher: Vec<FlagRecord>) -> Vec<FlagRecord> {
    let mut out: Vec<FlagRecord> = held
        .into_iter()
        .filter(|h| !fresher.iter().any(|f| f.nhs_number == h.nhs_number))
        .collect();
    out.extend(fresher);
    out
}

#[cfg(test)]
mod tests;
