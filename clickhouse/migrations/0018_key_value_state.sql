-- Key-value mirrors of the newest row per id of id_mapping and id_state, for the read side's
-- point lookups (an id's profile, a profile's ids' current mappings and states). A MergeTree key
-- lookup reads a granule per part and pays the pipeline's setup; EmbeddedRocksDB answers
-- `id = x` and `id IN (...)` from its own index (bench/read_api.py, docs/benchmarks.md).
--
-- Each mirror is filled by a materialized view on its source table. An insert is an upsert, so
-- the view keeps the higher version itself: each inserted block's newest row per id is compared
-- with the stored one (a key-value join: one point lookup per id) and the newer of the two is
-- written. The source tables stay the truth (analyst views, privacy's purge); the mirrors are
-- rebuilt from them below, and privacy's deletions remove their rows like the sources'.
CREATE TABLE IF NOT EXISTS ${db}.id_mapping_kv
(
    id String,
    profile_id String,
    version Int64,
    updated_at DateTime64(6, 'UTC')
)
ENGINE = EmbeddedRocksDB
PRIMARY KEY id;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.id_mapping_kv_mv TO ${db}.id_mapping_kv AS
SELECT
    block.id AS id,
    if(stored.id != '' AND stored.version > block.newest, stored.profile_id, block.profile) AS profile_id,
    if(stored.id != '' AND stored.version > block.newest, stored.version, block.newest) AS version,
    if(stored.id != '' AND stored.version > block.newest, stored.updated_at, block.updated) AS updated_at
FROM
(
    SELECT id, argMax(profile_id, version) AS profile, max(version) AS newest,
        argMax(updated_at, version) AS updated
    FROM ${db}.id_mapping
    GROUP BY id
) AS block
LEFT JOIN ${db}.id_mapping_kv AS stored ON stored.id = block.id
SETTINGS join_use_nulls = 0;

INSERT INTO ${db}.id_mapping_kv
SELECT id, argMax(profile_id, version), max(version), argMax(updated_at, version)
FROM ${db}.id_mapping
GROUP BY id;

CREATE TABLE IF NOT EXISTS ${db}.id_state_kv
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
ENGINE = EmbeddedRocksDB
PRIMARY KEY id;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.id_state_kv_mv TO ${db}.id_state_kv AS
SELECT id, winner.1 AS traits, winner.2 AS trait_times, winner.3 AS group_id, winner.4 AS group_time,
    winner.5 AS audiences, winner.6 AS version, winner.7 AS updated_at
FROM
(
    SELECT
        block.id AS id,
        if(stored.id != '' AND stored.version > block.newest,
            (stored.traits, stored.trait_times, stored.group_id, stored.group_time, stored.audiences,
             stored.version, stored.updated_at),
            block.row) AS winner
    FROM
    (
        SELECT id, max(version) AS newest,
            argMax((traits, trait_times, group_id, group_time, audiences, version, updated_at), version) AS row
        FROM ${db}.id_state
        GROUP BY id
    ) AS block
    LEFT JOIN ${db}.id_state_kv AS stored ON stored.id = block.id
)
SETTINGS join_use_nulls = 0;

INSERT INTO ${db}.id_state_kv
SELECT id, state.1, state.2, state.3, state.4, state.5, state.6, state.7
FROM
(
    SELECT id,
        argMax((traits, trait_times, group_id, group_time, audiences, version, updated_at), version) AS state
    FROM ${db}.id_state
    GROUP BY id
);
