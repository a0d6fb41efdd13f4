"""DirectScheduler: Triton's default scheduler. No batching across requests: each request is
its own batch, executed by whichever instance is free first, in arrival order."""

from __future__ import annotations

from airtower.scheduling.scheduler import Pending, ReadyQueue


class DirectScheduler:
    """One request per execution, in FIFO order, on the first free instance."""

    def __init__(self, ready: ReadyQueue) -> None:
        self._ready = ready

    def enqueue(self, pending: Pending) -> None:
        self._ready.put((pending,))

    def pending_count(self) -> int:
        return self._ready.qsize()
