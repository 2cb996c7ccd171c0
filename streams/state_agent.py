"""The state agent: identify / group commands in, id and group state snapshots out (rules 5-8)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import faust
import orjson

from avro.codec import AvroCodec
from feedhouse.settings import Settings
from streams.dead_letter import DeadLetters
from streams.metrics import STATE_UPDATES
from streams.profile_state import IdState, apply_group, apply_identify, merge_traits, snapshot


class StateProcessor:
    """Applies one command to the id/group tables; returns ``(kind, record)`` to publish or None."""

    def __init__(self, ids: Any, groups: Any) -> None:
        self.ids = ids  # id -> IdState JSON
        self.groups = groups  # groupId -> IdState JSON (traits only)

    def apply(self, command: dict[str, Any], offset: int) -> tuple[str, dict[str, Any]] | None:
        kind, key = command["kind"], command["id"]
        stamp = (int(command["timestamp"]), str(command["messageId"]))
        table = self.groups if kind == "group_traits" else self.ids
        state = IdState.from_json(table.get(key))
        if kind == "identify":
            traits = orjson.loads(command["traits"] or "{}")
            changed = isinstance(traits, dict) and apply_identify(state, traits, stamp, command["audience"])
        elif kind == "group":
            changed = bool(command["target"]) and apply_group(state, command["target"], stamp)
        elif kind == "group_traits":
            traits = orjson.loads(command["traits"] or "{}")
            changed = isinstance(traits, dict) and merge_traits(state.traits, traits, stamp)
        else:
            return None
        # An offset at or below the state's version was applied before a restart; its
        # snapshot may have been lost with the process, so it is published again.
        if not changed and offset > state.version:
            return None
        if changed:
            state.version = offset
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


def register_state_agent(app: faust.App, settings: Settings, dead_letters: DeadLetters) -> None:
    commands = AvroCodec("identity_command")
    codecs = {"id": AvroCodec("id_state"), "group": AvroCodec("group_state")}
    source = app.topic(
        settings.topic("identity-commands"),
        key_type=bytes,
        value_type=bytes,
        value_serializer="raw",
        partitions=settings.events_partitions,
    )
    sinks = {
        "id": app.topic(settings.topic("identity-state"), key_serializer="raw", value_serializer="raw"),
        "group": app.topic(settings.topic("identity-groups"), key_serializer="raw", value_serializer="raw"),
    }
    ids = app.Table("identity-id-state", default=None, partitions=settings.events_partitions)
    groups = app.Table("identity-group-state", default=None, partitions=settings.events_partitions)
    processor = StateProcessor(ids, groups)

    @app.agent(source, name="identity-state")
    async def state(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            command = await dead_letters.decode(commands, event, "identity-state")
            if command is not None:
                try:
                    result = processor.apply(command, event.message.offset)
                except (ValueError, TypeError, KeyError) as exc:  # e.g. traits that are not JSON
                    await dead_letters.send(event, "identity-state", repr(exc))
                    result = None
                if result is not None:
                    kind, record = result
                    await sinks[kind].send(key=event.key, value=codecs[kind].encode(record))
            yield None
