-- Each person_key's newest event time as a key-value table, for the read side's "when was each
-- of these ids last seen" (the people list checks every row it shows against it, the searches
-- rank by it). person_recency answers it too, but a MergeTree lookup of a page's ids costs
-- several times a key-value one in chDB (bench/read_api.py, docs/benchmarks.md).
--
-- Filled by a materialized view on events that keeps the greatest time itself: each inserted
-- block's newest time per person_key is compared with the stored one (a key-value join, one
-- point lookup per key) and the later of the two is written, so a replayed or late event never
-- moves it back. events is partitioned and inserted by person_key, so two inserts never race
-- on one key. A deletion removes a person's row at once (privacy/executor.py).
CREATE TABLE IF NOT EXISTS ${db}.person_seen_kv
(
    person_key String,
    last_seen DateTime64(6, 'UTC')
)
ENGINE = EmbeddedRocksDB
PRIMARY KEY person_key;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.person_seen_kv_mv TO ${db}.person_seen_kv AS
SELECT
    block.person_key AS person_key,
    if(stored.person_key != '' AND stored.last_seen > block.newest, stored.last_seen, block.newest) AS last_seen
FROM
(
    SELECT person_key, max(timestamp) AS newest
    FROM ${db}.events
    WHERE person_key != ''
    GROUP BY person_key
) AS block
LEFT JOIN ${db}.person_seen_kv AS stored ON stored.person_key = block.person_key
SETTINGS join_use_nulls = 0;

INSERT INTO ${db}.person_seen_kv
SELECT person_key, max(last_seen)
FROM ${db}.person_recency
GROUP BY person_key
SETTINGS apply_mutations_on_fly = 1;
