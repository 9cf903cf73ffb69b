-- Mutating Okta calls, recorded before each call is sent and finished after
-- it returns. A row still 'pending' is a call whose outcome the registrar
-- never saw (a replica crashed, or the response was lost); reconciliation
-- asks Okta what happened and finishes or fails the row. Key additions and
-- removals of rotations are not recorded here: the rotations table records
-- each of their steps.

CREATE TABLE intents (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'create_app', 'grant', 'revoke' or 'delete_app'.
    kind        TEXT NOT NULL,
    -- The app's name; set for creates, empty otherwise.
    client_name TEXT NOT NULL DEFAULT '',
    -- The app's client id; empty for a create until Okta returned it.
    client_id   TEXT NOT NULL DEFAULT '',
    -- The scope of a grant or revoke; empty otherwise.
    scope_id    TEXT NOT NULL DEFAULT '',
    -- The grant a revoke removes; empty otherwise.
    grant_id    TEXT NOT NULL DEFAULT '',
    -- private_keys.key_id of the generated key a create sends; NULL for
    -- other kinds and for creates with caller-supplied keys.
    key_id      TEXT,
    -- A create's public keys as the JSON array sent to Okta, to recognise
    -- the app it made. Never a private key.
    public_keys TEXT NOT NULL DEFAULT '[]',
    -- The caller id that will own a created app.
    owner       TEXT,
    -- Whether a create makes the app's tokens DPoP-bound, 0 or 1.
    dpop_bound  BIGINT NOT NULL DEFAULT 0,
    -- 'pending', 'done' or 'failed'.
    state       TEXT NOT NULL,
    -- Unix milliseconds.
    created_at  BIGINT NOT NULL,
    finished_at BIGINT,
    -- The call itself counts as the first attempt; every later check of a
    -- pending row adds one.
    attempts    BIGINT NOT NULL DEFAULT 1
);

CREATE INDEX intents_pending ON intents (state, client_name);
