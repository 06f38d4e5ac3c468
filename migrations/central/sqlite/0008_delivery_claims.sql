-- Several central instances may serve one database: each webhook delivery is claimed by one instance
-- at a time (claim_id), and the claim lapses at claimed_until so a crashed instance's deliveries are
-- taken over by another.
ALTER TABLE notifications ADD COLUMN claim_id TEXT;
ALTER TABLE notifications ADD COLUMN claimed_until TEXT;
