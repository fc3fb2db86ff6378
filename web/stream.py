"""``/api/stream``: Server-Sent Events, one per window (``event: prediction``) and, from the
durable store, one per sound event record (``event: sound``); each ``id`` is the store's
seq, so a browser that reconnects with ``Last-Event-ID`` resumes where it was, across
daemon restarts too.

A ``Last-Event-ID`` above the history's last id comes from another database (or, in
memory, from before a restart, when ids begin again at 1): the stream starts from now
instead of waiting, silent, for ids that may never come. The stream polls the history's
last id (in memory, no database query: ``web.history``) every ``STREAM_POLL_S``, sends a
comment every ``KEEPALIVE_S`` of silence (which also finds clients that left), and ends
when the server stops, so that no client holds up the daemon's exit. At most
``MAX_STREAMS`` at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from web.errors import WebError
from web.forms import int_param, query

if TYPE_CHECKING:
    from web.app import WebApp

MAX_STREAMS = 32
STREAM_POLL_S = 0.25
KEEPALIVE_S = 15.0
BATCH = 500


async def event_stream(request: Request) -> Response:
    app: WebApp = request.app.state.web
    history = app.history
    current = await run_in_threadpool(history.current_last_id)
    header = request.headers.get("last-event-id")
    if header:
        try:
            last_id = int(header)
        except ValueError:
            raise WebError(HTTPStatus.BAD_REQUEST, "bad Last-Event-ID") from None
    else:
        last_id = int_param(query(request), "since", current, 0, 2**62)
    if last_id > current:
        last_id = current  # another database, or ids that began again: from now on
    with app._lock:
        if app.streams >= MAX_STREAMS:
            raise WebError(HTTPStatus.SERVICE_UNAVAILABLE, "too many streams")
        app.streams += 1
    return StreamingResponse(_events(app, last_id), media_type="text/event-stream; charset=utf-8",
                             headers={"Connection": "close"})


async def _events(app: WebApp, last_id: int) -> AsyncIterator[bytes]:
    history = app.history
    try:
        yield b"retry: 2000\n\n"
        quiet_since = time.monotonic()
        while not app.stopping.is_set():
            newest = history.last_id()
            if newest > last_id:
                if history.durable:
                    rows = await run_in_threadpool(history.after, last_id, BATCH)
                else:
                    rows = history.after(last_id, BATCH)
                chunks = []
                for seq, kind, data in rows:
                    last_id = seq
                    chunks.append(f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data)}\n\n")
                if chunks:
                    yield "".join(chunks).encode()
                    quiet_since = time.monotonic()
                    continue
                last_id = newest  # those rows are gone (pruned): do not ask again
            if time.monotonic() - quiet_since > KEEPALIVE_S:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(STREAM_POLL_S)
    finally:
        with app._lock:
            app.streams -= 1
