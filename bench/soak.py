"""Soak: the daemon for N minutes with the DeviceHive server restarted every minute.

Goal (issue 6): zero lost (and zero duplicated) notifications, daemon RSS growth < 20 MB.
The daemon runs as a subprocess on a wav looped at real-time pace (``--window`` second
windows), sending to the project's DeviceHive test server (``tests/dh_server.py``) over
WebSocket (or REST with ``--rest``); every ``--restart_every`` seconds the server goes down
for ``--outage`` seconds. At the end every event the daemon produced (``/api/events``) is
matched, by its unique millisecond timestamp, against the notifications the server stored.

First, the idle CPU of a connected DeviceHive connection (no notifications flowing) is
measured in this process: the tuned sink, then the library's defaults for comparison.

    .venv/bin/python bench/soak.py                       # 10 minutes, real model files
    .venv/bin/python bench/soak.py --minutes 3 --random_weights /tmp/rw
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dh_server import DeviceHiveTestServer  # noqa: E402

DEVICE = "soak-device-1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--restart_every", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--outage", type=float, default=5.0, metavar="SECONDS")
    parser.add_argument("--window", type=float, default=1.0, help="daemon --min_time")
    parser.add_argument("--rest", action="store_true", help="REST instead of WebSocket")
    parser.add_argument("--idle_seconds", type=float, default=10.0,
                        help="idle-CPU measurement per variant (0 skips it)")
    parser.add_argument("--source", default=str(ROOT / "examples" / "speech.wav"))
    parser.add_argument("--random_weights", metavar="DIR", default=None,
                        help="generate random-weight VGGish files in the official formats "
                             "in DIR and use them (the compute cost is the real one)")
    return parser


def _cpu_of_threads_during(seconds: float) -> float:
    """Process CPU seconds per wall second over ``seconds`` (this process is otherwise idle)."""
    c0, t0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    return (time.process_time() - c0) / (time.monotonic() - t0)


def measure_idle_cpu(seconds: float) -> None:
    from devicehive import DeviceHive, Handler

    from audio.sinks.devicehive import DeviceHiveSettings, DeviceHiveSink

    for transport in ("ws", "rest"):
        server = DeviceHiveTestServer().start()
        _, refresh = server.issue_tokens()
        url = server.ws_url if transport == "ws" else server.rest_url
        sink = DeviceHiveSink(DeviceHiveSettings(url=url, device_id=DEVICE,
                                                 refresh_token=refresh))
        deadline = time.monotonic() + 10
        while sink.status()["state"] != "connected" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        tuned = _cpu_of_threads_during(seconds)
        sink.close(timeout=0)

        ready = threading.Event()

        class Idle(Handler):
            connected = ready

            def handle_connect(self) -> None:
                self.api.put_device(DEVICE)
                self.connected.set()

        hive = DeviceHive(Idle)  # the library as documented, default sleep times
        runner = threading.Thread(target=hive.connect, args=(url,),
                                  kwargs={"refresh_token": refresh}, daemon=True)
        runner.start()
        ready.wait(10)
        time.sleep(0.5)
        default = _cpu_of_threads_during(seconds)
        try:
            hive.handler.api.disconnect()
        except Exception:
            pass
        runner.join(5)
        server.stop()
        print(f"idle CPU of a connected {transport} connection: {tuned * 100:.2f}% of a core "
              f"(library defaults: {default * 100:.1f}%)  [target < 2%]")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _ms(stamp: str) -> int:
    import datetime as dt

    when = dt.datetime.strptime(stamp[:23], "%Y-%m-%dT%H:%M:%S.%f")
    return round(when.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def _near(sorted_values: list[int], t: int, tolerance: int = 2) -> bool:
    import bisect

    i = bisect.bisect_left(sorted_values, t - tolerance)
    return i < len(sorted_values) and sorted_values[i] <= t + tolerance


@dataclass
class _Run:
    """What the soak measured in the daemon, filled phase by phase and read by the report."""

    restarts: int = 0
    rss_start: float = 0.0
    rss_samples: list[float] = field(default_factory=list)
    load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rss_end: float = 0.0
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    events: list[dict] = field(default_factory=list)
    status: dict = field(default_factory=dict)


@dataclass
class _Match:
    """Produced events against stored notifications: the figures the verdict rests on."""

    lost: list[int]
    later: list[int]
    unexpected: list[int]
    duplicates: int
    in_order: bool
    covered: bool

    @property
    def clean(self) -> bool:
        """Nothing lost, duplicated or invented, and in order: the soak's pass condition."""
        return not self.lost and not self.duplicates and not self.unexpected and self.in_order


