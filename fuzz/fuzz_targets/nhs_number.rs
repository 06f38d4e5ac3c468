//! Fuzz target: `NhsNumber::parse` on any text. It must never panic, and whatever it accepts must
//! be ten digits passing Modulus 11 whose 3-3-4 display parses back to the same number.
#![no_main]

use cpis_core::nhs::check_digit;
use cpis_core::NhsNumber;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Lossy rather than skipping non-UTF-8: a typed field can hold anything the keyboard sends.
    let text = String::from_utf8_lossy(data);
    match NhsNumber::parse(&text) {
        Ok(n) => {
            let digits = n.digits();
            assert!(digits.iter().all(|d| *d <= 9));
            let first_nine: [u8; 9] = digits[..9].try_into().unwrap();
            assert_eq!(check_digit(&first_nine), Some(digits[9]));

            let shown = n.to_string();
            assert_eq!(shown.len(), 12);
            assert_eq!(NhsNumber::parse(&shown), Ok(n));
            assert_eq!(NhsNumber::parse(&n.as_digits()), Ok(n));
            // Only separators were dropped: the digits typed are the digits kept.
            let typed: String = text.chars().filter(char::is_ascii_digit).collect();
            assert_eq!(typed, n.as_digits());

            let json = serde_json::to_string(&n).unwrap();
            assert_eq!(serde_json::from_str::<NhsNumber>(&json).unwrap(), n);
            // A stray `{:?}` must never carry the number into a log.
            assert!(!format!("{n:?}").contains(&n.as_digits()));
        }
        Err(e) => {
            // The reason is shown to the clinician: building it must not panic either.
            let _ = (e.to_string(), e.code());
        }
    }
    // The wire path (serde) agrees with the typed path.
    let as_json = serde_json::to_string(text.as_ref()).unwrap();
    assert_eq!(
        serde_json::from_str::<NhsNumber>(&as_json).ok(),
        NhsNumber::parse(&text).ok()
    );
});
