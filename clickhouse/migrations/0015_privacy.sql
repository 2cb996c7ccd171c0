-- Privacy (privacy/, docs/privacy.md).
--
-- Every id of every deleted person, with when and under which regulation. Readers mask these
-- ids at query time from the moment of the request; the executor then removes their rows from
-- every table with batched mutations (purged_at set when done). A DELETE_ONLY person may come
-- back with genuinely new events: rows whose time is after deleted_at are theirs, not masked.
CREATE TABLE IF NOT EXISTS ${db}.deleted_ids
(
    id String,
    regulation_id String,
    deleted_at DateTime64(6, 'UTC'),
    forever UInt8,
    purged_at Nullable(DateTime64(6, 'UTC')),
    version Int64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;

-- The audit trail: each regulation as requested, with its timings and what it removed (no
-- deleted data). One row per status change; the newest version per id is its state.
CREATE TABLE IF NOT EXISTS ${db}.regulations
(
    id String,
    regulation_type LowCardinality(String),
    subject_type LowCardinality(String),
    subject_ids Array(String),
    status LowCardinality(String),
    created_at DateTime64(6, 'UTC'),
    started_at Nullable(DateTime64(6, 'UTC')),
    finished_at Nullable(DateTime64(6, 'UTC')),
    reason String,
    counts Map(String, Int64),
    source LowCardinality(String),
    version Int64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id;
