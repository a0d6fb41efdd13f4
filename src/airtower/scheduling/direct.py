"""DirectScheduler: Triton's default scheduler. No batching across requests: each request is
its own batch, executed by whichever instance is free first, in arrival order."""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence

from airtower.errors import RequestCancelledError
from airtower.scheduling.scheduler import Pending, Reject


class DirectScheduler:
    """One request per execution, in FIFO order, on the first free instance.

    ``enqueue`` hands the request over at once, waking a parked instance thread while the loop
    still runs: its wake-up overlaps the rest of the loop's iteration. Handing requests over at
    the end of the iteration instead (as the dynamic batch scheduler does, so that they can form
    a batch) measured 0.93x / 0.93x / 1.08x at c=1/4/16 (docs/performance.md, seventh session).
    """

    def __init__(self, reject: Reject) -> None:
        # One entry per request; ``None`` is a stop marker for one instance thread.
        self._ready: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._reject = reject
        #: Set while an instance thread runs the event loop with nothing to execute: stops it.
        self._idle_wake: Callable[[], None] | None = None

    def enqueue(self, pending: Pending) -> None:
        self._ready.put(pending)
        if self._idle_wake is not None:
            self._idle_wake()

    def can_share_loop(self) -> bool:
        return True

    def set_idle_wake(self, wake: Callable[[], None] | None) -> None:
        self._idle_wake = wake

    def next_due_ns(self, instance: int = 0) -> int | None:
        return None  # nothing runs later than it is queued

    def take_nowait(self, instance: int = 0) -> Sequence[Pending] | None:
        """``take`` without blocking: ``()`` when nothing is queued."""
        if self._ready.empty():  # the usual case, without raising queue.Empty through native frames
            return ()
        try:
            return self._first_live(self._ready.get_nowait)
        except queue.Empty:  # only cancelled requests were queued, or another instance took the request
            return ()

    def take(self, instance: int = 0) -> Sequence[Pending] | None:
        return self._first_live(self._ready.get)

    def _first_live(self, get: Callable[[], Pending | None]) -> Sequence[Pending] | None:
        """The next request ``get`` gives whose client is still there; ``None`` at a stop marker."""
        while (pending := get()) is not None:
            if not pending.future.done():
                return (pending,)
            self._reject((pending,), RequestCancelledError("request cancelled"))  # counted as a failure
        return None

    def flush(self) -> None:
        pass  # nothing ever waits for a batch to fill

    def stop(self, instances: int) -> None:
        # Queued behind every waiting request: each thread finishes what is queued, then exits.
        for _ in range(instances):
            self._ready.put(None)
        if self._idle_wake is not None:
            self._idle_wake()

    def pending_count(self) -> int:
        return self._ready.qsize()
