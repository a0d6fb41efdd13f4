"""DynamicBatchScheduler: the thread-side shell around the dynamic batcher's decisions.

``dynamic_batcher.BatchQueue`` decides; this class only locks, reads the clock and waits. An
instance thread that is free calls ``take``: under the lock it asks the queue for the next batch;
when the queue says "not yet" (a preferred size may still form before the queue delay expires)
the thread parks until that time or until a new request arrives, then asks again.
Requests that timed out in the queue (REJECT) are handed to the ``Reject`` callback.

``ResponseOrder`` keeps ``preserve_ordering``: with several instances a later batch can finish
first, so finished requests are held until every request taken before them was answered.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING

from airtower.errors import QueueTimeoutError, RequestCancelledError
from airtower.scheduling.dynamic_batcher import REQUEST_TIMEOUT_MESSAGE, BatcherPolicy, BatchQueue
from airtower.scheduling.scheduler import Pending, Reject

if TYPE_CHECKING:
    from airtower.core.model_config import ModelConfig
    from airtower.core.request import InferenceRequest


class DynamicBatchScheduler:
    """Triton's dynamic batcher: requests are merged into batches formed when an instance is free.

    The queue is guarded by a plain lock; an instance thread with nothing to run parks on its own
    ``SimpleQueue`` (C-level blocking, no allocation per wait) and ``enqueue`` wakes one parked
    thread at the end of the event loop's iteration. A wake-up may find nothing to do (another
    instance took the batch): the thread simply looks again.
    """

    def __init__(self, policy: BatcherPolicy, reject: Reject) -> None:
        self.policy = policy
        self._queue: BatchQueue[Pending] = BatchQueue(policy)
        self._reject = reject
        self._lock = threading.Lock()
        self._parked: deque[queue.SimpleQueue[None]] = deque()
        self._wakers = threading.local()
        self._flushing = False
        self._stopping = False
        self._next_order = 0
        self._wake_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None  # cached: asking asyncio costs a getpid() call
        #: Set while an instance thread runs the event loop with nothing to execute: stops it.
        self._idle_wake: Callable[[], None] | None = None

    def can_share_loop(self) -> bool:
        """Without a queue delay a batch is formed whenever requests are queued, so an instance
        holding the loop never has to wait for a time (``take_nowait`` is then complete)."""
        return self.policy.max_queue_delay_ns == 0

    def set_idle_wake(self, wake: Callable[[], None] | None) -> None:
        self._idle_wake = wake

    def next_due_ns(self, instance: int = 0) -> int | None:
        return None  # shared only without a queue delay: batches are due when queued

    def enqueue(self, pending: Pending) -> None:
        """Queue ``pending`` (on the event loop). A parked instance is woken once per loop
        iteration, after every request read in that iteration was queued, so that they can form
        one batch (one wake-up and one execution instead of one per request)."""
        if self._idle_wake is not None:
            self._idle_wake()  # the holder of the loop takes the batch once this iteration has queued it all
        with self._lock:
            self._queue.enqueue(pending, pending.enqueue_ns, request_id=pending.request.id)
            if self._wake_scheduled or not self._parked:
                return  # a wake-up is on its way, or every instance is busy and will look again
            self._wake_scheduled = True
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        loop.call_soon(self._wake)

    def _wake(self) -> None:
        with self._lock:
            self._wake_scheduled = False
            waker = self._parked.popleft() if self._parked else None
        if waker is not None:
            waker.put(None)

    def take_nowait(self, instance: int = 0) -> Sequence[Pending] | None:
        """``take`` without parking: ``()`` when no batch is ready now."""
        return self._take(None)

    def take(self, instance: int = 0) -> Sequence[Pending] | None:
        waker: queue.SimpleQueue[None] | None = getattr(self._wakers, "queue", None)
        if waker is None:
            waker = self._wakers.queue = queue.SimpleQueue()
        return self._take(waker)

    def _take(self, waker: queue.SimpleQueue[None] | None) -> Sequence[Pending] | None:
        """The next batch; with no batch ready, ``()`` without ``waker``, else park on it and look again."""
        while True:
            with self._lock:
                now = time.monotonic_ns()
                if self._flushing:
                    # Exiting: whatever is queued runs now, without waiting for a fuller batch.
                    now += self.policy.max_queue_delay_ns
                decision = self._queue.next_batch(now)
                batch = self._live(decision.batch)
                if batch:
                    if self.policy.preserve_ordering:
                        for pending in batch:
                            pending.order = self._next_order
                            self._next_order += 1
                elif not decision.batch and not decision.rejected:
                    if self._stopping and not len(self._queue):
                        return None
                    if waker is not None:
                        self._parked.append(waker)
            if decision.rejected:
                self._reject(decision.rejected, QueueTimeoutError(REQUEST_TIMEOUT_MESSAGE))
            if batch:
                return batch
            if decision.batch or decision.rejected:
                continue  # only cancelled or timed-out requests were taken: look again
            if waker is None:
                return ()
            timeout = None if decision.wake_at_ns is None else max(decision.wake_at_ns - now, 0) / 1e9
            try:
                waker.get(timeout=timeout)
            except queue.Empty:
                with self._lock:
                    if waker in self._parked:
                        self._parked.remove(waker)
                    # else an enqueue already chose this thread: its token makes a spare wake-up

    def _live(self, taken: list[Pending]) -> list[Pending]:
        """``taken`` less the requests whose client went away (counted as failures)."""
        for pending in taken:
            if pending.future.done():
                break
        else:
            return taken
        self._reject([p for p in taken if p.future.done()], RequestCancelledError("request cancelled"))
        return [p for p in taken if not p.future.done()]

    def flush(self) -> None:
        with self._lock:
            self._flushing = True
            parked, self._parked = list(self._parked), deque()
        for waker in parked:
            waker.put(None)

    def stop(self, instances: int) -> None:
        with self._lock:
            self._flushing = self._stopping = True
            parked, self._parked = list(self._parked), deque()
        for waker in parked:
            waker.put(None)
        if self._idle_wake is not None:
            self._idle_wake()

    def pending_count(self) -> int:
        with self._lock:
            return len(self._queue)


class ResponseOrder:
    """Delivers finished requests in the order they were taken (``preserve_ordering``).

    Used on the event loop only. ``deliver(order, callback)`` runs ``callback`` once every
    request with a lower order number was delivered (or ``skip``ped).
    """

    def __init__(self) -> None:
        self._next = 0
        self._held: dict[int, Callable[[], None]] = {}

    def deliver(self, order: int, callback: Callable[[], None]) -> None:
        if order != self._next:
            self._held[order] = callback
            return
        callback()
        self._next += 1
        held = self._held
        while self._next in held:
            held.pop(self._next)()
            self._next += 1

    def held_count(self) -> int:
        return len(self._held)


def shape_key_function(config: ModelConfig) -> Callable[[InferenceRequest], Hashable]:
    """How to tell which requests may share a batch, as Triton does.

    Triton makes equal shapes a condition only for inputs with a variable dimension that are not
    ``allow_ragged_batch`` (and for shape tensors): other inputs have the same shape in every
    request anyway (core: ``model.cc``, ``enforce_equal_shape_tensors``).
    """
    names = tuple(
        sorted(
            tensor.name
            for tensor in config.input
            if tensor.is_shape_tensor or (not tensor.allow_ragged_batch and any(d < 0 for d in tensor.dims))
        )
    )
    if not names:
        return _no_key

    def key(request: InferenceRequest) -> Hashable:
        inputs = request.inputs
        return tuple(inputs[name].shape[1:] if name in inputs else None for name in names)

    return key


def _no_key(request: InferenceRequest) -> Hashable:
    return None
