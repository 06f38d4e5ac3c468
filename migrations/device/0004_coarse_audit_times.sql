-- The time kept in the clear beside each sealed audit entry becomes the day only (the exact time is
-- inside the seal): a clear time could be matched against an outbox row's to tell a hit from a miss.
UPDATE audit_log SET at = substr(at, 1, 10) || 'T00:00:00.000000Z';
