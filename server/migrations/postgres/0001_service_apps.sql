-- Service apps this registrar created, their public keys, and the scope
-- grants it made. Okta stays the source of truth for an app's live state;
-- these tables record what the registrar did and why. Times are BIGINT
-- seconds since the Unix epoch unless a comment says milliseconds.

CREATE TABLE service_apps (
    client_id   TEXT PRIMARY KEY NOT NULL,
    client_name TEXT NOT NULL,
    issued_at   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    deleted_at  BIGINT
);

CREATE INDEX service_apps_by_name ON service_apps (client_name);

CREATE TABLE app_keys (
    client_id  TEXT NOT NULL REFERENCES service_apps (client_id),
    thumbprint TEXT NOT NULL,
    kid        TEXT NOT NULL,
    -- The public JWK as JSON. Never a private key.
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, thumbprint)
);

CREATE TABLE scope_grants (
    client_id  TEXT NOT NULL,
    scope_id   TEXT NOT NULL,
    grant_id   TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    revoked_at BIGINT,
    PRIMARY KEY (client_id, scope_id, grant_id)
);
