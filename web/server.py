"""The daemon's local web interface, on the standard library's threaded HTTP server.

Pages: ``/`` (DeviceHive configuration + live connection status) and ``/events/`` (last
10 predictions, live, with a bar chart of the top classes, and the last sound events).
JSON: ``/api/events``, ``/api/sounds``, ``/api/status``, ``/api/stream`` (Server-Sent
Events), ``/healthz``.

Safe by default: loopback bind (the daemon warns otherwise), a ``Host`` allow-list against
DNS rebinding, CSRF token + same-origin check on the configuration POST, a strict Content
Security Policy (no inline script: the JavaScript lives in ``static/``), every value
HTML-escaped, tokens shown only as "set" / "not set", and any malformed request answered
with a 4xx instead of a traceback.

Modules: ``web.server`` (this: the HTTP server), ``web.handler`` (routes and responses),
``web.app`` (the shared state), ``web.store`` (the last events), ``web.security`` (host
checks, loopback, security headers), ``web.config`` (the saved configuration). The names
callers have always imported from here are re-exported.
"""

from __future__ import annotations

import logging
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from web.app import WebApp, settings_or_none
from web.handler import Handler
from web.security import LOOPBACK_HOSTS, allowed_hosts_for, is_loopback
from web.store import EventStore

logger = logging.getLogger(__name__)

__all__ = ["LOOPBACK_HOSTS", "EventStore", "Handler", "WebApp", "WebServer", "allowed_hosts_for",
           "is_loopback", "settings_or_none"]


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
