-- The people list, most recently seen first, by keyset. One row per person_key once merged
-- (ReplacingMergeTree keyed by person_key, the newest last_seen wins), with a projection of the
-- same rows ordered by (last_seen, person_key) that the list walks from the top. Merges rebuild
-- the projection from the deduplicated rows (deduplicate_merge_projection_mode = 'rebuild'), so
-- the older rows of a person, one per insert that touched them, disappear from the walk as parts
-- merge. Until then readers skip them: a row counts only when it is its person_key's newest
-- (max(last_seen) by the table's own key) and that person_key is the most recent id of its
-- profile (ids resolved through id_mapping).
CREATE TABLE IF NOT EXISTS ${db}.person_recency
(
    last_seen DateTime64(6, 'UTC'),
    person_key String,
    PROJECTION by_recency (SELECT last_seen, person_key ORDER BY (last_seen, person_key))
)
ENGINE = ReplacingMergeTree(last_seen)
ORDER BY person_key
SETTINGS deduplicate_merge_projection_mode = 'rebuild', index_granularity = 1024;

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
