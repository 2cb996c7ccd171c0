"""The app's routes, for the server to compose beside ingestion and the read API."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from feedhouse.app.templates import HERE
from feedhouse.app.views.audiences import audience_page, audiences_page
from feedhouse.app.views.auth import AuthViews
from feedhouse.app.views.common import AppContext, ClientFactory, ProcessReport
from feedhouse.app.views.feed import feed_page
from feedhouse.app.views.groups import group_page
from feedhouse.app.views.people import people_page
from feedhouse.app.views.person import person_page
from feedhouse.app.views.status import status_page
from feedhouse.health import Health
from feedhouse.read.lanes import Lanes
from feedhouse.settings import Settings


def app_routes(
    settings: Settings,
    client: ClientFactory,
    lanes: Lanes | None = None,
    *,
    health: Health | None = None,
    processes: ProcessReport | None = None,
) -> list[BaseRoute]:
    """Sign-in, the pages, and their static files (``/static``, vendored: no CDN, no build step).

    ``client()`` gives the ClickHouse client; ``lanes``, when given, the clients a page uses to
    run its independent queries side by side (``feedhouse.read.lanes``). ``health`` and ``processes``
    are the server's (``create_app``), for the status page: without them it checks ClickHouse.
    """
    ctx = AppContext(settings, client, lanes, health, processes)
    auth = AuthViews(ctx)
    pages = [
        ("/", "app:people", people_page),
        ("/people", "app:people", people_page),
        # {id:path}: ids may contain "/" (sent as %2F, decoded before routing).
        ("/people/{id:path}", "app:person", person_page),
        ("/feed", "app:feed", feed_page),
        ("/groups/{group_id:path}", "app:group", group_page),
        ("/audiences", "app:audiences", audiences_page),
        ("/audiences/{key:path}", "app:audience", audience_page),
        ("/status", "app:status", status_page),
    ]
    routes: list[BaseRoute] = [
        Route("/login", auth.login, methods=["GET", "POST"]),
        Route("/logout", auth.logout, methods=["POST"]),
    ]
    routes += [Route(path, ctx.page(name, view), methods=["GET"]) for path, name, view in pages]
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    return routes
