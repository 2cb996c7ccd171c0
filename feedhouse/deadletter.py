"""The dead-letter topic: records a consumer can never process, kept with where they came from.

The record's value and key are the original bytes, untouched, so it can be replayed once the
cause is fixed; headers say where it came from and why it was set aside.
"""

from __future__ import annotations

from confluent_kafka import Message, Producer

from feedhouse import metrics


def dead_letter_headers(component: str, message: Message, error: str) -> list[tuple[str, str | bytes | None]]:
    return [
        ("feedhouse.component", component.encode()),
        ("feedhouse.source.topic", (message.topic() or "").encode()),
        ("feedhouse.source.partition", str(message.partition()).encode()),
        ("feedhouse.source.offset", str(message.offset()).encode()),
        ("feedhouse.error", error[:2000].encode()),
    ]


def send_to_dead_letter(producer: Producer, topic: str, component: str, message: Message, error: str) -> None:
    """Produce ``message`` to the dead-letter ``topic``; the caller flushes before committing."""
    producer.produce(
        topic, message.value() or b"", message.key(), headers=dead_letter_headers(component, message, error)
    )
    metrics.DEAD_LETTERS.labels(component).inc()
