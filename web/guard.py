"""The checks every request passes before any route sees it, as plain ASGI middleware:
the request counter, the ``Host`` allow-list (DNS rebinding), the sign-in (on a
non-loopback bind), and the security headers on every response, whoever writes it.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: that one would buffer the
event stream and costs a task per request.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.auth import SESSION_COOKIE
from web.errors import error_response, wants_json
from web.security import SECURITY_HEADERS, host_allowed

if TYPE_CHECKING:
    from web.app import WebApp

logger = logging.getLogger("web.server")

PUBLIC_PATHS = frozenset({"/login", "/healthz", "/favicon.ico"})
"""What a non-loopback bind serves without a session (``/healthz`` tells only that the
daemon is up, for monitors), besides ``/static/``."""
_SECURITY = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


def session_token(headers: Headers) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    try:
        cookie = SimpleCookie(raw)
    except CookieError:
        return None
    morsel = cookie.get(SESSION_COOKIE)
    return morsel.value if morsel is not None else None


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith("/static/")


class Guard:
    """Wraps the Starlette application (see the module's docstring)."""

    def __init__(self, inner: ASGIApp, app: WebApp) -> None:
        self.inner = inner
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        self.app.count("requests")
        started = False

        async def secured_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {name for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in _SECURITY if h[0] not in present)]
            await send(message)

        refusal = self._refusal(scope)
        try:
            if refusal is not None:
                await refusal(scope, receive, secured_send)
            else:
                await self.inner(scope, receive, secured_send)
        except Exception:
            if started:  # the error handler answered already, or the client left
                logger.debug("web: error after the response started", exc_info=True)
                return
            raise

    def _refusal(self, scope: Scope) -> Response | None:
        """A response refusing the request before routing, or None to route it."""
        headers = Headers(scope=scope)
        path = scope["path"]
        accept = headers.get("accept", "")
        host = headers.get("host")
        if not host_allowed(host, self.app.allowed_hosts):
            status = HTTPStatus.MISDIRECTED_REQUEST if host else HTTPStatus.BAD_REQUEST
            return error_response(self.app, path, accept, status, "host not allowed")
        auth = self.app.auth
        if auth is None or is_public(path):
            return None
        token = session_token(headers)
        if auth.sessions.valid(token):
            scope.setdefault("state", {})["session"] = token
            return None
        if scope["method"] in ("GET", "HEAD") and not wants_json(path, accept):
            target = path if path.startswith("/") and not path.startswith("//") else "/"
            return RedirectResponse(f"/login?next={quote(target)}", HTTPStatus.SEE_OTHER)
        return error_response(self.app, path, accept, HTTPStatus.UNAUTHORIZED,
                              "sign in first (POST /login with the password)")