def _model_args(random_weights: str | None) -> list[str]:
    """Daemon flags for random-weight VGGish files, so the soak runs without Google's files."""
    if not random_weights:
        return []
    from tests.fixtures_daemon import random_model_args

    model_args = random_model_args(Path(random_weights))
    print("models: VGGish with random weights in the official formats (the cost is "
          "real, the labels are not); the shipped classifier bundle")
    return model_args


def _start_daemon(args: argparse.Namespace, url: str, refresh: str, port: int, tmp: Path,
                  model_args: list[str]) -> tuple[subprocess.Popen, IO[bytes]]:
    """``daemon.py`` as a user runs it, in its own config home, its output kept in a log file
    that is shown if it dies (a pipe nobody reads would block it)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XDG_CONFIG_HOME": str(tmp)}
    log = open(tmp / "daemon.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "daemon.py"), "--source", args.source, "--min_time",
         str(args.window), "--port", str(port), "--dh_url", url, "--dh_refresh_token",
         refresh, "--dh_device_id", DEVICE, *model_args],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, log


def _wait_for_delivery(proc: subprocess.Popen, port: int, tmp: Path) -> bool:
    """Wait until the daemon has delivered one notification: the soak only counts from a
    working pipeline. False (after printing why) if it died or never got there."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if _get_json(port, "/api/status")["devicehive"]["sent"] >= 1:
                return True
        except (OSError, ValueError, KeyError):
            pass
        if proc.poll() is not None:
            print((tmp / "daemon.log").read_text()[-2000:])
            return False
        time.sleep(0.5)
    print("daemon did not start delivering within 180 s")
    return False


def _run_outage_schedule(args: argparse.Namespace, server: DeviceHiveTestServer,
                         pid: int) -> _Run:
    """The soak proper: take the server down every ``--restart_every`` seconds for
    ``--outage`` seconds, sampling the daemon's RSS every 10 s to catch a leak's growth."""
    time.sleep(5)  # past start-up allocations
    run = _Run(rss_start=_rss_mb(pid), load_start=os.getloadavg())
    started = time.monotonic()
    end = started + args.minutes * 60
    next_restart = started + args.restart_every
    run.rss_samples.append(run.rss_start)
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_restart:
            server.stop()
            time.sleep(args.outage)
            server.start()
            run.restarts += 1
            next_restart += args.restart_every
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        if int(time.monotonic() - started) % 10 == 0:
            run.rss_samples.append(_rss_mb(pid))
    return run


def _drain_and_collect(port: int, pid: int, run: _Run) -> None:
    """Let everything queued go out (up to 60 s), then snapshot the events the daemon
    produced, its status and its final RSS, while it is still running."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = _get_json(port, "/api/status")
        if status["devicehive"]["queued"] == 0 and status["devicehive"]["state"] == \
                "connected":
            break
        time.sleep(0.5)
    run.events = _get_json(port, "/api/events?limit=1000")["events"]
    run.status = _get_json(port, "/api/status")
    run.rss_end = _rss_mb(pid)
    run.load_end = os.getloadavg()


def _stop_all(proc: subprocess.Popen, log: IO[bytes], server: DeviceHiveTestServer) -> None:
    """SIGTERM the daemon (a graceful stop flushes its queue), killing it only if it hangs;
    then stop the server, whose stored notifications stay readable."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    server.stop()


