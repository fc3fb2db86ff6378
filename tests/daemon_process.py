"""A running ``daemon.py`` subprocess as the end-to-end delivery tests drive it: its
status over HTTP, waits on a condition, and the three ways it is stopped (``kill -9``,
SIGTERM timed, and a cleanup kill). Subclasses start the process in ``__init__``."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class DaemonProcess:
    proc: subprocess.Popen
    port: int
    log: Path
    wait_seconds = 120.0

    def status(self) -> dict:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/api/status")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def wait(self, predicate: Callable[[dict], bool], what: str) -> dict:
        """The first status that satisfies ``predicate`` (the daemon must stay up)."""
        deadline = time.monotonic() + self.wait_seconds
        status: dict = {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"daemon exited: {self.log.read_text()[-3000:]}"
            try:
                status = self.status()
                if predicate(status):
                    return status
            except (OSError, KeyError):  # not listening yet; a sink not reported yet
                pass
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}: {status}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds it took."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("SIGTERM did not end the daemon in 30 s") from None
        return code, time.monotonic() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
