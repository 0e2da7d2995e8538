-- Failed sign-ins for throttling, keyed by account (lower-cased email) and by client address.
CREATE TABLE login_failures (
    id bigserial PRIMARY KEY,
    scope text NOT NULL CHECK (scope IN ('account', 'address')),
    key text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_login_failures_key ON login_failures (scope, key, failed_at DESC);
