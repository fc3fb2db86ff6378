"""Sign-in and sign-out (``web.auth`` says what is checked and why).

``GET /login`` shows the form; ``POST /login`` (field ``password``, optional ``next``) is
rate-limited per client address before the password is even looked at, and answers 429
with ``Retry-After`` beyond; a right password starts a session (cookie ``aa_session``) and
redirects to ``next``. ``POST /logout`` (same origin and CSRF token) ends it. On a bind
without sign-in both just lead to ``/``.
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from web.errors import WebError
from web.forms import checked_form, query, read_form
from web.guard import session_token
from web.security import not_cross_origin

if TYPE_CHECKING:
    from web.app import WebApp

logger = logging.getLogger("web.server")


def _app(request: Request) -> WebApp:
    return request.app.state.web


def safe_next(value: str | None) -> str:
    """Only a path of this site (never ``//host`` or a scheme): no open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    # Browsers drop tabs and newlines from URLs: "/\t/host" would be "//host".
    if any(ord(c) <= 32 or ord(c) == 127 for c in value):
        return "/"
    return value


def _page(request: Request, error: str = "", status: int = HTTPStatus.OK,
          headers: dict[str, str] | None = None, target: str | None = None) -> Response:
    if target is None:
        target = safe_next((query(request).get("next") or [""])[-1])
    body = _app(request).render("login", "Sign in", csrf="", next=target, error=error)
    return HTMLResponse(body, status, headers)


def login_page(request: Request) -> Response:
    if _app(request).auth is None:
        return RedirectResponse("/", HTTPStatus.SEE_OTHER)
    return _page(request)


async def login_post(request: Request) -> Response:
    app = _app(request)
    auth = app.auth
    if auth is None:
        return RedirectResponse("/", HTTPStatus.SEE_OTHER)
    if not not_cross_origin(request.headers):
        raise WebError(HTTPStatus.FORBIDDEN, "cross-origin request refused")
    client = request.client.host if request.client else "?"
    wait = auth.limiter.acquire(client)
    if wait > 0:
        app.count("client_errors")
        logger.warning("web: sign-in attempts from %s rate-limited", client)
        return _page(request, "Too many attempts; wait a minute.",
                     HTTPStatus.TOO_MANY_REQUESTS, {"Retry-After": str(math.ceil(wait))})
    form = await read_form(request)
    password = form.get("password", "")
    if not password or not await run_in_threadpool(auth.password.matches, password):
        app.count("client_errors")
        logger.info("web: wrong password from %s", client)
        return _page(request, "Wrong password.", HTTPStatus.UNAUTHORIZED,
                     target=safe_next(form.get("next")))
    token = auth.sessions.create()
    response = RedirectResponse(safe_next(form.get("next")), HTTPStatus.SEE_OTHER)
    response.headers.append("Set-Cookie", auth.cookie_header(token))
    logger.info("web: signed in from %s", client)
    return response


async def logout_post(request: Request) -> Response:
    app = _app(request)
    await checked_form(request)
    if app.auth is None:
        return RedirectResponse("/", HTTPStatus.SEE_OTHER)
    app.auth.sessions.end(session_token(request.headers))
    response = RedirectResponse("/login", HTTPStatus.SEE_OTHER)
    response.headers.append("Set-Cookie", app.auth.clear_cookie_header())
    return response
