-- Every id of each profile, as the identity graph decided it (topic identity-profiles, one record
-- per profile whose ids changed: the profile an id joined and the one it left). The read side's
-- "every id of this profile" was a lookup of id_mapping_by_profile, a MergeTree read of a granule
-- per key; the key-value mirror answers it in a point lookup per profile (bench/read_api.py,
-- docs/benchmarks.md). Readers still keep only the ids whose current mapping (id_mapping_kv)
-- names the profile, as they did with id_mapping_by_profile's candidates: the two topics reach
-- ClickHouse independently.
CREATE TABLE IF NOT EXISTS ${db}.profile_members
(
    profile_id String,
    ids Array(String),
    overflow Bool,
    version Int64,
    updated_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(version)
ORDER BY profile_id
SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1;

-- The newest row per profile, kept by the view like id_mapping_kv's (migration 0018): each
-- inserted block's newest row per profile against the stored one, through a key-value join.
-- identity-profiles is keyed by profile, so no two inserts race on one key.
CREATE TABLE IF NOT EXISTS ${db}.profile_members_kv
(
    profile_id String,
    ids Array(String),
    overflow Bool,
    version Int64,
    updated_at DateTime64(6, 'UTC')
)
ENGINE = EmbeddedRocksDB
PRIMARY KEY profile_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.profile_members_kv_mv TO ${db}.profile_members_kv AS
SELECT
    block.profile_id AS profile_id,
    if(stored.profile_id != '' AND stored.version > block.newest, stored.ids, block.members) AS ids,
    if(stored.profile_id != '' AND stored.version > block.newest, stored.overflow, block.over) AS overflow,
    if(stored.profile_id != '' AND stored.version > block.newest, stored.version, block.newest) AS version,
    if(stored.profile_id != '' AND stored.version > block.newest, stored.updated_at, block.updated) AS updated_at
FROM
(
    SELECT profile_id, argMax(ids, version) AS members, argMax(overflow, version) AS over,
        max(version) AS newest,
        argMax(updated_at, version) AS updated
    FROM ${db}.profile_members
    GROUP BY profile_id
) AS block
LEFT JOIN ${db}.profile_members_kv AS stored ON stored.profile_id = block.profile_id
SETTINGS join_use_nulls = 0;

-- What the graph published before this migration, rebuilt from the current mappings (an id's
-- newest row names its profile now); the view fills the mirror from it. The graph's bound on a
-- record (MEMBERS_LIMIT ids) applies here too.
INSERT INTO ${db}.profile_members
SELECT profile_id, if(length(members) > 2000, [], arraySort(members)), length(members) > 2000, newest, updated
FROM
(
    SELECT profile_id, groupArray(id) AS members, max(version) AS newest, max(updated_at) AS updated
    FROM ${db}.id_mapping_kv
    GROUP BY profile_id
);
