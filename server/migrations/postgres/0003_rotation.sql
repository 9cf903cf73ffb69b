-- Key rotation. An app's revision increases with every change of its key
-- state, which the rotation watch reports. A rotation row records each
-- step, so a restarted registrar finishes a half-done rotation.

ALTER TABLE service_apps ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;

-- Okta's own id ('pks...') of each key, once known; NULL for keys that
-- dynamic client registration created, until a rotation looks them up.
ALTER TABLE private_keys ADD COLUMN okta_key_id TEXT;

-- Keys in Okta that callers manage themselves (AddKey / RetireKey), beside
-- the keys of app_keys recorded at registration. removed_at marks a
-- retired key.
ALTER TABLE app_keys ADD COLUMN okta_key_id TEXT;
ALTER TABLE app_keys ADD COLUMN removed_at BIGINT;

CREATE TABLE rotations (
    -- At most one running rotation per app.
    client_id    TEXT PRIMARY KEY NOT NULL,
    old_key_id   TEXT NOT NULL,
    new_key_id   TEXT NOT NULL,
    -- 'generated': new key stored, not yet in Okta.
    -- 'added': new key active in Okta beside the old one.
    -- 'switched': signing uses the new key; the old one waits for the grace
    -- period to pass before it is removed from Okta.
    phase        TEXT NOT NULL,
    -- Unix milliseconds of the next step.
    next_step_at BIGINT NOT NULL,
    started_at   BIGINT NOT NULL
);
