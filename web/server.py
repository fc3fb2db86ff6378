"""The daemon's local web interface, on the standard library's threaded HTTP server.

Pages: ``/`` (DeviceHive configuration + live connection status) and ``/events/`` (last
10 predictions, live, with a bar chart of the top classes). JSON: ``/api/events``,
``/api/status``, ``/api/stream`` (Server-Sent Events), ``/healthz``.

Safe by default: loopback bind (the daemon warns otherwise), a ``Host`` allow-list against
DNS rebinding, CSRF token + same-origin check on the configuration POST, a strict Content
Security Policy (no inline script: the JavaScript lives in ``static/``), every value
HTML-escaped, tokens shown only as "set" / "not set", and any malformed request answered
with a 4xx instead of a traceback.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import parse_qs, urlsplit

from audio.events import Event
from audio.sinks.devicehive import DeviceHiveConfigError, DeviceHiveSettings
from web.config import ConfigError, DaemonConfig, save_config

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_BODY = 16 * 1024
MAX_EVENTS = 1000
MAX_LIMIT = 1000
MAX_STREAMS = 32
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
FORM_FIELDS = ("server_url", "device_id", "refresh_token", "access_token")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class EventStore:
    """The last events, for the pages and the API; also a loop sink (``handle`` is O(1))."""

    def __init__(self, maxlen: int = MAX_EVENTS) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._cond = threading.Condition()
        self._cache: dict[tuple[int, int, int], bytes] = {}
        self.total = 0
        self.closed = False

    def handle(self, event: Event) -> None:
        record = {"id": event.id, "timestamp": event.timestamp, "start": event.start,
                  "end": event.end, "source": event.source,
                  "predictions": [p.as_dict() for p in event.predictions]}
        with self._cond:
            if self._events and record["id"] <= self._events[-1]["id"]:
                # ids must grow for the ?since= cursor; a restarted loop numbers from 1 again
                record["id"] = self._events[-1]["id"] + 1
            self._events.append(record)
            self.total += 1
            self._cache.clear()
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    @property
    def last_id(self) -> int:
        with self._cond:
            return self._events[-1]["id"] if self._events else 0

    def newest(self, since: int = 0, limit: int = 10) -> list[dict[str, Any]]:
        """Events with id > ``since``, newest first, at most ``limit``."""
        with self._cond:
            out = []
            for record in reversed(self._events):
                if record["id"] <= since or len(out) >= limit:
                    break
                out.append(record)
            return out

    def newest_json(self, since: int, limit: int) -> bytes:
        """``newest`` as the API's JSON body, cached until the next event (cheap polling)."""
        key = (self.last_id, since, limit)
        with self._cond:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        body = json.dumps({"events": self.newest(since, limit), "last_id": key[0]}).encode()
        with self._cond:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = body
        return body

    def wait_after(self, last_id: int, timeout: float) -> list[dict[str, Any]]:
        """Events with id > ``last_id``, oldest first; waits up to ``timeout`` for one."""
        with self._cond:
            if not (self._events and self._events[-1]["id"] > last_id) and not self.closed:
                self._cond.wait(timeout)
            return [r for r in self._events if r["id"] > last_id]


