//! CP-IS Field device engine: the sync of the encrypted device store with the central (pull the
//! region feed, push the outbox), connectivity, the lease, and the check use case. The app's shell and
//! the `cpis device` command are thin layers over `Device`.

pub mod check;
pub mod client;
pub mod device;
pub mod sync;
pub mod views;

pub use device::{
    spawn_background_sync, CheckRequest, Device, DeviceConfig, DeviceError, SearchInput,
};
