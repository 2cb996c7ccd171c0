"""The identity graph alone: its commands/s, and what share of traffic reaches it.

    python -m bench.identity_graph [--events 500000] [--profiles 100000]

The graph (``streams.graph_agent``) is the one stage that cannot be partitioned: every claim and
alias lands on the single ``identity-graph`` partition, because a merge can join any two ids.
Its throughput is therefore the ceiling of a whole deployment, however many workers run. In
one process, no broker:

1. N generated Segment calls (``tests.support.datagen``, the benchmarks' mix) are normalised
   and turned into identity commands by the router's own function (``commands_for``, with the
   router's claim cache): graph commands per event is the share of traffic the graph sees;
2. ceiling: the same commands applied to a plain dict by ``GraphProcessor.apply`` (the pure
   work, no Faust table, no Kafka): graph commands/s one Python process can decide;
3. the deployment's graph-limited rate: commands/s ÷ commands per event.

The Faust agent adds its table's changelog and the Kafka round trips on top (``bench.identity``
measures the worker as a whole); docs/scaling.md uses both.
"""

from __future__ import annotations

import argparse
import time

from bench.common import Figure, Result, print_table, scaled
from bench.traffic import normalized, segment_calls
from feedhouse.ids import DEFAULT_PLACEHOLDERS
from feedhouse.streams.graph_agent import GraphProcessor
from feedhouse.streams.router import GRAPH, PairCache, commands_for, version_of


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=scaled(500_000))
    parser.add_argument("--profiles", type=int, default=scaled(100_000))
    args = parser.parse_args()

    print(f"generating {args.events:,} events over {args.profiles:,} profiles ...", flush=True)
    records = normalized(segment_calls(args.events, profiles=args.profiles))
    claims = PairCache()
    graph_commands = []
    state_commands = 0
    started = time.perf_counter()
    for offset, record in enumerate(records):
        for position, command in enumerate(commands_for(record, DEFAULT_PLACEHOLDERS)):
            if command.topic != GRAPH:
                state_commands += 1
                continue
            fields = command.record
            if fields["kind"] == "claim" and claims.covers(
                (fields["id"], fields["target"]), (fields["timestamp"], fields["messageId"])
            ):
                continue
            graph_commands.append((fields, version_of(offset, position)))
    routed = time.perf_counter() - started

    processor = GraphProcessor({})
    started = time.perf_counter()
    published = memberships = 0
    for fields, version in graph_commands:
        published += len(processor.apply(fields, version))
        memberships += len(processor.take_memberships())  # each profile's ids, as the agent publishes
    applied = time.perf_counter() - started

    per_event = len(graph_commands) / len(records)
    rate = len(graph_commands) / applied
    print(
        f"{len(graph_commands):,} graph commands ({per_event * 1000:.1f} per 1,000 events), "
        f"{state_commands:,} state commands; routed in {routed:.1f} s; "
        f"applied in {applied:.1f} s ({published:,} mappings and {memberships:,} memberships published)"
    )
    result = Result(
        "identity_graph",
        params={"events": len(records), "profiles": args.profiles},
        details={
            "graph_commands": len(graph_commands),
            "state_commands": state_commands,
            "mappings_published": published,
            "memberships_published": memberships,
            "graph_commands_per_event": per_event,
        },
    )
    result.add(
        Figure(
            "identity graph",
            "graph commands applied, one process (pure, no Kafka)",
            rate,
            "commands/s",
            note="the single partition every claim and alias goes to",
        )
    )
    result.add(
        Figure(
            "identity graph",
            "events/s the graph can follow (commands/s ÷ commands per event)",
            rate / per_event if per_event else None,
            "events/s",
            ceiling=len(records) / routed,
            ceiling_label="router's commands_for over the same events",
            note=f"{per_event * 1000:.1f} graph commands per 1,000 events in this mix",
        )
    )
    print_table(result)
    result.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
