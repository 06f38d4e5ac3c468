//! The HTTP API (see `cpis_core::wire` for the contract): routing, authentication extractors, body
//! limits, request ids and refusal logging. Handlers are thin: the work is in `service`.

pub mod fhir;
mod inbox;
mod openapi;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use cpis_core::wire::{
    CentralStatus, ChallengeRequest, EnrolRequest, EventBatch, LiveCheckRequest, LiveSearchRequest,
    LoginRequest, TokenRequest,
};
use cpis_core::OdsCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::field::Empty;

use crate::error::ApiFailure;
use crate::service::Central;
use crate::store::DeviceRecord;

/// Largest access-event batch body (500 sealed events fit well within it).
pub const EVENTS_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Largest LA upload file.
pub const UPLOAD_BODY_LIMIT: usize = 50 * 1024 * 1024;
/// Largest body of any other request.
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024;

/// The whole API, ready to serve. `tls` tells the FHIR routes which scheme their absolute URLs use.
pub fn router(central: Central, tls: bool) -> Router {
    let fhir_routes = fhir::router(central.clone(), tls);
    let api = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/enrol", post(enrol))
        .route("/v1/auth/challenge", post(challenge))
        .route("/v1/auth/token", post(token))
        .route("/v1/login", post(login))
        .route("/v1/lease", post(lease))
        .route("/v1/feed", get(feed))
        .route("/v1/emergency-numbers", get(emergency_numbers))
        .route(
            "/v1/events",
            post(events).layer(DefaultBodyLimit::max(EVENTS_BODY_LIMIT)),
        )
        .route("/v1/check", post(live_check))
        .route("/v1/search", post(live_search))
        .route("/v1/la/{ods}/notifications", get(la_notifications))
        .route(
            "/v1/la/{ods}/upload",
            post(la_upload).layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
        .route("/la/{ods}/inbox", get(inbox::page))
        .route("/la/{ods}/inbox/sign-in", post(inbox::sign_in))
        .route("/la/{ods}/inbox/sign-out", post(inbox::sign_out))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .with_state(central);
    api.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let request_id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                // The path holds only route names and ODS codes; query strings are not logged.
                tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id = %request_id,
                    device = Empty,
                    la = Empty,
                )
            }))
            .layer(PropagateRequestIdLayer::x_request_id()),
    )
    // Outside the request-id layers: the FHIR routes must see whether the client sent a trace id
    // (none is a refusal there), and echo the client's own.
    .nest("/fhir/R4", fhir_routes.layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
        tracing::info_span!("fhir", method = %req.method(), path = %req.uri().path())
    })))
}

async fn not_found() -> ApiFailure {
    ApiFailure::not_found("no such endpoint; see /openapi.json")
}

async fn method_not_allowed() -> ApiFailure {
    ApiFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

fn rejection(status: StatusCode, text: String) -> ApiFailure {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_content",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "bad_request",
    };
    ApiFailure::new(status, code, text)
}

/// `Json<T>` whose refusals are `ApiError` JSON like every other refusal.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiFailure;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiFailure {
    rejection(e.status(), e.body_text())
}

/// A raw body whose refusals (too large) are `ApiError` JSON.
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiFailure;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(Self)
            .map_err(|e: BytesRejection| rejection(e.status(), e.body_text()))
    }
}

/// Query parameters whose refusals are `ApiError` JSON.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiFailure;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| rejection(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The device a request's bearer token belongs to; a revoked one only when `allow_revoked`.
async fn bearer_device(
    parts: &Parts,
    central: &Central,
    allow_revoked: bool,
) -> Result<DeviceRecord, ApiFailure> {
    let token = bearer(parts)
        .ok_or_else(|| ApiFailure::unauthorised("a device bearer token is required"))?;
    let device = if allow_revoked {
        central.authenticate_device_for_events(token).await?
    } else {
        central.authenticate_device(token).await?
    };
    tracing::Span::current().record("device", tracing::field::display(device.id));
    Ok(device)
}

/// The enrolled, unrevoked device a request's bearer token belongs to.
pub struct DeviceAuth(pub DeviceRecord);

impl FromRequestParts<Central> for DeviceAuth {
    type Rejection = ApiFailure;
    async fn from_request_parts(
        parts: &mut Parts,
        central: &Central,
    ) -> Result<Self, Self::Rejection> {
        bearer_device(parts, central, false).await.map(Self)
    }
}

/// The device a request's bearer token belongs to, even when revoked: for the event intake only.
pub struct DeviceAuthForEvents(pub DeviceRecord);

impl FromRequestParts<Central> for DeviceAuthForEvents {
    type Rejection = ApiFailure;
    async fn from_request_parts(
        parts: &mut Parts,
        central: &Central,
    ) -> Result<Self, Self::Rejection> {
        bearer_device(parts, central, true).await.map(Self)
    }
}

