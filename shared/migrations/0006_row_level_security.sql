-- Row-level security as the second wall behind the data layer's tenant filters.
-- Tenant-scoped transactions run as the role deeplens_tenant with deeplens.tenant_id set
-- (Database.tenant_tx); for that role, rows of other tenants do not exist. The application's
-- own role owns the tables and is unaffected (owners bypass RLS), so platform work (broker,
-- sweeper, operators) keeps seeing everything. Where the database user may not create roles,
-- this migration only logs a notice and tenant_tx runs without the wall.
DO $$
DECLARE
    t text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'deeplens_tenant') THEN
        BEGIN
            CREATE ROLE deeplens_tenant NOLOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'cannot create role deeplens_tenant: row-level security stays off';
            RETURN;
        END;
    END IF;
    BEGIN
        EXECUTE format('GRANT deeplens_tenant TO %I', current_user);
    EXCEPTION WHEN insufficient_privilege OR duplicate_object OR invalid_grant_operation THEN
        NULL;
    END;
    GRANT SELECT, UPDATE ON tenants TO deeplens_tenant;
    GRANT SELECT, INSERT, UPDATE, DELETE ON images, users, tenant_api_keys, usage_daily
        TO deeplens_tenant;
    GRANT SELECT ON failed_events TO deeplens_tenant;
    EXECUTE 'ALTER TABLE tenants ENABLE ROW LEVEL SECURITY';
    EXECUTE 'CREATE POLICY tenant_self ON tenants TO deeplens_tenant'
        ' USING (id = nullif(current_setting(''deeplens.tenant_id'', true), '''')::uuid)';
    FOREACH t IN ARRAY ARRAY['images', 'users', 'tenant_api_keys', 'usage_daily',
                             'failed_events'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_rows ON %I TO deeplens_tenant'
            ' USING (tenant_id = nullif(current_setting(''deeplens.tenant_id'', true), '''')::uuid)'
            ' WITH CHECK (tenant_id = nullif(current_setting(''deeplens.tenant_id'', true), '''')::uuid)', t);
    END LOOP;
END $$;
