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

fn fhir_ok(resource: &str) -> Value {
    json!({ "description": format!("A FHIR R4 {resource}"),
        "headers": { "TraceID": { "schema": { "type": "string" }, "description": "Echoed from the request" },
                     "X-Request-ID": { "schema": { "type": "string" }, "description": "Echoed from the request" } },
        "content": { "application/fhir+json": { "schema": { "$ref": "#/components/schemas/FhirResource" } } } })
}

/// The FHIR searches' refusals: OperationOutcomes with England Spine error codes.
fn fhir_responses(resource: &str) -> Value {
    let outcome = |d: &str| json!({ "description": d, "content": { "application/fhir+json": { "schema": { "$ref": "#/components/schemas/FhirResource" } } } });
    json!({
        "200": fhir_ok(resource),
        "400": outcome("OperationOutcome: INVALID_SEARCH_DATA (invalid NHS number or search parameter) or PRECONDITION_FAILED (a header missing or invalid)"),
        "401": outcome("OperationOutcome: ACCESS_DENIED (no bearer token, or not a registered client's)"),
        "403": outcome("OperationOutcome: ACCESS_DENIED (the client system was revoked)")
    })
}

fn fhir_params(audit: bool) -> Value {
    let header = |name: &str, required: bool, d: &str| json!({ "name": name, "in": "header", "required": required, "schema": { "type": "string" }, "description": d });
    let mut p = vec![
        json!({ "name": "patient:identifier", "in": "query", "schema": { "type": "string" }, "example": "https://fhir.nhs.uk/Id/nhs-number|9990000018",
            "description": "https://fhir.nhs.uk/Id/nhs-number|{NHS number}; or give `patient` instead" }),
        json!({ "name": "patient", "in": "query", "schema": { "type": "string" }, "description": "The NHS number alone" }),
        header("TraceID", false, "The consumer's trace id (required unless X-Request-ID is sent); echoed back. A retry with the same TraceID is the same access"),
        header("X-Request-ID", false, "Accepted in place of TraceID; echoed back"),
        json!({ "name": "IsUnscheduledAccessEvent", "in": "header", "schema": { "type": "string", "enum": ["true", "false"] },
            "description": "Absent means true: the access is recorded and notifies the LA; false records neither" }),
        header("X-CPIS-User-Id", false, "The acting clinician's user id (with X-CPIS-User-Role); without them the access is recorded against the client system"),
        header("X-CPIS-User-Role", false, "The acting clinician's role code"),
        header("X-CPIS-User-Name", false, "The acting clinician's name (recorded with the user id in the LA's notification)"),
    ];
    if audit {
        p.push(json!({ "name": "_include", "in": "query", "schema": { "type": "string", "enum": [cpis_core::fhir::AUDIT_INCLUDE] },
            "description": "Include each access's PractitionerRole" }));
    }
    Value::Array(p)
}

/// The search endpoint and its schemas, kept apart from the main literal (one `json!` that large
/// passes the macro's recursion limit).
fn search_parts(signed_in: &Value) -> (Value, Value) {
    let path = json!({
            "/v1/search": { "post": { "summary": "Live search by family name and date of birth (given name, sex, postcode district optional) over the whole register, answered in tiers: match, possible_matches (at most 5), too_many or no_match; people are returned only for the first two; every search is kept in the lookup trail, against the signed-in user of the session (401 user_session_required without one)", "security": signed_in,
                "requestBody": body("LiveSearchRequest"), "responses": responses("LiveSearchResponse", &["400", "401", "403", "422"]) } }
    });
    let schemas = json!({
                "LiveSearchRequest": obj(&["query"], json!({
                    "query": obj(&["family_name", "date_of_birth"], json!({ "family_name": { "type": "string" }, "given_name": { "type": "string", "nullable": true },
                        "date_of_birth": { "type": "string", "format": "date" }, "sex": { "type": "string", "enum": ["female", "male", "unknown"], "nullable": true },
                        "postcode_district": { "type": "string", "nullable": true } })) })),
                "LiveSearchResponse": obj(&["outcome", "candidates", "total"], json!({
                    "outcome": { "type": "string", "enum": ["match", "possible_matches", "too_many", "no_match"] },
                    "candidates": { "type": "array", "maxItems": 5, "items": obj(&["record", "as_of"], json!({ "record": { "type": "object" },
                        "local_authority": { "type": "object", "nullable": true }, "as_of": { "type": "string", "format": "date-time" } })) },
                    "total": { "type": "integer" } }))
    });
    (path, schemas)
}

