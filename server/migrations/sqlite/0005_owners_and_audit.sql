-- The caller that created each app, and the audit log of mutating calls.

-- The caller id (Caller.id) that created the app. NULL for apps recorded
-- before owners were kept; only admins of the policy manage those.
ALTER TABLE service_apps ADD COLUMN owner TEXT;

-- One row per mutating call (create, register, grant, revoke, rotate, add
-- key, retire key, delete), whether it succeeded or not. Rows are never
-- changed or removed: the triggers below reject UPDATE and DELETE.
CREATE TABLE audit_events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Unix milliseconds when the call finished.
    occurred_at      INTEGER NOT NULL,
    caller_id        TEXT NOT NULL,
    -- The RPC's name, such as 'GrantScopes'.
    operation        TEXT NOT NULL,
    -- Empty when the call failed before an app was known.
    client_id        TEXT NOT NULL,
    -- JSON arrays of strings.
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

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
