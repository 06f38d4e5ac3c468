//! Fuzz target: the central's access-event intake — an `EventBatch` body, each `SealedEvent`
//! opened with the central's X25519 secret, and the access history built from what opens. Never a
//! panic; anything not sealed to the key is refused; a real event survives seal and open.
#![no_main]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cpis_central::service::access_history;
use cpis_core::crypto::hazmat;
use cpis_core::wire::{EventBatch, SealedEvent};
use cpis_core::AccessEvent;
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

/// A fixed secret so any crash reproduces exactly; it opens nothing outside this harness.
const SECRET: [u8; 32] = [0x42; 32];

fuzz_target!(|data: &[u8]| {
    let public = hazmat::x25519_public(&SECRET);

    if let Ok(batch) = serde_json::from_slice::<EventBatch>(data) {
        let mut opened = Vec::new();
        for sealed in &batch.events {
            match sealed.open(&SECRET) {
                Ok(event) => {
                    assert_eq!((event.id, event.device_seq), (sealed.id, sealed.device_seq));
                    opened.push(event);
                }
                Err(reason) => assert!(!reason.is_empty()),
            }
        }
        let _ = access_history(&opened);
    }

    // Arbitrary bytes as a sealed payload: it must not open.
    let raw = SealedEvent {
        id: Uuid::nil(),
        device_seq: 0,
        sealed: B64.encode(data),
    };
    assert!(raw.open(&SECRET).is_err());

    // What is inside a seal: an event that decodes survives sealing and opening, and the central's
    // derived views of it do not panic whatever its times and names.
    if let Ok(event) = serde_json::from_slice::<AccessEvent>(data) {
        let sealed = SealedEvent::seal(&event, &public);
        assert_eq!(sealed.open(&SECRET).unwrap(), event);
        let _ = access_history(&[event.clone(), event]);
    }
});
