//! Pins a fixed denial-of-service in the LA upload parser: the duplicate-column check compared every
//! header name with every earlier one, so a header of many distinct columns cost O(columns²) and any
//! holder of an LA token could send a 50 MB header (millions of columns) to burn CPU for hours.

use std::time::{Duration, Instant};

use cpis_central::upload::{parse_upload, COLUMNS};
use cpis_core::OdsCode;

#[test]
fn a_header_with_many_columns_is_checked_in_linear_time() {
    let mut header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    header.extend((0..60_000).map(|i| format!("extra_{i}")));
    let file = format!("{}\n", header.join(","));

    let started = Instant::now();
    let parsed = parse_upload(&OdsCode::parse("L001").unwrap(), file.as_bytes());
    let took = started.elapsed();

    assert!(parsed.is_ok(), "extra columns are allowed");
    // A linear check takes milliseconds even unoptimised; the pairwise one took 12 s here.
    assert!(
        took < Duration::from_secs(2),
        "60,000 header columns took {took:?}"
    );
}
