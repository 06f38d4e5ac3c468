//! Fuzz target: the region page decoder a device runs on what the network hands it — a
//! `SignedPage` verified against the pinned central key, its envelope opened with the region's feed
//! key, and the `FeedPage` it decodes. Never a panic; a page that decodes survives seal, sign,
//! verify and open unchanged, and the check-time rules.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::NaiveDate;
use cpis_core::crypto::hazmat;
use cpis_core::vault::FeedKey;
use cpis_core::wire::{FeedChange, FeedPage, SignedPage};
use cpis_core::VisibilityRules;
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair};

struct FuzzKey {
    pkcs8: Vec<u8>,
    public: [u8; 32],
}

/// A fixed key so any crash reproduces exactly; it signs nothing outside this harness.
fn key() -> &'static FuzzKey {
    static KEY: OnceLock<FuzzKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let seed = [0x5au8; 32];
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let public: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        // PKCS#8 v2 as ring writes it: version 1, Ed25519 OID, seed, then the public key.
        let mut pkcs8 = hex("3053020101300506032b657004220420");
        pkcs8.extend_from_slice(&seed);
        pkcs8.extend_from_slice(&hex("a123032100"));
        pkcs8.extend_from_slice(&public);
        assert_eq!(hazmat::ed25519_public(&pkcs8).unwrap(), public);
        FuzzKey { pkcs8, public }
    })
}

/// The region's feed key the seeds are sealed to (fuzz/seeds/make_seeds.py).
fn feed_key() -> FeedKey {
    FeedKey::from_base64("v1", &B64.encode([0x33u8; 32])).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// What the device does with a verified page before and while applying it.
fn use_page(page: &FeedPage) {
    let rules = VisibilityRules::default();
    let today = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
    for op in &page.ops {
        match &op.change {
            FeedChange::PutFlag { record } => {
                let _ = record.validate();
                let _ = record.visible_plans(today, &rules);
                let _ = record.is_expired(today, &rules);
                let _ = record.nhs_number.to_string();
            }
            FeedChange::PutLa { la } => {
                let _ = la.validate();
            }
            FeedChange::RemoveLa { .. } | FeedChange::RemoveFlag { .. } => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let key = key();

    // The envelope as it arrives. Forged signatures never verify; the decode must still not panic.
    if let Ok(signed) = serde_json::from_slice::<SignedPage>(data) {
        if let Ok(page) = signed.open(&key.public, &feed_key()) {
            use_page(&page);
        }
    }

    // Arbitrary bytes as the body, with an arbitrary signature: refused, not decoded.
    let forged = SignedPage {
        body: B64.encode(data),
        signature: B64.encode(data.get(..64).unwrap_or(data)),
    };
    assert!(forged.verify(&key.public).is_err());

    // The body as the decoder sees it once the signature holds.
    if let Ok(page) = serde_json::from_slice::<FeedPage>(data) {
        use_page(&page);
        let signed = SignedPage::seal_and_sign(&page, &feed_key(), &key.pkcs8).unwrap();
        let again = signed
            .open(&key.public, &feed_key())
            .expect("a page sealed and signed by the pinned keys opens");
        assert_eq!(again, page, "a page survives its own encoding");
    }
});
