//! The demo register on both stores: the same seed gives the same register (every region's digest
//! agrees across two fresh databases), another seed does not, and a region's feed holds exactly the
//! demo people of that region's LAs.

mod common;

use chrono::NaiveDate;
use common::*;
use cpis_central::demo;
use cpis_core::{CareSetting, Region};

on_both_stores!(
    demo_data_is_the_same_for_the_same_seed_and_a_regions_feed_holds_exactly_its_people
);

async fn load(store: &dyn cpis_central::Store, flags: u32, seed: u64) {
    let data = demo::generate(flags, seed, NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
    store
        .bulk_load(data.las, data.flags, chrono::Utc::now())
        .await
        .unwrap();
}

async fn demo_data_is_the_same_for_the_same_seed_and_a_regions_feed_holds_exactly_its_people(
    c: TestCentral,
) {
    let (twin, _dir, _pg) = fresh_store(c.backend)
        .await
        .expect("a second store of the same kind");
    let (other, _dir2, _pg2) = fresh_store(c.backend).await.expect("a third store");
    load(c.store.as_ref(), 3_000, 42).await;
    load(twin.as_ref(), 3_000, 42).await;
    load(other.as_ref(), 3_000, 43).await;
    assert_eq!(c.store.flag_count().await.unwrap(), 3_000);
    for name in demo::REGIONS {
        let region = Region::parse(name).unwrap();
        let digest = c.store.region_digest(&region).await.unwrap();
        assert_eq!(digest, twin.region_digest(&region).await.unwrap(), "{name}");
        assert_ne!(
            digest,
            other.region_digest(&region).await.unwrap(),
            "{name}"
        );
    }
    // Reloading the same demo changes nothing a device would see.
    let london = Region::parse("london").unwrap();
    let before = c.store.region_digest(&london).await.unwrap();
    load(c.store.as_ref(), 3_000, 42).await;
    assert_eq!(c.store.region_digest(&london).await.unwrap(), before);

    let device = c.device("london", "RX7", CareSetting::Ambulance).await;
    let mut cache = Cache::default();
    device.pull(&mut cache, 1_000).await;
    assert_eq!(cache.digest(), before);
    let las: Vec<_> = demo::demo_las()
        .into_iter()
        .filter(|l| l.region == london)
        .map(|l| l.ods)
        .collect();
    assert_eq!(cache.las.len(), las.len());
    assert!(cache
        .flags
        .values()
        .all(|f| las.contains(&f.local_authority)));
    let expected = demo::generate(3_000, 42, NaiveDate::from_ymd_opt(2026, 3, 1).unwrap())
        .flags
        .into_iter()
        .filter(|f| las.contains(&f.local_authority))
        .count();
    assert_eq!(cache.flags.len(), expected);
    c.shutdown().await;
}
