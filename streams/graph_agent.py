"""The graph agent: claims and aliases in, id -> profile mapping changes out (rules 3, 4, 9)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import faust

from avro.codec import AvroCodec
from feedhouse.settings import Settings
from streams.dead_letter import DeadLetters
from streams.graph import ALIAS, CLAIM, Edge, Node, component, resolve
from streams.metrics import CONFLICTS, MAPPING_CHANGES, MERGES


class GraphProcessor:
    """Applies one graph command to the node table and returns the mapping records to publish.

    Kept free of Faust types so it can be driven by the agent or by a test with a dict.
    """

    def __init__(self, nodes: Any) -> None:
        self.nodes = nodes  # a Faust table (or any dict-like): id -> Node JSON

    def _load(self, key: str) -> Node:
        return Node.from_json(self.nodes.get(key))

    def apply(self, command: dict[str, Any], offset: int) -> list[dict[str, Any]]:
        kind, a, b = command["kind"], command["id"], command["target"]
        if kind not in (CLAIM, ALIAS) or not b or a == b:
            return []
        edge: Edge = (int(command["timestamp"]), str(command["messageId"]), kind, a, b)
        node_a, node_b = self._load(a), self._load(b)
        added = node_a.add(edge) | node_b.add(edge)
        # Offsets at or below a node's version were processed before a restart: their
        # outputs may not have reached Kafka, so publish the component again.
        replayed = offset <= max(node_a.version, node_b.version)
        if not added and not replayed:
            return []
        loaded = {a: node_a, b: node_b}
        nodes, edges = component([a, b], lambda key: loaded.get(key) or self._load(key))
        resolution = resolve(edges)
        now = time.time_ns() // 1000
        records: list[dict[str, Any]] = []
        for key, node in nodes.items():
            profile = resolution.profiles.get(key, key)
            conflicts = resolution.conflicts.get(key, ())
            changed = profile != node.profile or conflicts != node.conflicts
            if changed:
                if (node.profile is not None and profile != node.profile) or (
                    node.profile is None and profile != key
                ):
                    MERGES.inc()
                CONFLICTS.inc(len(set(conflicts) - set(node.conflicts)))
                node.profile, node.conflicts, node.version = profile, conflicts, offset
            if changed or key in loaded:
                self.nodes[key] = node.to_json()  # re-assign: in-place changes never reach the changelog
            if changed or replayed:
                records.append(
                    {
                        "id": key,
                        "profileId": profile,
                        "version": node.version,
                        "conflicts": list(conflicts),
                        "updatedAt": now,
                    }
                )
        MAPPING_CHANGES.inc(len(records))
        return records


def register_graph_agent(app: faust.App, settings: Settings, dead_letters: DeadLetters) -> None:
    commands = AvroCodec("identity_command")
    mappings = AvroCodec("id_mapping")
    source = app.topic(
        settings.topic("identity-graph"),
        key_type=bytes,
        value_type=bytes,
        value_serializer="raw",
        partitions=1,
    )
    sink = app.topic(settings.topic("identity-mapping"), key_serializer="raw", value_serializer="raw")
    table = app.Table("identity-graph-nodes", default=None, partitions=1)
    processor = GraphProcessor(table)

    @app.agent(source, name="identity-graph")
    async def graph(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            command = await dead_letters.decode(commands, event, "identity-graph")
            if command is not None:
                for record in processor.apply(command, event.message.offset):
                    await sink.send(key=record["id"].encode(), value=mappings.encode(record))
            yield None
