-- When each local authority's last upload was accepted: a live answer is as old as that, not "now".
ALTER TABLE local_authorities ADD COLUMN last_upload_at TIMESTAMPTZ;
-- Databases from before this column: the LA's own last change is the best that is known.
UPDATE local_authorities SET last_upload_at = updated_at
 WHERE EXISTS (SELECT 1 FROM flags WHERE flags.la_ods = local_authorities.ods);
