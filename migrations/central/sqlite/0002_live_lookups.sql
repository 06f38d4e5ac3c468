-- Every live check the central answered: which device and user asked about whom, when, and whether a
-- record was found. The information-governance answer to "who looked this person up online?", for
-- silent reads too (the access events only cover alerts opened).
CREATE TABLE live_lookups (
    id          INTEGER PRIMARY KEY,
    nhs_number  TEXT NOT NULL,
    at          TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    found       INTEGER NOT NULL
);
CREATE INDEX live_lookups_by_person ON live_lookups (nhs_number, at);
