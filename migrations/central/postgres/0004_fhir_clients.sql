-- Client systems registered to use the FHIR R4 facade (`cpis central fhir-client add`): an electronic
-- patient record of a trust, with the organisation and care setting its accesses are recorded under.
-- The bearer token is held only as its SHA-256.
CREATE TABLE fhir_clients (
    client_id   UUID PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    org_ods     TEXT NOT NULL,
    org_name    TEXT NOT NULL,
    setting     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);
