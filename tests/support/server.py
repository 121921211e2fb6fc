"""A real uvicorn serving a real app on 127.0.0.1 (a free port), in a thread of the test process, so a
test can reach the app's context while clients talk HTTP to it; and a reader of Server-Sent Events."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """The app behind uvicorn until the block ends; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30, what="uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "uvicorn did not shut down"


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    """For effects in another thread or process: poll `predicate` until true, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    event: str | None
    data: Any  # the parsed JSON of the data: lines
    retry: int | None = None


class SseReader:
    """Reads a text/event-stream response frame by frame, as EventSource parses it (comments skipped;
    a frame without data, such as the opening retry, is returned with data None)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next(self) -> SseEvent:
        fields: dict[str, list[str]] = {}
        for line in self._lines:
            if line == "":
                if fields:
                    data = "\n".join(fields["data"]) if "data" in fields else None
                    retry = fields.get("retry", [None])[-1]
                    return SseEvent(
                        fields.get("id", [None])[-1],
                        fields.get("event", [None])[-1],
                        json.loads(data) if data is not None else None,
                        int(retry) if retry is not None else None,
                    )
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
        raise AssertionError("the stream ended")

    def events(self, count: int) -> list[SseEvent]:
        """The next `count` frames that carry data (events), skipping data-less ones."""
        found: list[SseEvent] = []
        while len(found) < count:
            frame = self.next()
            if frame.data is not None:
                found.append(frame)
        return found
