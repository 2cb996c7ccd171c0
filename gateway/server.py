"""ASGI entry point for uvicorn (an import string, so that ``--workers N`` can fork)."""

from __future__ import annotations

from starlette.applications import Starlette

from feedhouse import logs, settings
from gateway.app import create_app


def app() -> Starlette:
    current = settings.load()
    logs.configure(current.log_level)
    return create_app(current)
