-- Search by name and date of birth: each flag carries a keyed, bucketed index of its date of birth,
-- the first 11 bits of HMAC-SHA256 under a key derived from the index key (vault::DobIndexKey), so
-- that each value covers several people and several dates. A search reads the people on the value
-- of the date entered (and of its day-month swap), opens them and compares names in memory: no
-- name or date is ever stored or indexed in clear. Rows from before this migration have NULL here
-- until the signed-in engine fills them in (DeviceStore::index_dates_of_birth).
ALTER TABLE flags ADD COLUMN dob_bucket INTEGER;
ALTER TABLE flags_staged ADD COLUMN dob_bucket INTEGER;
CREATE INDEX flags_by_dob_bucket ON flags (dob_bucket);
