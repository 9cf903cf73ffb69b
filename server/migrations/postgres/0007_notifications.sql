-- Replicas learn of each other's changes through NOTIFY on the channel
-- 'registrar_changes'. The payload is the schema name, a space, and the
-- client id of the app whose key state or rotation plan changed, so that
-- registrar deployments in different schemas of one database ignore each
-- other. NOTIFY is sent when the transaction commits, and repeats within
-- one transaction are folded into one.

CREATE FUNCTION registrar_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('registrar_changes', TG_TABLE_SCHEMA || ' ' || NEW.client_id);
    RETURN NULL;
END;
$$;

-- A new revision: a rotation step, an added or removed key, a deletion.
CREATE TRIGGER service_apps_changed AFTER UPDATE OF revision, deleted_at, next_rotation_at ON service_apps
    FOR EACH ROW EXECUTE FUNCTION registrar_notify_change();

-- A rotation started or moved to its next step, or its next step was
-- brought forward: the replica that runs rotations looks again.
CREATE TRIGGER rotations_changed AFTER INSERT OR UPDATE ON rotations
    FOR EACH ROW EXECUTE FUNCTION registrar_notify_change();
