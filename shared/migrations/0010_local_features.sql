-- Each image's local features (ORB keypoints + descriptors, ~18 KB) for geometric
-- verification at search time: stored by process-image, read for a query's top candidates in
-- one statement. Kept out of `images` so listing images never drags the blobs along.
CREATE TABLE image_local_features (
    image_id uuid PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    features bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'deeplens_tenant') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON image_local_features TO deeplens_tenant;
        ALTER TABLE image_local_features ENABLE ROW LEVEL SECURITY;
        CREATE POLICY tenant_rows ON image_local_features TO deeplens_tenant
            USING (tenant_id = nullif(current_setting('deeplens.tenant_id', true), '')::uuid)
            WITH CHECK (tenant_id = nullif(current_setting('deeplens.tenant_id', true), '')::uuid);
    END IF;
END $$;
