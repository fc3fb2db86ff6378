"""The routes of the daemon's web interface (Starlette): pages, JSON API, the original's
routes, the configuration POSTs (DeviceHive ``/config``, MQTT and webhooks
``/config/home``, the detection switch ``/detection``) and the ASGI application that puts
them together.

Every malformed request is answered with a 4xx (``web.errors``), never a traceback; the
``Host`` check, the sign-in and the security headers come first (``web.guard``).

Original routes kept for the original's users (DataArt's devicehive-audio-analysis and its
``devicehive-webconfig``): ``GET /status/`` (``{"status", "error_message"}``),
``GET /events/update/`` (the last 10 predictions as ``<div class="event">`` fragments) and
``POST /`` with the original's form fields ``url``, ``token`` (a refresh token) and
``device_id``. That POST is checked like ours (same origin and the CSRF token from the
page's ``<meta name="csrf-token">``): a script fetches ``/`` first.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from web.app import STATIC_TYPES
from web.errors import WebError, error_response
from web.forms import MAX_LIMIT, checked_form, int_param, query
from web.guard import Guard
from web.home import HomeFormError, form_fields, home_status, listening_view
from web.login import login_page, login_post, logout_post
from web.stream import event_stream

if TYPE_CHECKING:
    from web.app import WebApp

logger = logging.getLogger("web.server")



def _app(request: Request) -> WebApp:
    return request.app.state.web


def signed_in(request: Request) -> bool:
    return _app(request).auth is not None and bool(request.scope.get("state", {})
                                                    .get("session"))


# ---- pages ---------------------------------------------------------------------------------
def config_page(request: Request, error: str = "", form: Mapping[str, str] | None = None,
                status: int = HTTPStatus.OK, home_errors: Mapping[str, str] | None = None
                ) -> Response:
    """The configuration page; ``form`` comes back with ``error`` (the DeviceHive form) or
    ``home_errors`` (the MQTT and webhook form: one message per bad field)."""
    app = _app(request)
    config = app.config.public()
    dh_form = None if home_errors is not None else form
    shown = {**config, **{k: v for k, v in (dh_form or {}).items()
                          if k in ("server_url", "device_id")}}
    params = query(request)
    notice = "" if error or home_errors else (
        "Saved; reconnecting." if "saved" in params else
        "MQTT and webhook settings saved." if "home_saved" in params else "")
    current = app.status()
    dh = current["devicehive"]
    return HTMLResponse(app.render(
        "config", "Configuration", signed_in=signed_in(request),
        server_url=shown["server_url"], device_id=shown["device_id"],
        refresh_token_state=config["refresh_token"],
        access_token_state=config["access_token"],
        config_path=str(app.config_path or "(not saved: no config file)"), error=error,
        notice=notice, dh_state=str(dh.get("state", "unknown")),
        dh_error=f"Last error: {dh['last_error']}" if dh.get("last_error") else "",
        home=form_fields(app.config, form if home_errors is not None else None),
        home_errors=home_errors or {}, has_home=app.home is not None,
        mqtt=home_status(current.get("mqtt")),
        webhooks=current.get("webhooks") or {"state": "disabled"},
        listening=listening_view(current.get("listening")),
        detection=current.get("detection", {}).get("on")), status)


def events_page(request: Request) -> Response:
    app = _app(request)
    return HTMLResponse(app.render("events", "Events", signed_in=signed_in(request),
                                   durable=app.history.durable, kept=1000))


def events_redirect(request: Request) -> Response:
    return RedirectResponse("/events/", HTTPStatus.MOVED_PERMANENTLY)


def favicon(request: Request) -> Response:
    return RedirectResponse("/static/icon.svg", HTTPStatus.MOVED_PERMANENTLY)


def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    body = _app(request).static(name)
    if body is None:
        raise WebError(HTTPStatus.NOT_FOUND, "not found")
    return Response(body, media_type=STATIC_TYPES[Path(name).suffix])


# ---- API -----------------------------------------------------------------------------------
async def api_events(request: Request) -> Response:
    params = query(request)
    since = int_param(params, "since", 0, 0, 2**62)
    before = int_param(params, "before", None, 1, 2**62)
    limit = int_param(params, "limit", 10, 1, MAX_LIMIT)
    app = _app(request)
    if app.history.durable:  # a cache miss reads the database: off the event loop
        body = await run_in_threadpool(app.events_json, since, before, limit)
    else:
        body = app.events_json(since, before, limit)
    return Response(body, media_type="application/json")


def api_sounds(request: Request) -> Response:
    limit = int_param(query(request), "limit", 10, 1, MAX_LIMIT)
    history = _app(request).history
    return JSONResponse({"sounds": history.sounds(limit), "total": history.sounds_total()})


def api_status(request: Request) -> Response:
    return JSONResponse(_app(request).status())


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok",
                         "uptime": round(time.time() - _app(request).started, 3)})


# ---- the original's routes -----------------------------------------------------------------
def legacy_status(request: Request) -> Response:
    return JSONResponse(_app(request).legacy_status())


def legacy_events_update(request: Request) -> Response:
    """The original's fragments: local time, then ``Label: 0.87, Other: 0.12``."""
    app = _app(request)
    rows = app.history.newest(0, None, 10)
    body = app.render("legacy_events", "", events=[
        {"timestamp": f"{datetime.datetime.fromtimestamp(e['timestamp']):%Y-%m-%d %H:%M:%S}",
         "predictions": ", ".join(f"{p['label']}: {p['score']:.2f}" for p in e["predictions"])}
        for e in reversed(rows)])
    return HTMLResponse(body)


