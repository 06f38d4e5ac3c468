//! Cryptographic primitives, quarantined here: the rest of the crate uses the safe envelopes in
//! `crypto` and the key vault. All of it is ring, except X25519 (static keys ring does not offer).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use ring::{hkdf, hmac, pbkdf2};
use std::num::NonZeroU32;
use zeroize::Zeroizing;

use super::CryptoError;

pub const KEY_LEN: usize = 32;

pub fn random_bytes<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut out = Zeroizing::new([0u8; N]);
    SystemRandom::new()
        .fill(out.as_mut())
        .expect("the operating system's random source failed");
    out
}

/// AES-256-GCM with a random nonce; output is `nonce || ciphertext || tag`.
pub fn aead_seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
    let nonce_bytes = random_bytes::<NONCE_LEN>();
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
    out.extend_from_slice(nonce_bytes.as_ref());
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(*nonce_bytes),
        Aad::from(aad),
        &mut body,
    )
    .expect("sealing cannot fail for in-memory sizes");
    out.extend_from_slice(&body);
    out
}

/// Opens `nonce || ciphertext || tag`; fails if the key, the associated data or any byte differs.
pub fn aead_open(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(CryptoError::Tampered);
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key"));
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Tampered)?;
    let mut body = Zeroizing::new(body.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad), body.as_mut_slice())
        .map_err(|_| CryptoError::Tampered)?
        .len();
    body.truncate(len);
    Ok(body)
}

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&key, message);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

pub fn hmac_sha256_verify(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::verify(&key, message, tag).is_ok()
}

pub fn pbkdf2_sha256(secret: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(iterations.max(1)).expect("non-zero"),
        salt,
        secret,
        out.as_mut(),
    );
    out
}

pub fn pbkdf2_sha256_verify(secret: &[u8], salt: &[u8], iterations: u32, expected: &[u8]) -> bool {
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(iterations.max(1)).expect("non-zero"),
        salt,
        secret,
        expected,
    )
    .is_ok()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

pub fn hkdf_sha256(salt: &[u8], secret: &[u8], info: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(secret);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    prk.expand(&[info], Len(KEY_LEN))
        .and_then(|okm| okm.fill(out.as_mut()))
        .expect("32 bytes is a valid HKDF length");
    out
}

/// A new Ed25519 key pair as PKCS#8 bytes.
pub fn ed25519_generate() -> Zeroizing<Vec<u8>> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key generation");
    Zeroizing::new(pkcs8.as_ref().to_vec())
}

pub fn ed25519_public(pkcs8: &[u8]) -> Result<[u8; 32], CryptoError> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| CryptoError::BadKey)?;
    let mut out = [0u8; 32];
    out.copy_from_slice(pair.public_key().as_ref());
    Ok(out)
}

pub fn ed25519_sign(pkcs8: &[u8], message: &[u8]) -> Result<[u8; 64], CryptoError> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| CryptoError::BadKey)?;
    let mut out = [0u8; 64];
    out.copy_from_slice(pair.sign(message).as_ref());
    Ok(out)
}

pub fn ed25519_verify(public: &[u8], message: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    signature::UnparsedPublicKey::new(&signature::ED25519, public)
        .verify(message, sig)
        .map_err(|_| CryptoError::BadSignature)
}

/// A new X25519 static secret.
pub fn x25519_generate() -> Zeroizing<[u8; 32]> {
    random_bytes::<32>()
}

pub fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    let s = x25519_dalek::StaticSecret::from(*secret);
    *x25519_dalek::PublicKey::from(&s).as_bytes()
}

const SEALED_INFO: &[u8] = b"cpis-field/sealed-to-central/v1";

/// Seals `plaintext` so that only the holder of the recipient's X25519 secret can open it:
/// `ephemeral public (32) || nonce || ciphertext || tag`. The sender cannot read it back.
pub fn seal_to(recipient_public: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let eph = x25519_dalek::StaticSecret::from(*random_bytes::<32>());
    let eph_public = x25519_dalek::PublicKey::from(&eph);
    let shared = eph.diffie_hellman(&x25519_dalek::PublicKey::from(*recipient_public));
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(eph_public.as_bytes());
    salt[32..].copy_from_slice(recipient_public);
    let key = hkdf_sha256(&salt, shared.as_bytes(), SEALED_INFO);
    let mut out = eph_public.as_bytes().to_vec();
    out.extend(aead_seal(&key, aad, plaintext));
    out
}

pub fn open_sealed(
    recipient_secret: &[u8; 32],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < 32 {
        return Err(CryptoError::Tampered);
    }
    let (eph_public, rest) = sealed.split_at(32);
    let eph_public: [u8; 32] = eph_public.try_into().expect("32 bytes");
    let secret = x25519_dalek::StaticSecret::from(*recipient_secret);
    let recipient_public = x25519_dalek::PublicKey::from(&secret);
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(eph_public));
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(&eph_public);
    salt[32..].copy_from_slice(recipient_public.as_bytes());
    let key = hkdf_sha256(&salt, shared.as_bytes(), SEALED_INFO);
    aead_open(&key, aad, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aead_binds_the_associated_data() {
        let key = random_bytes::<32>();
        let sealed = aead_seal(&key, b"row:1", b"secret");
        assert_eq!(
            aead_open(&key, b"row:1", &sealed).unwrap().as_slice(),
            b"secret"
        );
        assert!(aead_open(&key, b"row:2", &sealed).is_err());
        let other = random_bytes::<32>();
        assert!(aead_open(&other, b"row:1", &sealed).is_err());
    }

    #[test]
    fn sealed_box_opens_only_for_the_recipient_and_its_aad() {
        let secret = x25519_generate();
        let public = x25519_public(&secret);
        let sealed = seal_to(&public, b"event:1", b"payload");
        assert_eq!(
            open_sealed(&secret, b"event:1", &sealed)
                .unwrap()
                .as_slice(),
            b"payload"
        );
        assert!(open_sealed(&secret, b"event:2", &sealed).is_err());
        let other = x25519_generate();
        assert!(open_sealed(&other, b"event:1", &sealed).is_err());
    }

    #[test]
    fn ed25519_signatures_fail_when_the_message_changes() {
        let pkcs8 = ed25519_generate();
        let public = ed25519_public(&pkcs8).unwrap();
        let sig = ed25519_sign(&pkcs8, b"page").unwrap();
        assert!(ed25519_verify(&public, b"page", &sig).is_ok());
        assert!(ed25519_verify(&public, b"pagf", &sig).is_err());
    }
}
