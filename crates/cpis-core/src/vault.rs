//! The key vault: the cache keys (data and blind-index keys), the device secret, and the envelopes
//! that wrap them — the cache keys under the central's lease key, each user's copy of the lease key
//! under their PIN — plus the lease MAC and the wrong-PIN delay schedule. No SQL here: the device
//! store keeps the wrapped bytes; this module decides what wraps what.
//!
//! Unlocking offline needs three things: the device secret (a 0600 file beside the database), the
//! user's PIN (which opens their copy of the lease key) and an unexpired lease. The blind-index key
//! is random, never derived from the PIN, so an NHS number's index cannot be brute-forced from a
//! guessed PIN.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::crypto::{hazmat, CryptoError};
use crate::nhs::NhsNumber;
use crate::store::StoreError;
use crate::wire::{lease_mac_message, UserProfile};

/// PBKDF2-HMAC-SHA256 iterations for new PIN wraps (OWASP's 2023 figure for SHA-256).
pub const DEFAULT_PIN_ITERATIONS: u32 = 210_000;
/// Consecutive wrong PINs after which the user's local unlock is destroyed.
pub const MAX_PIN_ATTEMPTS: u32 = 5;

const BLIND_INDEX_CONTEXT: &[u8] = b"cpis-field/blind-index/v1:";
const DEVICE_UNLOCK_INFO: &[u8] = b"cpis-field/device-unlock/v1";
const USER_UNLOCK_INFO: &str = "cpis-field/user-unlock/v1:";
const DEVICE_KEY_INFO: &[u8] = b"cpis-field/device-key/v1";
const DOB_INDEX_KEY_INFO: &[u8] = b"cpis-field/dob-index-key/v1";
const DOB_INDEX_CONTEXT: &[u8] = b"cpis-field/dob-index/v1:";

/// Bits kept of the date-of-birth index (CipherSweet's planning: truncate so that each index value
/// covers several records). 2,048 values: a region of 10,000-40,000 flags puts 5-20 people on each
/// value and the whole country about 120; and since a child's possible birth dates alone (about
/// 6,600 over 18 years, more with mothers) outnumber the values, every value stands for several
/// dates, so equal values do not even say two people share a birthday. A search decrypts the few
/// hundred people on two values at most, well inside its time budget.
pub const DOB_INDEX_BITS: u32 = 11;

/// Seals cached flags, local authorities and audit entries. Not `Clone`, not `Serialize`,
/// redacted in `Debug`, zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

/// Makes the blind index of an NHS number. Same guarantees as `DataKey`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct IndexKey([u8; 32]);

/// The two random keys that open the device's cache. Recovered only through the vault.
pub struct CacheKeys {
    pub data: DataKey,
    pub index: IndexKey,
}

// Both fields zeroize themselves on drop; the marker lets callers require the guarantee.
impl ZeroizeOnDrop for CacheKeys {}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey([redacted])")
    }
}

impl fmt::Debug for CacheKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CacheKeys([redacted])")
    }
}

impl DataKey {
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        hazmat::aead_seal(&self.0, aad, plaintext)
    }

    pub(crate) fn open(
        &self,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        hazmat::aead_open(&self.0, aad, sealed)
    }
}

/// A region's feed key: every feed page is sealed to it as well as signed, so a device's own key
/// alone downloads only ciphertext. The central derives it; a device receives it only in the answer
/// to an online PIN sign-in and keeps it sealed under its data key. Same guarantees as `DataKey`.
pub struct FeedKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for FeedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FeedKey({}, [redacted])", self.id)
    }
}

impl FeedKey {
    pub fn new(id: impl Into<String>, key: Zeroizing<[u8; 32]>) -> Self {
        Self { id: id.into(), key }
    }

    /// From the base64 the central sends at sign-in.
    pub fn from_base64(id: &str, key: &str) -> Result<Self, String> {
        let bytes = Zeroizing::new(
            B64.decode(key.trim())
                .map_err(|_| "the feed key is not base64".to_string())?,
        );
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| "the feed key is not 32 bytes".to_string())?;
        Ok(Self::new(id, Zeroizing::new(key)))
    }

    /// Which generation of the region's key this is: named in every page sealed to it.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(self.key.as_ref()))
    }

    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        hazmat::aead_seal(&self.key, aad, plaintext)
    }

    pub(crate) fn open(
        &self,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        hazmat::aead_open(&self.key, aad, sealed)
    }

    /// A keyed digest of `content`: a cache tag for a page that says nothing of the page to anyone
    /// without the key.
    pub fn tag(&self, content: &[u8]) -> [u8; 32] {
        hazmat::hmac_sha256(self.key.as_ref(), content)
    }
}

