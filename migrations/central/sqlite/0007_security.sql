-- Online sign-in attempts per user (the user id held only as its SHA-256) in the current window.
-- Taken before each PIN is verified, in one statement, so every central over this database shares the
-- count and a restart does not reset it. Rows of ended windows are deleted as attempts come in.
CREATE TABLE sign_in_attempts (
    user_hash     TEXT PRIMARY KEY,
    attempts      INTEGER NOT NULL,
    window_start  TEXT NOT NULL
);
CREATE INDEX sign_in_attempts_by_window ON sign_in_attempts (window_start);

-- LA API tokens expire and can be revoked. Tokens issued before this run for 90 days from issue.
ALTER TABLE la_tokens ADD COLUMN expires_at TEXT;
ALTER TABLE la_tokens ADD COLUMN revoked_at TEXT;
UPDATE la_tokens SET expires_at = strftime('%Y-%m-%dT%H:%M:%S.000000Z', created_at, '+90 days');
CREATE INDEX la_tokens_by_la ON la_tokens (la_ods);

-- The LA inbox page's own short-lived sessions: the random session id held only as its SHA-256,
-- tied to the LA token it was opened with so revoking that token ends the session too.
CREATE TABLE inbox_sessions (
    session_hash  TEXT PRIMARY KEY,
    la_ods        TEXT NOT NULL REFERENCES local_authorities(ods),
    token_hash    TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);
CREATE INDEX inbox_sessions_by_expiry ON inbox_sessions (expires_at);

-- Every LA upload, kept: which LA and which of its tokens (a prefix of the token's hash), when, how
-- many rows, and what came of it. Also the count the per-LA upload rate limit reads.
CREATE TABLE la_uploads (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    la_ods        TEXT NOT NULL,
    token_ref     TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    rows          INTEGER,
    outcome       TEXT NOT NULL,
    detail        TEXT
);
CREATE INDEX la_uploads_by_la ON la_uploads (la_ods, received_at);
