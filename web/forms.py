"""Reading what a request carries: query parameters with bounds, and urlencoded forms of a
bounded size, parsed with ``urllib.parse`` (these small forms need no multipart parser,
so no ``python-multipart``); the CSRF and same-origin checks of a POST that changes
something."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request

from web.errors import WebError
from web.security import same_origin

MAX_BODY = 16 * 1024
MAX_LIMIT = 1000
MAX_QUERY_FIELDS = 20


def query(request: Request) -> dict[str, list[str]]:
    try:
        return parse_qs(request.scope["query_string"].decode("latin-1"),
                        max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise WebError(HTTPStatus.BAD_REQUEST, "malformed query") from None


def int_param(params: Mapping[str, list[str]], name: str, default: Any, low: int,
              high: int) -> Any:
    values = params.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise WebError(HTTPStatus.BAD_REQUEST, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise WebError(HTTPStatus.BAD_REQUEST, f"{name} must be in [{low}, {high}]")
    return value


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form of at most ``MAX_BODY`` bytes (parsed here with ``urllib.parse``:
    no multipart parser is needed for these forms)."""
    length_header = request.headers.get("content-length")
    if length_header is None:
        raise WebError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
    try:
        length = int(length_header)
    except ValueError:
        raise WebError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
    if length < 0 or length > MAX_BODY:
        raise WebError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large",
                       {"Connection": "close"})
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise WebError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise WebError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "form data expected")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True,
                          max_num_fields=MAX_QUERY_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise WebError(HTTPStatus.BAD_REQUEST, "malformed form") from None
    return {k: v[-1] for k, v in parsed.items()}


async def checked_form(request: Request) -> dict[str, str]:
    """The form of a POST that changes something: same origin and the CSRF token."""
    if not same_origin(request.headers):
        raise WebError(HTTPStatus.FORBIDDEN, "cross-origin request refused")
    form = await read_form(request)
    if not hmac.compare_digest(form.get("csrf_token", "").encode(),
                               request.app.state.web.csrf_token.encode()):
        raise WebError(HTTPStatus.FORBIDDEN, "missing or wrong CSRF token")
    return form
