//! The digest of a region's live content: lets a test (or an operator) compare a device's cache with
//! the central's region without moving the data. Computed exactly as the device computes its own.

/// One definition for both sides, so a device's cache digest and the central's region digest agree.
pub use cpis_core::store::region_digest;

#[cfg(test)]
mod tests {
    use super::*;
    use cpis_core::crypto::hazmat;
    use cpis_core::{FlagRecord, LocalAuthority, NhsNumber, OdsCode, Region};

    #[test]
    fn the_digest_ignores_order_and_sees_every_change() {
        let la = |ods: &str| LocalAuthority {
            ods: OdsCode::parse(ods).unwrap(),
            name: format!("{ods} Council"),
            emergency_phone: "0300 555 0101".into(),
            office_phone: None,
            region: Region::parse("north").unwrap(),
        };
        let flag = |i: u32| FlagRecord {
            nhs_number: NhsNumber::test_range(i),
            family_name: "Testwood".into(),
            given_names: "Sam".into(),
            date_of_birth: chrono::NaiveDate::from_ymd_opt(2018, 1, 2).unwrap(),
            local_id: None,
            local_authority: OdsCode::parse("L001").unwrap(),
            plans: vec![],
        };
        let a = region_digest(&[flag(1), flag(2)], &[la("L001"), la("L002")]);
        let b = region_digest(&[flag(2), flag(1)], &[la("L002"), la("L001")]);
        assert_eq!(a, b);
        assert_ne!(a, region_digest(&[flag(1)], &[la("L001"), la("L002")]));
        assert_eq!(region_digest(&[], &[]), hex::encode(hazmat::sha256(b"")));
    }
}
