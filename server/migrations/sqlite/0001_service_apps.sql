-- Service apps this registrar created, their public keys, and the scope
-- grants it made. Okta stays the source of truth for an app's live state;
-- these tables record what the registrar did and why.

CREATE TABLE service_apps (
    client_id   TEXT PRIMARY KEY NOT NULL,
    client_name TEXT NOT NULL,
    -- Seconds since the Unix epoch.
    issued_at   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);

CREATE INDEX service_apps_by_name ON service_apps (client_name);

CREATE TABLE app_keys (
    client_id  TEXT NOT NULL REFERENCES service_apps (client_id),
    thumbprint TEXT NOT NULL,
    kid        TEXT NOT NULL,
    -- The public JWK as JSON. Never a private key.
    public_jwk TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, thumbprint)
);

CREATE TABLE scope_grants (
    client_id  TEXT NOT NULL,
    scope_id   TEXT NOT NULL,
    grant_id   TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    revoked_at INTEGER,
    PRIMARY KEY (client_id, scope_id, grant_id)
);
