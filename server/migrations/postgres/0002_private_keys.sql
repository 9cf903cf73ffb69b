-- Private keys the registrar generated, encrypted with AES-256-GCM under
-- the master key. A key is stored (status 'pending', no client_id) before
-- its public half is sent to Okta, so a crash in between loses nothing.

CREATE TABLE private_keys (
    -- The registrar's own id of the key; also the AES-GCM associated data.
    key_id     TEXT PRIMARY KEY NOT NULL,
    -- NULL until Okta registered the public half.
    client_id  TEXT,
    -- 'assertion' signs client assertions; 'dpop' signs DPoP proofs.
    purpose    TEXT NOT NULL,
    kid        TEXT NOT NULL,
    -- The JWS algorithm, 'RS256' or 'ES256'.
    algorithm  TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    -- The 12-byte nonce followed by the ciphertext of the private key DER.
    sealed     BYTEA NOT NULL,
    -- 'pending', 'active' or 'retired'.
    status     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX private_keys_by_client ON private_keys (client_id, purpose, status);

-- 0 or 1, as in the SQLite schema, so that one query text serves both.
ALTER TABLE service_apps ADD COLUMN dpop_bound BIGINT NOT NULL DEFAULT 0;
