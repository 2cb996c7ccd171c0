"""Groups: a group's traits (members are a search by group, see ``search``)."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from feedhouse.read.sql import one

GROUP_SQL = """
SELECT
    (SELECT argMax(traits, version) FROM group_state WHERE group_id = {group:String}) AS traits,
    (SELECT count() FROM group_state WHERE group_id = {group:String}) > 0
        OR (SELECT count() FROM id_state_by_group WHERE group_id = {group:String}) > 0 AS known
"""


def group_traits(client: Client, group_id: str) -> str | None:
    """The group's traits (JSON text, ``{}`` when none were sent); None for a group never seen."""
    traits, known = one(client, GROUP_SQL, group=group_id)
    return (traits or "{}") if known else None
