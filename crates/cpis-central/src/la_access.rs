//! What a local authority holds and does with it: API tokens that expire and can be revoked, the
//! inbox page's own short-lived sessions (the token itself never goes in a cookie), and the per-LA
//! upload rate limit with the audit trail of every upload.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use cpis_core::wire::UploadReport;
use cpis_core::OdsCode;

use crate::auth;
use crate::error::ApiFailure;
use crate::service::Central;
use crate::store::{LaUploadOutcome, LaUploadRecord, NewLaUpload};

/// How long a new LA token lives when the administrator does not say.
pub const LA_TOKEN_LIFETIME: Duration = Duration::days(90);
/// The longest lifetime a new LA token may be given.
pub const LA_TOKEN_MAX_LIFETIME: Duration = Duration::days(400);
/// How long an inbox session lasts from sign-in.
pub const INBOX_SESSION_LIFETIME: Duration = Duration::minutes(30);
/// Uploads an LA may make in `UPLOAD_WINDOW`: a full list is sent daily, so this is generous for
/// corrections and tight enough that the upload cannot be used to probe the register at speed.
pub const UPLOADS_PER_WINDOW: u32 = 20;
pub const UPLOAD_WINDOW: Duration = Duration::hours(1);

/// A new LA token, shown once. `reference` names it in the upload audit trail without being usable.
#[derive(Clone)]
pub struct LaTokenIssued {
    pub token: String,
    pub reference: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for LaTokenIssued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaTokenIssued")
            .field("reference", &self.reference)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The part of a token's stored hash that names it in the audit trail: enough to tell an LA's
/// tokens apart, not enough to find one.
pub fn token_reference(token: &str) -> String {
    auth::secret_hash(token)[..12].to_string()
}

/// Who sent an upload.
#[derive(Clone, Copy)]
pub enum UploadSender<'a> {
    /// The LA itself, with this API token.
    LaToken(&'a str),
    /// The central's operator, from the command line.
    Operator,
}

/// A new inbox session id: 256 random bits, URL-safe.
fn new_session_id() -> String {
    auth::new_token()
}

impl Central {
    /// A new API token for an LA that ends after `valid_for` (shown once; stored hashed).
    pub async fn issue_la_token(
        &self,
        la: &OdsCode,
        valid_for: Duration,
    ) -> Result<LaTokenIssued, ApiFailure> {
        if valid_for <= Duration::zero() || valid_for > LA_TOKEN_MAX_LIFETIME {
            return Err(ApiFailure::unprocessable(
                "invalid_lifetime",
                format!(
                    "an LA token lives between a day and {} days",
                    LA_TOKEN_MAX_LIFETIME.num_days()
                ),
            ));
        }
        let token = auth::new_token();
        let now = Utc::now();
        let expires_at = (now + valid_for).trunc_subsecs(0);
        self.store
            .create_la_token(&auth::secret_hash(&token), la, now, expires_at)
            .await?;
        tracing::info!(la = %la, reference = %token_reference(&token), %expires_at, "LA token issued");
        Ok(LaTokenIssued {
            reference: token_reference(&token),
            token,
            expires_at,
        })
    }

    /// Ends every token of an LA and every inbox session opened with one; how many tokens.
    pub async fn revoke_la_tokens(&self, la: &OdsCode) -> Result<u64, ApiFailure> {
        if self.store.local_authority(la).await?.is_none() {
            return Err(ApiFailure::not_found(format!(
                "no local authority with ODS code {la}"
            )));
        }
        let n = self.store.revoke_la_tokens(la, Utc::now()).await?;
        tracing::warn!(la = %la, tokens = n, "LA tokens revoked");
        Ok(n)
    }

