"""A DeviceHive (server API v3) test server: WebSocket and REST on 127.0.0.1.

The real DeviceHive server (Java, Kafka, PostgreSQL, Redis) cannot run here, so the tests
talk to this one. It is faithful to the documented protocol subset the daemon uses, not to
the client library's quirks:

* WebSocket endpoint ``/api/websocket``: ``{"action", "requestId", ...}`` requests, replies
  echoing both with ``"status": "success"`` or ``"status": "error", "code", "error"``;
  actions ``authenticate``, ``token``, ``token/refresh``, ``server/info``, ``device/save``,
  ``device/get``, ``notification/insert``, ``notification/list``.
* REST base ``/api/rest``: ``POST /token``, ``POST /token/refresh``, ``GET /info``,
  ``PUT /device/{id}``, ``GET /device/{id}``, ``POST /device/{id}/notification`` (201),
  ``GET /device/{id}/notification``; ``Authorization: Bearer <token>``; error bodies carry
  ``message``.
* Tokens are HS256 JWTs with DeviceHive's payload; they expire (access 30 min and refresh
  182 days by default, shorter in tests); a bad or expired token gets 401.

The server's state (devices, notifications) lives in the object, so ``stop()`` followed by
``start()`` simulates a server outage and restart on the same port without losing what was
stored. ``drop_after_store`` makes the next notification inserts be stored and then the
connection cut before the reply: the "did my in-flight request land?" case a client must
resolve to deliver exactly once; with ``fault_after_drop`` set, that cut also turns the
fault on (atomically), so the client cannot reconnect and ask until the test clears it.

Faults a client must survive without leaking or stalling (``fault``): ``"401"`` or
``"500"`` answers every API call with that error; ``"invalid_json"`` answers every call
with a body that is not JSON; ``"hang"`` accepts the connection (and the WebSocket
upgrade) and never answers; ``"hang_upgrade"`` never answers the WebSocket upgrade;
``"upgrade_500"`` refuses the WebSocket upgrade with an HTTP 500. ``refuse_list`` answers ``notification/list`` with 403, as DeviceHive does for a
token without the permission to list notifications. ``connections`` counts the TCP
connections accepted (one per client connection attempt on either transport).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,128}$")
MAX_MESSAGE = 1 << 20
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def format_timestamp(when: dt.datetime) -> str:
    """DeviceHive's ``yyyy-MM-ddTHH:mm:ss.SSS`` UTC."""
    return when.strftime(TIMESTAMP_FORMAT)[:-3]