pub fn spec() -> Value {
    let fhir_client = json!([{ "fhirClientToken": [] }]);
    let device = json!([{ "deviceToken": [] }]);
    let signed_in = json!([{ "deviceToken": [], "userSession": [] }]);
    let la = json!([{ "laToken": [] }]);
    let ods =
        json!([{ "name": "ods", "in": "path", "required": true, "schema": { "type": "string" } }]);
    let mut spec = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "CP-IS Field central",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Region feeds, device enrolment and authentication, access-event intake, live checks, LA uploads and notifications: every refusal is an ApiError with a 4xx/5xx status. Under /fhir/R4, a FHIR R4 facade in the national CP-IS API's shape (CareTeam and AuditEvent searches, metadata): its answers and refusals are application/fhir+json, refusals OperationOutcomes with England Spine error codes."
        },
        "paths": {
            "/v1/status": { "get": { "summary": "Connectivity probe", "responses": responses("CentralStatus", &[]) } },
            "/v1/ready": { "get": { "summary": "Readiness for a load balancer: 200 when the database answers and holds every migration this central knows, 503 (with the reason) otherwise",
                "responses": { "200": { "description": "ready" }, "503": { "description": "not ready: {\"ready\": false, \"reason\": ...}" } } } },
            "/v1/enrol": { "post": { "summary": "Enrol a device with a one-time code", "requestBody": body("EnrolRequest"),
                "responses": responses("EnrolResponse", &["400", "401", "413"]) } },
            "/v1/auth/challenge": { "post": { "summary": "Get a single-use challenge (5 minutes)", "requestBody": body("ChallengeRequest"),
                "responses": responses("ChallengeResponse", &["400", "401", "403"]) } },
            "/v1/auth/token": { "post": { "summary": "Exchange a signed challenge for a bearer token (1 hour)", "requestBody": body("TokenRequest"),
                "responses": responses("TokenResponse", &["400", "401", "403"]) } },
            "/v1/login": { "post": { "summary": "Sign a user in on this device; returns the lease, a user session (ending any other on this device) and the region's feed key", "security": device, "requestBody": body("LoginRequest"),
                "responses": responses("LoginResponse", &["400", "401", "403", "429"]) } },
            "/v1/logout": { "post": { "summary": "Sign out: ends the user session named in X-CPIS-User-Session at the central (204 whether or not it was still live)", "security": device,
                "responses": { "204": { "description": "signed out" }, "401": { "description": "ApiError" } } } },
            "/v1/lease": { "post": { "summary": "Renew the device's lease", "security": device,
                "responses": responses("LeaseRenewal", &["401", "403"]) } },
            "/v1/feed": { "get": { "summary": "A page of the device's region feed, sealed to the region's feed key (sent only at a PIN sign-in) and signed, so a device's token alone reads nobody (weak ETag; If-None-Match with an unchanged page's tag answers 304 with no body)", "security": device,
                "parameters": [
                    { "name": "If-None-Match", "in": "header", "schema": { "type": "string" } },
                    { "name": "after", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 5000, "default": 1000 } }
                ],
                "responses": responses("SignedPage", &["400", "401", "403"]) } },
            "/v1/emergency-numbers": { "get": { "summary": "The device's region's local authorities with their emergency duty and office numbers, signed: shown by a device whose copy is locked. Needs the device token only, no signed-in user", "security": device,
                "responses": responses("SignedDirectory", &["401", "403"]) } },
            "/v1/events": { "post": { "summary": "Deliver sealed access events (idempotent on event id; at most 500). Organisation, setting, role and whether an event notifies come from the central's records, not the event", "security": device,
                "requestBody": body("EventBatch"), "responses": responses("EventBatchResult", &["400", "401", "403", "413", "422"]) } },
            "/v1/check": { "post": { "summary": "Live check of one NHS number by the signed-in user of the session (401 user_session_required without a live one), optionally recording the access; every answered check is kept in the lookup trail against that user", "security": signed_in,
                "requestBody": body("LiveCheckRequest"), "responses": responses("LiveCheckResponse", &["400", "401", "403", "422"]) } },
            "/v1/la/{ods}/notifications": { "get": { "summary": "The LA's notifications after a cursor", "security": la,
                "parameters": [ods[0], { "name": "after", "in": "query", "schema": { "type": "integer", "minimum": 0 } }],
                "responses": responses("NotificationPage", &["400", "401", "403"]) } },
            "/v1/la/{ods}/upload": { "post": { "summary": "Upload the LA's full current list (CSV)", "security": la,
                "parameters": [ods[0], { "name": "allow_large_removal", "in": "query", "schema": { "type": "boolean", "default": false } }],
                "requestBody": { "required": true, "content": { "text/csv": { "schema": { "type": "string" } } } },
                "responses": responses("UploadReport", &["400", "401", "403", "404", "413", "422"]) } },
            "/fhir/R4/metadata": { "get": { "summary": "FHIR R4 CapabilityStatement: exactly the CareTeam and AuditEvent searches below",
                "responses": { "200": fhir_ok("CapabilityStatement") } } },
            "/fhir/R4/CareTeam": { "get": { "summary": "FHIR R4 search, as the national CP-IS API: one CareTeam per plan shown for the patient (SNOMED CT category 342191000000101 child protection plan, 764841000000100 looked after child, 818901000000100 unborn child protection plan; name the LA; telecom mobile = emergency duty team, work = office hours; period the plan's dates). No record is a searchset with total 0. This search is the access: unless IsUnscheduledAccessEvent is false it is recorded once per client, TraceID and patient, enters the access history and notifies the responsible LA (a client registered in a scheduled setting, or a user the central holds as B0170, reads silently). Every search is kept in the lookup trail",
                "security": fhir_client.clone(), "parameters": fhir_params(false), "responses": fhir_responses("Bundle") } },
            "/fhir/R4/AuditEvent": { "get": { "summary": "FHIR R4 search: the patient's access history from unscheduled care (at most 25, newest first; the same user again within 24 hours listed once). Each AuditEvent is ISO 21089 Access/View with agents PAT (the NHS number) and ASSIGNED (a PractitionerRole: practitioner.display and code the role, organization.display \"NAME (ODS)\"), included with search.mode include when _include asks. Reading the history records no access",
                "security": fhir_client, "parameters": fhir_params(true), "responses": fhir_responses("Bundle") } },
            "/la/{ods}/inbox": { "get": { "summary": "The LA inbox page (HTML; cookie sign-in)", "parameters": ods,
                "responses": { "200": { "description": "HTML page", "content": { "text/html": {} } } } } }
        },
        "components": {
            "securitySchemes": {
                "deviceToken": { "type": "http", "scheme": "bearer", "description": "From /v1/auth/token" },
                "laToken": { "type": "http", "scheme": "bearer", "description": "From `cpis central la-token`" },
                "fhirClientToken": { "type": "http", "scheme": "bearer", "description": "From `cpis central fhir-client add`" },
                "userSession": { "type": "apiKey", "in": "header", "name": "X-CPIS-User-Session", "description": "From /v1/login (user_session.token), sent beside the device token; valid only with that device's token, 15 minutes idle, 12 hours at most" }
            },
            "schemas": {
                "FhirResource": { "type": "object", "required": ["resourceType"], "description": "A FHIR R4 resource (Bundle, CapabilityStatement or OperationOutcome) in JSON; see hl7.org/fhir/R4",
                    "properties": { "resourceType": { "type": "string" } } },
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
                "LoginResponse": obj(&["user", "lease", "user_session", "feed_key"], json!({ "user": { "$ref": "#/components/schemas/UserProfile" }, "lease": { "$ref": "#/components/schemas/Lease" },
                    "user_session": obj(&["token", "expires_at", "idle_minutes"], json!({ "token": { "type": "string" }, "expires_at": { "type": "string", "format": "date-time" }, "idle_minutes": { "type": "integer" } })),
                    "feed_key": obj(&["id", "key"], json!({ "id": { "type": "string" }, "key": { "type": "string", "description": "base64 of the region's 32-byte AES-256-GCM feed key" } })) })),
                "SignedPage": obj(&["body", "signature"], json!({ "body": { "type": "string", "description": "base64 of the SealedFeedPage JSON: region, after, last, head, has_more, key_id, and sealed = base64 of nonce || AES-256-GCM(feed key, FeedPage JSON) with the page's place as associated data" },
                    "signature": { "type": "string", "description": "base64 Ed25519 over \"cpis-field/feed-page/v2\\n\" + body bytes" } })),
                "SignedDirectory": obj(&["body", "signature"], json!({ "body": { "type": "string", "description": "base64 of the EmergencyDirectory JSON: region, generated_at, local_authorities [{ods, name, emergency_phone, office_phone}] in name order" },
                    "signature": { "type": "string", "description": "base64 Ed25519 over \"cpis-field/emergency-numbers/v1\\n\" + body bytes" } })),
                "SealedEvent": obj(&["id", "device_seq", "sealed"], json!({ "id": { "type": "string", "format": "uuid" }, "device_seq": { "type": "integer" }, "sealed": { "type": "string" } })),
                "EventBatch": obj(&["events"], json!({ "events": { "type": "array", "maxItems": 500, "items": { "$ref": "#/components/schemas/SealedEvent" } } })),
                "EventBatchResult": obj(&["results"], json!({ "results": { "type": "array", "items": obj(&["id", "status"], json!({
                    "id": { "type": "string", "format": "uuid" }, "status": { "type": "string", "enum": ["accepted", "duplicate", "rejected"] },
                    "reason": { "type": "string", "nullable": true } })) } })),
                "LiveCheckRequest": obj(&["nhs_number", "unscheduled"], json!({ "nhs_number": { "type": "string" },
                    "unscheduled": { "type": "boolean" }, "access_event": { "allOf": [{ "$ref": "#/components/schemas/SealedEvent" }], "nullable": true } })),
                "LiveCheckResponse": obj(&["outcome", "access_history", "access_recorded", "as_of"], json!({
                    "outcome": { "type": "string", "enum": ["record_found", "no_record"] }, "record": { "type": "object", "nullable": true },
                    "local_authority": { "type": "object", "nullable": true }, "access_history": { "type": "array", "items": { "type": "object" } },
                    "access_recorded": { "type": "boolean" }, "as_of": { "type": "string", "format": "date-time" } })),
                "NotificationPage": obj(&["notifications", "next"], json!({ "notifications": { "type": "array", "items": { "type": "object" } }, "next": { "type": "integer" } })),
                "UploadReport": obj(&["la", "rows", "accepted_rows", "rejected_rows", "people", "removed"], json!({ "la": { "type": "string" },
                    "rows": { "type": "array", "items": obj(&["line", "accepted"], json!({ "line": { "type": "integer" }, "accepted": { "type": "boolean" }, "reason": { "type": "string", "nullable": true } })) },
                    "accepted_rows": { "type": "integer" }, "rejected_rows": { "type": "integer" }, "people": { "type": "integer" }, "removed": { "type": "integer" } }))
            }
        }
    });
    let (path, schemas) = search_parts(&signed_in);
    if let (Some(paths), Value::Object(path)) = (spec["paths"].as_object_mut(), path) {
        paths.extend(path);
    }
    if let (Some(all), Value::Object(schemas)) =
        (spec["components"]["schemas"].as_object_mut(), schemas)
    {
        all.extend(schemas);
    }
    spec
}

pub async fn document() -> Json<Value> {
    Json(spec())
}
