//! CP-IS Field core: the domain (NHS numbers, plans and their visibility, local authorities, care
//! settings, access events), the wire protocol shared by devices and the central, and cryptography.
//! No Tauri, no webview, no network I/O: it builds and tests with plain cargo.

pub mod access;
pub mod crypto;
pub mod fhir;
pub mod la;
pub mod nhs;
pub mod plan;
pub mod search;
pub mod setting;
pub mod store;
pub mod ukdate;
pub mod vault;
pub mod wire;

pub use access::{AccessEvent, Accessor, FoundBy};
pub use la::{LocalAuthority, OdsCode, Region};
pub use nhs::{NhsNumber, NhsNumberError};
pub use plan::{FlagRecord, Plan, PlanKind, Visibility, VisibilityRules};
pub use setting::{Activity, CareSetting};
