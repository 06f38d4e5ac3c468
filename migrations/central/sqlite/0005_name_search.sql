-- Search by name and date of birth over the whole register: candidates are found by date of birth,
-- then compared by name in memory (cpis_core::search::tier), so the register is indexed by it.
CREATE INDEX flags_by_date_of_birth ON flags (json_extract(record_json, '$.date_of_birth'));

-- Every search the central answered: who asked, when, what was entered, the tier and how many
-- people matched. Kept so that "who searched for whom" has the same answer as "who looked up whom".
CREATE TABLE live_searches (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    query_json  TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    candidates  INTEGER NOT NULL
);
CREATE INDEX live_searches_by_at ON live_searches (at);

-- Each person a search returned is also kept in the lookup trail against them, with the search.
ALTER TABLE live_lookups ADD COLUMN search_id INTEGER;
