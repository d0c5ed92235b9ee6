ALTER TABLE devices DROP COLUMN monitoring_wanted;
