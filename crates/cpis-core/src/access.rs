//! Access events: the record that a user looked at a flagged person's alert, written on the device,
//! queued in its outbox, and turned by the central into access history and LA notifications.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::la::OdsCode;
use crate::nhs::NhsNumber;
use crate::setting::{opening_notifies, Activity, CareSetting};

/// Who looked and where: the signed-in user on an enrolled device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accessor {
    pub user_id: String,
    /// The user's role as shown in access history (e.g. "Paramedic").
    pub role: String,
    pub activity: Activity,
    pub org_ods: OdsCode,
    pub org_name: String,
    pub setting: CareSetting,
}

impl Accessor {
    pub fn notifies(&self) -> bool {
        opening_notifies(self.setting, self.activity)
    }
}

/// How the clinician found the person whose alert was opened: the LA is told, because a person
/// found by name and date of birth was not identified by a verified NHS number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    #[default]
    NhsNumber,
    NameAndDateOfBirth,
}

impl FoundBy {
    pub fn is_nhs_number(&self) -> bool {
        *self == Self::NhsNumber
    }
}

/// One opening of an alert. Identified by a UUIDv7 so the central's intake is idempotent; ordered
/// per device by `device_seq` so ordering never depends on clocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEvent {
    pub id: Uuid,
    pub device_id: Uuid,
    /// Strictly increasing per device, from 1.
    pub device_seq: u64,
    /// The device's wall clock when the clinician looked: the time the LA is told.
    pub device_time: DateTime<Utc>,
    /// Milliseconds of the device's monotonic clock at the same moment (since boot), to detect clock jumps.
    pub monotonic_ms: u64,
    pub nhs_number: NhsNumber,
    pub accessor: Accessor,
    /// Whether this opening notifies the responsible LA (unscheduled setting and B0107).
    pub notifies: bool,
    /// The incident or case reference the clinician typed, if any.
    pub case_reference: Option<String>,
    /// Absent in events from before search existed: they were all found by NHS number.
    #[serde(default, skip_serializing_if = "FoundBy::is_nhs_number")]
    pub found_by: FoundBy,
}

impl AccessEvent {
    pub fn new(
        device_id: Uuid,
        device_seq: u64,
        device_time: DateTime<Utc>,
        monotonic_ms: u64,
        nhs_number: NhsNumber,
        accessor: Accessor,
        case_reference: Option<String>,
    ) -> Self {
        let notifies = accessor.notifies();
        Self {
            id: Uuid::now_v7(),
            device_id,
            device_seq,
            device_time,
            monotonic_ms,
            nhs_number,
            accessor,
            notifies,
            case_reference,
            found_by: FoundBy::NhsNumber,
        }
    }
}

/// The device's monotonic clock in milliseconds (CLOCK_BOOTTIME on Linux, counting suspend).
pub fn monotonic_ms() -> u64 {
    #[cfg(target_os = "linux")]
    {
        if let Ok(uptime) = std::fs::read_to_string("/proc/uptime") {
            if let Some(secs) = uptime.split_whitespace().next() {
                if let Ok(secs) = secs.parse::<f64>() {
                    return (secs * 1000.0) as u64;
                }
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accessor(setting: CareSetting, activity: Activity) -> Accessor {
        Accessor {
            user_id: "para1".into(),
            role: "Paramedic".into(),
            activity,
            org_ods: OdsCode::parse("RX9").unwrap(),
            org_name: "Synthetic Ambulance Service".into(),
            setting,
        }
    }

    #[test]
    fn events_get_time_ordered_unique_v7_ids_and_know_whether_they_notify() {
        let device = Uuid::now_v7();
        let nhs = NhsNumber::test_range(3);
        let a = AccessEvent::new(
            device,
            1,
            Utc::now(),
            5,
            nhs,
            accessor(CareSetting::Ambulance, Activity::B0107),
            None,
        );
        let b = AccessEvent::new(
            device,
            2,
            Utc::now(),
            6,
            nhs,
            accessor(CareSetting::Gp, Activity::B0107),
            None,
        );
        assert_eq!(a.id.get_version_num(), 7);
        assert_ne!(a.id, b.id);
        assert!(a.id < b.id);
        assert!(a.notifies);
        assert!(!b.notifies);
    }
}
