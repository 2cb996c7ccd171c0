"""The bare-HTTP ceiling of the gateway: a Starlette echo route on the same uvicorn settings.

    python -m bench.echo_app --port 8099 --workers 2

``POST`` to any of the gateway's ingestion paths reads the body and answers the gateway's
success body; nothing is parsed or published. Served exactly like ``feedhouse gateway``
(an import-string factory, ``--workers`` processes, no access log), so the difference between
the two is the gateway's own work: auth, JSON, validation, Avro, Kafka acknowledgements.
"""

from __future__ import annotations

import argparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SUCCESS = b'{"success":true}'


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(SUCCESS if body else b"{}", media_type="application/json")


async def healthz(_request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def app() -> Starlette:
    """The ASGI app (a factory, like ``feedhouse.server:app``)."""
    return Starlette(
        routes=[
            Route("/v1/{path:path}", echo, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    # The same uvicorn.run arguments as feedhouse.cli's gateway command.
    uvicorn.run(
        "bench.echo_app:app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
