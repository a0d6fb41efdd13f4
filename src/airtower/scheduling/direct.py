"""DirectScheduler: Triton's default scheduler. No batching across requests: each request is
its own batch, executed by whichever instance is free first, in arrival order."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Sequence

from airtower.errors import RequestCancelledError
from airtower.scheduling.scheduler import Pending, Reject


class DirectScheduler:
    """One request per execution, in FIFO order, on the first free instance.

    ``enqueue`` (on the event loop) stages requests and hands them to the instances' queue once
    per loop iteration, after every request read in that iteration: a parked instance thread
    then wakes when the loop is about to let go of the GIL, instead of waking at once only to
    wait for the GIL the loop still holds (a second sleep and wake-up per request). Measured in
    docs/performance.md ("Waking instances").
    """

    def __init__(self, reject: Reject) -> None:
        # One entry per request; ``None`` is a stop marker for one instance thread.
        self._ready: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._reject = reject
        self._staged: list[Pending] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # cached: asking asyncio costs a getpid() call

    def enqueue(self, pending: Pending) -> None:
        staged = self._staged
        staged.append(pending)
        if len(staged) == 1:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._release)

    def _release(self) -> None:
        staged, self._staged = self._staged, []
        put = self._ready.put
        for pending in staged:
            put(pending)

    def take(self, instance: int = 0) -> Sequence[Pending] | None:
        get = self._ready.get
        while (pending := get()) is not None:
            if not pending.future.done():
                return (pending,)
            self._reject((pending,), RequestCancelledError("request cancelled"))  # counted as a failure
        return None

    def flush(self) -> None:
        self._release()  # nothing ever waits for a batch to fill

    def stop(self, instances: int) -> None:
        # Queued behind every waiting request: each thread finishes what is queued, then exits.
        self._release()
        for _ in range(instances):
            self._ready.put(None)

    def pending_count(self) -> int:
        return self._ready.qsize() + len(self._staged)