# ---- configuration POSTs -------------------------------------------------------------------
async def config_post(request: Request) -> Response:
    return await _save(request, legacy=False)


async def legacy_config_post(request: Request) -> Response:
    return await _save(request, legacy=True)


async def _save(request: Request, legacy: bool) -> Response:
    app = _app(request)
    form = await checked_form(request)
    wants = "json" in request.headers.get("accept", "")
    try:
        await run_in_threadpool(app.apply, "legacy" if legacy else "devicehive", form)
    except ValueError as error:
        app.count("client_errors")
        if wants:
            return JSONResponse({"error": str(error)}, HTTPStatus.BAD_REQUEST)
        shown = {"server_url": form.get("url", ""), "device_id": form.get("device_id", "")} \
            if legacy else form
        return await run_in_threadpool(config_page, request, str(error), shown,
                                       HTTPStatus.BAD_REQUEST)
    if wants:
        return JSONResponse({"saved": True, "config": app.config.public()})
    # The original answered its form with 302 to /; ours with 303 (see other) to /?saved=1.
    return RedirectResponse("/?saved=1", HTTPStatus.FOUND if legacy else HTTPStatus.SEE_OTHER)


async def home_post(request: Request) -> Response:
    """The MQTT and webhook form: saved and applied, or the page again with one message
    per bad field (400)."""
    app = _app(request)
    form = await checked_form(request)
    wants = "json" in request.headers.get("accept", "")
    try:
        await run_in_threadpool(app.apply, "home", form)
    except HomeFormError as error:
        app.count("client_errors")
        if wants:
            return JSONResponse({"error": str(error), "errors": error.errors},
                                HTTPStatus.BAD_REQUEST)
        return await run_in_threadpool(config_page, request, "", form,
                                       HTTPStatus.BAD_REQUEST, error.errors)
    except ValueError as error:  # the file could not be written
        app.count("client_errors")
        if wants:
            return JSONResponse({"error": str(error)}, HTTPStatus.BAD_REQUEST)
        return await run_in_threadpool(config_page, request, "", form,
                                       HTTPStatus.BAD_REQUEST, {"form": str(error)})
    if wants:
        return JSONResponse({"saved": True, "config": app.config.public()})
    return RedirectResponse("/?home_saved=1#home", HTTPStatus.SEE_OTHER)


async def detection_post(request: Request) -> Response:
    """The detection switch: ``on=1`` resumes, ``on=0`` pauses."""
    app = _app(request)
    form = await checked_form(request)
    if form.get("on") not in ("0", "1") or app.home is None:
        raise WebError(HTTPStatus.BAD_REQUEST, "on must be 0 or 1" if app.home is not None
                       else "no detection switch in this process")
    on = await run_in_threadpool(app.set_detection, form["on"] == "1")
    if "json" in request.headers.get("accept", ""):
        return JSONResponse({"detection": {"on": on}})
    return RedirectResponse("/#detection", HTTPStatus.SEE_OTHER)


# ---- the application -----------------------------------------------------------------------
def _handlers(app: WebApp) -> dict[Any, Any]:
    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", HTTPStatus.BAD_REQUEST)
        message = exc.detail if isinstance(exc, WebError) else HTTPStatus(status).phrase.lower()
        return error_response(app, request.url.path, request.headers.get("accept", ""),
                              status, message, getattr(exc, "headers", None))

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.error("web: unexpected error on %s %s", request.method, request.url.path,
                     exc_info=exc)
        return error_response(app, request.url.path, request.headers.get("accept", ""),
                              HTTPStatus.INTERNAL_SERVER_ERROR, "internal error",
                              {"Connection": "close"})

    return {HTTPException: http_error, Exception: server_error}


def build_asgi(app: WebApp) -> ASGIApp:
    """The ASGI application of ``app``: Starlette's router inside the ``Guard``."""
    routes = [
        Route("/", config_page, methods=["GET"]),
        Route("/", legacy_config_post, methods=["POST"]),
        Route("/config", config_post, methods=["POST"]),
        Route("/config/home", home_post, methods=["POST"]),
        Route("/detection", detection_post, methods=["POST"]),
        Route("/events", events_redirect, methods=["GET"]),
        Route("/events/", events_page, methods=["GET"]),
        Route("/events/update/", legacy_events_update, methods=["GET"]),
        Route("/status/", legacy_status, methods=["GET"]),
        Route("/api/events", api_events, methods=["GET"]),
        Route("/api/sounds", api_sounds, methods=["GET"]),
        Route("/api/status", api_status, methods=["GET"]),
        Route("/api/stream", event_stream, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Route("/static/{name}", static_file, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout_post, methods=["POST"]),
    ]
    starlette = Starlette(routes=routes, exception_handlers=_handlers(app))
    starlette.state.web = app
    return Guard(starlette, app)
