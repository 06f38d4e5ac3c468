//! CP-IS Field device engine: the sync of the encrypted device store with the central (pull the
//! region feed, push the outbox), connectivity, the lease, the check use case, and the loopback FHIR
//! door for an electronic patient record on the same device. The app's shell and
//! the `cpis device` command are thin layers over `Device`.

pub mod check;
pub mod client;
pub mod device;
pub mod fhir_door;
pub mod sync;
pub mod views;

pub use device::{
    spawn_background_sync, CheckRequest, Device, DeviceConfig, DeviceError, SearchInput,
};
