"""DirectScheduler: Triton's default scheduler. No batching across requests; each request
goes to a free instance, or waits in FIFO order for the next one to become free."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from airtower.scheduling.scheduler import Executor, Pending


def next_request(queue: deque[Pending]) -> Pending | None:
    """Pop the oldest request whose client still waits; drop cancelled ones."""
    while queue:
        pending = queue.popleft()
        if not pending.future.done():
            return pending
    return None


class DirectScheduler:
    """One request per execution, dispatched to whichever instance is idle."""

    def __init__(self, executors: Sequence[Executor]) -> None:
        self._idle: list[Executor] = list(executors)
        self._queue: deque[Pending] = deque()

    def enqueue(self, pending: Pending) -> None:
        if self._idle and not self._queue:
            self._idle.pop().execute((pending,), self._on_done)
        else:
            self._queue.append(pending)

    def pending_count(self) -> int:
        return len(self._queue)

    def _on_done(self, executor: Executor, batch: Sequence[Pending]) -> None:
        pending = next_request(self._queue)
        if pending is None:
            self._idle.append(executor)
        else:
            executor.execute((pending,), self._on_done)
