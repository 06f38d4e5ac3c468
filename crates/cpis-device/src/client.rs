//! The device's HTTP client for the central: device authentication (challenge, token), sign-in and
//! lease, the region feed, the emergency numbers, the access-event outbox, the live check and the connectivity probe. Every
//! failure is classified as transient (retry later) or permanent (stop and report).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use cpis_core::wire::{
    self, ApiError, ChallengeRequest, ChallengeResponse, EnrolRequest, EnrolResponse, EventBatch,
    EventBatchResult, LiveCheckRequest, LiveCheckResponse, LiveSearchRequest, LiveSearchResponse,
    LoginRequest, LoginResponse, SignedDirectory, SignedPage, TokenRequest, TokenResponse,
};

/// Why a call to the central failed, in the terms the sync engine acts on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Network down, timeout, 5xx, 429, a cut or garbled reply: try again later.
    #[error("the central could not be reached or did not answer properly: {0}")]
    Transient(String),
    /// The central refused the request for good (4xx): retrying the same request will not help.
    #[error("the central refused the request ({status}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The central has revoked this device.
    #[error("this device has been revoked by the central: {0}")]
    Revoked(String),
}

impl ClientError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

pub struct CentralClient {
    base: String,
    http: reqwest::Client,
    /// The device token: shared by the check path and the sync, so it sits behind its own short lock
    /// (never held across a request).
    token: std::sync::RwLock<Option<String>>,
    /// The signed-in user's session from the last online sign-in: sent only on the calls that
    /// answer with a person's details. Kept in memory only, so a copy of the device's files has none.
    user_session: std::sync::RwLock<Option<String>>,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

impl CentralClient {
    pub fn new(base_url: &str) -> Self {
        Self::with_timeout(base_url, REQUEST_TIMEOUT)
    }

