"""The Scheduler seam and the unit of queued work (``Pending``).

A scheduler sits between the event loop and a model's instance threads. The loop ``enqueue``s
each validated request; every instance thread calls ``take`` as soon as it is free and gets the
next batch to execute, so "a request goes to a free instance" needs no round trip through the
event loop between two executions, and a dynamic batch is formed at the moment an instance can
run it (as Triton's batcher waits for a free instance before it closes a batch).

Threads: ``enqueue`` and ``pending_count`` run on the event loop; ``take`` on instance threads;
``flush`` and ``stop`` on the loop when the server exits and at unload. Requests a scheduler
refuses after accepting them (queue timeouts) go back to the loop through the ``Reject``
callback it was built with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse
from airtower.errors import TritonError


@dataclass(slots=True, init=False)
class Pending:
    """A validated request waiting for (or in) an execution.

    ``future`` is resolved on the event loop with the response or the error; a future that is
    already done when its batch is taken by an instance (its client went away) is dropped
    without being executed. ``priority``, ``timeout_us`` and ``shape_key`` are what the dynamic
    batcher reads (``dynamic_batcher.Batchable``); ``order`` numbers executed requests when the
    model preserves response order.
    """

    request: InferenceRequest
    future: asyncio.Future[InferenceResponse]
    batch_size: int
    enqueue_ns: int
    priority: int
    timeout_us: int
    shape_key: Hashable
    order: int
    #: The response cache's key when the model caches responses (its response is kept).
    cache_key: bytes | None
    #: Non-zero when the request is traced (``observability.trace``).
    trace_id: int

    # Written out so that mypyc compiles it (see core.request.InferenceRequest).
    def __init__(
        self,
        request: InferenceRequest,
        future: asyncio.Future[InferenceResponse],
        batch_size: int,
        enqueue_ns: int,
        priority: int = 0,
        timeout_us: int = 0,
        shape_key: Hashable = None,
        order: int = -1,
        cache_key: bytes | None = None,
        trace_id: int = 0,
    ) -> None:
        self.request = request
        self.future = future
        self.batch_size = batch_size
        self.enqueue_ns = enqueue_ns
        self.priority = priority
        self.timeout_us = timeout_us
        self.shape_key = shape_key
        self.order = order
        self.cache_key = cache_key
        self.trace_id = trace_id


#: Fails requests a scheduler dropped after accepting them (a queue timeout, or a request whose
#: client cancelled it, which is only counted). Called from an instance thread; the
#: implementation hands the work to the event loop.
Reject = Callable[[Sequence[Pending], TritonError], None]


class Scheduler(Protocol):
    """Decides when queued requests execute, and with which others."""

    def enqueue(self, pending: Pending) -> None:
        """Queue ``pending`` (event loop); raises ``UnavailableError`` subclasses when it is refused."""
        ...

    def take(self, instance: int = 0) -> Sequence[Pending] | None:
        """The next batch for the ``instance``-th instance, blocking until there is one.

        Requests whose client went away are left out. ``None`` tells the calling instance to
        finalize and exit; it comes only after ``stop`` and once every queued request was taken.
        """
        ...

    def flush(self) -> None:
        """From now on run queued requests without waiting for fuller batches (server exiting)."""
        ...

    def stop(self, instances: int) -> None:
        """Flush, and let ``instances`` threads blocked in (or later calling) ``take`` exit once
        the queue is empty."""
        ...

    def pending_count(self) -> int:
        """Requests queued and not yet executing."""
        ...


class LoopSharingScheduler(Scheduler, Protocol):
    """A scheduler whose instance threads may hold the server's event loop (``shared_loop``):
    such a thread looks for work without blocking and, with none, runs the loop until the
    scheduler queues some."""

    def can_share_loop(self) -> bool:
        """Whether ``take_nowait`` is complete for this scheduler's configuration (no batch that
        is due only at a later time)."""
        ...

    def take_nowait(self, instance: int = 0) -> Sequence[Pending] | None:
        """``take`` without blocking: ``()`` when there is nothing to execute now."""
        ...

    def set_idle_wake(self, wake: Callable[[], None] | None) -> None:
        """While set, ``wake`` is called (on the event loop) whenever work is queued."""
        ...

    def next_due_ns(self, instance: int = 0) -> int | None:
        """When (``time.monotonic_ns``) ``take_nowait`` may have work although nothing more is
        queued; None: only when something is."""
        ...
