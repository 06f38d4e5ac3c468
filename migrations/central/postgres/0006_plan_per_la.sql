-- A plan belongs to the local authority that holds it. Each LA's own record of a person (identity
-- and that LA's plans) is kept here, one row per (person, LA); `flags` keeps the person as devices
-- see them: every LA's plans merged, `la_ods` naming the LA whose plan started most recently.
CREATE TABLE la_flags (
    nhs_number   TEXT NOT NULL,
    la_ods       TEXT NOT NULL REFERENCES local_authorities(ods),
    record_json  TEXT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (nhs_number, la_ods)
);
CREATE INDEX la_flags_by_la ON la_flags (la_ods);
INSERT INTO la_flags (nhs_number, la_ods, record_json, updated_at)
    SELECT nhs_number, la_ods, record_json, updated_at FROM flags;

-- One access event may tell several LAs (each holding a visible plan): a notification is unique per
-- (event, LA), no longer per event.
ALTER TABLE notifications DROP CONSTRAINT notifications_event_id_key;
ALTER TABLE notifications ADD CONSTRAINT notifications_event_la_key UNIQUE (event_id, la_ods);
