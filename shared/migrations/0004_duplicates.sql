-- Near-duplicate grouping: an image indexed close enough to an earlier one joins its group
-- (duplicate_of = the group's first image); near_similarity is the calibrated score.
ALTER TABLE images ADD COLUMN duplicate_of uuid;
ALTER TABLE images ADD COLUMN near_similarity real;
CREATE INDEX idx_images_tenant_duplicate ON images (tenant_id, duplicate_of)
    WHERE duplicate_of IS NOT NULL AND deleted_at IS NULL;
