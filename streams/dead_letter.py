"""Dead letters from inside the Faust agents: a bad record is set aside, the agent keeps going.

Records go through the worker's output producer (``streams.outputs``), which is flushed before
every Faust commit, so a committed command's dead letter is in Kafka like its other outputs.
Same records and headers as every other consumer's (``feedhouse.dead_letters``).
"""

from __future__ import annotations

from typing import Any

import faust

from feedhouse.avro.codec import AvroCodec, AvroDecodeError
from feedhouse.dead_letters import DeadLetter, DeadLetters
from feedhouse.settings import Settings
from feedhouse.streams.outputs import Outputs


class AgentDeadLetters:
    """Sends undecodable or unprocessable records of an agent to the dead-letter topic."""

    def __init__(self, settings: Settings, outputs: Outputs) -> None:
        self._letters = {
            component: DeadLetters(settings, component, producer=outputs.producer)
            for component in ("identity-graph", "identity-state")
        }

    def send(self, event: faust.EventT, component: str, error: str) -> None:
        message = event.message
        key = message.key if isinstance(message.key, bytes) or message.key is None else bytes(message.key)
        letter = DeadLetter(
            key, message.value or b"", message.topic, message.partition, message.offset, error
        )
        self._letters[component].produce(letter)

    def decode(self, codec: AvroCodec, event: faust.EventT, component: str) -> dict[str, Any] | None:
        try:
            return codec.decode(event.value)
        except AvroDecodeError as exc:
            self.send(event, component, str(exc))
            return None
