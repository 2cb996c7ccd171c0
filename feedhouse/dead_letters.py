"""The dead-letter topic: records a consumer can never process, kept with where they came from.

The record's key and value are the original bytes, untouched, so it can be replayed once the
cause is fixed; headers say where it came from and why it was set aside:
``feedhouse.component``, ``feedhouse.source.topic``, ``.partition``, ``.offset``,
``feedhouse.error``. Every consumer (sink, identity router, identity agents) sends them through
this module, so one reader handles all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from feedhouse import metrics
from feedhouse.kafka import producer_config
from feedhouse.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record set aside: its original key and value, its origin, and why."""

    key: bytes | None
    value: bytes
    topic: str
    partition: int
    offset: int
    error: str

    @classmethod
    def of(cls, message: Message, error: str) -> DeadLetter:
        return cls(
            message.key(),
            message.value() or b"",
            message.topic() or "",
            message.partition() or 0,
            message.offset() or 0,
            error,
        )

    def headers(self, component: str) -> dict[str, str | bytes | None]:
        return {
            "feedhouse.component": component.encode(),
            "feedhouse.source.topic": self.topic.encode(),
            "feedhouse.source.partition": str(self.partition).encode(),
            "feedhouse.source.offset": str(self.offset).encode(),
            "feedhouse.error": self.error[:2000].encode(),
        }


class DeadLetterError(RuntimeError):
    """Kafka did not acknowledge every dead letter: what produced them must not be committed."""


class DeadLetters:
    """Produces dead letters of ``component``.

    With ``producer`` given, records go through it and its owner flushes it before committing
    (the identity agents' output producer). Without, :meth:`send` uses a producer of its own
    and returns only once Kafka acknowledged every record.
    """

    def __init__(self, settings: Settings, component: str, producer: Producer | None = None) -> None:
        self.topic = settings.topic("dead-letter")
        self.component = component
        self.timeout = max(1.0, settings.produce_timeout_ms / 1000 + 1)
        self._settings = settings
        self._shared = producer
        self._own: Producer | None = None
        self._errors: list[KafkaError] = []

    def produce(self, letter: DeadLetter) -> None:
        """Queue one dead letter on the shared producer (the owner flushes before committing)."""
        assert self._shared is not None, "produce() needs a shared producer; use send()"
        self._shared.produce(self.topic, letter.value, letter.key, headers=letter.headers(self.component))
        metrics.DEAD_LETTERS.labels(self.component).inc()
        log.error(
            "record sent to the dead-letter topic",
            extra={
                "topic": letter.topic,
                "partition": letter.partition,
                "offset": letter.offset,
                "error": letter.error,
            },
        )

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Send ``letters`` and wait for Kafka's acknowledgement; raises :class:`DeadLetterError`."""
        if not letters:
            return
        if self._own is None:
            self._own = Producer(producer_config(self._settings, on_delivery=self._delivered))
        producer = self._own
        self._errors = []
        try:
            for letter in letters:
                producer.produce(self.topic, letter.value, letter.key, headers=letter.headers(self.component))
        except Exception as exc:  # BufferError (queue full), KafkaException (fatal producer)
            self._discard_if_fatal(exc)
            raise DeadLetterError(f"could not queue dead letters: {exc}") from exc
        remaining = producer.flush(self.timeout)
        if remaining or self._errors:
            if any(error.fatal() for error in self._errors):
                self._own = None  # an idempotent producer that failed fatally is unusable
            raise DeadLetterError(
                f"{remaining} dead letters unacknowledged, errors: {[str(e) for e in self._errors[:3]]}"
            )
        metrics.DEAD_LETTERS.labels(self.component).inc(len(letters))
        log.warning(
            "records sent to the dead-letter topic",
            extra={
                "count": len(letters),
                "topic": self.topic,
                "sources": sorted({f"{letter.topic}/{letter.partition}" for letter in letters}),
                "errors": sorted({letter.error[:200] for letter in letters})[:5],
            },
        )

    def _delivered(self, error: KafkaError | None, _message: object) -> None:
        if error is not None:
            self._errors.append(error)

    def _discard_if_fatal(self, exc: BaseException) -> None:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.fatal():
            self._own = None

    def close(self) -> None:
        if self._own is not None:
            self._own.flush(self.timeout)
            self._own = None
