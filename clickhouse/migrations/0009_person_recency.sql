-- The people list, most recently seen first, by keyset: per insert, each person_key's newest
-- event time, ordered by (last_seen, person_key). Older rows of a person stay behind (a
-- ReplacingMergeTree only collapses equal keys), so readers walk the table from the top and keep
-- a row only when it is its person_key's newest time (max over events_by_person_time) and that
-- person_key is the most recent id of its profile (ids resolved through id_mapping).
CREATE TABLE IF NOT EXISTS ${db}.person_recency
(
    last_seen DateTime64(6, 'UTC'),
    person_key String
)
ENGINE = ReplacingMergeTree
ORDER BY (last_seen, person_key)
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.person_recency_mv TO ${db}.person_recency AS
SELECT max(timestamp) AS last_seen, person_key
FROM ${db}.events
WHERE person_key != ''
GROUP BY person_key;

INSERT INTO ${db}.person_recency
SELECT max(timestamp) AS last_seen, person_key
FROM ${db}.events
WHERE person_key != ''
GROUP BY person_key;
