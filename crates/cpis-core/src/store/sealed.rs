//! Feed pages kept sealed while nobody is signed in: stored exactly as the central signed them,
//! applied in feed order at the next sign-in. Nothing here can open them: that takes the region's
//! feed key, which only a user's unlock gives.

use rusqlite::params;

use super::{DeviceStore, SqlContext, StoreError};
use crate::wire::SignedPage;

impl DeviceStore {
    /// Keeps a page whose signature the caller has checked; `after..last` is its place in the feed.
    pub fn keep_sealed_page(
        &mut self,
        page: &SignedPage,
        after: u64,
        last: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO sealed_pages (after, last, body, signature) VALUES (?1, ?2, ?3, ?4)",
                params![after as i64, last as i64, page.body, page.signature],
            )
            .ctx("keeping a sealed feed page")?;
        Ok(())
    }

    /// The kept pages in feed order.
    pub fn sealed_pages(&self) -> Result<Vec<SignedPage>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT body, signature FROM sealed_pages ORDER BY after")
            .ctx("reading sealed feed pages")?;
        let rows = statement
            .query_map([], |r| {
                Ok(SignedPage {
                    body: r.get(0)?,
                    signature: r.get(1)?,
                })
            })
            .ctx("reading sealed feed pages")?;
        rows.collect::<Result<Vec<_>, _>>()
            .ctx("reading sealed feed pages")
    }

    /// Where the kept pages end: the next download continues from here.
    pub fn sealed_pages_end(&self) -> Result<Option<u64>, StoreError> {
        let end: Option<i64> = self
            .conn
            .query_row("SELECT MAX(last) FROM sealed_pages", [], |r| r.get(0))
            .ctx("reading where the sealed feed pages end")?;
        Ok(end.map(|e| e as u64))
    }

    /// Forgets every kept page (applied, or no longer continuing from this device's copy).
    pub fn drop_sealed_pages(&mut self) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM sealed_pages", [])
            .ctx("dropping sealed feed pages")
    }
}
