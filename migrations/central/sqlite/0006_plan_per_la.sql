-- A plan belongs to the local authority that holds it. Each LA's own record of a person (identity
-- and that LA's plans) is kept here, one row per (person, LA); `flags` keeps the person as devices
-- see them: every LA's plans merged, `la_ods` naming the LA whose plan started most recently.
CREATE TABLE la_flags (
    nhs_number   TEXT NOT NULL,
    la_ods       TEXT NOT NULL REFERENCES local_authorities(ods),
    record_json  TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (nhs_number, la_ods)
);
CREATE INDEX la_flags_by_la ON la_flags (la_ods);
INSERT INTO la_flags (nhs_number, la_ods, record_json, updated_at)
    SELECT nhs_number, la_ods, record_json, updated_at FROM flags;

-- One access event may tell several LAs (each holding a visible plan): a notification is unique per
-- (event, LA), no longer per event. SQLite cannot drop a constraint, so the table is rebuilt.
CREATE TABLE notifications_by_la (
    la_ods           TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    event_id         TEXT NOT NULL,
    payload_json     TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    delivery_state   TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    delivered_at     TEXT,
    last_error       TEXT,
    PRIMARY KEY (la_ods, seq),
    UNIQUE (event_id, la_ods)
);
INSERT INTO notifications_by_la (la_ods, seq, event_id, payload_json, created_at, delivery_state,
                                 attempts, next_attempt_at, delivered_at, last_error)
    SELECT la_ods, seq, event_id, payload_json, created_at, delivery_state,
           attempts, next_attempt_at, delivered_at, last_error
      FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_by_la RENAME TO notifications;
CREATE INDEX notifications_due ON notifications (delivery_state, next_attempt_at);
