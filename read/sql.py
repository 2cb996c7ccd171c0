"""How the read side writes and runs SQL: one way, for every query.

* Every statement is a module-level constant. Values never become SQL text: they are
  ClickHouse query parameters, written ``{name:Type}`` in the statement and bound by the server
  (clickhouse-connect ``parameters=``), so no request data can change what a query does.
* Pieces of SQL used by several statements (every id of some profiles, an id's current state)
  are constants too, spliced in once, at import time, by :func:`compose` with ``$name``
  markers (``string.Template``; ``{...}`` is left to ClickHouse's parameters). Nothing is
  assembled per request.
* :func:`rows` and :func:`one` run a statement; queries are blocking (chDB has no async
  client), so the HTTP handlers call them from the thread pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from string import Template
from typing import Any

from clickhouse_connect.driver.client import Client


def compose(template: str, **fragments: str) -> str:
    """``template`` with each ``$name`` replaced by the SQL fragment ``name`` (all must be given)."""
    return Template(template).substitute(fragments)


def rows(client: Client, statement: str, **parameters: Any) -> Sequence[Sequence[Any]]:
    """Every row of ``statement`` with ``parameters`` bound server-side."""
    return client.query(statement, parameters=parameters).result_rows


def one(client: Client, statement: str, **parameters: Any) -> Sequence[Any]:
    """The single row of a statement that always returns exactly one (an aggregate)."""
    return rows(client, statement, **parameters)[0]
