DROP VIEW IF EXISTS ${db}.person_recency_tombstones_mv;
ALTER TABLE ${db}.person_recency DELETE WHERE deleted = 1 SETTINGS mutations_sync = 1;
ALTER TABLE ${db}.person_recency
    ADD PROJECTION IF NOT EXISTS by_recency
    (SELECT last_seen, person_key ORDER BY (last_seen, person_key));
ALTER TABLE ${db}.person_recency MATERIALIZE PROJECTION by_recency SETTINGS mutations_sync = 1;
ALTER TABLE ${db}.person_recency DROP PROJECTION IF EXISTS by_recency_live SETTINGS mutations_sync = 1;
ALTER TABLE ${db}.person_recency DROP COLUMN IF EXISTS deleted;
ALTER TABLE ${db}.person_recency DROP COLUMN IF EXISTS tomb;
