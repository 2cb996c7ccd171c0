"""Sign in (``/login``, one field named ``token``: the read or the admin token) and sign out."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from feedhouse.app.security import csrf_matches, harden, same_origin
from feedhouse.app.session import Session
from feedhouse.app.views.common import AppContext
from feedhouse.http import HttpError

MAX_FORM_BYTES = 8192


async def small_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
    """An urlencoded form body of at most ``limit`` bytes (413 beyond), first value per field."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HttpError(413, "request_too_large", f"forms are at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HttpError(413, "request_too_large", f"forms are at most {limit} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise HttpError(400, "invalid_form", "the form could not be read") from None
    return {name: values[0] for name, values in fields.items()}


def local_target(raw: str | None) -> str:
    """Where to go after signing in: a path of this site only (no open redirect)."""
    if (
        raw
        and raw.startswith("/")
        and not raw.startswith(("//", "/\\"))
        and "\n" not in raw
        and "\r" not in raw
    ):
        return raw
    return "/people"


class AuthViews:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def login(self, request: Request) -> Response:
        target = local_target(request.query_params.get("next"))
        if request.method == "GET":
            if self.ctx.sessions.read(request) is not None:
                return harden(RedirectResponse(target, 303))
            return self.ctx.render(request, "login.html", {"next": target, "failed": False}, None)
        try:
            if not same_origin(request):
                raise HttpError(403, "cross_origin", "sign-in forms must come from this site")
            form = await small_form(request)
        except HttpError as error:
            return self.ctx.render(request, "error.html", {"error": error}, None, error.status)
        target = local_target(form.get("next") or target)
        signed = self.ctx.sessions.sign_in(form.get("token", "").strip())
        if signed is None:
            return self.ctx.render(request, "login.html", {"next": target, "failed": True}, None, 401)
        value, _ = signed
        response = harden(RedirectResponse(target, 303))
        self.ctx.sessions.set_cookie(response, value, request)
        return response

    async def logout(self, request: Request) -> Response:
        session: Session | None = self.ctx.sessions.read(request)
        try:
            form = await small_form(request)
            if session is not None and not (
                same_origin(request) and csrf_matches(session.csrf, form.get("csrf"))
            ):
                raise HttpError(403, "csrf", "sign-out must come from a Feedhouse page (CSRF token missing)")
        except HttpError as error:
            return self.ctx.render(request, "error.html", {"error": error}, session, error.status)
        response = harden(RedirectResponse("/login", 303))
        self.ctx.sessions.clear_cookie(response, request)
        return response
