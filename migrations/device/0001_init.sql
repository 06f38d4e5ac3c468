-- The device store: encrypted cache of the region's flags, the local audit log, the outbox of
-- access events, and the key vault's wrapped keys. Nothing identifying a person is stored in
-- plaintext: flags, local authorities and audit entries are sealed with the data key; events are
-- sealed to the central's key. Shipped migrations never change: add a new file instead.

-- Small non-personal values: enrolment, sync cursor, lease, next device sequence.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- LocalAuthority JSON sealed with the data key, AAD "la:{ods}" (phone numbers are not plaintext).
CREATE TABLE local_authorities (
    ods    TEXT PRIMARY KEY,
    sealed BLOB NOT NULL
);

-- FlagRecord JSON sealed with the data key, AAD "flag:" || blind_index, keyed by the blind index
-- HMAC-SHA256(index key, NHS number) so a lookup never needs the number in clear.
CREATE TABLE flags (
    blind_index BLOB PRIMARY KEY,
    sealed      BLOB NOT NULL,
    seq         INTEGER NOT NULL
) WITHOUT ROWID;

-- Every check, hit or miss. The entry holds the NHS number, so it is sealed.
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY,
    at     TEXT NOT NULL,
    sealed BLOB NOT NULL
);

-- Access events sealed to the central's X25519 key: sendable whatever happens to PINs, and
-- unreadable by the device itself.
CREATE TABLE outbox (
    event_id        TEXT PRIMARY KEY,
    device_seq      INTEGER UNIQUE NOT NULL,
    created_at      TEXT NOT NULL,
    sealed          TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    delivered_at    TEXT
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at, device_seq);

-- The cache keys sealed under HKDF(device secret, lease key): one row.
CREATE TABLE device_unlock (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    sealed BLOB NOT NULL
);

-- Per user: {lease key, profile} sealed under a key from the PIN (PBKDF2, parameters beside the
-- wrap) and the device secret; the wrong-PIN counter stays in clear so it works while locked.
CREATE TABLE user_unlock (
    user_id         TEXT PRIMARY KEY,
    salt            BLOB NOT NULL,
    iterations      INTEGER NOT NULL,
    sealed          BLOB NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    last_failed_at  TEXT
);
