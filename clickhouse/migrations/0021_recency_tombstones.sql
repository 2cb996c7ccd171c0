-- Tombstones in person_recency, so that the people list's walk does not wade through the ids
-- that can never be listed. A profile is listed at its most recent id; its other ids' rows (old
-- anonymous ids of people who then signed in, typically) are skipped one by one after three key
-- lookups each, and in a long history they fill whole regions of the recency order: deep pages
-- of the list scanned tens of thousands of rows (docs/benchmarks.md).
--
-- When an id is mapped into another profile whose own id was seen more recently, this view adds
-- a row for it with the same last_seen and deleted = 1 (written through the ephemeral column
-- tomb: a plain two-column insert, as the events' view and migration 0009 make, still fits). ReplacingMergeTree(last_seen) keeps the
-- later inserted of two rows of one version, so once parts merge the tombstone replaces the
-- id's row in the by_recency_live projection, where the walk skips it in SQL (deleted = 0). A
-- later event of the id has a later time and brings its row back. Readers still verify every
-- row they show (read/queries/people.py): a tombstone only saves work, it never decides.
-- In cluster mode the profile's time lives on another shard, the join finds nothing there and
-- no tombstone is written: the walk is as before.
ALTER TABLE ${db}.person_recency ADD COLUMN IF NOT EXISTS tomb UInt8 EPHEMERAL 0;

ALTER TABLE ${db}.person_recency ADD COLUMN IF NOT EXISTS deleted UInt8 MATERIALIZED tomb;

ALTER TABLE ${db}.person_recency
    ADD PROJECTION IF NOT EXISTS by_recency_live
    (SELECT last_seen, person_key, deleted ORDER BY (last_seen, person_key));

ALTER TABLE ${db}.person_recency MATERIALIZE PROJECTION by_recency_live SETTINGS mutations_sync = 1;

ALTER TABLE ${db}.person_recency DROP PROJECTION IF EXISTS by_recency SETTINGS mutations_sync = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.person_recency_tombstones_mv TO ${db}.person_recency AS
SELECT moved.id AS person_key, seen.last_seen AS last_seen, toUInt8(1) AS tomb
FROM
(
    SELECT id, argMax(profile_id, version) AS profile
    FROM ${db}.id_mapping
    GROUP BY id
) AS moved
INNER JOIN ${db}.person_seen_kv AS seen ON seen.person_key = moved.id
INNER JOIN ${db}.person_seen_kv AS owner ON owner.person_key = moved.profile
WHERE moved.profile != moved.id AND owner.last_seen > seen.last_seen;

-- The ids that already cannot be listed, then one merge so that the walk skips them at once.
INSERT INTO ${db}.person_recency (person_key, last_seen, tomb)
SELECT moved.id, seen.last_seen, 1
FROM ${db}.id_mapping_kv AS moved
INNER JOIN ${db}.person_seen_kv AS seen ON seen.person_key = moved.id
INNER JOIN ${db}.person_seen_kv AS owner ON owner.person_key = moved.profile_id
WHERE moved.profile_id != moved.id AND owner.last_seen > seen.last_seen;

OPTIMIZE TABLE ${db}.person_recency FINAL;
