-- id -> profile (topic identity-mapping, avro/schemas/id_mapping.v1.avsc). The highest version
-- per id is the current answer: read with FINAL or argMax(profile_id, version).
CREATE TABLE IF NOT EXISTS ${db}.id_mapping
(
    id String,
    profile_id String,
    version Int64,
    conflicts Array(String),
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY id
SETTINGS non_replicated_deduplication_window = 1000;

-- The same rows ordered by profile: "which ids does profile P have" is a key lookup. An id that
-- moved to another profile leaves its old (profile_id, id) row behind, so readers keep only the
-- candidates whose current mapping (id_mapping) still names P.
CREATE TABLE IF NOT EXISTS ${db}.id_mapping_by_profile
(
    id String,
    profile_id String,
    version Int64,
    conflicts Array(String),
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (profile_id, id);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.id_mapping_by_profile_mv TO ${db}.id_mapping_by_profile AS
SELECT id, profile_id, version, conflicts, updated_at
FROM ${db}.id_mapping;
