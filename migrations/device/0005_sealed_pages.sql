-- Feed pages downloaded while nobody was signed in. Each is sealed to the region's feed key, which
-- only a user's unlock opens, so the device's own key cannot read them; they are applied in feed
-- order at the next sign-in, even one made without a connection. Kept as the central signed them.
CREATE TABLE sealed_pages (
    after     INTEGER PRIMARY KEY,
    last      INTEGER NOT NULL,
    body      TEXT NOT NULL,
    signature TEXT NOT NULL
);