/// Makes the bucketed date-of-birth index. Derived from the index key with its own HKDF context, so
/// it is a key of its own: index values of dates say nothing about the NHS-number blind index.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DobIndexKey([u8; 32]);

impl fmt::Debug for DobIndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DobIndexKey([redacted])")
    }
}

impl DobIndexKey {
    /// The first `DOB_INDEX_BITS` of `HMAC-SHA256(key, "cpis-field/dob-index/v1:" + YYYY-MM-DD)`.
    pub fn bucket(&self, dob: chrono::NaiveDate) -> i64 {
        let mut message = Zeroizing::new(DOB_INDEX_CONTEXT.to_vec());
        message.extend_from_slice(dob.format("%Y-%m-%d").to_string().as_bytes());
        let tag = hazmat::hmac_sha256(&self.0, &message);
        i64::from(u32::from_be_bytes([tag[0], tag[1], tag[2], tag[3]]) >> (32 - DOB_INDEX_BITS))
    }
}

impl IndexKey {
    pub fn dob_index_key(&self) -> DobIndexKey {
        DobIndexKey(*hazmat::hkdf_sha256(
            DOB_INDEX_KEY_INFO,
            &self.0,
            b"date-of-birth",
        ))
    }

    /// `HMAC-SHA256(index key, "cpis-field/blind-index/v1:" + 10 digits)`.
    pub fn blind_index(&self, nhs: &NhsNumber) -> [u8; 32] {
        // Built on the stack and wiped so the digits do not linger in freed heap memory.
        let mut message = Zeroizing::new([0u8; BLIND_INDEX_CONTEXT.len() + 10]);
        message[..BLIND_INDEX_CONTEXT.len()].copy_from_slice(BLIND_INDEX_CONTEXT);
        for (slot, digit) in message[BLIND_INDEX_CONTEXT.len()..]
            .iter_mut()
            .zip(nhs.digits())
        {
            *slot = b'0' + digit;
        }
        hazmat::hmac_sha256(&self.0, message.as_ref())
    }
}

impl CacheKeys {
    /// Fresh random keys: made once per device, at the first online sign-in.
    pub fn generate() -> Self {
        let data = hazmat::random_bytes::<32>();
        let index = hazmat::random_bytes::<32>();
        Self {
            data: DataKey(*data),
            index: IndexKey(*index),
        }
    }

    fn to_bytes(&self) -> Zeroizing<[u8; 64]> {
        let mut out = Zeroizing::new([0u8; 64]);
        out[..32].copy_from_slice(&self.data.0);
        out[32..].copy_from_slice(&self.index.0);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 64 {
            return Err(CryptoError::BadKey);
        }
        let mut data = [0u8; 32];
        let mut index = [0u8; 32];
        data.copy_from_slice(&bytes[..32]);
        index.copy_from_slice(&bytes[32..]);
        Ok(Self {
            data: DataKey(data),
            index: IndexKey(index),
        })
    }

    #[cfg(test)]
    pub(crate) fn raw_for_tests(&self) -> ([u8; 32], [u8; 32]) {
        (self.data.0, self.index.0)
    }
}

/// The 32 random bytes that bind every wrap to this device: a copy of the database alone opens
/// nothing. Kept in a file readable only by the owner.
pub struct DeviceSecret(Zeroizing<[u8; 32]>);

impl fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceSecret([redacted])")
    }
}

impl DeviceSecret {
    /// Reads the secret at `path`, creating it (mode 0600, atomically) when absent. Refuses a
    /// secret that others can read: it would no longer bind the wraps to this device's owner.
    pub fn load_or_create(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            let fresh = hazmat::random_bytes::<32>();
            // Losing a creation race is fine: the winner's file is read below.
            write_private_file_new(path, fresh.as_ref())?;
        }
        check_private(path)?;
        let bytes = Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| StoreError::io("reading the device secret", path, e))?,
        );
        let secret: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("the device secret file is not 32 bytes".into()))?;
        Ok(Self(Zeroizing::new(secret)))
    }

    fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Writes `bytes` to a new file at `path` readable only by the owner, never exposing a partial
