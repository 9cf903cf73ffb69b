-- When the automatic rotation of an app's registrar-held key is due, in
-- Unix milliseconds; NULL when none is scheduled.
ALTER TABLE service_apps ADD COLUMN next_rotation_at BIGINT;