/// The LA a request's bearer token belongs to, which must be the LA in the path.
async fn la_auth(
    parts_token: Option<&str>,
    central: &Central,
    path_ods: &str,
) -> Result<OdsCode, ApiFailure> {
    let token =
        parts_token.ok_or_else(|| ApiFailure::unauthorised("an LA bearer token is required"))?;
    let la = central.authenticate_la(token).await?;
    tracing::Span::current().record("la", tracing::field::display(&la));
    let wanted = OdsCode::parse(path_ods).map_err(|e| ApiFailure::bad_request(e.to_string()))?;
    if wanted != la {
        return Err(ApiFailure::forbidden(
            "wrong_la",
            "this token belongs to another local authority",
        ));
    }
    Ok(la)
}

/// An LA bearer token, checked against the path by the handler.
pub struct LaToken(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for LaToken {
    type Rejection = ApiFailure;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(bearer(parts).map(str::to_string)))
    }
}

// ---- handlers ----

async fn status() -> Json<CentralStatus> {
    Json(CentralStatus {
        service: "cpis-central".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        time: Utc::now(),
    })
}

async fn enrol(
    State(c): State<Central>,
    ApiJson(req): ApiJson<EnrolRequest>,
) -> Result<Response, ApiFailure> {
    Ok(Json(c.enrol(req).await?).into_response())
}

async fn challenge(
    State(c): State<Central>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> Result<Response, ApiFailure> {
    tracing::Span::current().record("device", tracing::field::display(req.device_id));
    Ok(Json(c.challenge(req).await?).into_response())
}

async fn token(
    State(c): State<Central>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Response, ApiFailure> {
    tracing::Span::current().record("device", tracing::field::display(req.device_id));
    Ok(Json(c.token(req).await?).into_response())
}

async fn login(
    State(c): State<Central>,
    DeviceAuth(device): DeviceAuth,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiFailure> {
    Ok(Json(c.login(&device, req).await?).into_response())
}

async fn lease(
    State(c): State<Central>,
    DeviceAuth(device): DeviceAuth,
) -> Result<Response, ApiFailure> {
    Ok(Json(c.renew_lease(&device).await?).into_response())
}

#[derive(Deserialize)]
struct FeedQuery {
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
}

async fn feed(
    State(c): State<Central>,
    DeviceAuth(device): DeviceAuth,
    ApiQuery(q): ApiQuery<FeedQuery>,
) -> Result<Response, ApiFailure> {
    Ok(Json(c.feed(&device, q.after, q.limit).await?).into_response())
}

async fn emergency_numbers(
    State(c): State<Central>,
    DeviceAuth(device): DeviceAuth,
) -> Result<Response, ApiFailure> {
    Ok(Json(c.emergency_numbers(&device).await?).into_response())
}

async fn events(
    State(c): State<Central>,
    DeviceAuthForEvents(device): DeviceAuthForEvents,
    ApiJson(batch): ApiJson<EventBatch>,
) -> Result<Response, ApiFailure> {
    Ok(Json(c.ingest(&device, batch).await?).into_response())
}

async fn live_check(
    State(c): State<Central>,
    DeviceAuth(device): DeviceAuth,
    ApiJson(req): ApiJson<LiveCheckRequest>,
) -> Result<Response, ApiFailure> {
    Ok(Json(c.live_check(&device, req).await?).into_response())
}

async fn live_search(
    State(c): State<Central>,
    DeviceAuth(device): DeviceAuth,
    ApiJson(req): ApiJson<LiveSearchRequest>,
) -> Result<Response, ApiFailure> {
    Ok(Json(c.live_search(&device, req).await?).into_response())
}

#[derive(Deserialize)]
struct NotificationQuery {
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
}

async fn la_notifications(
    State(c): State<Central>,
    Path(ods): Path<String>,
    LaToken(token): LaToken,
    ApiQuery(q): ApiQuery<NotificationQuery>,
) -> Result<Response, ApiFailure> {
    let la = la_auth(token.as_deref(), &c, &ods).await?;
    Ok(Json(
        c.notifications(&la, q.after, q.limit.unwrap_or(1_000))
            .await?,
    )
    .into_response())
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default)]
    allow_large_removal: bool,
}

async fn la_upload(
    State(c): State<Central>,
    Path(ods): Path<String>,
    LaToken(token): LaToken,
    ApiQuery(q): ApiQuery<UploadQuery>,
    ApiBytes(body): ApiBytes,
) -> Result<Response, ApiFailure> {
    let la = la_auth(token.as_deref(), &c, &ods).await?;
    Ok(Json(c.import(&la, &body, q.allow_large_removal).await?).into_response())
}