def parse_timestamp(text: str) -> dt.datetime:
    for fmt in (TIMESTAMP_FORMAT, "%Y-%m-%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(text.rstrip("Z"), fmt)
        except ValueError:
            continue
    raise ApiError(400, f"bad timestamp: {text!r}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DeviceHiveTestServer:
    """In-process DeviceHive v3 server subset; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: dict[str, str] | None = None,
        access_ttl: float = 30 * 60,
        refresh_ttl: float = 182 * 86400,
    ) -> None:
        self.host = host
        self.port = port
        self.users = dict(users or {"dhadmin": "dhadmin_#911"})
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.devices: dict[str, dict[str, Any]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []  # (transport, action), for assertions
        self.drop_after_store = 0
        self.fault_after_drop: str | None = None
        self.restamp = False  # True: ignore client timestamps, as some servers might
        self.fault: str | None = None  # see the module docstring
        self.refuse_list = False
        self.connections = 0
        self._stopping = threading.Event()
        self._next_id = 1
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> DeviceHiveTestServer:
        server = self

        class Handler(_Handler):
            dh = server

        httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        httpd.daemon_threads = True
        self._stopping = threading.Event()
        self.port = httpd.server_address[1]  # keep the port across restarts
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="dh-test-server",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a crashed server would."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # releases the handlers of a "hang" fault
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            sockets, self._sockets = set(self._sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self) -> DeviceHiveTestServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/api/websocket"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}/api/rest"

    # ---- test helpers ----------------------------------------------------------------
    def issue_tokens(self, user: str = "dhadmin", access_ttl: float | None = None) -> tuple[str, str]:
        """(access, refresh) tokens for ``user``, as the admin console would hand out."""
        return (self._token(user, 1, self.access_ttl if access_ttl is None else access_ttl),
                self._token(user, 0, self.refresh_ttl))

    def device_notifications(self, device_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(n) for n in self.notifications if n["deviceId"] == device_id]

    def wait_for(self, predicate: Callable[[DeviceHiveTestServer], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds (re-checked on every state change)."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._changed:
                self._changed.wait(min(left, 0.2))

    # ---- tokens ----------------------------------------------------------------------
    def _token(self, user: str, kind: int, ttl: float) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = {"payload": {"u": user, "a": [0], "n": ["*"], "dt": ["*"],
                               "e": int((time.time() + ttl) * 1000), "t": kind}}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        signature = hmac.new(self._secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64(signature)}"

    def _check_token(self, token: str | None, kind: int) -> str:
        if not token or not isinstance(token, str):
            raise ApiError(401, "Unauthorized: token required")
        try:
            header, body, signature = token.split(".")
            expected = hmac.new(self._secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
            if json.loads(_unb64(header)).get("alg") != "HS256" or not hmac.compare_digest(
                expected, _unb64(signature)
            ):
                raise ValueError("bad signature")
            payload = json.loads(_unb64(body))["payload"]
        except (ValueError, KeyError, TypeError):
            raise ApiError(401, "Unauthorized: invalid token") from None
        if payload.get("t") != kind:
            raise ApiError(401, "Unauthorized: wrong token type")
        if payload.get("e", 0) < time.time() * 1000:
            raise ApiError(401, "Unauthorized: token expired")
        return str(payload["u"])

    # ---- the API, shared by both transports ------------------------------------------
    def call(self, transport: str, action: str, request: dict[str, Any], token: str | None,
             authenticated: str | None = None) -> dict[str, Any]:
        """Run one action; returns the success body or raises ApiError."""
        with self._lock:
            self.requests.append((transport, action))
        if self.fault in ("401", "500"):
            raise ApiError(int(self.fault), f"fault injected: {self.fault}")
        if action == "server/info":
            return {"info": {"apiVersion": "3.4.5",
                             "serverTimestamp": format_timestamp(dt.datetime.utcnow()),
                             "restServerUrl": self.rest_url,
                             "webSocketServerUrl": self.ws_url}}
        if action == "token":
            login, password = request.get("login"), request.get("password")
            if not isinstance(login, str) or self.users.get(login) != password:
                raise ApiError(401, "Unauthorized: bad login or password")
            access, refresh = self.issue_tokens(login)
            return {"accessToken": access, "refreshToken": refresh}
        if action == "token/refresh":
            user = self._check_token(request.get("refreshToken"), 0)
            return {"accessToken": self._token(user, 1, self.access_ttl)}
        if action == "authenticate":
            self._check_token(request.get("token"), 1)
            return {}
        if authenticated is None:
            authenticated = self._check_token(token, 1)
        device_id = request.get("deviceId")
        if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
            raise ApiError(400, "device id must be letters, digits and dashes")
        if action == "device/save":
            device = request.get("device")
            if not isinstance(device, dict):
                raise ApiError(400, "device required")
            with self._changed:
                self.devices[device_id] = {
                    "id": device_id, "name": device.get("name") or device_id,
                    "data": device.get("data"), "networkId": device.get("networkId") or 1,
                    "deviceTypeId": device.get("deviceTypeId") or 1,
                    "isBlocked": bool(device.get("isBlocked", False))}
                self._changed.notify_all()
            return {}
        with self._lock:
            device = self.devices.get(device_id)
        if device is None:
            raise ApiError(404, f"device {device_id} not found")
        if action == "device/get":
            return {"device": dict(device)}
        if action == "notification/insert":
            return {"notification": self._insert(device_id, request.get("notification"))}
        if action == "notification/list":
            if self.refuse_list:
                raise ApiError(403, "Forbidden: this token may not list notifications")
            return {"notifications": self._list(device_id, request)}
        raise ApiError(400, f"unknown action {action}")

    def _insert(self, device_id: str, notification: Any) -> dict[str, Any]:
        if not isinstance(notification, dict) or not isinstance(notification.get("notification"), str):
            raise ApiError(400, "notification name required")
        parameters = notification.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ApiError(400, "parameters must be an object")
        stamp = notification.get("timestamp")
        when = parse_timestamp(stamp) if isinstance(stamp, str) and not self.restamp \
            else dt.datetime.utcnow()
        with self._changed:
            record = {"id": self._next_id, "deviceId": device_id,
                      "notification": notification["notification"],
                      "parameters": parameters, "timestamp": format_timestamp(when)}
            self._next_id += 1
            self.notifications.append(record)
            self._changed.notify_all()
            drop = self.drop_after_store > 0
            if drop:
                self.drop_after_store -= 1
                self.fault = self.fault_after_drop or self.fault
        if drop:
            raise _DropConnection
        return {"id": record["id"], "timestamp": record["timestamp"]}

    def _list(self, device_id: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        start = parse_timestamp(request["start"]) if request.get("start") else None
        end = parse_timestamp(request["end"]) if request.get("end") else None
        name = request.get("notification")
        try:
            take = int(request.get("take") or 100)
            skip = int(request.get("skip") or 0)
        except (TypeError, ValueError):
            raise ApiError(400, "take/skip must be integers") from None
        out = []
        for n in self.device_notifications(device_id):
            when = parse_timestamp(n["timestamp"])
            if (start and when < start) or (end and when > end) or (name and n["notification"] != name):
                continue
            out.append(n)
        out.sort(key=lambda n: (n["timestamp"], n["id"]),
                 reverse=str(request.get("sortOrder", "ASC")).upper() == "DESC")
        return out[skip:skip + take]


class _DropConnection(Exception):
    """Stored, but the reply is never sent: the connection is cut."""


_REST_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/token$"), "token"),
    ("POST", re.compile(r"^/token/refresh$"), "token/refresh"),
    ("GET", re.compile(r"^/info$"), "server/info"),
    ("PUT", re.compile(r"^/device/([^/]+)$"), "device/save"),
    ("GET", re.compile(r"^/device/([^/]+)$"), "device/get"),
    ("POST", re.compile(r"^/device/([^/]+)/notification$"), "notification/insert"),
    ("GET", re.compile(r"^/device/([^/]+)/notification$"), "notification/list"),
]
_REST_STATUS = {"token": 201, "token/refresh": 201, "notification/insert": 201, "device/save": 204}


class _Handler(BaseHTTPRequestHandler):
    dh: DeviceHiveTestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.dh._lock:
            self.dh._sockets.add(self.connection)
            self.dh.connections += 1

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.dh._lock:
                self.dh._sockets.discard(self.connection)

    # ---- REST ------------------------------------------------------------------------
    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/api/websocket":
            self._websocket()
        else:
            self._rest("GET")

    def do_POST(self) -> None:
        self._rest("POST")

    def do_PUT(self) -> None:
        self._rest("PUT")

    def _send_json(self, code: int, body: Any) -> None:
        self._send_raw(code, b"" if body is None else json.dumps(body).encode())

    def _fault_answered(self, invalid_json: Callable[[], None]) -> bool:
        """Apply a transport-level fault (``hang``, ``invalid_json``); True when it did."""
        if self.dh.fault == "hang":
            self._wait_for_client_to_leave()
            self.close_connection = True
            return True
        if self.dh.fault == "invalid_json":
            invalid_json()
            return True
        return False

    def _wait_for_client_to_leave(self) -> None:
        """Answer nothing; return when the client closes or the server stops."""
        self.connection.settimeout(0.05)
        while not self.dh._stopping.is_set():
            try:
                if not self.connection.recv(4096):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def _send_raw(self, code: int, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _rest(self, method: str) -> None:
        url = urlsplit(self.path)
        if not url.path.startswith("/api/rest/"):
            self._send_json(404, {"error": 404, "message": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if 0 < length <= MAX_MESSAGE else b""
        path = url.path[len("/api/rest"):]
        if self._fault_answered(lambda: self._send_raw(200, b'{"accessToken": ')):
            return
        for route_method, pattern, action in _REST_ROUTES:
            match = pattern.match(path)
            if route_method != method or not match:
                continue
            try:
                body = json.loads(raw) if raw else {}
                if not isinstance(body, dict):
                    raise ApiError(400, "JSON object expected")
                request: dict[str, Any] = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if match.groups():
                    request["deviceId"] = unquote(match.group(1))
                if action == "device/save":
                    request["device"] = body
                elif action == "notification/insert":
                    request["notification"] = body
                else:
                    request.update(body)
                auth = self.headers.get("Authorization", "")
                token = auth[7:] if auth.startswith("Bearer ") else None
                result = self.dh.call("rest", action, request, token)
            except json.JSONDecodeError:
                self._send_json(400, {"error": 400, "message": "malformed JSON"})
            except ApiError as error:
                self._send_json(error.code, {"error": error.code, "message": error.message})
            except _DropConnection:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            else:
                code = _REST_STATUS.get(action, 200)
                if action == "notification/insert":
                    self._send_json(code, result["notification"])
                elif action in ("device/get", "server/info", "notification/list"):
                    self._send_json(code, next(iter(result.values())))
                elif code == 204:
                    self._send_json(204, None)
                else:
                    self._send_json(code, result)
            return
        self._send_json(404, {"error": 404, "message": f"no route for {method} {path}"})

    # ---- WebSocket (RFC 6455, server side) -------------------------------------------
    def _websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            self._send_json(400, {"error": 400, "message": "WebSocket upgrade expected"})
            return
        if self.dh.fault == "hang_upgrade":
            self._wait_for_client_to_leave()
            self.close_connection = True
            return
        if self.dh.fault == "upgrade_500":
            self.close_connection = True
            self._send_json(500, {"error": 500, "message": "fault injected: upgrade_500"})
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        user: str | None = None
        try:
            while True:
                opcode, payload = self._read_message()
                if opcode == 0x8:
                    self._write_frame(0x8, payload[:2])
                    return
                if opcode == 0x9:
                    self._write_frame(0xA, payload)
                    continue
                if opcode != 0x1:
                    continue
                if self.dh.fault == "hang":
                    continue  # read and ignore: the client waits for replies
                user = self._ws_request(payload, user)
        except (ConnectionError, OSError, _DropConnection, EOFError):
            return

    def _ws_request(self, payload: bytes, user: str | None) -> str | None:
        if self.dh.fault == "invalid_json":
            self._write_frame(0x1, b'{"status": "success", ')
            return user
        try:
            request = json.loads(payload)
            if not isinstance(request, dict):
                raise ValueError
        except ValueError:
            self._ws_send({"status": "error", "code": 400, "error": "malformed JSON"})
            return user
        action, request_id = request.get("action"), request.get("requestId")
        reply: dict[str, Any] = {"action": action, "requestId": request_id}
        try:
            result = self.dh.call("websocket", str(action), request, None, authenticated=user)
            if action == "authenticate":
                user = self.dh._check_token(request.get("token"), 1)
            reply.update(status="success", **result)
        except ApiError as error:
            if error.code == 401 and action not in ("authenticate", "token", "token/refresh"):
                user = None
            reply.update(status="error", code=error.code, error=error.message)
        self._ws_send(reply)
        return user

    def _ws_send(self, obj: dict[str, Any]) -> None:
        self._write_frame(0x1, json.dumps(obj).encode())

    def _read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise EOFError
        return data

    def _read_message(self) -> tuple[int, bytes]:
        chunks: list[bytes] = []
        first_opcode = None
        while True:
            b0, b1 = self._read_exact(2)
            fin, opcode, masked, length = b0 & 0x80, b0 & 0x0F, b1 & 0x80, b1 & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._read_exact(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._read_exact(8))[0]
            if not masked or length > MAX_MESSAGE:
                raise EOFError  # protocol violation: clients must mask; refuse huge frames
            mask = self._read_exact(4)
            data = self._read_exact(length)
            n = int.from_bytes(data, "big") ^ int.from_bytes((mask * (length // 4 + 1))[:length], "big")
            data = n.to_bytes(length, "big") if length else b""
            if opcode >= 0x8:  # control frames may interleave fragments
                return opcode, data
            if first_opcode is None:
                first_opcode = opcode
            chunks.append(data)
            if fin:
                return first_opcode, b"".join(chunks)

    def _write_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self.connection.sendall(header + payload)


def main() -> int:
    """Run standalone for manual tries: prints URLs and a token pair."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    server = DeviceHiveTestServer(port=args.port).start()
    _access, refresh = server.issue_tokens()
    print(f"WebSocket: {server.ws_url}\nREST: {server.rest_url}\nrefresh token: {refresh}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