    /// Opens an inbox session for `wanted` with its LA token; the session id for the cookie and
    /// when the session ends.
    pub async fn open_inbox_session(
        &self,
        token: &str,
        wanted: &OdsCode,
    ) -> Result<(String, DateTime<Utc>), ApiFailure> {
        let la = self.authenticate_la(token).await?;
        if la != *wanted {
            return Err(ApiFailure::forbidden(
                "wrong_la",
                "this token belongs to another local authority",
            ));
        }
        let id = new_session_id();
        let now = Utc::now();
        let expires_at = now + INBOX_SESSION_LIFETIME;
        self.store
            .create_inbox_session(
                &auth::secret_hash(&id),
                &la,
                &auth::secret_hash(token),
                expires_at,
                now,
            )
            .await?;
        Ok((id, expires_at))
    }

    /// The LA of a live inbox session: not ended, not signed out, its token neither expired nor
    /// revoked.
    pub async fn inbox_session(&self, id: &str) -> Result<OdsCode, ApiFailure> {
        self.store
            .inbox_session(&auth::secret_hash(id), Utc::now())
            .await?
            .ok_or_else(|| ApiFailure::unauthorised("the inbox session has ended: sign in again"))
    }

    pub async fn end_inbox_session(&self, id: &str) -> Result<(), ApiFailure> {
        Ok(self.store.end_inbox_session(&auth::secret_hash(id)).await?)
    }

    /// Applies an LA upload (`Central::import`), keeping it in the audit trail with who sent it,
    /// when, how many rows and what came of it. An LA's own uploads are held to its upload rate
    /// limit; the operator's (`cpis central import`) are not.
    pub async fn audited_import(
        &self,
        la: &OdsCode,
        sender: UploadSender<'_>,
        bytes: &[u8],
        allow_large_removal: bool,
    ) -> Result<UploadReport, ApiFailure> {
        let now = Utc::now();
        let (token_ref, limit) = match sender {
            UploadSender::LaToken(token) => (token_reference(token), UPLOADS_PER_WINDOW),
            UploadSender::Operator => ("operator".to_string(), u32::MAX),
        };
        let arrival = NewLaUpload {
            la: la.clone(),
            token_ref,
            received_at: now,
        };
        let Some(id) = self
            .store
            .begin_la_upload(&arrival, now - UPLOAD_WINDOW, limit)
            .await?
        else {
            tracing::warn!(la = %la, "upload refused: over the LA's upload rate");
            return Err(ApiFailure::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_uploads",
                format!(
                    "this local authority has sent {UPLOADS_PER_WINDOW} uploads in the last {} minutes: try again later",
                    UPLOAD_WINDOW.num_minutes()
                ),
            ));
        };
        let result = self.import(la, bytes, allow_large_removal).await;
        // Lines after the header; the report's own count when the file was read.
        let lines = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count()
            .saturating_sub(1) as u64;
        let outcome = match &result {
            Ok(report) => LaUploadOutcome {
                outcome: "accepted",
                rows: Some(report.rows.len() as u64),
                detail: Some(format!(
                    "{} rows accepted, {} refused, {} people removed",
                    report.accepted_rows, report.rejected_rows, report.removed
                )),
            },
            Err(e) => LaUploadOutcome {
                outcome: if e.status.is_server_error() {
                    "failed"
                } else {
                    "refused"
                },
                rows: Some(lines),
                detail: Some(e.code.to_string()),
            },
        };
        if let Err(e) = self.store.finish_la_upload(id, &outcome).await {
            tracing::error!(error = %e, la = %la, "could not record the upload's outcome");
        }
        result
    }

    /// The upload audit trail, newest first.
    pub async fn la_uploads(
        &self,
        la: Option<&OdsCode>,
        limit: u32,
    ) -> Result<Vec<LaUploadRecord>, ApiFailure> {
        Ok(self.store.la_uploads(la, limit.clamp(1, 10_000)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reference_is_stable_short_and_not_the_token() {
        let token = auth::new_token();
        let r = token_reference(&token);
        assert_eq!(r, token_reference(&token));
        assert_eq!(r.len(), 12);
        assert!(!token.contains(&r));
        assert_ne!(r, token_reference(&auth::new_token()));
    }
}
