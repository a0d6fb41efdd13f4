"""The Scheduler seam, the unit of queued work (``Pending``), and the ready queue.

Schedulers decide which requests run together; they put each decided batch on the model's
``ReadyQueue``. Every instance thread of the model pulls the next batch from that queue as
soon as it is free, so "a request goes to a free instance" needs no round trip through the
event loop between two executions.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse


@dataclass(slots=True)
class Pending:
    """A validated request waiting for (or in) an execution.

    ``future`` is resolved on the event loop with the response or the error; a future that is
    already done when its batch is taken by an instance (its client went away) is dropped
    without being executed.
    """

    request: InferenceRequest
    future: asyncio.Future[InferenceResponse]
    batch_size: int
    enqueue_ns: int


#: Batches ready to execute, shared by every instance of a model version. ``None`` tells one
#: instance thread to finalize and exit.
ReadyQueue: TypeAlias = "queue.SimpleQueue[Sequence[Pending] | None]"


class Scheduler(Protocol):
    """Decides when queued requests execute, and with which others."""

    def enqueue(self, pending: Pending) -> None:
        """Queue ``pending``; raises ``UnavailableError`` subclasses when it is refused."""
        ...

    def pending_count(self) -> int:
        """Requests queued and not yet executing."""
        ...
