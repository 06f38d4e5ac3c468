//! The FHIR R4 routes under `/fhir/R4`: `metadata`, `CareTeam` and `AuditEvent` searches. Every
//! answer is `application/fhir+json`, echoes `TraceID`/`X-Request-ID`, and every refusal is an
//! `OperationOutcome`. The work is in `crate::fhir`; the shapes in `cpis_core::fhir`.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use cpis_core::fhir::{self, FhirError, RawHeaders, SearchResource};
use serde_json::Value;

use crate::service::Central;

#[derive(Clone)]
struct FhirState {
    central: Central,
    scheme: &'static str,
}

/// The routes, to nest at `/fhir/R4`. `tls` says which scheme the absolute URLs in bundles use.
pub fn router(central: Central, tls: bool) -> Router {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/CareTeam", get(care_team))
        .route("/AuditEvent", get(audit_event))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(FhirState {
            central,
            scheme: if tls { "https" } else { "http" },
        })
}

/// Reads the facade's headers; a value that is not text is named so the refusal can say which.
pub fn raw_headers(h: &HeaderMap) -> RawHeaders {
    RawHeaders::read(|name| {
        h.get(name)
            .map(|v| v.to_str().map(str::to_string).map_err(|_| ()))
    })
}

/// A FHIR response: the body as `application/fhir+json`, the trace headers echoed.
pub fn fhir_response(status: StatusCode, body: &Value, request: &HeaderMap) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fhir::FHIR_JSON),
    );
    for name in [fhir::HEADER_TRACE_ID, fhir::HEADER_REQUEST_ID] {
        if let Some(v) = request.get(name) {
            headers.insert(HeaderName::from_static(name), v.clone());
        }
    }
    response
}

/// A refusal, logged by code and reason (never the query: it holds an NHS number).
pub fn refusal(error: &FhirError, request: &HeaderMap) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(status = error.status, reason = %error.diagnostics, "FHIR request failed");
    } else {
        tracing::warn!(status = error.status, code = error.spine_code.unwrap_or(error.issue_code), reason = %error.diagnostics, "FHIR request refused");
    }
    fhir_response(status, &fhir::operation_outcome(error), request)
}

/// The FHIR base as the client reached it.
pub fn base_url(scheme: &str, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}/fhir/R4")
}

async fn metadata(State(s): State<FhirState>, headers: HeaderMap) -> Response {
    let description = fhir::ServerDescription {
        base_url: base_url(s.scheme, &headers),
        software: "CP-IS Field central",
        version: env!("CARGO_PKG_VERSION"),
        description: "CP-IS Field central: the national register's child protection plans as CareTeam, access history as AuditEvent".into(),
        who_looked: fhir::WHO_LOOKED_CENTRAL,
    };
    fhir_response(
        StatusCode::OK,
        &fhir::capability_statement(&description, Utc::now()),
        &headers,
    )
}

async fn care_team(
    State(s): State<FhirState>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    search(s, SearchResource::CareTeam, headers, uri, query).await
}

async fn audit_event(
    State(s): State<FhirState>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    search(s, SearchResource::AuditEvent, headers, uri, query).await
}

async fn search(
    s: FhirState,
    resource: SearchResource,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        // Who is asking first: an unauthenticated caller learns nothing about the request's shape.
        let token = fhir::bearer_token(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )?;
        let client = s.central.authenticate_fhir_client(token).await?;
        let checked = fhir::parse_headers(&raw_headers(&headers))?;
        let Query(params) = query.map_err(|_| {
            FhirError::invalid_search("the query string is not valid URL-encoded parameters")
        })?;
        let q = fhir::parse_search(resource, &params)?;
        let answer = s
            .central
            .fhir_search(&client, resource, &q, &checked)
            .await?;
        let base = base_url(s.scheme, &headers);
        let frame = fhir::BundleFrame {
            self_url: format!(
                "{base}/{}{}",
                resource.name(),
                uri.query().map(|q| format!("?{q}")).unwrap_or_default()
            ),
            base_url: base,
            last_updated: Some(Utc::now()),
            warnings: vec![],
        };
        Ok::<_, FhirError>(fhir::searchset(&frame, answer.matches, answer.includes))
    }
    .await;
    match result {
        Ok(bundle) => fhir_response(StatusCode::OK, &bundle, &headers),
        Err(e) => refusal(&e, &headers),
    }
}

async fn not_found(headers: HeaderMap) -> Response {
    refusal(
        &FhirError::not_found(
            "not supported: this server answers GET metadata, CareTeam and AuditEvent searches",
        ),
        &headers,
    )
}

async fn method_not_allowed(headers: HeaderMap) -> Response {
    refusal(&FhirError::method_not_allowed(), &headers)
}
