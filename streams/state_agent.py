"""The state agent: identify / group commands in, id and group state snapshots out (rules 5-8)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import faust
import orjson

from feedhouse.avro.codec import AvroCodec
from feedhouse.settings import Settings
from feedhouse.streams.changelog import changelog_table
from feedhouse.streams.dead_letter import AgentDeadLetters
from feedhouse.streams.metrics import STATE_UPDATES
from feedhouse.streams.outputs import Outputs
from feedhouse.streams.overlay import TableOverlay, seal_changelogs
from feedhouse.streams.profile_state import IdState, apply_group, apply_identify, merge_traits, snapshot
from feedhouse.streams.router import version_of


class BadCommand(ValueError):
    """A command whose payload cannot be applied (e.g. traits that are not a JSON object)."""


def _traits(command: dict[str, Any]) -> dict[str, Any]:
    try:
        traits = orjson.loads(command["traits"] or "{}")
    except orjson.JSONDecodeError as exc:
        raise BadCommand(f"traits are not JSON: {exc}") from None
    if not isinstance(traits, dict):
        raise BadCommand("traits are not a JSON object")
    return traits


class StateProcessor:
    """Applies one command to the id/group tables; returns ``(kind, record)`` to publish or None."""

    def __init__(self, ids: Any, groups: Any) -> None:
        self.ids = ids  # id -> IdState JSON
        self.groups = groups  # groupId -> IdState JSON (traits only)

    def apply(self, command: dict[str, Any], version: int) -> tuple[str, dict[str, Any]] | None:
        """Apply one command; ``version`` orders commands (offset and batch position)."""
        kind, key = command["kind"], command["id"]
        if kind == "forget":
            # A deleted person (privacy.executor): the id's state goes from the table (a
            # changelog tombstone); ClickHouse rows are masked and purged by the executor.
            if self.ids.get(key) is not None:
                del self.ids[key]
            return None
        stamp = (int(command["timestamp"]), str(command["messageId"]))
        table = self.groups if kind == "group_traits" else self.ids
        state = IdState.from_json(table.get(key))
        if kind == "identify":
            changed = apply_identify(state, _traits(command), stamp, command["audience"])
        elif kind == "group":
            changed = bool(command["target"]) and apply_group(state, command["target"], stamp)
        elif kind == "group_traits":
            changed = merge_traits(state.traits, _traits(command), stamp)
        else:
            raise BadCommand(f"unknown command kind {kind!r}")
        # A version at or below the state's version was applied before a restart; its
        # snapshot may have been lost with the process, so it is published again.
        if not changed and version > state.version:
            return None
        if changed:
            state.version = version
            table[key] = state.to_json()  # re-assign: in-place changes never reach the changelog
        view = snapshot(state)
        now = time.time_ns() // 1000
        if kind == "group_traits":
            STATE_UPDATES.labels("group").inc()
            return "group", {
                "groupId": key,
                "traits": orjson.dumps(view["traits"]).decode(),
                "traitTimes": orjson.dumps(view["traitTimes"]).decode(),
                "version": state.version,
                "updatedAt": now,
            }
        STATE_UPDATES.labels("id").inc()
        return "id", {
            "id": key,
            "traits": orjson.dumps(view["traits"]).decode(),
            "traitTimes": orjson.dumps(view["traitTimes"]).decode(),
            "groupId": view["groupId"],
            "groupTime": view["groupTime"],
            "audiences": orjson.dumps(view["audiences"]).decode(),
            "version": state.version,
            "updatedAt": now,
        }


def register_state_agent(
    app: faust.App, settings: Settings, dead_letters: AgentDeadLetters, outputs: Outputs
) -> None:
    batches = AvroCodec("identity_batch")
    codecs = {"id": AvroCodec("id_state"), "group": AvroCodec("group_state")}
    source = app.topic(
        settings.topic("identity-commands"),
        key_type=bytes,
        value_type=bytes,
        value_serializer="raw",
        partitions=settings.events_partitions,
    )
    sinks = {"id": settings.topic("identity-state"), "group": settings.topic("identity-groups")}
    partitions = settings.events_partitions
    ids = TableOverlay(changelog_table(app, outputs, "identity-id-state", partitions))
    groups = TableOverlay(changelog_table(app, outputs, "identity-group-state", partitions))
    processor = StateProcessor(ids, groups)

    @app.agent(source, name="identity-state")
    async def state(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        # Event by event: table writes need Faust's current-event context (take() loses it).
        async for event in stream.events():
            batch = dead_letters.decode(batches, event, "identity-state")
            if batch is not None:
                offset = event.message.offset
                for position, command in enumerate(batch["commands"]):
                    try:
                        result = processor.apply(command, version_of(offset, position))
                    except BadCommand as exc:
                        dead_letters.send(event, "identity-state", f"command {position}: {exc}")
                        continue
                    if result is not None:
                        kind, record = result
                        key = record["groupId"] if kind == "group" else record["id"]
                        outputs.publish(sinks[kind], key.encode(), codecs[kind].encode(record))
                touched = [overlay for overlay in (ids, groups) if overlay.flush()]
                if touched and settings.changelog_seals:
                    seal_changelogs(outputs, touched, version_of(offset, 0))
            yield None
