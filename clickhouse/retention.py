"""Retention: events older than ``FEEDHOUSE_RETENTION_DAYS`` are dropped, whole parts at a time.

A TTL on the event-time column of every table that keeps events (``events`` and the read side's
lookup tables, partitioned by month of event time; ``rejected_events`` by receipt), with
``ttl_only_drop_parts``: ClickHouse drops a part once every row in it has expired, instead of
rewriting parts row by row. Parts do not span months, so an event is kept at most its
retention plus about a month. 0 (the default) keeps everything and removes any TTL. Applied
where the schema is (``feedhouse migrate``, the sink's start, ``feedhouse dev``): the setting is
the schema's, not a migration's, so changing it needs no new migration.
"""

from __future__ import annotations

import logging

from clickhouse_connect.driver.client import Client

from feedhouse.clickhouse.client import check_identifier
from feedhouse.clickhouse.cluster import local_statement

log = logging.getLogger(__name__)

# table -> the DateTime64 column its rows expire by
RETAINED: dict[str, str] = {
    "events": "timestamp",
    "events_by_person_time": "timestamp",
    "events_by_time": "timestamp",
    "rejected_events": "received_at",
}


def apply_retention(client: Client, database: str, days: int, cluster: str = "") -> list[str]:
    """Set (or, with 0, remove) the TTL of every retained table that exists; returns them."""
    if days < 0:
        raise ValueError("retention must be 0 (keep forever) or a number of days")
    database = check_identifier(database)
    existing = {
        str(name): str(ddl)
        for name, ddl in client.query(
            "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}",
            parameters={"db": database},
        ).result_rows
    }
    changed = []

    def alter(statement: str) -> None:
        client.command(local_statement(statement, cluster) if cluster else statement)

    for table, column in RETAINED.items():
        ddl = existing.get(table)
        if ddl is None:
            continue
        if days:
            # An integer from the settings (validated above), never request data: DDL takes no
            # query parameters.
            name = f"`{database}`.`{table}`"
            alter(f"ALTER TABLE {name} MODIFY SETTING ttl_only_drop_parts = 1")
            expires = f"toDateTime({column}) + INTERVAL {int(days)} DAY"
            alter(f"ALTER TABLE {name} MODIFY TTL {expires} DELETE")
            changed.append(table)
        elif " TTL " in ddl:
            alter(f"ALTER TABLE `{database}`.`{table}` REMOVE TTL")
            changed.append(table)
    if changed:
        log.info("retention applied", extra={"days": days, "tables": changed})
    return changed
