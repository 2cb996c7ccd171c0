"""The app in a real browser: time from navigation to a person's timeline rendered, p50 / p95.

    python -m bench.app_browser --data-dir /tmp/fh1m            # a dataset bench.read_api loaded
    python -m bench.app_browser --data-dir /tmp/fh10m --people 50

The app (read API + pages) is served by uvicorn on loopback from the dataset's chDB; Debian's
chromium (Playwright, ``tests.support.browser``) signs in and opens ``/people/{id}`` for
``--people`` random ids (every kind: userIds, anonymousIds, aliased old ids). Each figure is the
browser's own Navigation Timing: from navigation start to ``domContentLoadedEventEnd`` (the
timeline is server-rendered, so its rows are in the DOM then, and the page's script has run);
also reported, the server's share (``responseEnd``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from starlette.applications import Starlette

from bench.common import Figure, Result, percentile, print_table
from feedhouse import settings as settings_module
from feedhouse.app.routes import app_routes
from feedhouse.clickhouse.client import database_for, get_client
from feedhouse.clickhouse.migrate import migrate
from feedhouse.read.api import read_routes
from feedhouse.read.lanes import Lanes
from tests.support.browser import BrowserPage, chromium, serve

TOKEN = "bench-read-token"
TARGET_MS = 100.0  # the person page's server target; the browser adds parsing and layout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", required=True, help="a chDB data directory bench.read_api loaded (--keep)"
    )
    parser.add_argument("--people", type=int, default=50, help="people to open")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    settings = settings_module.load({}, data_dir=Path(args.data_dir), read_token=TOKEN)
    client = get_client(settings)
    migrate(client, database_for(settings))
    events = int(client.query("SELECT count() FROM events").result_rows[0][0])
    if not events:
        raise SystemExit(f"{args.data_dir} holds no events: load it with bench.read_api --keep first")
    ids = [
        str(row[0])
        for row in client.query(
            "SELECT DISTINCT person_key FROM events WHERE person_key != ''"
            " ORDER BY cityHash64(person_key, {seed:UInt64}) LIMIT {n:UInt32}",
            parameters={"seed": args.seed, "n": args.people},
        ).result_rows
    ]
    lanes = Lanes(lambda lane: get_client(settings, f"app-{lane}"))
    routes = app_routes(settings, lambda: client, lanes)
    app = Starlette(routes=read_routes(settings, lambda: client, lanes=lanes) + routes)
    loaded: list[float] = []
    server: list[float] = []
    result = Result("app_browser", params={"events": events, "people": len(ids)})
    with serve(app) as url, chromium() as (_, browser):
        tab = BrowserPage(browser, url)
        tab.sign_in(TOKEN)
        tab.page.goto(f"/people/{ids[0]}")  # warm the browser's cache of /static
        for identifier in ids:
            tab.page.goto(f"/people/{identifier}", wait_until="domcontentloaded")
            timing = tab.page.evaluate(
                """() => {
                    const nav = performance.getEntriesByType("navigation")[0];
                    return {dom: nav.domContentLoadedEventEnd, response: nav.responseEnd};
                }"""
            )
            if (
                tab.page.locator("ol.events li.event").count() == 0
                and "No events match" not in tab.page.content()
            ):
                raise SystemExit(f"/people/{identifier}: no timeline rendered")
            loaded.append(float(timing["dom"]))
            server.append(float(timing["response"]))
        tab.assert_clean()
        tab.close()
    for name, values in (
        ("navigation to timeline rendered", loaded),
        ("server response (responseEnd)", server),
    ):
        for label, q in (("p50", 50), ("p95", 95)):
            result.add(
                Figure(
                    stage=name,
                    metric=f"{label} latency",
                    value=percentile(values, q),
                    unit="ms",
                    target=TARGET_MS if label == "p95" and name.startswith("navigation") else None,
                    better="lower",
                )
            )
    result.details["latencies_ms"] = {"rendered": sorted(loaded), "server": sorted(server)}
    result.details["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print_table(result)
    result.save()


if __name__ == "__main__":
    main()
