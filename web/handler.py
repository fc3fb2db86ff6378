"""The request handler of the daemon's web interface: routes, pages, API, stream, POST.

Any malformed request is answered with a 4xx instead of a traceback; every response
carries ``SECURITY_HEADERS``; headers and body go out in one write.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import time
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from audio.errors import UsageError
from web.app import STATIC_TYPES, WebApp
from web.security import SECURITY_HEADERS, host_allowed, same_origin

# The name the logger had before web/server.py was split: the daemon's log lines stay.
logger = logging.getLogger("web.server")

MAX_BODY = 16 * 1024
MAX_LIMIT = 1000
MAX_STREAMS = 32


class _BadRequest(UsageError):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Handler(BaseHTTPRequestHandler):
    app: WebApp
    protocol_version = "HTTP/1.1"
    server_version = "audio-analysis"
    sys_version = ""
    timeout = 30  # idle keep-alive connections give their thread back

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):  # skip the formatting on every request
            logger.debug("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    # ---- plumbing --------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str,
              headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        # Headers and body in one write: two small writes per response meet the client's
        # delayed ACK (Nagle) and cost 40 ms each on a keep-alive connection.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        if status >= 500:
            self.app.count("server_errors")
        else:
            self.app.count("client_errors")
        if self.path.startswith("/api/") or self.path == "/healthz" or "json" in \
                self.headers.get("Accept", ""):
            self._json(status, {"error": message, "status": int(status)})
        else:
            self._send(status, self.app.render("error", f"{int(status)} {status.phrase}",
                                               code=str(int(status)), message=message),
                       "text/html; charset=utf-8")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed request lines/headers (raised by the base class): plain, escaped, no echo."""
        self.close_connection = True
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # always answer with a status line
        try:
            status = HTTPStatus(code)
        except ValueError:
            status = HTTPStatus.BAD_REQUEST
        body = f"{int(status)} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        self.app.count("requests")
        try:
            if self.headers.defects:
                raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed headers")
            if not host_allowed(self.headers.get("Host"), self.app.allowed_hosts):
                raise _BadRequest(HTTPStatus.MISDIRECTED_REQUEST
                                  if self.headers.get("Host") else HTTPStatus.BAD_REQUEST,
                                  "host not allowed")
            url = urlsplit(self.path)
            if method in ("GET", "HEAD"):
                self._get(url.path, parse_qs(url.query, max_num_fields=20))
            elif method == "POST":
                self._post(url.path)
            else:
                raise _BadRequest(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
        except _BadRequest as error:
            self._error(error.status, error.message)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except ValueError:  # parse_qs limits, bad numbers, bad encodings
            self._error(HTTPStatus.BAD_REQUEST, "malformed request")
        except Exception:
            logger.exception("web: unexpected error on %s %s", method, urlsplit(self.path).path)
            self.close_connection = True
            try:
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
            except OSError:
                pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---- GET -------------------------------------------------------------------------
    def _get(self, path: str, query: dict[str, list[str]]) -> None:
        if path == "/":
            self._config_page()
        elif path in ("/events", "/events/"):
            if path == "/events":
                self._send(HTTPStatus.MOVED_PERMANENTLY, b"", "text/plain",
                           {"Location": "/events/"})
                return
            self._send(HTTPStatus.OK, self.app.render("events", "Events"),
                       "text/html; charset=utf-8")
        elif path == "/api/events":
            since = _int_param(query, "since", 0, 0, 2**62)
            limit = _int_param(query, "limit", 10, 1, MAX_LIMIT)
            self._send(HTTPStatus.OK, self.app.store.newest_json(since, limit),
                       "application/json")
        elif path == "/api/sounds":
            limit = _int_param(query, "limit", 10, 1, MAX_LIMIT)
            self._json(HTTPStatus.OK, {"sounds": self.app.store.sounds(limit),
                                       "total": self.app.store.sounds_total})
        elif path == "/api/status":
            self._json(HTTPStatus.OK, self.app.status())
        elif path == "/api/stream":
            self._stream(query)
        elif path == "/healthz":
            self._json(HTTPStatus.OK, {"status": "ok",
                                       "uptime": round(time.time() - self.app.started, 3)})
        elif path == "/favicon.ico":
            self._send(HTTPStatus.MOVED_PERMANENTLY, b"", "text/plain",
                       {"Location": "/static/icon.svg"})
        elif path.startswith("/static/") and path[8:] in self.app._static:
            name = path[8:]
            self._send(HTTPStatus.OK, self.app._static[name],
                       STATIC_TYPES[Path(name).suffix])
        else:
            raise _BadRequest(HTTPStatus.NOT_FOUND, "not found")

    def _config_page(self, error: str = "", form: Mapping[str, str] | None = None,
                     status: HTTPStatus = HTTPStatus.OK) -> None:
        config = self.app.config.public()
        shown = {**config, **{k: v for k, v in (form or {}).items()
                              if k in ("server_url", "device_id")}}
        query = parse_qs(urlsplit(self.path).query)
        notice = "Saved; reconnecting." if query.get("saved") and not error else ""
        dh = self.app.status()["devicehive"]
        dh_error = f"Last error: {dh['last_error']}" if dh.get("last_error") else ""
        self._send(status, self.app.render(
            "config", "DeviceHive configuration",
            server_url=shown["server_url"], device_id=shown["device_id"],
            refresh_token_state=config["refresh_token"],
            access_token_state=config["access_token"],
            config_path=str(self.app.config_path or "(not saved: no config file)"),
            error=error, error_class="error" if error else "error hidden",
            notice=notice, notice_class="notice" if notice else "notice hidden",
            dh_state=str(dh.get("state", "unknown")), dh_error=dh_error,
            dh_error_class="error" if dh_error else "error hidden",
            csrf=self.app.csrf_token), "text/html; charset=utf-8")

    def _stream(self, query: dict[str, list[str]]) -> None:
        last = self.headers.get("Last-Event-ID")
        try:
            last_id = int(last) if last else _int_param(query, "since", self.app.store.last_id,
                                                          0, 2**62)
        except ValueError:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "bad Last-Event-ID") from None
        with self.app._lock:
            if self.app.streams >= MAX_STREAMS:
                raise _BadRequest(HTTPStatus.SERVICE_UNAVAILABLE, "too many streams")
            self.app.streams += 1
        try:
            self.close_connection = True
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"retry: 2000\n\n")
            self.wfile.flush()
            quiet_since = time.monotonic()
            while not self.app.stopping.is_set() and not self.app.store.closed:
                records = self.app.store.wait_after(last_id, 1.0)
                chunks = []
                for record in records:
                    last_id = record["id"]
                    chunks.append(f"id: {last_id}\nevent: prediction\n"
                                  f"data: {json.dumps(record)}\n\n")
                if not chunks and time.monotonic() - quiet_since > 15:
                    chunks.append(": keep-alive\n\n")  # also detects a gone client
                if chunks:
                    self.wfile.write("".join(chunks).encode())
                    self.wfile.flush()
                    quiet_since = time.monotonic()
        finally:
            with self.app._lock:
                self.app.streams -= 1

    # ---- POST ------------------------------------------------------------------------
    def _post(self, path: str) -> None:
        if path != "/config":
            raise _BadRequest(HTTPStatus.NOT_FOUND, "not found")
        if not same_origin(self.headers):
            raise _BadRequest(HTTPStatus.FORBIDDEN, "cross-origin request refused")
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise _BadRequest(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        try:
            length = int(length_header)
        except ValueError:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            raise _BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        body = self.rfile.read(length)
        if ctype != "application/x-www-form-urlencoded":
            raise _BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "form data expected")
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True,
                              strict_parsing=False, max_num_fields=20)
        except (UnicodeDecodeError, ValueError):
            raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed form") from None
        form = {k: v[-1] for k, v in parsed.items()}
        if not hmac.compare_digest(form.get("csrf_token", "").encode(),
                                   self.app.csrf_token.encode()):
            raise _BadRequest(HTTPStatus.FORBIDDEN, "missing or wrong CSRF token")
        try:
            self.app.apply_config(form)
        except ValueError as error:
            self.app.count("client_errors")
            if "json" in self.headers.get("Accept", ""):
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            else:
                self._config_page(str(error), form, HTTPStatus.BAD_REQUEST)
            return
        if "json" in self.headers.get("Accept", ""):
            self._json(HTTPStatus.OK, {"saved": True, "config": self.app.config.public()})
        else:
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": "/?saved=1"})


def _int_param(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, f"{name} must be in [{low}, {high}]")
    return value
