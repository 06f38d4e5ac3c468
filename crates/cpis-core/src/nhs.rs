//! The NHS number: parsing (with or without spaces or dashes), Modulus 11 validation, 3-3-4 display,
//! and the 999 test range that all fixtures and demo data must use.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A valid 10-digit NHS number. Only constructible through validation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber([u8; 10]);

/// Why a string is not a valid NHS number. Each variant is a reason a clinician can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    #[error("no NHS number was given")]
    Empty,
    #[error("an NHS number has 10 digits; this has {found}")]
    Length { found: usize },
    #[error("an NHS number contains only digits; found '{found}' at position {position}")]
    NonDigit { found: char, position: usize },
    #[error("not a valid NHS number: its check digit would be 10, which is never issued")]
    CheckDigitTen,
    /// The message never names the digit the others need: that would turn a mistyped number
    /// into another valid one, perhaps another child's.
    #[error(
        "not a valid NHS number: the check digit (the last digit) does not match the others; a digit may be mistyped"
    )]
    CheckDigitMismatch { expected: u8, found: u8 },
}

impl NhsNumberError {
    /// A stable machine-readable code for the reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Length { .. } => "length",
            Self::NonDigit { .. } => "non_digit",
            Self::CheckDigitTen => "check_digit_ten",
            Self::CheckDigitMismatch { .. } => "check_digit_mismatch",
        }
    }
}

/// The Modulus 11 check digit of the first nine digits, or `None` when it would be 10 (never issued).
pub fn check_digit(first_nine: &[u8; 9]) -> Option<u8> {
    let sum: u32 = first_nine
        .iter()
        .enumerate()
        .map(|(i, d)| u32::from(*d) * (10 - i as u32))
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        c => Some(c as u8),
    }
}

impl NhsNumber {
    /// Parses an NHS number typed with or without spaces or dashes as separators.
    pub fn parse(input: &str) -> Result<Self, NhsNumberError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(NhsNumberError::Empty);
        }
        let mut digits = Vec::with_capacity(10);
        for (position, ch) in trimmed.chars().enumerate() {
            match ch {
                '0'..='9' => digits.push(ch as u8 - b'0'),
                ' ' | '-' => {}
                other => {
                    return Err(NhsNumberError::NonDigit {
                        found: other,
                        position: position + 1,
                    })
                }
            }
        }
        let digits: [u8; 10] =
            digits
                .as_slice()
                .try_into()
                .map_err(|_| NhsNumberError::Length {
                    found: digits.len(),
                })?;
        Self::from_digits(digits)
    }

    /// Validates ten digits (each 0-9).
    pub fn from_digits(digits: [u8; 10]) -> Result<Self, NhsNumberError> {
        let first_nine: [u8; 9] = digits[..9].try_into().expect("nine digits");
        match check_digit(&first_nine) {
            None => Err(NhsNumberError::CheckDigitTen),
            Some(expected) if expected != digits[9] => Err(NhsNumberError::CheckDigitMismatch {
                expected,
                found: digits[9],
            }),
            Some(_) => Ok(Self(digits)),
        }
    }

    /// The number completed from its first nine digits, when their check digit is not 10.
    pub fn complete(first_nine: [u8; 9]) -> Option<Self> {
        let check = check_digit(&first_nine)?;
        let mut digits = [0u8; 10];
        digits[..9].copy_from_slice(&first_nine);
        digits[9] = check;
        Some(Self(digits))
    }

    /// The `n`th number of the 999 test range (`n` below 900,000). Deterministic, so demo data and
    /// tests agree on numbers without storing them. For each 8-digit prefix at most one of the ten
    /// ninth digits gives check digit 10 (the ninth digit's weight 2 is invertible mod 11), so nine
    /// numbers per prefix are always available.
    pub fn test_range(n: u32) -> Self {
        assert!(
            n < 900_000,
            "the 999 test range holds 900,000 numbers by this scheme"
        );
        let mut first_nine = [9u8; 9];
        let mut prefix = n / 9;
        for slot in first_nine[3..8].iter_mut().rev() {
            *slot = (prefix % 10) as u8;
            prefix /= 10;
        }
        let wanted = (n % 9) as usize;
        (0..10u8)
            .filter_map(|ninth| {
                first_nine[8] = ninth;
                Self::complete(first_nine)
            })
            .nth(wanted)
            .expect("nine valid ninth digits per prefix")
    }

    /// True for the 999 000 0000 - 999 999 9999 range reserved for testing.
    pub fn is_test_range(&self) -> bool {
        self.0[..3] == [9, 9, 9]
    }

    /// The ten digits with no separators, as stored and hashed.
    pub fn as_digits(&self) -> String {
        self.0.iter().map(|d| char::from(b'0' + d)).collect()
    }

    pub fn digits(&self) -> [u8; 10] {
        self.0
    }
}

impl fmt::Display for NhsNumber {
    /// The 3-3-4 form clinicians read: `999 123 4560`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.as_digits();
        write!(f, "{} {} {}", &s[..3], &s[3..6], &s[6..])
    }
}