class WebApp:
    """State shared by the request handlers: the event store, status sources, config."""

    def __init__(self, store: EventStore, *, config: DaemonConfig, config_path: Path | None,
                 on_config: Callable[[DaemonConfig], None] | None = None,
                 status_sources: Mapping[str, Callable[[], Any]] | None = None,
                 allowed_hosts: set[str] | frozenset[str] = LOOPBACK_HOSTS) -> None:
        self.store = store
        self.config = config
        self.config_path = config_path
        self.on_config = on_config
        self.status_sources = dict(status_sources or {})
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.csrf_token = secrets.token_urlsafe(32)
        self.started = time.time()
        self.stopping = threading.Event()
        self.requests = 0
        self.client_errors = 0
        self.server_errors = 0
        self.streams = 0
        self._lock = threading.Lock()
        self._templates = {name: Template((WEB_DIR / "templates" / f"{name}.html")
                                          .read_text(encoding="utf-8"))
                           for name in ("base", "config", "events", "error")}
        self._static = {p.name: p.read_bytes() for p in (WEB_DIR / "static").iterdir()
                        if p.suffix in STATIC_TYPES}

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uptime": round(time.time() - self.started, 3),
                               "events": {"total": self.store.total,
                                          "last_id": self.store.last_id},
                               "web": {"requests": self.requests,
                                       "client_errors": self.client_errors,
                                       "server_errors": self.server_errors,
                                       "streams": self.streams},
                               "config": self.config.public()}
        for name, source in self.status_sources.items():
            try:
                out[name] = source()
            except Exception as error:  # a broken source must not break the page
                out[name] = {"error": type(error).__name__}
        out.setdefault("devicehive", {"state": "disabled", "sent": 0, "queued": 0,
                                      "dropped": 0, "last_error": None})
        return out

    def apply_config(self, form: Mapping[str, str]) -> DaemonConfig:
        """Validate the form, save it, reconnect. Raises ValueError with a user message."""
        current = self.config
        values = {name: form.get(name, "").strip() for name in ("server_url", "device_id")}
        for secret in ("refresh_token", "access_token"):
            new = form.get(secret, "").strip()
            if form.get(f"clear_{secret}"):
                values[secret] = ""
            else:  # an empty secret field means "keep": the page never shows the value
                values[secret] = new or getattr(current, secret)
        if any(len(v) > 4096 for v in values.values()):
            raise ValueError("a value is too long")
        config = DaemonConfig(**{**current.as_json(), **values})
        if config.server_url:
            try:
                config.devicehive_settings()
            except DeviceHiveConfigError as error:
                raise ValueError(str(error)) from None
        elif config.device_id and not _device_id_ok(config.device_id):
            raise ValueError("device id must be letters, digits and dashes")
        if self.config_path is not None:
            try:
                save_config(self.config_path, config)
            except ConfigError as error:
                raise ValueError(str(error)) from None
        self.config = config
        if self.on_config is not None:
            self.on_config(config)
        logger.info("configuration saved; DeviceHive %s",
                    "reconnecting" if config.server_url else "disabled")
        return config

    def render(self, name: str, title: str, **values: str) -> bytes:
        """Fill a template; every value is escaped here unless its key ends in ``_html``."""
        safe = {k: (v if k.endswith("_html") else html.escape(str(v), quote=True))
                for k, v in values.items()}
        body = self._templates[name].substitute(safe)
        page = self._templates["base"].substitute(title=html.escape(title), body_html=body,
                                                  csrf=html.escape(self.csrf_token))
        return page.encode("utf-8")


def _device_id_ok(device_id: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c == "-") for c in device_id)


class _BadRequest(Exception):
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

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        if not host:
            return False
        if host.startswith("["):
            name = host[1:host.find("]")] if "]" in host else ""
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in self.app.allowed_hosts

    def _dispatch(self, method: str) -> None:
        self.app.count("requests")
        try:
            if self.headers.defects:
                raise _BadRequest(HTTPStatus.BAD_REQUEST, "malformed headers")
            if not self._host_ok():
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
    def _same_origin(self) -> bool:
        expected = f"http://{self.headers.get('Host', '')}".lower()
        origin = self.headers.get("Origin")
        if origin is not None:
            return origin.lower() == expected
        referer = self.headers.get("Referer")
        if referer:
            return referer.lower() == expected or referer.lower().startswith(expected + "/")
        return False

    def _post(self, path: str) -> None:
        if path != "/config":
            raise _BadRequest(HTTPStatus.NOT_FOUND, "not found")
        if not self._same_origin():
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


class WebServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: WebApp) -> None:
        class BoundHandler(Handler):
            pass

        BoundHandler.app = app
        self.app = app
        super().__init__(address, BoundHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("web: connection error from %s", client_address, exc_info=True)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="web-server",
                                  kwargs={"poll_interval": 0.25}, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.app.stopping.set()
        self.app.store.close()
        self.shutdown()
        self.server_close()


def allowed_hosts_for(bind_host: str, extra: list[str] | tuple[str, ...] = ()) -> set[str]:
    """Loopback names, the bound address (unless a wildcard) and the user's extra names."""
    hosts = set(LOOPBACK_HOSTS)
    if bind_host not in ("", "0.0.0.0", "::"):
        hosts.add(bind_host.strip("[]").lower())
    hosts.update(h.strip().lower() for h in extra if h.strip())
    return hosts


def settings_or_none(config: DaemonConfig) -> DeviceHiveSettings | None:
    """For callers that prefer "not configured" to an exception (the page shows the error)."""
    try:
        return config.devicehive_settings()
    except DeviceHiveConfigError:
        return None
