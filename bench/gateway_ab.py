"""The gateway of a git revision against the working tree's: ``/v1/batch`` events/s and CPU per
event, gateways of both taking turns on one broker (``bench.turns``).

    python -m bench.gateway_ab REV [--rounds 12]     # e.g. REV = HEAD~3, origin/main

Before/after figures for a change to the ingestion path. The revision is checked out in a
temporary git worktree; each gateway runs from its own checkout.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import tempfile
from pathlib import Path

from bench.common import ROOT, Figure, Result, print_table, scaled, stop_on_sigterm
from bench.gateway_throughput import batch_bodies, gateway_child
from bench.traffic import segment_calls
from bench.turns import gateway_settings, take_turns
from feedhouse.broker import EmbeddedBroker


def run(revision: str, rounds: int) -> Result:
    result = Result("gateway_ab", params={"revision": revision, "rounds": rounds})
    bodies = batch_bodies(segment_calls(20_000, seed=31), 100)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-gateway-ab-")))
        checkout = workdir / "revision"
        subprocess.run(["git", "worktree", "add", "--detach", str(checkout), revision], cwd=ROOT, check=True)
        stack.callback(
            subprocess.run, ["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=False
        )
        broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
        stack.callback(broker.close)
        gateways = []
        for number, (label, root) in enumerate([(revision, checkout), ("working tree", ROOT)] * 2):
            current = gateway_settings(broker, workdir, number)
            gateways.append((label, stack.enter_context(gateway_child(current, workdir, 2, root))))
        sides = take_turns(gateways, bodies, 100, rounds)
    before, after = sides[revision], sides["working tree"]
    result.add(
        Figure(
            "gateway",
            "/v1/batch (100/req), 2 workers, working tree",
            after.rate,
            "events/s",
            ceiling=before.rate,
            ceiling_label=f"{revision}, taking turns with it",
        )
    )
    result.add(
        Figure(
            "gateway",
            "gateway CPU per /v1/batch event, working tree",
            after.cpu_per_event,
            "µs",
            ceiling=before.cpu_per_event,
            ceiling_label=f"{revision}, taking turns with it",
            better="lower",
        )
    )
    return result


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("revision", help="git revision to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=scaled(12, 2), help="turns of each gateway (2 s each)")
    args = parser.parse_args()
    result = run(args.revision, args.rounds)
    print_table(result)
    result.save()


if __name__ == "__main__":
    main()
