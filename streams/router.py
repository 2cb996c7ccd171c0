"""The identity router: reads every event, forwards only what can change identity.

Most events are tracks and pages that change nobody's identity. Faust's consumer path tops out
around 5k events/s per process here, so the full event stream is read by a plain
confluent-kafka consumer instead, and only identity-relevant *commands* reach the Faust agents:

* identify -> ``identify`` command (traits, Engage audience) keyed by the event's id;
* group -> ``group`` command keyed by the event's id, plus ``group_traits`` keyed by groupId;
* alias -> ``alias`` edge on the graph topic;
* any event with both a userId and an anonymousId -> ``claim`` edge on the graph topic, unless
  the same pair was forwarded recently (a logged-in visitor sends the pair on every event; the
  graph ignores repeats anyway, the cache only saves work).

:func:`commands_for` is the pure decision; :class:`RouterStage` runs it in the shared consume
loop (``feedhouse.consume``): offsets are committed only after Kafka acknowledged every command
of the batch.

Commands travel in batches (``avro/schemas/identity_batch``): one Kafka record per identity
topic partition per commit interval (25,000 events or 0.25 s), so the Faust agents pay their
per-message cost, and the changelog seal each batch needs, once per batch, not per command.
A command's partition is :func:`partition_for` of its key, the same function for every
router, so each id's state always lives in the same table partition.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Message, Producer

from feedhouse import metrics
from feedhouse.avro.codec import AvroCodec, AvroDecodeError
from feedhouse.avro.event_prefix import EventPrefixDecoder
from feedhouse.consume import Batch, BatchConsumer
from feedhouse.ids import real_id
from feedhouse.kafka import producer_config
from feedhouse.privacy.deletions import DeletedIds, run_once_loaded
from feedhouse.retry import Backoff, Wait, retry
from feedhouse.settings import Settings
from feedhouse.streams.metrics import ROUTED, ROUTER_EVENTS

log = logging.getLogger(__name__)

COMMANDS = "identity-commands"
GRAPH = "identity-graph"
# Versions of identity outputs are offset * MAX_BATCH + position in the batch.
MAX_BATCH = 10_000


_IDENTITY_CALLS = frozenset({"identify", "group", "alias"})


def partition_for(key: str, partitions: int) -> int:
    """The identity-topic partition of a command key (stable across processes and releases)."""
    return zlib.crc32(key.encode()) % partitions


def version_of(offset: int, position: int) -> int:
    """Monotonic version of the output of the command at ``position`` in the batch at ``offset``."""
    return offset * MAX_BATCH + position


@dataclass(frozen=True, slots=True)
class Command:
    """One record for an identity topic: which topic (logical name), its key, its fields."""

    topic: str
    key: str
    record: dict[str, Any]


def audience_key(context: str | None) -> str | None:
    """Engage audience identifies carry ``context.personas.computation_class == "audience"``."""
    if not context or "personas" not in context:
        return None
    personas = orjson.loads(context).get("personas")
    if isinstance(personas, dict) and personas.get("computation_class") == "audience":
        key = personas.get("computation_key")
        return key if isinstance(key, str) and key else None
    return None


def _command(topic: str, key: str, kind: str, event: Mapping[str, Any], **fields: Any) -> Command:
    record = {
        "kind": kind,
        "id": key,
        "target": None,
        "traits": None,
        "audience": None,
        "timestamp": event["timestamp"],
        "messageId": event["messageId"],
    }
    record.update(fields)
    return Command(topic, key, record)


def commands_for(event: Mapping[str, Any], placeholders: frozenset[str]) -> list[Command]:
    """The identity commands one event implies (most events imply none)."""
    kind = event["type"]
    if kind not in _IDENTITY_CALLS and (event["userId"] is None or event["anonymousId"] is None):
        return []  # the common case: a track/page/screen that cannot link anyone
    user = real_id(event["userId"], placeholders)
    anonymous = real_id(event["anonymousId"], placeholders)
    own_id = user or anonymous
    commands: list[Command] = []
    if kind == "identify" and own_id is not None:
        audience = audience_key(event["context"])
        if event["traits"] not in (None, "{}") or audience is not None:
            commands.append(
                _command(
                    COMMANDS, own_id, "identify", event, traits=event["traits"] or "{}", audience=audience
                )
            )
    elif kind == "group" and own_id is not None and event["groupId"]:
        group_id = event["groupId"]
        commands.append(_command(COMMANDS, own_id, "group", event, target=group_id))
        if event["traits"] not in (None, "{}"):
            commands.append(_command(COMMANDS, group_id, "group_traits", event, traits=event["traits"]))
    elif kind == "alias":
        previous = real_id(event["previousId"], placeholders)
        if previous is not None and user is not None and previous != user:
            commands.append(_command(GRAPH, previous, "alias", event, target=user))
    if user is not None and anonymous is not None and user != anonymous:
        commands.append(_command(GRAPH, anonymous, "claim", event, target=user))
    return commands


class PairCache:
    """The earliest (timestamp, messageId) forwarded per (anonymousId, userId) claim, bounded.

    A claim only matters in its earliest occurrence by event time (the graph keeps that one),
    so a repeat is skipped unless it is *earlier* than what was forwarded: a late-arriving old
    event still reaches the graph. Two generations of dicts bound the memory.
    """

    def __init__(self, size: int = 200_000) -> None:
        self._size = size
        self._young: dict[tuple[str, str], tuple[int, str]] = {}
        self._old: dict[tuple[str, str], tuple[int, str]] = {}

    def covers(self, pair: tuple[str, str], stamp: tuple[int, str]) -> bool:
        """True when a claim at least as early as ``stamp`` was forwarded; remembers ``stamp``."""
        known = self._young.get(pair) or self._old.get(pair)
        if known is not None and known <= stamp:
            self._young[pair] = known
            return True
        self._young[pair] = stamp
        if len(self._young) >= self._size:
            self._old, self._young = self._young, {}
        return False


Pending = dict[tuple[str, int], list[dict[str, Any]]]  # (logical topic, partition) -> commands


class UnacknowledgedCommands(RuntimeError):
    """Kafka has not acknowledged every identity command of a batch yet."""


class RouterStage:
    """Decode the identity prefix of each event; a batch's commands produced, then acknowledged."""

    def __init__(self, settings: Settings, deleted: DeletedIds | None = None) -> None:
        self.settings = settings
        self.deleted = deleted
        self.events = EventPrefixDecoder()
        self.batch_codec = AvroCodec("identity_batch")
        self.topics = {COMMANDS: settings.topic(COMMANDS), GRAPH: settings.topic(GRAPH)}
        self.partitions = {COMMANDS: settings.events_partitions, GRAPH: 1}
        self.cache = PairCache()
        self.producer = Producer(producer_config(settings, **{"linger.ms": 5}))

    def open(self) -> Pending:
        return {}

    def add(self, message: Message, batch: Batch[Pending]) -> None:
        """Decode one event and queue its commands (or reject it to the dead-letter topic)."""
        try:
            event = self.events.decode(message.value() or b"")
            commands = commands_for(event, self.settings.placeholder_ids)
        except (AvroDecodeError, orjson.JSONDecodeError, KeyError, AttributeError) as exc:
            batch.reject(message, repr(exc))
            return
        if self.deleted is not None and self.deleted.drops_event(
            (event["userId"], event["anonymousId"], event["previousId"]), event["timestamp"], None
        ):
            # A deleted person's old event (a replay, a duplicate): no identity from it.
            metrics.child(metrics.DELETED_DROPPED, "identity-router").inc()
            return
        pending = batch.payload
        for command in commands:
            record = command.record
            if record["kind"] == "claim" and self.cache.covers(
                (record["id"], record["target"]), (record["timestamp"], record["messageId"])
            ):
                continue
            partition = partition_for(command.key, self.partitions[command.topic])
            pending.setdefault((command.topic, partition), []).append(record)

    def write(self, batch: Batch[Pending], wait: Wait) -> None:
        """Commands must be durable before the events that produced them are marked done."""
        routed: dict[str, int] = {}
        for (topic, partition), commands in batch.payload.items():
            for start in range(0, len(commands), MAX_BATCH):
                value = self.batch_codec.encode({"commands": commands[start : start + MAX_BATCH]})
                self.producer.produce(self.topics[topic], value, None, partition=partition)
            for command in commands:
                routed[command["kind"]] = routed.get(command["kind"], 0) + 1
        retry(
            self._flush,
            what="identity commands",
            retry_on=lambda exc: isinstance(exc, UnacknowledgedCommands),
            wait=wait,
            backoff=Backoff(initial=0.1, maximum=2.0),
        )
        for kind, count in routed.items():  # per batch: labelled metrics are slow per event
            ROUTED.labels(kind).inc(count)
        ROUTER_EVENTS.inc(len(batch))

    def _flush(self) -> None:
        remaining = self.producer.flush(5.0)
        if remaining:
            raise UnacknowledgedCommands(f"{remaining} identity commands unacknowledged")

    def discard(self) -> None:
        # Claims of an abandoned batch may never have reached Kafka: forget what was forwarded.
        self.forget_claims()

    def forget_claims(self) -> None:
        self.cache = PairCache()


class Router:
    """The router's consume -> route -> produce -> commit loop; runs on a thread of the worker."""

    def __init__(self, settings: Settings, commit_every: int = 25_000, commit_seconds: float = 0.25) -> None:
        # A deletion forgets the claims forwarded so far: a deleted person's device seen again
        # after a DELETE_ONLY must link to the new profile.
        self.deleted = DeletedIds(settings, on_change=lambda: self.stage.forget_claims())
        self.stage = RouterStage(settings, self.deleted)
        self.group_id = f"{settings.topic_prefix}identity-router"
        # Flush + synchronous commit cost a round trip each: do them per many events, not per
        # fetch. Larger fetches mean fewer broker requests (the broker's cost follows those).
        self.loop = BatchConsumer(
            settings,
            self.stage,
            component="identity-router",
            group_id=self.group_id,
            topics=[settings.topic("events")],
            max_messages=commit_every,
            max_seconds=commit_seconds,
            fetch_max=5000,
            consumer_overrides={"fetch.min.bytes": 65536, "queued.min.messages": 20000},
        )

    def run(self, stop: threading.Event) -> None:
        """Route until ``stop``; routing starts once the deleted ids are known."""
        run_once_loaded(self.deleted, stop, self.loop.run)
