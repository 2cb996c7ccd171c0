-- A profile's timeline, by keyset, without reading whole events (docs/schema.md, "Lookup tables
-- of the read side"). The small columns of every event ordered by (person_key, timestamp,
-- message_id): a page is the ids' key ranges below the cursor, newest first, and only the page's
-- winning rows are then read in full from `events` by primary key. Reading `events FINAL` instead
-- merged every large column of a heavy profile's whole history (242 ms for a next page at 10M).
-- A redelivered copy with another timestamp leaves a second row here; readers keep a candidate
-- only when it is the position of its message's newest receipt (events, argMax by received_at).
CREATE TABLE IF NOT EXISTS ${db}.events_by_person_time
(
    person_key String,
    timestamp DateTime64(6, 'UTC'),
    message_id String,
    received_at DateTime64(6, 'UTC'),
    type LowCardinality(String),
    event LowCardinality(String)
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (person_key, timestamp, message_id)
-- Rows are ~60 bytes and every read is a few key ranges: small granules cut what a lookup reads
-- (8,192-row granules made a 300-id lookup read ~2.5M rows).
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.events_by_person_time_mv TO ${db}.events_by_person_time AS
SELECT person_key, timestamp, message_id, received_at, type, event
FROM ${db}.events
WHERE person_key != '';

-- Events stored before this migration. Rows the view copied meanwhile are inserted twice: same
-- ordering key, so the table collapses them and readers deduplicate candidates anyway.
INSERT INTO ${db}.events_by_person_time
SELECT person_key, timestamp, message_id, received_at, type, event
FROM ${db}.events
WHERE person_key != ''
SETTINGS max_partitions_per_insert_block = 0;
