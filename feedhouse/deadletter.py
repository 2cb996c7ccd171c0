"""The dead-letter topic: records a consumer can never process, kept with where they came from.

The record's value and key are the original bytes, untouched, so it can be replayed once the
cause is fixed; headers say where it came from and why it was set aside.
"""

from __future__ import annotations

from confluent_kafka import Message, Producer

from feedhouse import metrics


def dead_letter_headers(
    component: str, topic: str, partition: int, offset: int, error: str
) -> dict[str, bytes]:
    """The headers every dead letter carries (confluent-kafka and Faust producers alike)."""
    return {
        "feedhouse.component": component.encode(),
        "feedhouse.source.topic": topic.encode(),
        "feedhouse.source.partition": str(partition).encode(),
        "feedhouse.source.offset": str(offset).encode(),
        "feedhouse.error": error[:2000].encode(),
    }


def send_to_dead_letter(producer: Producer, topic: str, component: str, message: Message, error: str) -> None:
    """Produce ``message`` to the dead-letter ``topic``; the caller flushes before committing."""
    headers: dict[str, str | bytes | None] = {
        **dead_letter_headers(
            component, message.topic() or "", message.partition() or 0, message.offset() or 0, error
        )
    }
    producer.produce(topic, message.value() or b"", message.key(), headers=headers)
    metrics.DEAD_LETTERS.labels(component).inc()
