"""Prometheus metrics of the identity worker (router and agents)."""

from __future__ import annotations

from prometheus_client import Counter

ROUTER_EVENTS = Counter("feedhouse_identity_router_events_total", "Events read by the identity router.")
ROUTED = Counter("feedhouse_identity_commands_total", "Identity commands forwarded, by kind.", ["kind"])
MAPPING_CHANGES = Counter("feedhouse_identity_mapping_changes_total", "id -> profile changes published.")
MERGES = Counter("feedhouse_identity_merges_total", "Ids that moved to another profile (links and aliases).")
CONFLICTS = Counter(
    "feedhouse_identity_conflicts_total",
    "Claims refused because the anonymous id already belongs to another identified profile.",
)
STATE_UPDATES = Counter(
    "feedhouse_identity_state_updates_total", "Id/group state snapshots published, by kind.", ["kind"]
)