def _match(events: list[dict], notes: list[dict]) -> _Match:
    """Match produced events with stored notifications by their unique millisecond timestamp."""
    stamps = [_ms(n["timestamp"]) for n in notes]
    produced = sorted(round(e["timestamp"] * 1000) for e in events)
    delivered = sorted(set(stamps))
    # The sink makes timestamps strictly increasing (+1 ms on a tie): match within 2 ms.
    lost = [t for t in produced if not _near(delivered, t)]
    oldest, newest = (produced[0], produced[-1]) if produced else (0, 0)
    # Notifications newer than the snapshot of /api/events are the events produced while
    # the daemon shut down (it flushes them); duplicates would share a timestamp.
    later = [t for t in delivered if t > newest + 2]
    unexpected = [t for t in delivered
                  if oldest - 2 <= t <= newest + 2 and not _near(produced, t)]
    duplicates = len(stamps) - len(set(stamps))
    in_order = stamps == sorted(stamps)
    covered = len(events) < 1000 and events[-1]["id"] == 1 if events else False
    return _Match(lost, later, unexpected, duplicates, in_order, covered)


def _report(args: argparse.Namespace, run: _Run, notes: list[dict], match: _Match) -> None:
    """The soak's figures next to issue 6's targets."""
    status, events = run.status, run.events
    print(f"soak: {args.minutes:g} min, DeviceHive over {'REST' if args.rest else 'WebSocket'}, "
          f"server restarted {run.restarts}× ({args.outage:g} s outage each)")
    print(f"  events produced {status['events']['total']}, checked {len(events)}"
          f"{' (all)' if match.covered else ' (the last 1000)'}, notifications stored "
          f"{len(notes)} ({len(match.later)} of events produced during shutdown)")
    print(f"  lost {len(match.lost)}  duplicated {match.duplicates}  unexpected "
          f"{len(match.unexpected)}  in order {match.in_order}  "
          f"dropped by the queue {status['devicehive']['dropped']}  [target 0 lost]")
    print(f"  reconnects {status['devicehive']['reconnects']}, "
          f"loop errors {status['loop'].get('errors')}")
    rss_start, rss_end = run.rss_start, run.rss_end
    print(f"  RSS {rss_start:.1f} MB → {rss_end:.1f} MB (growth {rss_end - rss_start:+.1f} MB, "
          f"max {max([*run.rss_samples, rss_end]):.1f})  [target < 20 MB]")
    print(f"  load average {run.load_start[0]:.2f} at start, {run.load_end[0]:.2f} at end "
          f"({os.cpu_count()} CPUs)")


def soak(args: argparse.Namespace) -> int:
    """The daemon against a DeviceHive server that keeps going away; 0 if nothing was lost,
    duplicated, invented or reordered (RSS growth is reported, not judged)."""
    server = DeviceHiveTestServer().start()
    _, refresh = server.issue_tokens()
    url = server.rest_url if args.rest else server.ws_url
    model_args = _model_args(args.random_weights)
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    proc, log = _start_daemon(args, url, refresh, port, tmp, model_args)
    try:
        if not _wait_for_delivery(proc, port, tmp):
            return 1
        run = _run_outage_schedule(args, server, proc.pid)
        _drain_and_collect(port, proc.pid, run)
    finally:
        _stop_all(proc, log, server)
    notes = server.device_notifications(DEVICE)
    match = _match(run.events, notes)
    _report(args, run, notes, match)
    return 0 if match.clean else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.idle_seconds > 0:
        measure_idle_cpu(args.idle_seconds)
    if args.minutes <= 0:
        return 0
    return soak(args)


if __name__ == "__main__":
    raise SystemExit(main())
