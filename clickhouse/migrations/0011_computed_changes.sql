-- Every change of a computed value, in the order the evaluator decided them: an audience
-- member entering or exiting, a computed trait taking a new value. It is the membership
-- history analysts query and the log the senders deliver from (seq: dense, increasing, one
-- writer). Written by the evaluator with client.insert, read with ORDER BY seq.
CREATE TABLE IF NOT EXISTS ${db}.computed_changes
(
    seq UInt64,
    kind LowCardinality(String),
    definition_key LowCardinality(String),
    computation_id LowCardinality(String),
    profile_id String,
    -- Who the messages name: the profile's canonical id as its userId when it is identified,
    -- else as its anonymousId.
    user_id String,
    anonymous_id String,
    -- Audiences: member after the change. Traits: the value after / before it, as JSON text
    -- ('' when there is none).
    member UInt8,
    value String,
    previous String,
    -- 1 for the first change of (computation_id, profile_id), then 2, 3, ...: with the
    -- computation id it makes the deterministic messageId.
    change_index UInt32,
    -- The membership's last entry and exit, as of this change.
    entered_at Nullable(DateTime64(6, 'UTC')),
    exited_at Nullable(DateTime64(6, 'UTC')),
    -- What made the evaluator look: events (new events or identity changes), window (time
    -- passed), definition (backfill of a new or changed definition), deleted.
    cause LowCardinality(String),
    changed_at DateTime64(6, 'UTC'),
    message_id String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(changed_at)
ORDER BY seq
SETTINGS non_replicated_deduplication_window = 1000;

-- The newest change per (definition, profile): current values, by definition (members lists,
-- sizes, backfill diffs) ... Small granules: the evaluator looks up a few thousand random
-- profiles per pass, and each lookup reads whole granules.
CREATE TABLE IF NOT EXISTS ${db}.computed_current AS ${db}.computed_changes
ENGINE = ReplacingMergeTree(seq)
ORDER BY (computation_id, profile_id)
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.computed_current_mv TO ${db}.computed_current AS
SELECT * FROM ${db}.computed_changes;

-- ... and by profile (a profile's audiences and computed traits, incremental diffs).
CREATE TABLE IF NOT EXISTS ${db}.computed_by_profile AS ${db}.computed_changes
ENGINE = ReplacingMergeTree(seq)
ORDER BY (profile_id, computation_id)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.computed_by_profile_mv TO ${db}.computed_by_profile AS
SELECT * FROM ${db}.computed_changes;
