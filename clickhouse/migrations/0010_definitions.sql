-- Computed traits and audiences as the admin API stores them, and what the evaluator did with
-- them. Each write is a new row; the highest version per key is the current one (read with
-- FINAL or argMax). Definitions live here rather than on a Kafka topic because every process
-- that needs them (the admin API in each gateway worker, the evaluator, the senders) already
-- talks to ClickHouse, a write is visible to every reader at once (no topic to catch up on),
-- and they sit next to the values computed from them (docs/audiences.md, "Design").
CREATE TABLE IF NOT EXISTS ${db}.definitions
(
    key String,
    kind LowCardinality(String),
    -- Stable for the life of the definition: context.personas.computation_id of its messages.
    computation_id String,
    -- 1 when created, +1 for each PUT.
    revision UInt32,
    -- The canonical definition JSON ({"key", "name", "compute" | "when", ...}).
    body String,
    deleted UInt8,
    created_at DateTime64(6, 'UTC'),
    updated_at DateTime64(6, 'UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key;

-- The evaluator marks a definition live once it computed it over all history: the row holds
-- the fingerprint (formula + the formulas it depends on) it computed. A definition whose
-- current fingerprint is not here is backfilling.
CREATE TABLE IF NOT EXISTS ${db}.computation_status
(
    computation_id String,
    fingerprint String,
    live_at DateTime64(6, 'UTC'),
    backfill_seconds Float64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY computation_id;

-- Where changes are sent. config is JSON: {"endpoint", "writeKey"} or {"url", "secret"}.
-- destination_id is new for every creation, so a re-created key starts with an initial sync.
CREATE TABLE IF NOT EXISTS ${db}.destinations
(
    key String,
    destination_id String,
    type LowCardinality(String),
    config String,
    only Array(String),
    deleted UInt8,
    created_at DateTime64(6, 'UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key;

-- How far each destination got: every change with seq <= this seq was delivered (or
-- dead-lettered); initial_done once the current members were sent.
CREATE TABLE IF NOT EXISTS ${db}.destination_cursors
(
    destination_id String,
    seq UInt64,
    initial_done UInt8,
    delivered UInt64,
    dead_lettered UInt64,
    updated_at DateTime64(6, 'UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY destination_id;

-- Small facts the evaluator keeps across restarts (the time up to which window expiries were
-- checked), by name.
CREATE TABLE IF NOT EXISTS ${db}.evaluator_state
(
    name String,
    value Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY name;
