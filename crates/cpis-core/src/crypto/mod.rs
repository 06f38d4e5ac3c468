//! Cryptography for the device and the central: the primitives (in `hazmat`) and the errors a caller
//! can act on. The key vault and sealed storage build on these.

pub mod hazmat;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "the data failed its integrity check: it was changed, moved, or sealed under another key"
    )]
    Tampered,
    #[error("the signature does not match the pinned key")]
    BadSignature,
    #[error("the key material is malformed")]
    BadKey,
}
