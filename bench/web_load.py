"""Benchmark: ``/api/events`` throughput and latency with N concurrent clients while the
daemon's loop classifies.

Goal (issue 6): ≥ 500 requests/s and p99 < 50 ms with 50 clients on this machine; the
standard library's server it replaced measured 605 req/s, p99 5.3 ms (issue 15, which
moved the web layer to Starlette + uvicorn: the figures are printed side by side). The
daemon runs as a subprocess on a wav looped at real-time pace (1 s windows, so the loop
classifies all along); the clients are keep-alive HTTP/1.1 connections spread over
``--procs`` client processes (one Python process alone is GIL-bound). Prints throughput,
latency percentiles, errors, windows classified meanwhile and the load average (other
processes on the machine distort the figures).

    .venv/bin/python bench/web_load.py                            # the real model files
    .venv/bin/python bench/web_load.py --random_weights /tmp/rw   # official formats, random
                                                                  # weights (same cost)
    .venv/bin/python bench/web_load.py --url http://127.0.0.1:8000  # a running daemon
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=12.0,
                        help="requests/s per client, paced (open loop: latency counts from "
                             "the scheduled send, so queueing is not hidden); 0 = as fast as "
                             "possible (closed loop: measures saturation throughput)")
    parser.add_argument("--path", default="/api/events?limit=10")
    parser.add_argument("--url", default=None, help="bench a running daemon instead")
    parser.add_argument("--source", default=str(ROOT / "examples" / "speech.wav"))
    parser.add_argument("--window", type=float, default=1.0, help="daemon --min_time")
    parser.add_argument("--random_weights", metavar="DIR", default=None,
                        help="generate random-weight VGGish files in the official formats "
                             "in DIR and use them (the compute cost is the real one)")
    return parser


def _client_proc(host: str, port: int, path: str, threads: int, rate: float,
                 start_at: float, stop_at: float, out: mp.Queue) -> None:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker() -> None:
        local: list[float] = []
        bad = 0
        conn = http.client.HTTPConnection(host, port, timeout=10)
        period = 1.0 / rate if rate > 0 else 0.0
        scheduled = time.perf_counter() + period * (threading.get_ident() % 97) / 97
        while time.time() < stop_at:
            if period:
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t0 = scheduled
                scheduled += period
            else:
                t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                ok = response.status == 200 and body.startswith(b'{"events"')
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
            t1 = time.perf_counter()
            if time.time() >= start_at:
                if ok:
                    local.append(t1 - t0)
                else:
                    bad += 1
        conn.close()
        with lock:
            latencies.extend(local)
            errors[0] += bad

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors[0]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(host: str, port: int, path: str) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def start_daemon(args: argparse.Namespace, port: int, tmp: Path) -> subprocess.Popen:
    if args.random_weights:
        from tests.fixtures_daemon import random_model_args

        model_args = random_model_args(Path(args.random_weights))
        print("models: VGGish with random weights in the official formats (the cost is "
              "real, the labels are not); the shipped classifier bundle")
    else:
        model_args = []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XDG_CONFIG_HOME": str(tmp),
           "XDG_STATE_HOME": str(tmp)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "daemon.py"), "--source", args.source, "--min_time",
         str(args.window), "--port", str(port), "--threshold", "0", *model_args,
         *_store_args(tmp)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited: {proc.stderr.read().decode()[-1500:]}")
        try:
            status = _get_json("127.0.0.1", port, "/api/status")
            if status["events"]["total"] >= 2:
                return proc
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("daemon did not start classifying within 180 s")


def _store_args(tmp: Path) -> list[str]:
    """``--db`` in a fresh directory when this daemon has an event store (history then
    comes from SQLite; without, from memory: the output says which)."""
    help_text = subprocess.run([sys.executable, str(ROOT / "daemon.py"), "--help"],
                               capture_output=True, text=True, cwd=ROOT).stdout
    return ["--db", str(tmp / "events.db")] if "--db" in help_text else []


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    proc = None
    if args.url:
        parts = urlsplit(args.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
    else:
        import tempfile

        host, port = "127.0.0.1", _free_port()
        proc = start_daemon(args, port, Path(tempfile.mkdtemp(prefix="web_load-")))
    try:
        before = _get_json(host, port, "/api/status")
        load_before = os.getloadavg()
        start_at = time.time() + args.warmup
        stop_at = start_at + args.duration
        out: mp.Queue = mp.Queue()
        per_proc = [args.clients // args.procs + (i < args.clients % args.procs)
                    for i in range(args.procs)]
        procs = [mp.Process(target=_client_proc, args=(host, port, args.path, n, args.rate,
                                                       start_at, stop_at, out)) for n in per_proc]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        after = _get_json(host, port, "/api/status")
        load_after = os.getloadavg()
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return _report(args, results, before, after, load_before, load_after)


def _report(args: argparse.Namespace, results: list, before: dict, after: dict,
            load_before: tuple, load_after: tuple) -> int:
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    if not latencies:
        print("no successful requests")
        return 1

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    loop_before = before.get("loop", {}).get("windows_processed", 0)
    loop_after = after.get("loop", {}).get("windows_processed", 0)
    mode = (f"paced at {args.rate:g} req/s each ({args.rate * args.clients:g} offered)"
            if args.rate > 0 else "closed loop, as fast as possible")
    print(f"GET {args.path}: {args.clients} clients ({args.procs} processes), {mode}, "
          f"{args.duration:g} s measured")
    history = "event store (SQLite)" if after.get("events", {}).get("durable") else "memory"
    print(f"  server       Starlette + uvicorn (h11); history from {history}")
    print(f"  throughput   {len(latencies) / args.duration:8.1f} req/s  (target >= 500; "
          f"http.server: 605)")
    print(f"  latency p50  {pct(0.50):8.2f} ms")
    print(f"  latency p90  {pct(0.90):8.2f} ms")
    print(f"  latency p99  {pct(0.99):8.2f} ms  (target < 50; http.server: 5.3)")
    print(f"  latency max  {latencies[-1] * 1000:8.2f} ms")
    print(f"  errors       {errors}")
    print(f"  windows classified meanwhile: {loop_after - loop_before} "
          f"(loop {after.get('loop', {}).get('state', '?')})")
    print(f"  load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
          f"({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
