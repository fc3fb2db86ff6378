"""Benchmark: 300 connections each sending 99 header lines of 64 KB to the daemon's web
server, while the daemon classifies: its RSS growth and ``/healthz`` latency meanwhile.

Issue 15 saw the standard library's server grow to 1.97 GB RSS under this (299 MB after
the connections closed). Goals: RSS grows by less than 100 MB, ``/healthz`` answers in
< 100 ms meanwhile. Each of ``--connections`` connections sends its lines once (the
server refuses a head over 16 KB and closes it); with ``--reconnect`` each is opened again
at once for the whole ``--duration``, a sustained flood (the attackers, in ``--procs``
processes, then take most of a small machine's CPU themselves). RSS is read from
``/proc/<pid>/status`` every 50 ms (peak and after); the load average is printed too (the
machine is shared).

    .venv/bin/python bench/web_headers.py --random_weights /tmp/rw
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from web_load import ROOT, _free_port, start_daemon

LINE = 64 * 1024


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--lines", type=int, default=99)
    parser.add_argument("--procs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--source", default=str(ROOT / "examples" / "speech.wav"))
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--random_weights", metavar="DIR", default=None)
    parser.add_argument("--nice", type=int, default=10,
                        help="niceness of the attacking processes (default 10): on one small "
                             "machine their own CPU would otherwise starve the daemon, as "
                             "attackers on other machines would not")
    parser.add_argument("--reconnect", action="store_true",
                        help="open each connection again when the server closes it")
    return parser


def _attack(port: int, threads: int, lines: int, stop_at: float, reconnect: bool,
            nice: int, out: mp.Queue) -> None:
    os.nice(nice)
    counts = {"connections": 0, "bytes": 0, "refused": 0}
    lock = threading.Lock()
    line = b"X-Filler: " + b"a" * (LINE - 12) + b"\r\n"

    def one() -> None:
        while time.time() < stop_at:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                with lock:
                    counts["refused"] += 1
                time.sleep(0.05)
                continue
            sent = 0
            try:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                for _ in range(lines):
                    if time.time() >= stop_at:
                        break
                    sock.sendall(line)
                    sent += len(line)
            except OSError:
                pass  # the server closed it: the head was too large
            finally:
                sock.close()
                with lock:
                    counts["connections"] += 1
                    counts["bytes"] += sent
            if not reconnect:
                return

    pool = [threading.Thread(target=one) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((counts, time.time()))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _health(port: int, stop_at: float, probes: list[tuple[float, float, int]]) -> None:
    """(when, latency, status) of a /healthz request every 50 ms until ``stop_at``."""
    while time.time() < stop_at:
        when = time.time()
        t0 = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            status = conn.getresponse().status
            conn.close()
        except OSError:
            status = 0
        probes.append((when, time.perf_counter() - t0, status))
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.url = None
    port = _free_port()
    proc = start_daemon(args, port, Path(tempfile.mkdtemp(prefix="web_headers-")))
    try:
        time.sleep(2)
        base = rss_mb(proc.pid)
        load_before = os.getloadavg()
        stop_at = time.time() + args.duration
        out: mp.Queue = mp.Queue()
        per = [args.connections // args.procs + (i < args.connections % args.procs)
               for i in range(args.procs)]
        attackers = [mp.Process(target=_attack, args=(port, n, args.lines, stop_at,
                                                         args.reconnect, args.nice, out))
                     for n in per]
        for p in attackers:
            p.start()
        probes: list[tuple[float, float, int]] = []
        prober = threading.Thread(target=_health, args=(port, stop_at, probes))
        prober.start()
        peak = base
        while time.time() < stop_at:
            peak = max(peak, rss_mb(proc.pid))
            time.sleep(0.05)
        finished = [out.get() for _ in attackers]
        counts = [c for c, _ in finished]
        attack_end = max(t for _, t in finished)
        for p in attackers:
            p.join()
        prober.join()
        time.sleep(1)
        after = rss_mb(proc.pid)
        load_after = os.getloadavg()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    during = [p for p in probes if p[0] <= attack_end] or probes[:1]
    _report(args, base, peak, after, during, counts, attack_end - (stop_at - args.duration),
            load_before, load_after)
    return 0


def _report(args: argparse.Namespace, base: float, peak: float, after: float,
            probes: list[tuple[float, float, int]], counts: list[dict[str, int]],
            attack_s: float, load_before: tuple, load_after: tuple) -> None:
    lat = sorted(latency for _, latency, _ in probes)
    codes: dict[int, int] = {}
    for _, _, status in probes:
        codes[status] = codes.get(status, 0) + 1

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000

    total = {k: sum(c[k] for c in counts) for k in counts[0]}
    mode = ("reconnecting when closed" if args.reconnect else "each once") + \
        f", attackers at nice {args.nice}"
    print(f"{args.connections} connections x {args.lines} header lines of 64 KB ({mode}), "
          f"{args.duration:g} s measured, while classifying")
    print(f"  attack       {attack_s:.1f} s, {total['connections']} connections made, "
          f"{total['bytes'] / 2**20:.0f} MiB accepted by the sockets, {total['refused']} connects refused")
    print(f"  daemon RSS   {base:.0f} MB before, peak {peak:.0f} MB (+{peak - base:.0f}, "
          f"target < +100), {after:.0f} MB after")
    print(f"  /healthz     {len(lat)} probes during the attack: p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms, "
          f"max {lat[-1] * 1000:.1f} ms (target < 100); statuses {dict(sorted(codes.items()))}")
    print(f"  load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
          f"({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    raise SystemExit(main())