    /// `timeout` bounds each whole request: a reply delayed past it counts as a transient failure.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .timeout(timeout)
            .build()
            .expect("an HTTP client with rustls always builds");
        Self {
            base: base_url.trim_end_matches('/').to_string(),
            http,
            token: std::sync::RwLock::new(None),
            user_session: std::sync::RwLock::new(None),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ClientError> {
        let status = response.status();
        // Read the whole body first: a cut connection shows up here as a transient error.
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Transient(format!("reply cut short: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Transient(format!("reply did not decode: {e}")));
        }
        let api: Option<ApiError> = serde_json::from_slice(&bytes).ok();
        let (code, message) = match api {
            Some(a) => (a.error, a.message),
            None => (
                "http_error".to_string(),
                format!("HTTP {}", status.as_u16()),
            ),
        };
        // A paused online sign-in is an answer for the user, not a link to retry.
        let paused_sign_in = status == StatusCode::TOO_MANY_REQUESTS && code == "too_many_attempts";
        if status.is_server_error()
            || (status == StatusCode::TOO_MANY_REQUESTS && !paused_sign_in)
            || status == StatusCode::REQUEST_TIMEOUT
        {
            return Err(ClientError::Transient(format!(
                "HTTP {}: {message}",
                status.as_u16()
            )));
        }
        if code == "device_revoked" {
            return Err(ClientError::Revoked(message));
        }
        Err(ClientError::Refused {
            status: status.as_u16(),
            code,
            message,
        })
    }

    fn network(e: reqwest::Error) -> ClientError {
        ClientError::Transient(if e.is_timeout() {
            "timed out".to_string()
        } else if e.is_connect() {
            "could not connect".to_string()
        } else {
            format!("{e}")
        })
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        bearer: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<T, ClientError> {
        let mut request = self.http.post(self.url(path)).json(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        let response = request.send().await.map_err(Self::network)?;
        Self::decode(response).await
    }

    /// Is the central answering? An active probe, not the operating system's idea of "online".
    pub async fn probe(&self) -> bool {
        match self
            .http
            .get(self.url("/v1/status"))
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
        {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    pub async fn enrol(
        &self,
        code: &str,
        device_public_key: &[u8; 32],
    ) -> Result<EnrolResponse, ClientError> {
        self.post(
            "/v1/enrol",
            &EnrolRequest {
                code: code.trim().to_string(),
                device_public_key: B64.encode(device_public_key),
            },
            None,
            None,
        )
        .await
    }

    /// Step one of device authentication: a single-use challenge from the central.
    pub async fn challenge(&self, device_id: Uuid) -> Result<String, ClientError> {
        let challenge: ChallengeResponse = self
            .post(
                "/v1/auth/challenge",
                &ChallengeRequest { device_id },
                None,
                None,
            )
            .await?;
        Ok(challenge.challenge)
    }

    /// Step two: the challenge signed with the device's enrolled key, exchanged for a short-lived
    /// token kept for later calls.
    pub async fn exchange_token(
        &self,
        device_id: Uuid,
        challenge: String,
        signature: [u8; 64],
    ) -> Result<(), ClientError> {
        let token: TokenResponse = self
            .post(
                "/v1/auth/token",
                &TokenRequest {
                    device_id,
                    challenge,
                    signature: B64.encode(signature),
                },
                None,
                None,
            )
            .await?;
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = Some(token.token);
        Ok(())
    }

    pub fn is_authenticated(&self) -> bool {
        self.token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Forgets the token (the central said it expired): the next call authenticates afresh.
    pub fn forget_token(&self) {
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Keeps (or, with `None`, forgets) the signed-in user's session.
    pub fn set_user_session(&self, token: Option<String>) {
        *self.user_session.write().unwrap_or_else(|p| p.into_inner()) = token;
    }

    /// Whether a user session is held (an online sign-in happened and has not ended).
    pub fn has_user_session(&self) -> bool {
        self.user_session
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn user_session(&self) -> Result<String, ClientError> {
        self.user_session
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(ClientError::Refused {
                status: 401,
                code: "user_session_required".into(),
                message: "no user has signed in online on this device since it started".into(),
            })
    }

    /// A call answered with a person's details: the device token and the user session.
    async fn post_as_user<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let session = self.user_session()?;
        let response = self
            .http
            .post(self.url(path))
            .json(body)
            .bearer_auth(self.bearer()?)
            .header(wire::USER_SESSION_HEADER, session)
            .timeout(timeout)
            .send()
            .await
            .map_err(Self::network)?;
        let result = Self::decode(response).await;
        if let Err(ClientError::Refused { code, .. }) = &result {
            if code == "user_session_required" {
                // Ended at the central (idle, sign-out elsewhere, its 12 hours): stop sending it.
                self.set_user_session(None);
            }
        }
        result
    }

    /// Forgets the user session here and hands it back, so sign-out can end that one session at
    /// the central even if someone signs in again before the call goes out.
    pub fn take_user_session(&self) -> Option<String> {
        self.user_session
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Ends `session` at the central (sign-out).
    pub async fn logout(&self, session: &str) -> Result<(), ClientError> {
        let response = self
            .http
            .post(self.url("/v1/logout"))
            .bearer_auth(self.bearer()?)
            .header(wire::USER_SESSION_HEADER, session)
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .map_err(Self::network)?;
        if response.status().is_success() {
            return Ok(());
        }
        Self::decode::<serde_json::Value>(response)
            .await
            .map(|_| ())
    }

    fn bearer(&self) -> Result<String, ClientError> {
        self.token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(ClientError::Refused {
                status: 401,
                code: "unauthorised".into(),
                message: "the device has not authenticated".into(),
            })
    }

    pub async fn login(&self, user_id: &str, pin: &str) -> Result<LoginResponse, ClientError> {
        self.post(
            "/v1/login",
            &LoginRequest {
                user_id: user_id.to_string(),
                pin: pin.to_string(),
            },
            Some(&self.bearer()?),
            None,
        )
        .await
    }

    pub async fn renew_lease(&self) -> Result<wire::LeaseRenewal, ClientError> {
        self.post(
            "/v1/lease",
            &serde_json::json!({}),
            Some(&self.bearer()?),
            None,
        )
        .await
    }

    /// One page of this device's region after `after`. Returned unverified: the caller verifies.
    pub async fn feed_page(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<(SignedPage, u64), ClientError> {
        let response = self
            .http
            .get(self.url("/v1/feed"))
            .query(&[("after", after.to_string()), ("limit", limit.to_string())])
            .bearer_auth(self.bearer()?)
            .send()
            .await
            .map_err(Self::network)?;
        let len = response.content_length().unwrap_or(0);
        let page: SignedPage = Self::decode(response).await?;
        let bytes = len.max((page.body.len() + page.signature.len()) as u64);
        Ok((page, bytes))
    }

    /// The region's local authorities and their public numbers. Returned unverified: the store
    /// verifies before keeping.
    pub async fn emergency_numbers(&self) -> Result<SignedDirectory, ClientError> {
        let response = self
            .http
            .get(self.url("/v1/emergency-numbers"))
            .bearer_auth(self.bearer()?)
            .send()
            .await
            .map_err(Self::network)?;
        Self::decode(response).await
    }

    pub async fn push_events(&self, batch: &EventBatch) -> Result<EventBatchResult, ClientError> {
        self.post("/v1/events", batch, Some(&self.bearer()?), None)
            .await
    }

    pub async fn live_check(
        &self,
        request: &LiveCheckRequest,
        deadline: Duration,
    ) -> Result<LiveCheckResponse, ClientError> {
        self.post_as_user("/v1/check", request, deadline).await
    }

    pub async fn live_search(
        &self,
        request: &LiveSearchRequest,
        deadline: Duration,
    ) -> Result<LiveSearchResponse, ClientError> {
        self.post_as_user("/v1/search", request, deadline).await
    }
}
