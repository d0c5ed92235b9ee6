-- Whether a device is meant to be monitored: set by a start, cleared by a stop. The
-- master re-homes a wanted device whose server left the cluster.
ALTER TABLE devices ADD COLUMN monitoring_wanted BOOLEAN NOT NULL DEFAULT 0;
UPDATE devices SET monitoring_wanted = 1
    WHERE id IN (SELECT device_id FROM assignments WHERE server_id IS NOT NULL);
