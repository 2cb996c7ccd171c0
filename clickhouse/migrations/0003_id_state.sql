-- Per-id profile state (topic identity-state, avro/schemas/id_state.v1.avsc): traits with the
-- event time of each value, latest group, Engage audiences. A profile's state is the merge of
-- its ids' rows (see the profiles view). Highest version per id wins.
CREATE TABLE IF NOT EXISTS ${db}.id_state
(
    id String,
    traits String,
    trait_times String,
    group_id String,
    group_time Nullable(DateTime64(6, 'UTC')),
    audiences String,
    version Int64,
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id
SETTINGS non_replicated_deduplication_window = 1000;

-- Lookup tables filled by materialized views. Each keeps rows that may be stale (an id left the
-- group, a trait changed value): they give candidate ids, and readers verify each candidate
-- against the current id_state row (FINAL / argMax(..., version)).

CREATE TABLE IF NOT EXISTS ${db}.id_state_by_group
(
    group_id String,
    id String,
    group_time Nullable(DateTime64(6, 'UTC')),
    version Int64,
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (group_id, id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.id_state_by_group_mv TO ${db}.id_state_by_group AS
SELECT group_id, id, group_time, version, updated_at
FROM ${db}.id_state
WHERE group_id != '';

-- One row per scalar trait (string, number or boolean, rendered as text: strings unquoted,
-- numbers and booleans as their JSON text), so "people whose email = x" is an index lookup.
CREATE TABLE IF NOT EXISTS ${db}.id_state_by_trait
(
    key String,
    value String,
    id String,
    version Int64,
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (key, value, id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.id_state_by_trait_mv TO ${db}.id_state_by_trait AS
SELECT
    kv.1 AS key,
    if(JSONType(kv.2) = 'String', JSONExtractString(kv.2), kv.2) AS value,
    id,
    version,
    updated_at
FROM ${db}.id_state
ARRAY JOIN JSONExtractKeysAndValuesRaw(traits) AS kv
WHERE JSONType(kv.2) IN ('String', 'Int64', 'UInt64', 'Double', 'Bool');

-- One row per (audience, id) from the audiences object: key -> {member, time, enteredAt, exitedAt}.
CREATE TABLE IF NOT EXISTS ${db}.id_state_by_audience
(
    audience String,
    id String,
    member UInt8,
    time Nullable(DateTime64(6, 'UTC')),
    entered_at Nullable(DateTime64(6, 'UTC')),
    exited_at Nullable(DateTime64(6, 'UTC')),
    version Int64,
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (audience, id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.id_state_by_audience_mv TO ${db}.id_state_by_audience AS
SELECT
    kv.1 AS audience,
    id,
    toUInt8(JSONExtractBool(kv.2, 'member')) AS member,
    fromUnixTimestamp64Micro(JSONExtract(kv.2, 'time', 'Nullable(Int64)'), 'UTC') AS time,
    fromUnixTimestamp64Micro(JSONExtract(kv.2, 'enteredAt', 'Nullable(Int64)'), 'UTC') AS entered_at,
    fromUnixTimestamp64Micro(JSONExtract(kv.2, 'exitedAt', 'Nullable(Int64)'), 'UTC') AS exited_at,
    version,
    updated_at
FROM ${db}.id_state
ARRAY JOIN JSONExtractKeysAndValuesRaw(audiences) AS kv;
