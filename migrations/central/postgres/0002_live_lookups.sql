-- Every live check the central answered: which device and user asked about whom, when, and whether a
-- record was found. The information-governance answer to "who looked this person up online?", for
-- silent reads too (the access events only cover alerts opened).
CREATE TABLE live_lookups (
    id          BIGSERIAL PRIMARY KEY,
    nhs_number  TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    device_id   UUID NOT NULL,
    user_id     TEXT NOT NULL,
    found       BOOLEAN NOT NULL
);
CREATE INDEX live_lookups_by_person ON live_lookups (nhs_number, at);
