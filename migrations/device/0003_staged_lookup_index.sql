-- A check during a first download looks its person up among the staged rows. Without an index that
-- is a scan of everything staged so far, growing with the download (tens of microseconds after a few
-- pages, milliseconds near the end of a large region); with it, one seek. The index holds only the
-- 32-byte blind index and the sequence number, so the download still appends its sealed rows.
CREATE INDEX flags_staged_by_blind_index ON flags_staged (blind_index, seq);
