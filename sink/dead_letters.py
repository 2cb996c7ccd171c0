"""The sink's side of the dead-letter topic: send, then wait until Kafka has every record.

Records and headers are :mod:`feedhouse.deadletter`'s (original key and value untouched; headers
``feedhouse.component``, ``feedhouse.source.topic``, ``.partition``, ``.offset``,
``feedhouse.error``), shared with the identity workers so one reader handles both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import KafkaError, Producer

from feedhouse.deadletter import send_to_dead_letter
from feedhouse.kafka import producer_config
from feedhouse.settings import Settings
from feedhouse.sink.batch import Rejected

COMPONENT = "sink"
log = logging.getLogger(__name__)


class DeadLetterError(RuntimeError):
    """Kafka did not acknowledge every dead letter: the batch must not be committed."""


class DeadLetterOutbox:
    """Produces dead letters with an idempotent producer and confirms their delivery."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic("dead-letter")
        self.timeout = max(1.0, settings.produce_timeout_ms / 1000 + 1)
        self._settings = settings
        self._producer: Producer | None = None
        self._errors: list[KafkaError] = []

    def _delivered(self, error: KafkaError | None, _message: object) -> None:
        if error is not None:
            self._errors.append(error)

    def send(self, rejected: Sequence[Rejected]) -> None:
        """Send ``rejected`` and wait for Kafka's acknowledgement; raises :class:`DeadLetterError`."""
        if self._producer is None:
            self._producer = Producer(producer_config(self._settings, on_delivery=self._delivered))
        self._errors = []
        try:
            for item in rejected:
                send_to_dead_letter(self._producer, self.topic, COMPONENT, item.message, item.error)
        except Exception as exc:  # BufferError (queue full), KafkaException (fatal producer)
            self._discard_if_fatal(exc)
            raise DeadLetterError(f"could not queue dead letters: {exc}") from exc
        remaining = self._producer.flush(self.timeout)
        if remaining or self._errors:
            if any(error.fatal() for error in self._errors):
                # An idempotent producer that hit a fatal error is unusable: build a new one.
                self._producer = None
            raise DeadLetterError(
                f"{remaining} dead letters unacknowledged, errors: {[str(e) for e in self._errors[:3]]}"
            )
        log.warning(
            "records sent to the dead-letter topic",
            extra={
                "count": len(rejected),
                "topic": self.topic,
                "sources": sorted({f"{r.message.topic()}/{r.message.partition()}" for r in rejected}),
            },
        )

    def _discard_if_fatal(self, exc: BaseException) -> None:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.fatal():
            self._producer = None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout)
            self._producer = None
