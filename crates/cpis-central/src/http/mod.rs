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
    let fhir_routes = fhir::router(central.clone(), tls)
        .route_layer(axum::middleware::from_fn(crate::metrics::track));
    let api = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/ready", get(ready))
        .route("/v1/enrol", post(enrol))
        .route("/v1/auth/challenge", post(challenge))
        .route("/v1/auth/token", post(token))
        .route("/v1/login", post(login))
        .route("/v1/lease", post(lease))
        .route("/v1/logout", post(logout))
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
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
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

/// A refused JSON body, described without any of its values: serde's own text quotes what was sent
/// (an NHS number or a PIN in the wrong place), and refusals are logged. Where in the body the fault
/// is (line and column) is kept.
fn json_rejection(e: JsonRejection) -> ApiFailure {
    let text = e.body_text();
    let at = text
        .rfind(" at line ")
        .map(|i| text[i..].to_string())
        .unwrap_or_default();
    let what = match &e {
        JsonRejection::JsonDataError(_) => {
            "the JSON body does not have the fields and types this endpoint takes (see /openapi.json)"
        }
        JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON",
        JsonRejection::MissingJsonContentType(_) => {
            return rejection(e.status(), "send the body as application/json".into())
        }
        _ => return rejection(e.status(), text),
    };
    rejection(e.status(), format!("{what}{at}"))
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

/// The device and its signed-in user: the bearer token names the device, the user-session header
/// the user (`Central::authenticate_user`). Every route that answers with a person's details takes
/// this, so the device's own key alone reads nobody.
pub struct SignedInUser(pub DeviceRecord, pub crate::store::UserRecord);

fn user_session(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(cpis_core::wire::USER_SESSION_HEADER)?
        .to_str()
        .ok()
        .map(str::trim)
}

impl FromRequestParts<Central> for SignedInUser {
    type Rejection = ApiFailure;
    async fn from_request_parts(
        parts: &mut Parts,
        central: &Central,
    ) -> Result<Self, Self::Rejection> {
        let device = bearer_device(parts, central, false).await?;
        let user = central
            .authenticate_user(&device, user_session(parts))
            .await?;
        Ok(Self(device, user))
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

/// Feed pages are personal data for one authenticated device of one region, and the URL does not
/// name the region (the token does): a shared cache must not keep them (`private`), and a cache that
/// does (the device's own, or one run by the trust for its devices) must ask the central each time
/// (`no-cache`), so a revoked device is refused even a page it fetched before. The asking is cheap:
/// a repeat download of an unchanged page (at shift change, many devices at the same cursor) is
/// answered `304 Not Modified` without the body or a signature.
const FEED_CACHE_CONTROL: &str = "private, no-cache";

/// True when an `If-None-Match` header value names `etag` (weak comparison, as for GET).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let ours = opaque(etag);
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || opaque(t) == ours)
}

async fn feed(
    State(c): State<Central>,
    DeviceAuth(device): DeviceAuth,
    ApiQuery(q): ApiQuery<FeedQuery>,
    headers: header::HeaderMap,
) -> Result<Response, ApiFailure> {
    let page = c.feed_page(&device, q.after, q.limit).await?;
    let etag = c.feed_etag(&page);
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, FEED_CACHE_CONTROL.to_string()),
        (header::VARY, "Authorization".to_string()),
    ];
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag_matches(v, &etag));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((cache, Json(c.keys.sign_page(&page))).into_response())
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
    let result = c.ingest(&device, batch).await?;
    crate::metrics::events_ingested(
        result
            .results
            .iter()
            .filter(|r| r.status == cpis_core::wire::EventStatus::Accepted)
            .count() as u64,
    );
    Ok(Json(result).into_response())
}

/// Readiness for a load balancer: 200 when the store answers and holds every migration this
/// binary knows; 503 otherwise (the instance is alive but must not be sent traffic).
async fn ready(State(c): State<Central>) -> Response {
    let check = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        c.store.missing_migrations(),
    )
    .await;
    let (status, reason) = match check {
        Ok(Ok(missing)) if missing.is_empty() => (StatusCode::OK, None),
        Ok(Ok(missing)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(format!(
                "the database lacks migrations this central needs: {}",
                missing.join(", ")
            )),
        ),
        Ok(Err(e)) => {
            crate::metrics::store_error("ready");
            tracing::warn!(error = %e, "readiness check: the store failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("the database is not reachable".to_string()),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("the database did not answer within 5 seconds".to_string()),
        ),
    };
    let body = serde_json::json!({ "ready": status == StatusCode::OK, "reason": reason });
    (status, Json(body)).into_response()
}

async fn live_check(
    State(c): State<Central>,
    SignedInUser(device, user): SignedInUser,
    ApiJson(req): ApiJson<LiveCheckRequest>,
) -> Result<Response, ApiFailure> {
    Ok(Json(c.live_check(&device, &user, req).await?).into_response())
}

async fn live_search(
    State(c): State<Central>,
    SignedInUser(device, user): SignedInUser,
    ApiJson(req): ApiJson<LiveSearchRequest>,
) -> Result<Response, ApiFailure> {
    Ok(Json(c.live_search(&device, &user, req).await?).into_response())
}

/// Sign-out: ends the user session at the central. Answers 204 whether or not the session was
/// still live, so a repeated sign-out is harmless.
async fn logout(
    State(c): State<Central>,
    DeviceAuth(device): DeviceAuth,
    parts_session: UserSessionHeader,
) -> Result<Response, ApiFailure> {
    if let Some(token) = parts_session.0 {
        c.logout(&device, &token).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The user-session header, if any, for sign-out.
struct UserSessionHeader(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for UserSessionHeader {
    type Rejection = ApiFailure;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(user_session(parts).map(str::to_string)))
    }
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
    let sender = crate::la_access::UploadSender::LaToken(token.as_deref().unwrap_or_default());
    Ok(Json(
        c.audited_import(&la, sender, &body, q.allow_large_removal)
            .await?,
    )
    .into_response())
}
