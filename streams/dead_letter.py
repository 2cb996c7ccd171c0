"""Dead letters from inside Faust agents: a bad record is set aside, the agent keeps going."""

from __future__ import annotations

import logging
from typing import Any

import faust

from feedhouse import metrics
from feedhouse.avro.codec import AvroCodec, AvroDecodeError
from feedhouse.deadletter import dead_letter_headers
from feedhouse.settings import Settings

log = logging.getLogger(__name__)


class DeadLetters:
    """Sends undecodable or unprocessable records to the dead-letter topic, with their origin.

    Same headers as :mod:`feedhouse.deadletter` (the confluent-kafka side), so one reader
    handles both.
    """

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.topic = app.topic(settings.topic("dead-letter"), key_serializer="raw", value_serializer="raw")

    async def send(self, event: faust.EventT, component: str, error: str) -> None:
        message = event.message
        log.error(
            "record sent to dead letter",
            extra={
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "error": error,
            },
        )
        await self.topic.send(
            key=message.key,
            value=message.value or b"",
            headers=dead_letter_headers(component, message.topic, message.partition, message.offset, error),
        )
        metrics.DEAD_LETTERS.labels(component).inc()

    async def decode(self, codec: AvroCodec, event: faust.EventT, component: str) -> dict[str, Any] | None:
        try:
            return codec.decode(event.value)
        except AvroDecodeError as exc:
            await self.send(event, component, str(exc))
            return None
