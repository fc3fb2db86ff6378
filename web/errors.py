"""How the web interface answers what it refuses: one error type for the handlers, and the
response it becomes (JSON for the API and for clients that ask for JSON, else the error
page), counted in the status as a client or server error."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response

from audio.errors import UsageError

if TYPE_CHECKING:
    from web.app import WebApp

JSON_PATHS = ("/api/", "/healthz", "/status/")


class WebError(HTTPException, UsageError):
    """A request refused with ``status`` and a message safe to show."""

    def __init__(self, status: int, message: str,
                 headers: dict[str, str] | None = None) -> None:
        HTTPException.__init__(self, int(status), message, headers)
        self.message = message


def wants_json(path: str, accept: str) -> bool:
    return path.startswith(JSON_PATHS) or "json" in accept


def error_response(app: WebApp, path: str, accept: str, status: int, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    """The response for a refused request; counts it."""
    app.count("server_errors" if status >= 500 else "client_errors")
    if wants_json(path, accept):
        return JSONResponse({"error": message, "status": int(status)}, status, headers)
    phrase = HTTPStatus(status).phrase
    body = app.render("error", f"{int(status)} {phrase}", code=str(int(status)),
                      message=message)
    return HTMLResponse(body, status, headers)