/// file: write to a temporary name, sync, then link into place (which fails if `path` exists, so
/// an existing secret or key is never overwritten).
pub(crate) fn write_private_file_new(path: &Path, bytes: &[u8]) -> Result<bool, StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp: PathBuf = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("new"),
        Uuid::new_v4().simple()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    let created = result.map_err(|e| StoreError::io("creating a private file", path, e))?;
    if created {
        // Make the new directory entry durable too.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(created)
}

#[cfg(unix)]
pub(crate) fn check_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| StoreError::io("reading permissions", path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::InsecurePermissions {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn check_private(_path: &Path) -> Result<(), StoreError> {
    // Elsewhere the file inherits the user profile directory's ACL.
    Ok(())
}

/// `HMAC-SHA256(lease_key, wire::lease_mac_message(device_id, expires_at))`: made by the central
/// with each lease, so the device can store an expiry it cannot forge.
pub fn lease_mac(lease_key: &[u8; 32], device_id: Uuid, expires_at: DateTime<Utc>) -> [u8; 32] {
    hazmat::hmac_sha256(lease_key, &lease_mac_message(device_id, expires_at))
}

pub fn verify_lease_mac(
    lease_key: &[u8; 32],
    device_id: Uuid,
    expires_at: DateTime<Utc>,
    mac: &[u8],
) -> bool {
    hazmat::hmac_sha256_verify(lease_key, &lease_mac_message(device_id, expires_at), mac)
}

/// How long to wait after the `failed_attempts`-th consecutive wrong PIN before the next try:
/// nothing for a first slip, then growing, so guessing is slow before the lockout ends it.
pub fn pin_delay(failed_attempts: u32) -> chrono::Duration {
    let secs = match failed_attempts {
        0 | 1 => 0,
        2 => 2,
        3 => 5,
        _ => 15,
    };
    chrono::Duration::seconds(secs)
}

fn device_unlock_key(secret: &DeviceSecret, lease_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    hazmat::hkdf_sha256(secret.bytes(), lease_key, DEVICE_UNLOCK_INFO)
}

fn device_unlock_aad(device_id: Uuid) -> Vec<u8> {
    format!("cpis-field/device-unlock/v1:{device_id}").into_bytes()
}

/// Wraps the cache keys under `HKDF(salt = device secret, ikm = lease key)`.
pub(crate) fn seal_device_unlock(
    secret: &DeviceSecret,
    lease_key: &[u8; 32],
    device_id: Uuid,
    keys: &CacheKeys,
) -> Vec<u8> {
    let kek = device_unlock_key(secret, lease_key);
    hazmat::aead_seal(
        &kek,
        &device_unlock_aad(device_id),
        keys.to_bytes().as_ref(),
    )
}

pub(crate) fn open_device_unlock(
    secret: &DeviceSecret,
    lease_key: &[u8; 32],
    device_id: Uuid,
    sealed: &[u8],
) -> Result<CacheKeys, CryptoError> {
    let kek = device_unlock_key(secret, lease_key);
    let bytes = hazmat::aead_open(&kek, &device_unlock_aad(device_id), sealed)?;
    CacheKeys::from_bytes(&bytes)
}

/// What a user's PIN opens: the device's lease key and the profile the central vouched for.
pub(crate) struct UserUnlockPayload {
    pub lease_key: Zeroizing<[u8; 32]>,
    pub user: UserProfile,
}

#[derive(Serialize, Deserialize)]
struct UserUnlockJson {
    lease_key: String,
    user: UserProfile,
}

impl Drop for UserUnlockJson {
    fn drop(&mut self) {
        self.lease_key.zeroize();
    }
}

/// A user's wrap as stored: PBKDF2 parameters beside the ciphertext.
pub(crate) struct UserUnlockWrap {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub sealed: Vec<u8>,
}

fn user_unlock_key(
    secret: &DeviceSecret,
    user_id: &str,
    pin: &str,
    salt: &[u8],
    iterations: u32,
) -> Zeroizing<[u8; 32]> {
    let stretched = hazmat::pbkdf2_sha256(pin.as_bytes(), salt, iterations);
    let info = format!("{USER_UNLOCK_INFO}{user_id}");
    hazmat::hkdf_sha256(secret.bytes(), stretched.as_ref(), info.as_bytes())
}

fn user_unlock_aad(user_id: &str) -> Vec<u8> {
    format!("{USER_UNLOCK_INFO}{user_id}").into_bytes()
}

pub(crate) fn seal_user_unlock(
    secret: &DeviceSecret,
    pin: &str,
    iterations: u32,
    lease_key: &[u8; 32],
    user: &UserProfile,
) -> UserUnlockWrap {
    let salt = hazmat::random_bytes::<16>().to_vec();
    let kek = user_unlock_key(secret, &user.id, pin, &salt, iterations);
    let payload = UserUnlockJson {
        lease_key: B64.encode(lease_key),
        user: user.clone(),
    };
    let json = Zeroizing::new(serde_json::to_vec(&payload).expect("the payload always serialises"));
    let sealed = hazmat::aead_seal(&kek, &user_unlock_aad(&user.id), &json);
    UserUnlockWrap {
        salt,
        iterations,
        sealed,
    }
}

/// Opens a user's wrap. `Tampered` means the PIN is wrong (or the row was altered: the two cannot
/// be told apart, by design).
pub(crate) fn open_user_unlock(
    secret: &DeviceSecret,
    user_id: &str,
    pin: &str,
    wrap: &UserUnlockWrap,
) -> Result<UserUnlockPayload, CryptoError> {
    let kek = user_unlock_key(secret, user_id, pin, &wrap.salt, wrap.iterations);
    let json = hazmat::aead_open(&kek, &user_unlock_aad(user_id), &wrap.sealed)?;
    let payload: UserUnlockJson = serde_json::from_slice(&json).map_err(|_| CryptoError::BadKey)?;
    let bytes = Zeroizing::new(
        B64.decode(&payload.lease_key)
            .map_err(|_| CryptoError::BadKey)?,
    );
    let lease_key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::BadKey)?;
    Ok(UserUnlockPayload {
        lease_key: Zeroizing::new(lease_key),
        user: payload.user.clone(),
    })
}

fn device_key_kek(secret: &DeviceSecret) -> Zeroizing<[u8; 32]> {
    hazmat::hkdf_sha256(&[], secret.bytes(), DEVICE_KEY_INFO)
}

/// The device's Ed25519 signing key is sealed under a key from the device secret rather than kept
/// as a plain 0600 file: one secret then protects everything, so moving that secret into an OS
/// keyring (or leaving it out of a backup) protects the signing key too.
pub(crate) fn seal_device_key(secret: &DeviceSecret, pkcs8: &[u8]) -> Vec<u8> {
    hazmat::aead_seal(&device_key_kek(secret), DEVICE_KEY_INFO, pkcs8)
}

pub(crate) fn open_device_key(
    secret: &DeviceSecret,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    hazmat::aead_open(&device_key_kek(secret), DEVICE_KEY_INFO, sealed)
}

/// Why the vault would not open. Messages are safe to show a clinician: no keys, no PINs.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("wrong PIN: {attempts_left} attempts left before this device needs an online sign-in")]
    WrongPin { attempts_left: u32 },
    #[error("too many wrong PINs: the local unlock was removed; sign in online to use this device again")]
    LockedOut,
    #[error("too soon after a wrong PIN: try again in {retry_after_secs} s")]
    TooSoon { retry_after_secs: u64 },
    #[error("the offline lease ended at {expired_at}: connect and sign in online; until then phone the LA emergency duty team or use the safeguarding pathway")]
    LeaseExpired { expired_at: DateTime<Utc> },
    #[error("the stored lease failed its integrity check: sign in online")]
    LeaseTampered,
    #[error("this user has not signed in online on this device (or was locked out): sign in online first")]
    NoLocalUnlock,
    #[error("this device is not enrolled")]
    NotEnrolled,
    #[error("the key vault is damaged: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VaultError {
    /// A stable code for the app and the CLI's JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            Self::WrongPin { .. } => "wrong_pin",
            Self::LockedOut => "locked_out",
            Self::TooSoon { .. } => "too_soon",
            Self::LeaseExpired { .. } => "lease_expired",
            Self::LeaseTampered => "lease_tampered",
            Self::NoLocalUnlock => "no_local_unlock",
            Self::NotEnrolled => "not_enrolled",
            Self::Corrupt(_) => "vault_corrupt",
            Self::Store(_) => "store_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::la::OdsCode;
    use crate::setting::Activity;
    use chrono::Timelike;

    fn secret() -> DeviceSecret {
        DeviceSecret(hazmat::random_bytes::<32>())
    }

    fn user() -> UserProfile {
        UserProfile {
            id: "para1".into(),
            name: "Synthetic Paramedic".into(),
            role: "Paramedic".into(),
            activity: Activity::B0107,
            org_ods: OdsCode::parse("RX9").unwrap(),
        }
    }

    #[test]
    fn key_types_debug_is_redacted() {
        let keys = CacheKeys::generate();
        let (data, index) = keys.raw_for_tests();
        for shown in [
            format!("{keys:?}"),
            format!("{:?}", keys.data),
            format!("{:?}", keys.index),
            format!("{keys:#?}"),
        ] {
            assert!(shown.contains("redacted"), "{shown}");
            for raw in [data, index] {
                assert!(!shown.contains(&hex::encode(raw)));
                assert!(!shown.contains(&hex::encode(&raw[..4])));
                let as_array = format!("{:?}", &raw[..3]);
                assert!(!shown.contains(as_array.trim_end_matches(']')));
            }
        }
        let s = secret();
        assert!(!format!("{s:?}").contains(&hex::encode(s.bytes())));
    }

    #[test]
    fn the_blind_index_is_keyed_and_distinguishes_numbers() {
        let a = CacheKeys::generate();
        let b = CacheKeys::generate();
        let n = NhsNumber::test_range(1);
        assert_eq!(a.index.blind_index(&n), a.index.blind_index(&n));
        assert_ne!(a.index.blind_index(&n), b.index.blind_index(&n));
        assert_ne!(
            a.index.blind_index(&n),
            a.index.blind_index(&NhsNumber::test_range(2))
        );
        let (_, raw) = a.raw_for_tests();
        let expected = hazmat::hmac_sha256(
            &raw,
            format!("cpis-field/blind-index/v1:{}", n.as_digits()).as_bytes(),
        );
        assert_eq!(a.index.blind_index(&n), expected);
    }

    #[test]
    fn a_user_wrap_opens_only_with_its_pin_device_secret_and_user() {
        let s = secret();
        let lease_key = hazmat::random_bytes::<32>();
        let wrap = seal_user_unlock(&s, "2468", 10, &lease_key, &user());
        let opened = open_user_unlock(&s, "para1", "2468", &wrap).unwrap();
        assert_eq!(*opened.lease_key, *lease_key);
        assert_eq!(opened.user, user());
        assert!(open_user_unlock(&s, "para1", "2469", &wrap).is_err());
        assert!(open_user_unlock(&secret(), "para1", "2468", &wrap).is_err());
        assert!(open_user_unlock(&s, "para2", "2468", &wrap).is_err());
        let fewer = UserUnlockWrap {
            iterations: 9,
            salt: wrap.salt.clone(),
            sealed: wrap.sealed.clone(),
        };
        assert!(open_user_unlock(&s, "para1", "2468", &fewer).is_err());
    }

    #[test]
    fn the_device_unlock_needs_the_lease_key_and_the_device_secret() {
        let s = secret();
        let lease_key = hazmat::random_bytes::<32>();
        let device = Uuid::now_v7();
        let keys = CacheKeys::generate();
        let sealed = seal_device_unlock(&s, &lease_key, device, &keys);
        let opened = open_device_unlock(&s, &lease_key, device, &sealed).unwrap();
        assert_eq!(opened.raw_for_tests(), keys.raw_for_tests());
        assert!(open_device_unlock(&s, &hazmat::random_bytes::<32>(), device, &sealed).is_err());
        assert!(open_device_unlock(&secret(), &lease_key, device, &sealed).is_err());
        assert!(open_device_unlock(&s, &lease_key, Uuid::now_v7(), &sealed).is_err());
    }

    #[test]
    fn the_lease_mac_binds_device_and_expiry() {
        let key = hazmat::random_bytes::<32>();
        let device = Uuid::now_v7();
        let at = Utc::now().with_nanosecond(0).unwrap();
        let mac = lease_mac(&key, device, at);
        assert!(verify_lease_mac(&key, device, at, &mac));
        assert!(!verify_lease_mac(
            &key,
            device,
            at + chrono::Duration::hours(1),
            &mac
        ));
        assert!(!verify_lease_mac(&key, Uuid::now_v7(), at, &mac));
        assert!(!verify_lease_mac(
            &hazmat::random_bytes::<32>(),
            device,
            at,
            &mac
        ));
    }

    #[test]
    fn pin_delay_grows() {
        let secs: Vec<i64> = (0..6).map(|n| pin_delay(n).num_seconds()).collect();
        assert_eq!(secs, vec![0, 0, 2, 5, 15, 15]);
    }
}
