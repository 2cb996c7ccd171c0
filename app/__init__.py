"""The app: the pages a support agent or an analyst works in, served by Feedhouse at ``/``.

Sign in (``/login``), People (``/people``, also ``/``), a person and their timeline
(``/people/{any id}``), the live Feed (``/feed``), a group (``/groups/{id}``), audiences
of both systems and computed traits (``/audiences``, ``/audiences/{key}``), and, for admin-token
sessions, the status page (``/status``). Modelled on Datasette: views in ``views/``, Jinja2
templates (autoescaped) in ``templates/``, a little vanilla JavaScript and CSS vendored in
``static/`` (no CDN, no build step), every page also as JSON (``?format=json``). Queries are the
read side's (``feedhouse.read.queries``); security (sessions, CSP, CSRF) is in ``session`` and
``security``. ``feedhouse.app.routes.app_routes`` gives the routes to the server.
"""
