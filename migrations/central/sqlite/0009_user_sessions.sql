-- A user session opened by PIN sign-in on one device: every response carrying a person's details
-- needs one, so a device's own key alone reads nobody. Held as the token's SHA-256; it ends when idle
-- (idle_until), at its hard end (expires_at), at sign-out, or when another user signs in there.
CREATE TABLE user_sessions (
    token_hash  TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(device_id),
    user_id     TEXT NOT NULL,
    idle_until  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX user_sessions_device ON user_sessions (device_id);
