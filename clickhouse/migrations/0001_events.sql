-- Every Segment call the gateway accepted (avro/schemas/event.v1.avsc), one row per messageId
-- once merged. ReplacingMergeTree only collapses duplicates when parts merge, so every query
-- that must not show a duplicate reads `events FINAL` (or a view built on it).
--
-- properties / traits / context are the JSON text the gateway stored, in String columns:
-- inserting them into ClickHouse's JSON type measured 33-40k rows/s on chDB against 85-120k
-- for String (docs/schema.md, "Free-form objects"). The *_json ALIAS columns parse them at
-- query time, so analysts can still write properties_json.revenue.
CREATE TABLE IF NOT EXISTS ${db}.events
(
    message_id String,
    type LowCardinality(String),
    user_id String,
    anonymous_id String,
    group_id String,
    previous_id String,
    event LowCardinality(String),
    name String,
    category String,
    timestamp DateTime64(6, 'UTC'),
    received_at DateTime64(6, 'UTC'),
    original_timestamp String,
    sent_at String,
    properties String,
    traits String,
    context String,
    integrations String,
    extra String,
    source_id LowCardinality(String),
    -- userId unless empty or a placeholder, else anonymousId (same rule), else '': the id the
    -- identity tables resolve to a profile at query time.
    person_key String,
    properties_json JSON ALIAS CAST(if(properties = '', '{}', properties), 'JSON'),
    traits_json JSON ALIAS CAST(if(traits = '', '{}', traits), 'JSON'),
    context_json JSON ALIAS CAST(if(context = '', '{}', context), 'JSON'),
    -- Global feeds and time-window scans skip granules whose time range cannot match.
    INDEX timestamp_minmax timestamp TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (person_key, message_id)
-- A retried insert carrying the same insert_deduplication_token is dropped, not applied twice.
SETTINGS non_replicated_deduplication_window = 1000;
