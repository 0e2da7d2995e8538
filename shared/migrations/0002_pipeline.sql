-- Images with a status per pipeline stage, daily usage counters, the local broker's durable
-- delivery queue, and failed (dead-lettered) events.
CREATE TABLE images (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    filename text NOT NULL,
    content_type text NOT NULL,
    size_bytes bigint NOT NULL,
    sha256 text NOT NULL,
    width integer,
    height integer,
    status text NOT NULL DEFAULT 'uploaded'
        CHECK (status IN ('uploaded', 'validated', 'extracted', 'indexed', 'failed')),
    failure_code text,
    failure_reason text,
    original_key text NOT NULL,
    thumb_256_key text,
    thumb_128_key text,
    thumbnails_bytes bigint NOT NULL DEFAULT 0,
    model text,
    vector_space text,
    uploaded_by uuid,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    validated_at timestamptz,
    extracted_at timestamptz,
    indexed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE INDEX idx_images_tenant_uploaded ON images (tenant_id, uploaded_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX idx_images_status_updated ON images (status, updated_at)
    WHERE deleted_at IS NULL AND status <> 'indexed';
CREATE INDEX idx_images_tenant_sha ON images (tenant_id, sha256) WHERE deleted_at IS NULL;
CREATE INDEX idx_images_deleted ON images (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE usage_daily (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day date NOT NULL,
    api_calls bigint NOT NULL DEFAULT 0,
    searches bigint NOT NULL DEFAULT 0,
    uploads bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);

-- One row per (event, trigger): Knative's broker fans an event out to each matching trigger
-- and retries each delivery independently.
CREATE TABLE broker_deliveries (
    id bigserial PRIMARY KEY,
    event_id text NOT NULL,
    event_type text NOT NULL,
    trigger_name text NOT NULL,
    subscriber text NOT NULL,
    event jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, trigger_name)
);
CREATE INDEX idx_broker_due ON broker_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE failed_events (
    id uuid PRIMARY KEY,
    event_id text NOT NULL,
    event_type text NOT NULL,
    source text NOT NULL,
    subject text,
    tenant_id uuid,
    event jsonb NOT NULL,
    error text,
    attempts integer NOT NULL DEFAULT 0,
    received_at timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz,
    UNIQUE (event_id)
);
CREATE INDEX idx_failed_events_tenant ON failed_events (tenant_id, received_at DESC);
