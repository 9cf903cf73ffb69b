-- The caller that created each app, and the audit log of mutating calls.

-- The caller id (Caller.id) that created the app. NULL for apps recorded
-- before owners were kept; only admins of the policy manage those.
ALTER TABLE service_apps ADD COLUMN owner TEXT;

-- One row per mutating call (create, register, grant, revoke, rotate, add
-- key, retire key, delete), whether it succeeded or not. Rows are never
-- changed or removed: the triggers below reject UPDATE, DELETE and
-- TRUNCATE.
CREATE TABLE audit_events (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Unix milliseconds when the call finished.
    occurred_at      BIGINT NOT NULL,
    caller_id        TEXT NOT NULL,
    -- The RPC's name, such as 'GrantScopes'.
    operation        TEXT NOT NULL,
    -- Empty when the call failed before an app was known.
    client_id        TEXT NOT NULL,
    -- JSON arrays of strings, kept as TEXT like the SQLite schema.
    scope_ids        TEXT NOT NULL,
    kids             TEXT NOT NULL,
    -- The gRPC status code name: 'OK', 'PERMISSION_DENIED', ...
    status_code      TEXT NOT NULL,
    -- The status message of a failed call; empty on success.
    message          TEXT NOT NULL,
    -- JSON array of the X-Okta-Request-Id of every Okta response the call
    -- received, in order.
    okta_request_ids TEXT NOT NULL
);

CREATE INDEX audit_events_by_client ON audit_events (client_id, id);

CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
