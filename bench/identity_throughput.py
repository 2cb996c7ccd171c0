"""Identity processing events/s per worker process, against a raw consumer of the same topic.

    python -m bench.identity_throughput [--events 200000] [--workers 1]

On a fresh Tansu broker, in one run:

1. N generated Segment calls (``tests.support.datagen``) are normalised, Avro-encoded and produced
   to the events topic with the gateway's key (``gateway.ingest.partition_key``);
2. ceiling: a raw confluent-kafka consumer reads the whole topic (assigned, no group join);
   also printed: the router's per-event CPU work alone (prefix decode + ``commands_for``);
3. ``feedhouse worker`` starts as a subprocess; the committed offsets of the router group
   (``<prefix>identity-router`` on events) and of the Faust group (``<prefix>identity`` on
   identity-commands and identity-graph) are polled until every offset is committed.

"router done" is the time the router committed the last event; "identity done" the time Faust
committed every command the router produced (end offsets read by consuming those topics, not
from watermarks: Tansu 0.6 reports the base offset of the last record batch + 1). Rates count
from the first commit seen, so the worker's start-up (Faust boot, group joins) is reported
apart instead of diluting the rate.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from confluent_kafka import Message

from bench.common import Figure, Result, bench_stack, print_table, scaled, stop_on_sigterm
from bench.plots import plot_lines, plot_vs_ceiling
from bench.processes import Child, CpuMeter
from bench.profile import profiled
from bench.traffic import CommitTracker, consume_all, encoded, normalized, produce, segment_calls
from feedhouse.avro.codec import AvroCodec
from feedhouse.avro.event_prefix import EventPrefixDecoder
from feedhouse.broker import free_port
from feedhouse.ids import DEFAULT_PLACEHOLDERS as PLACEHOLDERS
from feedhouse.settings import Settings
from feedhouse.streams.router import COMMANDS, GRAPH, commands_for

TARGET = 50_000  # events/s per worker process (docs/design.md, Targets)
POLL_SECONDS = 0.2


def router_cpu_rate(values: list[bytes]) -> float:
    """Events/s of the router's pure per-event work on one core (no Kafka)."""
    decoder = EventPrefixDecoder()
    sample = values[: min(len(values), 50_000)]
    started = time.perf_counter()
    for value in sample:
        commands_for(decoder.decode(value), PLACEHOLDERS)
    return len(sample) / (time.perf_counter() - started)


def command_topic_ends(current: Settings) -> dict[str, Any]:
    """End offset per partition of the two identity source topics (read, not from watermarks),
    and the records (command envelopes) and commands they carry."""
    codec = AvroCodec("identity_batch")
    ends: dict[str, dict[int, int]] = {}
    commands: dict[str, int] = {}
    envelopes: dict[str, int] = {}
    for name in (COMMANDS, GRAPH):
        commands[name] = 0

        def count(message: Message, name: str = name) -> None:
            commands[name] += len(codec.decode(message.value() or b"")["commands"])

        topic = current.topic(name)
        envelopes[name], _, ends[topic] = consume_all(current, topic, timeout=60, handle=count)
    return {"ends": ends, "commands": commands, "envelopes": envelopes}


def steady_rate(total: int, done_at_first: float, first: float, finished: float) -> float:
    """Records/s from the first commit seen to ``finished`` (whole run if that is too short)."""
    if finished - first >= POLL_SECONDS and done_at_first < total:
        return (total - done_at_first) / (finished - first)
    return total / finished