impl fmt::Debug for NhsNumber {
    // Redacted so a stray `{:?}` in a log never carries a patient identifier.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(***)")
    }
}

impl FromStr for NhsNumber {
    type Err = NhsNumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for NhsNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_digits())
    }
}

impl<'de> Deserialize<'de> for NhsNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_invalid_nhs_number_error_never_reveals_the_expected_check_digit() {
        for i in 0..50 {
            let good = NhsNumber::test_range(i).as_digits();
            let last = good.as_bytes()[9] - b'0';
            for wrong in (0..10u8).filter(|d| *d != last) {
                let typed = format!("{}{wrong}", &good[..9]);
                let message = NhsNumber::parse(&typed).unwrap_err().to_string();
                assert!(!message.chars().any(|c| c.is_ascii_digit()), "{message}");
            }
        }
    }

    #[test]
    fn table_of_numbers_and_reasons() {
        // (input, expected result)
        let cases: &[(&str, Result<&str, NhsNumberError>)] = &[
            ("9990000018", Ok("999 000 0018")),
            ("999 000 0018", Ok("999 000 0018")),
            ("999-000-0018", Ok("999 000 0018")),
            ("  9990000018 ", Ok("999 000 0018")),
            ("", Err(NhsNumberError::Empty)),
            ("   ", Err(NhsNumberError::Empty)),
            ("999000001", Err(NhsNumberError::Length { found: 9 })),
            ("99900000181", Err(NhsNumberError::Length { found: 11 })),
            (
                "99900000a8",
                Err(NhsNumberError::NonDigit {
                    found: 'a',
                    position: 9,
                }),
            ),
            (
                "9990000019",
                Err(NhsNumberError::CheckDigitMismatch {
                    expected: 8,
                    found: 9,
                }),
            ),
            (
                "9990000010",
                Err(NhsNumberError::CheckDigitMismatch {
                    expected: 8,
                    found: 0,
                }),
            ),
            // 999000000x: the weighted sum leaves remainder 1, so the check digit would be 10.
            ("9990000000", Err(NhsNumberError::CheckDigitTen)),
            ("999 000 0004", Err(NhsNumberError::CheckDigitTen)),
        ];
        for (input, expected) in cases {
            let got = NhsNumber::parse(input).map(|n| n.to_string());
            let expected = expected.clone().map(str::to_string);
            assert_eq!(got, expected, "input {input:?}");
        }
    }

    #[test]
    fn check_digit_ten_prefixes_are_never_valid_whatever_the_last_digit() {
        let prefix = [9, 9, 9, 0, 0, 0, 0, 0, 0];
        assert_eq!(check_digit(&prefix), None);
        for last in 0..10 {
            let mut digits = [0u8; 10];
            digits[..9].copy_from_slice(&prefix);
            digits[9] = last;
            assert_eq!(
                NhsNumber::from_digits(digits),
                Err(NhsNumberError::CheckDigitTen)
            );
        }
    }

    #[test]
    fn test_range_numbers_are_valid_distinct_and_in_range() {
        let mut seen = std::collections::HashSet::new();
        for n in (0..3000).chain([50_000, 250_000, 400_000, 899_999]) {
            let number = NhsNumber::test_range(n);
            assert!(number.is_test_range());
            assert!(NhsNumber::parse(&number.as_digits()).is_ok());
            assert!(seen.insert(number), "duplicate at {n}");
        }
    }

    #[test]
    fn debug_never_shows_the_number() {
        let n = NhsNumber::test_range(7);
        assert!(!format!("{n:?}").contains(&n.as_digits()[..6]));
    }

    fn valid_number() -> impl Strategy<Value = NhsNumber> {
        proptest::array::uniform9(0u8..10).prop_filter_map("check digit 10", NhsNumber::complete)
    }

    proptest! {
        #[test]
        fn every_valid_number_round_trips_through_display_and_parse(n in valid_number()) {
            prop_assert_eq!(NhsNumber::parse(&n.to_string()), Ok(n));
            prop_assert_eq!(NhsNumber::parse(&n.as_digits()), Ok(n));
            prop_assert_eq!(NhsNumber::parse(&n.to_string().replace(' ', "-")), Ok(n));
        }

        #[test]
        fn changing_any_one_digit_makes_it_invalid(n in valid_number(), pos in 0usize..10, delta in 1u8..10) {
            let mut digits = n.digits();
            digits[pos] = (digits[pos] + delta) % 10;
            prop_assert!(NhsNumber::from_digits(digits).is_err());
        }

        #[test]
        fn swapping_two_adjacent_different_digits_makes_it_invalid(n in valid_number(), pos in 0usize..9) {
            let mut digits = n.digits();
            prop_assume!(digits[pos] != digits[pos + 1]);
            digits.swap(pos, pos + 1);
            prop_assert!(NhsNumber::from_digits(digits).is_err());
        }
    }
}
