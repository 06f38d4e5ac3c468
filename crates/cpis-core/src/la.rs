//! Local authorities (the responsible LA of a flagged person), their ODS codes, and regions.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ODS organisation code, validated loosely (`^[A-Z0-9]{3,9}$`) and upper-cased.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OdsCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OdsCodeError {
    #[error("ODS code '{0}' is not 3 to 9 letters or digits")]
    Invalid(String),
}

impl OdsCode {
    pub fn parse(input: &str) -> Result<Self, OdsCodeError> {
        let code = input.trim().to_ascii_uppercase();
        if (3..=9).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Self(code))
        } else {
            Err(OdsCodeError::Invalid(input.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OdsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OdsCode({})", self.0)
    }
}

impl Serialize for OdsCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OdsCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A region: the set of LAs an ambulance service (or other trust) covers. Its devices hold the flags of
/// those LAs. Named by a short code such as `north-west`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Region(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("region '{0}' must be 1 to 64 lower-case letters, digits or dashes")]
    Invalid(String),
}

impl Region {
    pub fn parse(input: &str) -> Result<Self, RegionError> {
        let r = input.trim().to_ascii_lowercase();
        if !r.is_empty()
            && r.len() <= 64
            && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            Ok(Self(r))
        } else {
            Err(RegionError::Invalid(input.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The local authority responsible for a flagged person. The emergency duty (out-of-hours) phone is
/// mandatory: it is the fallback when the check cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalAuthority {
    pub ods: OdsCode,
    pub name: String,
    pub emergency_phone: String,
    pub office_phone: Option<String>,
    pub region: Region,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalAuthorityError {
    #[error("the local authority needs a name")]
    MissingName,
    #[error("the local authority needs an emergency duty phone number: it is the fallback for every check")]
    MissingEmergencyPhone,
    #[error("phone number '{0}' must be digits, spaces, '+', '(' or ')' with 6 to 20 digits")]
    BadPhone(String),
}

fn valid_phone(p: &str) -> bool {
    let digits = p.chars().filter(|c| c.is_ascii_digit()).count();
    (6..=20).contains(&digits) && p.chars().all(|c| c.is_ascii_digit() || " +()-".contains(c))
}

impl LocalAuthority {
    pub fn validate(&self) -> Result<(), LocalAuthorityError> {
        if self.name.trim().is_empty() {
            return Err(LocalAuthorityError::MissingName);
        }
        if self.emergency_phone.trim().is_empty() {
            return Err(LocalAuthorityError::MissingEmergencyPhone);
        }
        for phone in std::iter::once(&self.emergency_phone).chain(self.office_phone.iter()) {
            if !valid_phone(phone) {
                return Err(LocalAuthorityError::BadPhone(phone.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ods_codes_are_validated_loosely_and_upper_cased() {
        assert_eq!(OdsCode::parse("x01").unwrap().as_str(), "X01");
        assert_eq!(OdsCode::parse("RX7AB").unwrap().as_str(), "RX7AB");
        for bad in ["", "AB", "ABCDEFGHIJ", "A-1", "A 12"] {
            assert!(OdsCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emergency_phone_is_mandatory() {
        let la = LocalAuthority {
            ods: OdsCode::parse("X01").unwrap(),
            name: "Synthetic Borough Council".into(),
            emergency_phone: " ".into(),
            office_phone: None,
            region: Region::parse("north").unwrap(),
        };
        assert_eq!(
            la.validate(),
            Err(LocalAuthorityError::MissingEmergencyPhone)
        );
        let ok = LocalAuthority {
            emergency_phone: "0300 555 0101".into(),
            ..la
        };
        assert_eq!(ok.validate(), Ok(()));
    }
}
