-- Vector spaces as data (issue 16). A model reference is `name:pooling:size`.
--
-- model_platform: the platform's active model (new tenants start there) and the target of a
-- platform-wide migration. tenant_models: each tenant's active model/space and optionally one
-- other space, either the target of a migration (before cutover) or the previous space
-- (after cutover, kept for rollback until cleanup). tenants.qdrant_collection_name stays the
-- active space and is changed in the same transaction as tenant_models at cutover.
CREATE TABLE model_platform (
    id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    active_model text NOT NULL,
    target_model text,
    previous_model text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant_models (
    tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    active_model text NOT NULL,
    active_space text NOT NULL,
    other_model text,
    other_space text,
    other_role text CHECK (other_role IN ('target', 'previous')),
    started_at timestamptz,
    cutover_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((other_model IS NULL) = (other_role IS NULL) AND (other_space IS NULL) = (other_role IS NULL))
);

-- Which spaces hold each image's vector: written after the point is upserted, so counting
-- these rows never counts a vector that is not there.
CREATE TABLE image_spaces (
    image_id uuid NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    space text NOT NULL,
    tenant_id uuid NOT NULL,
    model text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (image_id, space)
);
CREATE INDEX idx_image_spaces_space_tenant ON image_spaces (space, tenant_id, created_at);
INSERT INTO image_spaces (image_id, space, tenant_id, model)
SELECT id, vector_space, tenant_id, model FROM images
WHERE status = 'indexed' AND vector_space IS NOT NULL AND deleted_at IS NULL;

-- Re-embedding jobs, one per (tenant, space): a migration's backfill or a reindex. Items are
-- what was queued; an item is done when image_spaces holds (image, space).
CREATE TABLE backfills (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    model text NOT NULL,
    space text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('migrate', 'reindex')),
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'cancelled')),
    -- The last image id queued: each batch continues after it (a final pass from the start
    -- catches images that finished their pipeline behind the cursor).
    cursor uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX idx_backfills_running ON backfills (created_at, id) WHERE state = 'running';
CREATE INDEX idx_backfills_tenant ON backfills (tenant_id, created_at DESC);

CREATE TABLE backfill_items (
    backfill_id uuid NOT NULL REFERENCES backfills (id) ON DELETE CASCADE,
    image_id uuid NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 1,
    done_at timestamptz,
    failed_at timestamptz,
    error text,
    PRIMARY KEY (backfill_id, image_id)
);
CREATE INDEX idx_backfill_items_open ON backfill_items (backfill_id)
    WHERE done_at IS NULL AND failed_at IS NULL;
CREATE INDEX idx_images_tenant_id ON images (tenant_id, id) WHERE deleted_at IS NULL;

-- Operators' own ONNX encoders.
CREATE TABLE custom_models (
    name text PRIMARY KEY,
    source text NOT NULL,
    path text NOT NULL,
    sha256 text NOT NULL,
    dim integer NOT NULL,
    input_size integer NOT NULL,
    mean double precision[] NOT NULL,
    std double precision[] NOT NULL,
    pooling text NOT NULL CHECK (pooling IN ('inside', 'avg', 'gem')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Calibrations fitted by `deeplens eval --model`: the raw cosine that maps to 0.7.
CREATE TABLE model_calibrations (
    model text PRIMARY KEY,
    raw_at_threshold double precision NOT NULL,
    samples integer NOT NULL,
    fitted_at timestamptz NOT NULL DEFAULT now()
);

-- The broker serves higher priority first: live work 0, background re-embedding -1.
ALTER TABLE broker_deliveries ADD COLUMN priority smallint NOT NULL DEFAULT 0;
DROP INDEX idx_broker_due;
CREATE INDEX idx_broker_due ON broker_deliveries (priority DESC, next_attempt_at)
    WHERE status = 'pending';
