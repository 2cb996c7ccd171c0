-- Events the gateway refused, with the reason (topic rejected, avro/schemas/rejected.v1.avsc):
-- the "debugger" of what senders got wrong. Append-only; the sink is at-least-once, so a crash
-- can repeat a few rows (retried inserts are still deduplicated by their token).
CREATE TABLE IF NOT EXISTS ${db}.rejected_events
(
    received_at DateTime64(6, 'UTC'),
    code LowCardinality(String),
    message String,
    path LowCardinality(String),
    batch_index Nullable(Int32),
    source_id String,
    payload String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY received_at
SETTINGS non_replicated_deduplication_window = 1000;
