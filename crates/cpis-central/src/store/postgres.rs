//! The PostgreSQL store (for when one machine's SQLite is not enough).

use super::{StoreError, StoreResult};

pub struct PostgresStore;

impl PostgresStore {
    pub async fn connect(url: &str, _schema: Option<&str>) -> StoreResult<Self> {
        Err(StoreError::BadUrl(format!(
            "{url} (PostgreSQL support is not built yet)"
        )))
    }
}
