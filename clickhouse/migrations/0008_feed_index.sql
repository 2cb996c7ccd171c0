-- The global feed, by keyset: the small columns of every event ordered by time. `events` is
-- ordered by person, so its newest events are spread over every granule of a partition and,
-- once merged, a feed page scanned the whole month (0.3-0.5 s at 10M). Here a page is the tail
-- of the ordering key. Same dedup rule as events_by_person_time: candidates are checked
-- against the newest receipt of their message.
CREATE TABLE IF NOT EXISTS ${db}.events_by_time
(
    timestamp DateTime64(6, 'UTC'),
    message_id String,
    person_key String,
    received_at DateTime64(6, 'UTC'),
    type LowCardinality(String),
    event LowCardinality(String)
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (timestamp, message_id, person_key)
-- A feed page reads the last few hundred rows in order: small granules, little over-read.
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.events_by_time_mv TO ${db}.events_by_time AS
SELECT timestamp, message_id, person_key, received_at, type, event
FROM ${db}.events;

INSERT INTO ${db}.events_by_time
SELECT timestamp, message_id, person_key, received_at, type, event
FROM ${db}.events
SETTINGS max_partitions_per_insert_block = 0;