def run(args: argparse.Namespace) -> Result:
    result = Result("identity", params={"events": args.events, "workers": args.workers})
    print(f"generating {args.events:,} events ...", flush=True)
    records = encoded(normalized(segment_calls(args.events, seed=31)))
    with bench_stack("identity") as (current, workdir, broker):
        assert broker.process is not None
        events = current.topic("events")
        produced = produce(current, events, records, warmup=0)
        print(f"pre-produced {len(records):,} events at {produced.rate:,.0f}/s")
        count, seconds, _ = consume_all(current, events, expected=len(records))
        raw_rate = count / seconds
        print(f"ceiling: raw confluent consumer {raw_rate:,.0f} events/s ({count:,} read)")
        cpu_rate = router_cpu_rate([value for _, value in records])
        print(f"router CPU path on one core (prefix decode + commands_for): {cpu_rate:,.0f} events/s")

        groups = {
            "router": f"{current.topic_prefix}identity-router",
            "faust": f"{current.topic_prefix}identity",
        }
        router = CommitTracker(current, groups["router"], [events], interval=POLL_SECONDS)
        faust = CommitTracker(current, groups["faust"], [current.topic(COMMANDS), current.topic(GRAPH)])
        workers = [
            Child.feedhouse(
                f"identity worker {i}", ["worker"], current, workdir, FEEDHOUSE_METRICS_PORT=str(free_port())
            )
            for i in range(args.workers)
        ]
        started = time.perf_counter()
        try:
            router.start()
            faust.start()
            processes = {worker.label: worker.pid for worker in workers}
            processes["tansu"] = broker.process.pid
            with profiled(workers[0].pid, "identity.worker", args.profile), CpuMeter(processes) as cpu:
                ends = {events: produced.ends}
                timings = follow(current, workers, router, faust, ends, args.timeout, started, processes)
            print(f"cores used (worker start to identity done): {cpu.line()}")
            for worker in workers:
                worker.memory()
        finally:
            for worker in workers:
                worker.stop()
            router.stop()
            faust.stop()

    n, per = args.events, args.workers
    router_rate = steady_rate(n, timings["routed_at_first"], timings["first"], timings["router_done"])
    identity_rate = steady_rate(n, timings["routed_at_first"], timings["first"], timings["identity_done"])
    label = "per worker process" if per == 1 else f"per worker process ({per} workers)"
    result.add(
        Figure(
            "identity",
            f"router done, {label}",
            router_rate / per,
            "events/s",
            ceiling=raw_rate,
            ceiling_label="raw confluent consumer",
            target=TARGET,
        )
    )
    result.add(
        Figure(
            "identity",
            f"identity done (all commands applied), {label}",
            identity_rate / per,
            "events/s",
            ceiling=raw_rate,
            ceiling_label="raw confluent consumer",
            target=TARGET,
        )
    )
    result.memory = [row for worker in workers for row in worker.memory_seen]
    result.details = {
        "raw_consumer_events_per_s": round(raw_rate),
        "router_cpu_path_events_per_s_one_core": round(cpu_rate),
        "startup_to_first_commit_s": round(timings["first"], 2),
        "router_done_s": round(timings["router_done"], 2),
        "identity_done_s": round(timings["identity_done"], 2),
        "commands": timings["commands"],
        "command_envelopes": timings["envelopes"],
        "faust_ms_per_envelope": timings["ms_per_envelope"],
        "cpu": cpu.to_json(),
        "cpu_agents_only": timings["agents_only_cpu"].to_json(),
        "cpu_us_per_event_including_startup": {
            label: cpu.micros_per(label, n / timings["identity_done"]) for label in processes
        },
        "wall_events_per_s_including_startup": round(n / timings["identity_done"]),
    }
    print(f"cores used after the router was done (agents only): {timings['agents_only_cpu'].line()}")
    print(
        f"worker start-up to first commit {timings['first']:.1f} s; router done at "
        f"{timings['router_done']:.1f} s; identity done at {timings['identity_done']:.1f} s; "
        f"commands {timings['commands']}"
    )
    plot_vs_ceiling(result, "Identity worker vs raw consumer")
    routed, applied = timings["series"], timings["applied"]
    plot_lines(
        result,
        "identity_progress.png",
        f"Identity worker progress ({n:,} events)",
        {
            "router: events committed": ([t for t, _ in routed], [100 * done / n for _, done in routed]),
            "Faust agents: command records committed": ([t for t, _ in applied], [pct for _, pct in applied]),
            "raw consumer pace (from the router's first commit)": (
                [timings["first"], timings["first"] + n / raw_rate],
                [100 * timings["routed_at_first"] / n, 100],
            ),
        },
        "seconds since the worker started",
        "% done",
    )
    return result


def follow(
    current: Settings,
    workers: list[Child],
    router: CommitTracker,
    faust: CommitTracker,
    ends: dict[str, dict[int, int]],
    timeout: float,
    started: float,
    processes: dict[str, int],
) -> dict[str, Any]:
    """Wait for the router, then Faust, to commit everything; times in seconds since ``started``.

    The cores used between the two ("agents only": the router is done) are measured too.
    """

    def alive() -> None:
        for worker in workers:
            worker.check()

    router_done = router.wait_reached(ends, timeout, alive) - started
    series = [(moment - started, done) for moment, done in router.progress(ends)]
    first, routed_at_first = next(((t, done) for t, done in series if done), (router_done, 0))
    with CpuMeter(processes) as agents_only:
        reading = command_topic_ends(current)  # Faust's commits keep being sampled meanwhile
        identity_done = faust.wait_reached(reading["ends"], timeout, alive) - started
    total = sum(sum(parts.values()) for parts in reading["ends"].values()) or 1
    progress = [(moment - started, done) for moment, done in faust.progress(reading["ends"])]
    applied = [(t, 100 * done / total) for t, done in progress]
    # Pace of the agents once they run: from their first commit to the end, per command record.
    faust_first, faust_at_first = next(((t, done) for t, done in progress if done), (identity_done, 0))
    envelopes = total - faust_at_first
    ms_per_envelope = round(1000 * (identity_done - faust_first) / envelopes, 1) if envelopes > 0 else None
    return {
        "first": first,
        "routed_at_first": routed_at_first,
        "router_done": router_done,
        "identity_done": identity_done,
        "commands": reading["commands"],
        "envelopes": reading["envelopes"],
        "series": series,
        "applied": applied,
        "ms_per_envelope": ms_per_envelope,
        "agents_only_cpu": agents_only,
    }


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=scaled(200_000), help="events (BENCH_SCALE x 200k)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--timeout", type=float, default=None, help="give up after (default: by size)")
    parser.add_argument("--profile", action="store_true", help="py-spy the (first) worker")
    args = parser.parse_args()
    if args.timeout is None:
        args.timeout = 120 + args.events / 1000
    result = run(args)
    print_table(result)
    result.save()


if __name__ == "__main__":
    main()
