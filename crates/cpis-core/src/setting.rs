//! Care settings, users' activities (B0107 view and notify, B0170 view silently), and whether opening
//! an alert notifies the responsible local authority.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where the clinician is working. Unscheduled settings notify; scheduled ones read silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CareSetting {
    Ambulance,
    OohGp,
    EmergencyDepartment,
    WalkIn,
    MinorInjuries,
    PaediatricWard,
    Maternity,
    #[serde(rename = "nhs-111")]
    Nhs111,
    Gp,
    SchoolNursing,
    HealthVisiting,
}

impl CareSetting {
    pub const ALL: [CareSetting; 11] = [
        Self::Ambulance,
        Self::OohGp,
        Self::EmergencyDepartment,
        Self::WalkIn,
        Self::MinorInjuries,
        Self::PaediatricWard,
        Self::Maternity,
        Self::Nhs111,
        Self::Gp,
        Self::SchoolNursing,
        Self::HealthVisiting,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::Ambulance => "ambulance",
            Self::OohGp => "ooh-gp",
            Self::EmergencyDepartment => "emergency-department",
            Self::WalkIn => "walk-in",
            Self::MinorInjuries => "minor-injuries",
            Self::PaediatricWard => "paediatric-ward",
            Self::Maternity => "maternity",
            Self::Nhs111 => "nhs-111",
            Self::Gp => "gp",
            Self::SchoolNursing => "school-nursing",
            Self::HealthVisiting => "health-visiting",
        }
    }

    pub fn in_words(self) -> &'static str {
        match self {
            Self::Ambulance => "Ambulance service",
            Self::OohGp => "Out-of-hours GP",
            Self::EmergencyDepartment => "Emergency department",
            Self::WalkIn => "Walk-in centre",
            Self::MinorInjuries => "Minor injuries unit",
            Self::PaediatricWard => "Paediatric ward",
            Self::Maternity => "Maternity unit",
            Self::Nhs111 => "NHS 111",
            Self::Gp => "GP (in hours)",
            Self::SchoolNursing => "School nursing",
            Self::HealthVisiting => "Health visiting",
        }
    }

    /// Unscheduled care settings, where opening an alert notifies the LA.
    pub fn is_unscheduled(self) -> bool {
        !matches!(self, Self::Gp | Self::SchoolNursing | Self::HealthVisiting)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown care setting '{0}': expected one of ambulance, ooh-gp, emergency-department, walk-in, minor-injuries, paediatric-ward, maternity, nhs-111, gp, school-nursing, health-visiting")]
pub struct UnknownCareSetting(pub String);

impl FromStr for CareSetting {
    type Err = UnknownCareSetting;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|c| c.code() == s)
            .ok_or(UnknownCareSetting(s))
    }
}

impl fmt::Display for CareSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The national RBAC activity a user's role grants for CP-IS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Activity {
    /// View, and notify the LA when opened in unscheduled care.
    B0107,
    /// View silently: never notifies.
    B0170,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown activity '{0}': expected B0107 (view and notify) or B0170 (view silently)")]
pub struct UnknownActivity(pub String);

impl FromStr for Activity {
    type Err = UnknownActivity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "B0107" => Ok(Self::B0107),
            "B0170" => Ok(Self::B0170),
            _ => Err(UnknownActivity(s.to_string())),
        }
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::B0107 => "B0107",
            Self::B0170 => "B0170",
        })
    }
}

/// Whether opening an alert in this setting, with this activity, notifies the responsible LA.
pub fn opening_notifies(setting: CareSetting, activity: Activity) -> bool {
    setting.is_unscheduled() && activity == Activity::B0107
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscheduled_settings_notify_only_for_b0107() {
        let notifying = [
            "ambulance",
            "ooh-gp",
            "emergency-department",
            "walk-in",
            "minor-injuries",
            "paediatric-ward",
            "maternity",
            "nhs-111",
        ];
        let silent = ["gp", "school-nursing", "health-visiting"];
        for code in notifying {
            let s: CareSetting = code.parse().unwrap();
            assert!(opening_notifies(s, Activity::B0107), "{code}");
            assert!(
                !opening_notifies(s, Activity::B0170),
                "{code} silent reader"
            );
        }
        for code in silent {
            let s: CareSetting = code.parse().unwrap();
            assert!(!opening_notifies(s, Activity::B0107), "{code}");
            assert!(!opening_notifies(s, Activity::B0170), "{code}");
        }
    }

    #[test]
    fn settings_round_trip_through_their_codes_and_serde() {
        for s in CareSetting::ALL {
            assert_eq!(s.code().parse::<CareSetting>(), Ok(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.code()));
        }
        assert!("ward"
            .parse::<CareSetting>()
            .unwrap_err()
            .to_string()
            .contains("ward"));
    }
}
