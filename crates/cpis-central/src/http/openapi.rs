//! The OpenAPI 3 description of the HTTP API, written by hand next to the routes (the contract's
//! types live in `cpis_core::wire`), served at `GET /openapi.json`.

use axum::Json;
use serde_json::{json, Value};

fn body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn ok(schema: &str) -> Value {
    json!({ "description": "OK", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn errors(codes: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for c in codes {
        m.insert(
            (*c).to_string(),
            json!({ "description": "Refused", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ApiError" } } } }),
        );
    }
    Value::Object(m)
}

fn responses(schema: &str, codes: &[&str]) -> Value {
    let mut r = errors(codes);
    r["200"] = ok(schema);
    r
}

fn obj(required: &[&str], props: Value) -> Value {
    json!({ "type": "object", "required": required, "properties": props })
}

pub fn spec() -> Value {
    let device = json!([{ "deviceToken": [] }]);
    let la = json!([{ "laToken": [] }]);
    let ods =
        json!([{ "name": "ods", "in": "path", "required": true, "schema": { "type": "string" } }]);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "CP-IS Field central",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Region feeds, device enrolment and authentication, access-event intake, live checks, LA uploads and notifications. Every refusal is an ApiError with a 4xx/5xx status."
        },
        "paths": {
            "/v1/status": { "get": { "summary": "Connectivity probe", "responses": responses("CentralStatus", &[]) } },
            "/v1/enrol": { "post": { "summary": "Enrol a device with a one-time code", "requestBody": body("EnrolRequest"),
                "responses": responses("EnrolResponse", &["400", "401", "413"]) } },
            "/v1/auth/challenge": { "post": { "summary": "Get a single-use challenge (5 minutes)", "requestBody": body("ChallengeRequest"),
                "responses": responses("ChallengeResponse", &["400", "401", "403"]) } },
            "/v1/auth/token": { "post": { "summary": "Exchange a signed challenge for a bearer token (1 hour)", "requestBody": body("TokenRequest"),
                "responses": responses("TokenResponse", &["400", "401", "403"]) } },
            "/v1/login": { "post": { "summary": "Sign a user in on this device; returns the lease", "security": device, "requestBody": body("LoginRequest"),
                "responses": responses("LoginResponse", &["400", "401", "403"]) } },
            "/v1/lease": { "post": { "summary": "Renew the device's lease", "security": device,
                "responses": responses("LeaseRenewal", &["401", "403"]) } },
            "/v1/feed": { "get": { "summary": "A signed page of the device's region feed", "security": device,
                "parameters": [
                    { "name": "after", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 5000, "default": 1000 } }
                ],
                "responses": responses("SignedPage", &["400", "401", "403"]) } },
            "/v1/events": { "post": { "summary": "Deliver sealed access events (idempotent on event id; at most 500). Organisation, setting, role and whether an event notifies come from the central's records, not the event", "security": device,
                "requestBody": body("EventBatch"), "responses": responses("EventBatchResult", &["400", "401", "403", "413", "422"]) } },
            "/v1/check": { "post": { "summary": "Live check of one NHS number by a user of the device's organisation (403 otherwise), optionally recording the access; every answered check is kept in the lookup trail", "security": device,
                "requestBody": body("LiveCheckRequest"), "responses": responses("LiveCheckResponse", &["400", "401", "403", "422"]) } },
            "/v1/search": { "post": { "summary": "Live search by family name and date of birth (given name, sex, postcode district optional) over the whole register, answered in tiers: match, possible_matches (at most 5), too_many or no_match; people are returned only for the first two; every search is kept in the lookup trail", "security": device,
                "requestBody": body("LiveSearchRequest"), "responses": responses("LiveSearchResponse", &["400", "401", "403", "422"]) } },
            "/v1/la/{ods}/notifications": { "get": { "summary": "The LA's notifications after a cursor", "security": la,
                "parameters": [ods[0], { "name": "after", "in": "query", "schema": { "type": "integer", "minimum": 0 } }],
                "responses": responses("NotificationPage", &["400", "401", "403"]) } },
            "/v1/la/{ods}/upload": { "post": { "summary": "Upload the LA's full current list (CSV)", "security": la,
                "parameters": [ods[0], { "name": "allow_large_removal", "in": "query", "schema": { "type": "boolean", "default": false } }],
                "requestBody": { "required": true, "content": { "text/csv": { "schema": { "type": "string" } } } },
                "responses": responses("UploadReport", &["400", "401", "403", "404", "413", "422"]) } },
            "/la/{ods}/inbox": { "get": { "summary": "The LA inbox page (HTML; cookie sign-in)", "parameters": ods,
                "responses": { "200": { "description": "HTML page", "content": { "text/html": {} } } } } }
        },
        "components": {
            "securitySchemes": {
                "deviceToken": { "type": "http", "scheme": "bearer", "description": "From /v1/auth/token" },
                "laToken": { "type": "http", "scheme": "bearer", "description": "From `cpis central la-token`" }
            },
            "schemas": {
                "ApiError": obj(&["error", "message"], json!({ "error": { "type": "string" }, "message": { "type": "string" } })),
                "CentralStatus": obj(&["service", "version", "time"], json!({ "service": { "type": "string" }, "version": { "type": "string" }, "time": { "type": "string", "format": "date-time" } })),
                "EnrolRequest": obj(&["code", "device_public_key"], json!({ "code": { "type": "string" }, "device_public_key": { "type": "string", "description": "base64 raw Ed25519 public key" } })),
                "EnrolResponse": obj(&["device_id", "region", "org_ods", "org_name", "setting", "central_signing_key", "central_sealing_key"], json!({
                    "device_id": { "type": "string", "format": "uuid" }, "region": { "type": "string" }, "org_ods": { "type": "string" },
                    "org_name": { "type": "string" }, "setting": { "type": "string" },
                    "central_signing_key": { "type": "string" }, "central_sealing_key": { "type": "string" } })),
                "ChallengeRequest": obj(&["device_id"], json!({ "device_id": { "type": "string", "format": "uuid" } })),
                "ChallengeResponse": obj(&["challenge"], json!({ "challenge": { "type": "string" } })),
                "TokenRequest": obj(&["device_id", "challenge", "signature"], json!({ "device_id": { "type": "string", "format": "uuid" },
                    "challenge": { "type": "string" }, "signature": { "type": "string", "description": "base64 Ed25519 over \"cpis-field/auth/v1\\n{device_id}\\n{challenge}\"" } })),
                "TokenResponse": obj(&["token", "expires_at"], json!({ "token": { "type": "string" }, "expires_at": { "type": "string", "format": "date-time" } })),
                "LoginRequest": obj(&["user_id", "pin"], json!({ "user_id": { "type": "string" }, "pin": { "type": "string" } })),
                "UserProfile": obj(&["id", "name", "role", "activity", "org_ods"], json!({ "id": { "type": "string" }, "name": { "type": "string" },
                    "role": { "type": "string" }, "activity": { "type": "string", "enum": ["B0107", "B0170"] }, "org_ods": { "type": "string" } })),
                "Lease": obj(&["expires_at", "lease_key", "mac"], json!({ "expires_at": { "type": "string", "format": "date-time" },
                    "lease_key": { "type": "string" }, "mac": { "type": "string", "description": "base64 HMAC-SHA256(lease_key, \"cpis-field/lease/v1:{device_id}:{expires_at}\")" } })),
                "LeaseRenewal": obj(&["expires_at", "mac"], json!({ "expires_at": { "type": "string", "format": "date-time" }, "mac": { "type": "string" } })),
                "LoginResponse": obj(&["user", "lease"], json!({ "user": { "$ref": "#/components/schemas/UserProfile" }, "lease": { "$ref": "#/components/schemas/Lease" } })),
                "SignedPage": obj(&["body", "signature"], json!({ "body": { "type": "string", "description": "base64 of the FeedPage JSON" },
                    "signature": { "type": "string", "description": "base64 Ed25519 over \"cpis-field/feed-page/v1\\n\" + body bytes" } })),
                "SealedEvent": obj(&["id", "device_seq", "sealed"], json!({ "id": { "type": "string", "format": "uuid" }, "device_seq": { "type": "integer" }, "sealed": { "type": "string" } })),
                "EventBatch": obj(&["events"], json!({ "events": { "type": "array", "maxItems": 500, "items": { "$ref": "#/components/schemas/SealedEvent" } } })),
                "EventBatchResult": obj(&["results"], json!({ "results": { "type": "array", "items": obj(&["id", "status"], json!({
                    "id": { "type": "string", "format": "uuid" }, "status": { "type": "string", "enum": ["accepted", "duplicate", "rejected"] },
                    "reason": { "type": "string", "nullable": true } })) } })),
                "LiveCheckRequest": obj(&["nhs_number", "user_id", "unscheduled"], json!({ "nhs_number": { "type": "string" }, "user_id": { "type": "string" },
                    "unscheduled": { "type": "boolean" }, "access_event": { "allOf": [{ "$ref": "#/components/schemas/SealedEvent" }], "nullable": true } })),
                "LiveCheckResponse": obj(&["outcome", "access_history", "access_recorded", "as_of"], json!({
                    "outcome": { "type": "string", "enum": ["record_found", "no_record"] }, "record": { "type": "object", "nullable": true },
                    "local_authority": { "type": "object", "nullable": true }, "access_history": { "type": "array", "items": { "type": "object" } },
                    "access_recorded": { "type": "boolean" }, "as_of": { "type": "string", "format": "date-time" } })),
                "LiveSearchRequest": obj(&["user_id", "query"], json!({ "user_id": { "type": "string" },
                    "query": obj(&["family_name", "date_of_birth"], json!({ "family_name": { "type": "string" }, "given_name": { "type": "string", "nullable": true },
                        "date_of_birth": { "type": "string", "format": "date" }, "sex": { "type": "string", "enum": ["female", "male", "unknown"], "nullable": true },
                        "postcode_district": { "type": "string", "nullable": true } })) })),
                "LiveSearchResponse": obj(&["outcome", "candidates", "total"], json!({
                    "outcome": { "type": "string", "enum": ["match", "possible_matches", "too_many", "no_match"] },
                    "candidates": { "type": "array", "maxItems": 5, "items": obj(&["record", "as_of"], json!({ "record": { "type": "object" },
                        "local_authority": { "type": "object", "nullable": true }, "as_of": { "type": "string", "format": "date-time" } })) },
                    "total": { "type": "integer" } })),
                "NotificationPage": obj(&["notifications", "next"], json!({ "notifications": { "type": "array", "items": { "type": "object" } }, "next": { "type": "integer" } })),
                "UploadReport": obj(&["la", "rows", "accepted_rows", "rejected_rows", "people", "removed"], json!({ "la": { "type": "string" },
                    "rows": { "type": "array", "items": obj(&["line", "accepted"], json!({ "line": { "type": "integer" }, "accepted": { "type": "boolean" }, "reason": { "type": "string", "nullable": true } })) },
                    "accepted_rows": { "type": "integer" }, "rejected_rows": { "type": "integer" }, "people": { "type": "integer" }, "removed": { "type": "integer" } }))
            }
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(spec())
}
