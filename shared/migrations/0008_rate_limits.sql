-- Sign-in throttling per account AND client address ('pair': an attacker elsewhere cannot lock
-- the owner out), plus public sign-ups per client address ('signup').
ALTER TABLE login_failures DROP CONSTRAINT IF EXISTS login_failures_scope_check;
ALTER TABLE login_failures ADD CONSTRAINT login_failures_scope_check
    CHECK (scope IN ('account', 'address', 'pair', 'signup'));
