//! Tests of the device store: privacy at rest, sealing bound to rows, feed pages and the cursor,
//! the vault's PIN and lease rules, the outbox, and the migrations.

use super::*;

#[test]
fn the_store_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<DeviceStore>();
}

#[test]
fn test_hooks_exist() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DeviceStore::open(dir.path()).unwrap();
    let _ = store.conn();
    let _ = store.conn_mut();
    assert!(store.enrolment().unwrap().is_none());
    let _ = DeviceStore::device_id_for_tests;
}
