"""Gateways taking turns under the same load: A/B figures the machine's drift cannot bias.

On this 2-core machine the speed of one process moves by ±10% over seconds, and a broker slows
as it fills, so two runs one after the other cannot resolve a difference of a few per cent.
Here every gateway of the comparison runs at once on one broker, idle but for its turn: each
takes the load for ``turn_seconds`` in rotation, ``rounds`` times, after one turn each that is
not counted. A side's figure is its events over its seconds (and its CPU over its events), all
its gateways together; two gateways a side, since identical gateways taking turns still differed
by up to 4% in events/s (2.5% in CPU per event) from one another.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import WRITE_KEY
from bench.loadgen import basic_auth, run_load
from bench.processes import Child, cpu_seconds, wait_http_ok
from feedhouse import settings as settings_module
from feedhouse.broker import EmbeddedBroker
from feedhouse.kafka import ensure_topics
from feedhouse.settings import Settings


def gateway_settings(broker: EmbeddedBroker, workdir: Path, number: int) -> Settings:
    """Settings of the ``number``-th gateway of a comparison: its own topics on the shared broker."""
    current = settings_module.load(
        {},
        kafka_bootstrap_servers=broker.bootstrap,
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
        data_dir=workdir / f"gateway-{number}",
        write_keys=(WRITE_KEY,),
        log_level="WARNING",
    )
    ensure_topics(current)
    return current


@dataclass(slots=True)
class Side:
    """What one side's gateways did in their turns."""

    events: float = 0.0
    seconds: float = 0.0
    cpu: float = 0.0

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_event(self) -> float:
        """The gateway processes' CPU µs per event."""
        return self.cpu * 1e6 / self.events if self.events else 0.0


def take_turns(
    gateways: Sequence[tuple[str, Child]],
    bodies: list[bytes],
    events_per_body: int,
    rounds: int,
    turn_seconds: float = 2.0,
    connections: int = 8,
) -> dict[str, Side]:
    """``/v1/batch`` load on each (side, gateway) in turn; the totals of each side."""
    headers = {"Authorization": basic_auth(WRITE_KEY)}
    sides = {label: Side() for label, _ in gateways}
    for _, gateway in gateways:
        wait_http_ok(f"{gateway.url}/readyz", gateway, timeout=120)
        run_load(
            f"{gateway.url}/v1/batch", bodies, seconds=turn_seconds, connections=connections, headers=headers
        )
    for round_number in range(rounds):
        shift = round_number % len(gateways)
        for label, gateway in [*gateways[shift:], *gateways[:shift]]:
            cpu_before = cpu_seconds(gateway.pid)
            result = run_load(
                f"{gateway.url}/v1/batch",
                bodies,
                seconds=turn_seconds,
                connections=connections,
                headers=headers,
            )
            side = sides[label]
            side.cpu += cpu_seconds(gateway.pid) - cpu_before
            side.events += result.ok_rps * events_per_body * result.seconds
            side.seconds += result.seconds
    return sides
