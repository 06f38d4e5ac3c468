-- CP-IS Field central register, SQLite. Times are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ' so they sort
-- as text. Shipped migrations are never edited: add a new numbered file instead.

CREATE TABLE central_keys (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    signing_pkcs8   BLOB NOT NULL,
    sealing_secret  BLOB NOT NULL,
    created_at      TEXT NOT NULL
);

-- Named sequence counters (the region feed's global sequence).
CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('feed', 0);

CREATE TABLE regions (
    name         TEXT PRIMARY KEY,
    lease_hours  INTEGER NOT NULL DEFAULT 72,
    created_at   TEXT NOT NULL
);

CREATE TABLE local_authorities (
    ods              TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    emergency_phone  TEXT NOT NULL,
    office_phone     TEXT,
    region           TEXT NOT NULL REFERENCES regions(name),
    webhook_url      TEXT,
    notify_seq       INTEGER NOT NULL DEFAULT 0,
    updated_at       TEXT NOT NULL
);

-- The national register: one row per flagged person, the record as JSON (wire FlagRecord).
CREATE TABLE flags (
    nhs_number   TEXT PRIMARY KEY,
    la_ods       TEXT NOT NULL REFERENCES local_authorities(ods),
    record_json  TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX flags_by_la ON flags (la_ods);

-- Each region's current state as a feed: one row per key ('la:ODS' or 'flag:NHS'), replaced with a
-- new seq on every change; removals stay as tombstones so devices that had the key learn of it.
CREATE TABLE region_feed (
    region        TEXT NOT NULL,
    key           TEXT NOT NULL,
    seq           INTEGER NOT NULL,
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
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT,
    device_id   TEXT
);

CREATE TABLE devices (
    device_id    TEXT PRIMARY KEY,
    public_key   BLOB NOT NULL,
    region       TEXT NOT NULL REFERENCES regions(name),
    org_ods      TEXT NOT NULL,
    org_name     TEXT NOT NULL,
    setting      TEXT NOT NULL,
    lease_key    BLOB NOT NULL,
    enrolled_at  TEXT NOT NULL,
    last_seen    TEXT,
    revoked_at   TEXT
);

CREATE TABLE auth_challenges (
    challenge   TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);

CREATE TABLE device_tokens (
    token_hash  TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(device_id),
    expires_at  TEXT NOT NULL
);

CREATE TABLE users (
    user_id         TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,
    activity        TEXT NOT NULL,
    org_ods         TEXT NOT NULL,
    pin_salt        BLOB NOT NULL,
    pin_hash        BLOB NOT NULL,
    pin_iterations  INTEGER NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE la_tokens (
    token_hash  TEXT PRIMARY KEY,
    la_ods      TEXT NOT NULL REFERENCES local_authorities(ods),
    created_at  TEXT NOT NULL
);

-- Access events as opened by the central, exactly once per event id.
CREATE TABLE access_events (
    event_id      TEXT PRIMARY KEY,
    device_id     TEXT NOT NULL,
    device_seq    INTEGER NOT NULL,
    device_time   TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    nhs_number    TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    unscheduled   INTEGER NOT NULL,
    notifies      INTEGER NOT NULL,
    payload_json  TEXT NOT NULL
);
CREATE INDEX access_events_by_person ON access_events (nhs_number, device_time);

-- What each LA is told, numbered per LA; delivery state for the LA's webhook.
CREATE TABLE notifications (
    la_ods           TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    event_id         TEXT NOT NULL UNIQUE,
    payload_json     TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    delivery_state   TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    delivered_at     TEXT,
    last_error       TEXT,
    PRIMARY KEY (la_ods, seq)
);
CREATE INDEX notifications_due ON notifications (delivery_state, next_attempt_at);
