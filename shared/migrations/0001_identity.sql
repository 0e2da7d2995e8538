-- The seed's identity schema: tenants (17 columns), users (16), refresh_tokens (10),
-- tenant_api_keys (9), with the seed's indexes.
CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    slug text NOT NULL,
    description text,
    domain text,
    status text NOT NULL DEFAULT 'Active'
        CHECK (status IN ('Active', 'Suspended', 'PendingSetup', 'Deleted')),
    tier text NOT NULL DEFAULT 'Free' CHECK (tier IN ('Free', 'Professional', 'Enterprise')),
    minio_bucket_name text NOT NULL,
    qdrant_collection_name text NOT NULL,
    max_storage_bytes bigint NOT NULL,
    max_users integer NOT NULL,
    max_api_calls_per_day integer NOT NULL,
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
-- A deleted tenant's slug can be reused: uniqueness holds among live tenants only.
CREATE UNIQUE INDEX idx_tenants_slug ON tenants (slug) WHERE deleted_at IS NULL;

CREATE TABLE users (
    id uuid PRIMARY KEY,
    tenant_id uuid REFERENCES tenants (id) ON DELETE CASCADE,  -- NULL for system admins
    email text NOT NULL,
    password_hash text NOT NULL,
    first_name text,
    last_name text,
    role text NOT NULL DEFAULT 'User'
        CHECK (role IN ('User', 'Admin', 'TenantOwner', 'SystemAdmin')),
    is_active boolean NOT NULL DEFAULT true,
    email_verified boolean NOT NULL DEFAULT false,
    last_login_at timestamptz,
    failed_login_attempts integer NOT NULL DEFAULT 0,
    locked_until timestamptz,
    profile_image_url text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
-- Unique per tenant including deleted_at (the seed's definition); NULLS NOT DISTINCT makes two
-- live rows (deleted_at NULL) collide, and system admins (tenant_id NULL) too.
CREATE UNIQUE INDEX idx_users_tenant_email
    ON users (tenant_id, lower(email), deleted_at) NULLS NOT DISTINCT;
CREATE INDEX idx_users_tenant_id ON users (tenant_id);
CREATE INDEX idx_users_email ON users (lower(email));

CREATE TABLE refresh_tokens (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash text NOT NULL,
    family_id uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    replaced_by uuid,
    created_by_ip text,
    user_agent text
);
CREATE INDEX idx_refresh_tokens_user_id ON refresh_tokens (user_id);
CREATE UNIQUE INDEX idx_refresh_tokens_token ON refresh_tokens (token_hash);
CREATE INDEX idx_refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE tenant_api_keys (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL,
    key_prefix text NOT NULL,
    key_hash text NOT NULL,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX idx_tenant_api_keys_tenant_id ON tenant_api_keys (tenant_id);
CREATE UNIQUE INDEX idx_tenant_api_keys_prefix ON tenant_api_keys (key_prefix);
