"""The Scheduler seam, the unit of queued work (``Pending``), and the executor protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse


@dataclass(slots=True)
class Pending:
    """A validated request waiting for (or in) an execution.

    ``future`` is resolved on the event loop with the response or the error; a future that is
    already done when the request reaches the front of a queue (its client went away) is
    dropped without being executed.
    """

    request: InferenceRequest
    future: asyncio.Future[InferenceResponse]
    batch_size: int
    enqueue_ns: int


#: Called on the event loop when an executor finished a batch and is free again.
DoneCallback = Callable[["Executor", Sequence[Pending]], None]


class Executor(Protocol):
    """One model instance as the scheduler sees it: runs one batch at a time."""

    def execute(self, batch: Sequence[Pending], done: DoneCallback) -> None:
        """Start ``batch`` (non-blocking); resolve each future; then call ``done`` on the loop."""
        ...


class Scheduler(Protocol):
    """Decides when and where queued requests execute."""

    def enqueue(self, pending: Pending) -> None:
        """Queue ``pending``; raises ``UnavailableError`` subclasses when it is refused."""
        ...

    def pending_count(self) -> int:
        """Requests queued and not yet executing."""
        ...
