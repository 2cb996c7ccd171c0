-- Group traits (topic identity-groups, avro/schemas/group_state.v1.avsc). Highest version wins.
CREATE TABLE IF NOT EXISTS ${db}.group_state
(
    group_id String,
    traits String,
    trait_times String,
    version Int64,
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY group_id
SETTINGS non_replicated_deduplication_window = 1000;
