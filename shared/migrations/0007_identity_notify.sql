-- Rights change at once across processes: every change that can take rights away (a tenant's
-- status, limit or deletion; a user's role, activity, tenant or deletion; an API key's
-- revocation or deletion) NOTIFYs deeplens_identity, and each process's identity cache
-- (shared/hotpath.py) drops the entry. NOTIFY is delivered at commit.
CREATE OR REPLACE FUNCTION deeplens_notify_identity() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'tenants' THEN
        PERFORM pg_notify('deeplens_identity', 'tenant:' || OLD.id::text);
    ELSIF TG_TABLE_NAME = 'users' THEN
        PERFORM pg_notify('deeplens_identity', 'user:' || OLD.id::text);
    ELSE
        PERFORM pg_notify('deeplens_identity', 'apikey:' || OLD.key_prefix);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER tenants_identity_changed AFTER UPDATE ON tenants FOR EACH ROW
    WHEN ((OLD.status, OLD.max_api_calls_per_day, OLD.deleted_at)
          IS DISTINCT FROM (NEW.status, NEW.max_api_calls_per_day, NEW.deleted_at))
    EXECUTE FUNCTION deeplens_notify_identity();
CREATE TRIGGER tenants_identity_deleted AFTER DELETE ON tenants FOR EACH ROW
    EXECUTE FUNCTION deeplens_notify_identity();

CREATE TRIGGER users_identity_changed AFTER UPDATE ON users FOR EACH ROW
    WHEN ((OLD.role, OLD.is_active, OLD.tenant_id, OLD.deleted_at)
          IS DISTINCT FROM (NEW.role, NEW.is_active, NEW.tenant_id, NEW.deleted_at))
    EXECUTE FUNCTION deeplens_notify_identity();
CREATE TRIGGER users_identity_deleted AFTER DELETE ON users FOR EACH ROW
    EXECUTE FUNCTION deeplens_notify_identity();

CREATE TRIGGER api_keys_identity_changed AFTER UPDATE ON tenant_api_keys FOR EACH ROW
    WHEN ((OLD.revoked_at, OLD.tenant_id, OLD.key_hash)
          IS DISTINCT FROM (NEW.revoked_at, NEW.tenant_id, NEW.key_hash))
    EXECUTE FUNCTION deeplens_notify_identity();
CREATE TRIGGER api_keys_identity_deleted AFTER DELETE ON tenant_api_keys FOR EACH ROW
    EXECUTE FUNCTION deeplens_notify_identity();
