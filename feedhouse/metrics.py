"""Prometheus metrics of every Feedhouse process (one registry; each process exports its own).

Names follow Prometheus conventions: ``feedhouse_<component>_<what>_<unit>``.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# Gateway
REQUESTS = Counter(
    "feedhouse_gateway_requests_total", "HTTP requests by route and status.", ["route", "status"]
)
EVENTS_ACCEPTED = Counter(
    "feedhouse_gateway_events_accepted_total", "Events acknowledged by Kafka.", ["type"]
)
EVENTS_REJECTED = Counter(
    "feedhouse_gateway_events_rejected_total",
    "Events refused, by reason (kept on the rejected topic).",
    ["code"],
)
PRODUCE_SECONDS = Histogram(
    "feedhouse_gateway_produce_seconds",
    "Time from first produce to the last acknowledgement of one request.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_SUPPRESSED = Counter(
    "feedhouse_gateway_events_suppressed_total",
    "Events dropped because their userId or anonymousId is suppressed (answered 200, as Segment does).",
)
DELETED_DROPPED = Counter(
    "feedhouse_deleted_records_dropped_total",
    "Records of deleted people not written again (a replay, a duplicate, a late event), by component.",
    ["component"],
)
SUPPRESSED_IDS = Gauge("feedhouse_suppressed_ids", "Ids on this process's suppression list.")
FUTURE_TIMESTAMPS = Counter(
    "feedhouse_gateway_future_timestamps_total",
    "Events whose timestamp lay too far in the future (FEEDHOUSE_MAX_FUTURE_SECONDS): stored at receivedAt.",
)
PRODUCER_REBUILDS = Counter(
    "feedhouse_gateway_producer_rebuilds_total", "Producers rebuilt after a fatal error."
)

# Consumers (identity worker, sink)
CONSUMER_LAG = Gauge(
    "feedhouse_consumer_lag", "Records behind the end of each partition.", ["group", "topic", "partition"]
)
DEAD_LETTERS = Counter(
    "feedhouse_dead_letters_total", "Records sent to the dead-letter topic.", ["component"]
)

BATCH_MESSAGES = Histogram(
    "feedhouse_consumer_batch_messages",
    "Messages per committed batch (sink: rows of every table plus dead letters), by component.",
    ["component"],
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000, 50000, 100000),
)

# Sink (Kafka -> ClickHouse)
SINK_INSERT_SECONDS = Histogram(
    "feedhouse_sink_insert_seconds",
    "Duration of one successful ClickHouse insert, by table.",
    ["table"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SINK_ROWS_INSERTED = Counter("feedhouse_sink_rows_inserted_total", "Rows inserted, by table.", ["table"])
SINK_INSERT_FAILURES = Counter(
    "feedhouse_sink_insert_failures_total",
    "Failed inserts by table and kind: retry (ClickHouse unavailable) or rows (data refused).",
    ["table", "kind"],
)

# Audiences and computed traits (evaluator) and their destinations (senders)
AUDIENCE_PASS_SECONDS = Histogram(
    "feedhouse_audiences_pass_seconds",
    "Duration of one evaluation pass (touched profiles -> changes written), by cause.",
    ["cause"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
AUDIENCE_PROFILES = Counter(
    "feedhouse_audiences_profiles_evaluated_total", "Profiles evaluated, by cause.", ["cause"]
)
AUDIENCE_CHANGES = Counter(
    "feedhouse_audiences_changes_total",
    "Changes recorded (entries, exits, new values), by kind and cause.",
    ["kind", "cause"],
)
AUDIENCE_BACKFILL_SECONDS = Gauge(
    "feedhouse_audiences_backfill_seconds",
    "Duration of the last backfill of each definition.",
    ["definition"],
)
AUDIENCE_DEFINITIONS = Gauge(
    "feedhouse_audiences_definitions",
    "Definitions known to the evaluator, by state (live, backfilling).",
    ["state"],
)
DESTINATION_MESSAGES = Counter(
    "feedhouse_destination_messages_total",
    "Messages handed to a destination (delivered) or set aside (dead_lettered), by destination.",
    ["destination", "outcome"],
)
DESTINATION_REQUESTS = Counter(
    "feedhouse_destination_requests_total",
    "HTTP requests to destinations by outcome: the status code, timeout or connection.",
    ["destination", "outcome"],
)
DESTINATION_RETRIES = Counter(
    "feedhouse_destination_retries_total", "Deliveries retried after a retryable failure.", ["destination"]
)
DESTINATION_LAG_CHANGES = Gauge(
    "feedhouse_destination_lag_changes",
    "Changes recorded but not yet delivered, by destination.",
    ["destination"],
)
DESTINATION_LAG_SECONDS = Gauge(
    "feedhouse_destination_lag_seconds",
    "Age of the oldest change not yet delivered (0 when caught up), by destination.",
    ["destination"],
)
DESTINATION_DELIVERY_SECONDS = Histogram(
    "feedhouse_destination_delivery_seconds",
    "Time from a change being recorded to its destination acknowledging it.",
    ["destination"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)


@functools.lru_cache(maxsize=4096)
def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, cached: the lookup costs microseconds on the per-request path."""
    return metric.labels(*labels)
