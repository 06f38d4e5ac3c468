-- CP-IS Field central register, PostgreSQL. Shipped migrations are never edited: add a new numbered
-- file instead.

CREATE TABLE central_keys (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    signing_pkcs8   BYTEA NOT NULL,
    sealing_secret  BYTEA NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);

-- Named sequence counters (the region feed's global sequence). A row lock on the counter orders
-- writers, so no reader ever sees a later seq committed before an earlier one.
CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('feed', 0);

CREATE TABLE regions (
    name         TEXT PRIMARY KEY,
    lease_hours  INTEGER NOT NULL DEFAULT 72,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE local_authorities (
    ods              TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    emergency_phone  TEXT NOT NULL,
    office_phone     TEXT,
    region           TEXT NOT NULL REFERENCES regions(name),
    webhook_url      TEXT,
    notify_seq       BIGINT NOT NULL DEFAULT 0,
    updated_at       TIMESTAMPTZ NOT NULL
);

CREATE TABLE flags (
    nhs_number   TEXT PRIMARY KEY,
    la_ods       TEXT NOT NULL REFERENCES local_authorities(ods),
    record_json  TEXT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX flags_by_la ON flags (la_ods);

CREATE TABLE region_feed (
    region        TEXT NOT NULL,
    key           TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    op            TEXT NOT NULL,
    payload_json  TEXT NOT NULL,
    PRIMARY KEY (region, key)
);
CREATE UNIQUE INDEX region_feed_by_seq ON region_feed (region, seq);

CREATE TABLE enrolment_codes (
    code_hash   TEXT PRIMARY KEY,
    region      TEXT NOT NULL REFERENCES regions(name),
    org_ods     TEXT NOT NULL,
    org_name    TEXT NOT NULL,
    setting     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    device_id   UUID
);

CREATE TABLE devices (
    device_id    UUID PRIMARY KEY,
    public_key   BYTEA NOT NULL,
    region       TEXT NOT NULL REFERENCES regions(name),
    org_ods      TEXT NOT NULL,
    org_name     TEXT NOT NULL,
    setting      TEXT NOT NULL,
    lease_key    BYTEA NOT NULL,
    enrolled_at  TIMESTAMPTZ NOT NULL,
    last_seen    TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);

CREATE TABLE auth_challenges (
    challenge   TEXT PRIMARY KEY,
    device_id   UUID NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE device_tokens (
    token_hash  TEXT PRIMARY KEY,
    device_id   UUID NOT NULL REFERENCES devices(device_id),
    expires_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    user_id         TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,
    activity        TEXT NOT NULL,
    org_ods         TEXT NOT NULL,
    pin_salt        BYTEA NOT NULL,
    pin_hash        BYTEA NOT NULL,
    pin_iterations  INTEGER NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE la_tokens (
    token_hash  TEXT PRIMARY KEY,
    la_ods      TEXT NOT NULL REFERENCES local_authorities(ods),
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE access_events (
    event_id      UUID PRIMARY KEY,
    device_id     UUID NOT NULL,
    device_seq    BIGINT NOT NULL,
    device_time   TIMESTAMPTZ NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL,
    nhs_number    TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    unscheduled   BOOLEAN NOT NULL,
    notifies      BOOLEAN NOT NULL,
    payload_json  TEXT NOT NULL
);
CREATE INDEX access_events_by_person ON access_events (nhs_number, device_time);

CREATE TABLE notifications (
    la_ods           TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    event_id         UUID NOT NULL UNIQUE,
    payload_json     TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    delivery_state   TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ,
    delivered_at     TIMESTAMPTZ,
    last_error       TEXT,
    PRIMARY KEY (la_ods, seq)
);
CREATE INDEX notifications_due ON notifications (delivery_state, next_attempt_at);
