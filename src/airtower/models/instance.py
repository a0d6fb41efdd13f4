"""ModelInstance: one backend instance and the dedicated thread that runs it.

The thread is created with the instance and runs ``create_instance``, every ``execute`` and
``close`` of that backend instance, so a backend may keep thread-affine state. Every instance
of a model version takes its next batch from the model's scheduler as soon as it is free;
results come back to the event loop with one ``call_soon_threadsafe`` per execution.

A Python model's instance whose executions are quick may instead hold the event loop between
executions (``shared_loop``): it runs the loop itself while idle and queues its results on it,
so that nothing wakes another thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import cast

from airtower import shared_loop
from airtower.backends.base import BackendInstance, BackendModel, DeferredAnswer, InstanceSpec
from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse
from airtower.errors import BackendExecutionError, InternalError, TritonError
from airtower.observability.stats import ExecutionTiming
from airtower.scheduling.rate_limiter import RateLimiter, Waiter
from airtower.scheduling.scheduler import LoopSharingScheduler, Pending, Scheduler

logger = logging.getLogger(__name__)

#: Turns a backend's raw answer for one request into the client's response (filters
#: outputs, applies classification). Runs on the instance thread; may raise TritonError.
Finisher = Callable[[Pending, InferenceResponse], InferenceResponse]
#: Called on the event loop after each execution with its batch, per-request results and timing;
#: resolves the requests' futures and records statistics.
Completer = Callable[
    [Sequence[Pending], Sequence["InferenceResponse | TritonError | DeferredAnswer | None"], ExecutionTiming], None
]


class ModelInstance:
    """Runs one backend instance on its own thread, taking batches from the model's scheduler."""

    def __init__(
        self,
        spec: InstanceSpec,
        finish: Finisher,
        complete: Completer,
        rate_limiter: RateLimiter | None = None,
        limits: Waiter | None = None,
        index: int = 0,
    ) -> None:
        self.spec = spec
        self.index = index  # its position among the version's instances (sequence batching pins to it)
        self._finish = finish
        self._complete = complete
        # With the rate limiter on, each execution first acquires the group's resources.
        self._rate_limiter = rate_limiter if limits is not None else None
        self._limits = limits
        self._worker: threading.Thread | None = None
        self._backend: BackendInstance | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed: asyncio.Future[None] | None = None

    async def start(
        self, model: BackendModel, scheduler: Scheduler, warmup: Sequence[Sequence[InferenceRequest]] = ()
    ) -> list[list[InferenceResponse | TritonError]]:
        """Start the thread, create the backend instance on it, execute the ``warmup`` batches,
        then execute what ``scheduler`` gives it. Returns each warmup request's result.

        Raises:
            TritonError: the backend instance could not be created (the thread has exited).
        """
        loop = self._loop = asyncio.get_running_loop()
        created: asyncio.Future[None] = loop.create_future()
        self._closed = loop.create_future()
        batches = [[Pending(request, loop.create_future(), 1, 0) for request in batch] for batch in warmup]
        self._worker = threading.Thread(
            target=self._run, args=(model, scheduler, created, batches), name=f"instance-{self.spec.name}", daemon=True
        )
        self._worker.start()
        await created
        results: list[list[InferenceResponse | TritonError]] = []
        for batch in batches:
            answers = await asyncio.gather(*(pending.future for pending in batch), return_exceptions=True)
            results.append(
                [a if isinstance(a, InferenceResponse | TritonError) else InternalError(str(a)) for a in answers]
            )
        return results

    async def wait_closed(self) -> None:
        """Wait until the thread has finalized the instance (after ``take`` returned ``None``)."""
        if self._closed is not None and self._worker is not None and self._worker.is_alive():
            await self._closed

    # -- on the instance thread ---------------------------------------------------------

    def _run(
        self, model: BackendModel, scheduler: Scheduler, created: asyncio.Future[None], warmup: list[list[Pending]]
    ) -> None:
        loop = self._loop
        assert loop is not None
        try:
            self._backend = model.create_instance(self.spec)
        except Exception as exc:  # noqa: BLE001 - reported to the loader, which marks the model unavailable
            error = exc if isinstance(exc, TritonError) else InternalError(f"{type(exc).__name__}: {exc}")
            loop.call_soon_threadsafe(_set_exception, created, error)
            return
        execute, take = self._execute, scheduler.take
        for sample in warmup:  # before the instance serves: the model is not READY yet
            for pending in sample:
                pending.enqueue_ns = time.monotonic_ns()
            execute(sample)
        loop.call_soon_threadsafe(_set_result, created, None)
        index = self.index
        shared = self._loop_to_share(model, scheduler)
        if shared is not None:
            self._serve_sharing(shared, cast("LoopSharingScheduler", scheduler))
        else:
            while (batch := take(index)) is not None:
                execute(batch)
        self._close()

    def _loop_to_share(self, model: BackendModel, scheduler: Scheduler) -> shared_loop.SharedLoop | None:
        """The server's SharedLoop, when this instance may hold it: a backend that runs Python on
        its thread (``shares_event_loop``), no rate limiter (its waits would stall the loop), and a
        scheduler that can give work without blocking."""
        if not getattr(model, "shares_event_loop", False) or self._rate_limiter is not None:
            return None
        if not hasattr(scheduler, "can_share_loop") or not cast("LoopSharingScheduler", scheduler).can_share_loop():
            return None
        return shared_loop.of(self._loop)

    def _serve_sharing(self, shared: shared_loop.SharedLoop, scheduler: LoopSharingScheduler) -> None:
        """Execute what ``scheduler`` gives, holding the server's event loop while executions are
        quick and do not wait for the loop (``shared_loop``): between executions this thread runs
        the loop, and answers are queued on it without waking another thread."""
        index = self.index
        take = scheduler.take
        take_nowait = scheduler.take_nowait
        set_wake = scheduler.set_idle_wake
        next_due = scheduler.next_due_ns
        run = self._run_batch
        complete = self._complete
        loop = shared.loop
        holding = False
        qualifies = True  # the last execution was quick and did not wait for the loop
        shared.join()
        try:
            while True:
                if holding:
                    batch = take_nowait(index)
                    if batch is None:
                        break
                    if not batch:
                        holding = shared.run_idle(set_wake, next_due(index))
                        continue
                else:
                    batch = take(index)
                    if batch is None:
                        break
                    if qualifies:
                        shared.ask()
                results, timing = run(batch)
                qualifies = not shared.waited() and shared.stopped_briefly(timing.start_ns, timing.end_ns)
                if not qualifies:
                    shared.release()  # executions like this one would hold up the other connections
                if shared.post(complete, batch, results, timing):
                    holding = True
                else:
                    loop.call_soon_threadsafe(complete, batch, results, timing)
                    if qualifies:
                        shared.ask()  # (when not asked yet: a stream that handed the loop back takes it again)
                    holding = shared.settle()
        finally:
            shared.leave()

    def _close(self) -> None:
        assert self._loop is not None
        assert self._closed is not None
        try:
            if self._backend is not None:
                self._backend.close()
        except Exception:
            logger.exception("finalizing instance %s failed", self.spec.name)
        self._loop.call_soon_threadsafe(_set_result, self._closed, None)

    def _execute(self, batch: Sequence[Pending]) -> None:
        assert self._loop is not None
        results, timing = self._run_batch(batch)
        self._loop.call_soon_threadsafe(self._complete, batch, results, timing)

    def _run_batch(
        self, batch: Sequence[Pending]
    ) -> tuple[list[InferenceResponse | TritonError | DeferredAnswer | None], ExecutionTiming]:
        assert self._backend is not None
        grant = None
        if self._rate_limiter is not None and self._limits is not None:
            grant = self._rate_limiter.acquire(self._limits)
        timing = ExecutionTiming(start_ns=time.monotonic_ns())
        timing.input_end_ns = timing.start_ns
        try:
            raw = self._backend.execute([p.request for p in batch])
        except TritonError as exc:
            raw = [exc] * len(batch)
        except Exception as exc:
            logger.exception("instance %s: execute failed", self.spec.name)
            raw = [BackendExecutionError(f"{type(exc).__name__}: {exc}")] * len(batch)
        finally:
            if grant is not None:
                grant.limiter.release(grant)
        now = time.monotonic_ns()
        # A backend that marks its phases (the Python backend) splits compute input / infer / output
        # as Triton does; marks left from an earlier execution are not this one's.
        ready = getattr(self._backend, "inputs_ready_ns", 0)
        if timing.start_ns <= ready <= now:
            timing.input_end_ns = ready
        returned = getattr(self._backend, "outputs_start_ns", 0)
        timing.output_start_ns = returned if timing.input_end_ns <= returned <= now else now
        if len(raw) != len(batch):
            error = InternalError(f"instance {self.spec.name} returned {len(raw)} responses for {len(batch)} requests")
            raw = [error] * len(batch)
        results: list[InferenceResponse | TritonError | DeferredAnswer | None] = []
        for pending, answer in zip(batch, raw, strict=True):
            if answer is None or isinstance(answer, TritonError | DeferredAnswer):
                results.append(answer)  # None: a decoupled model answers through the request's sink
                continue
            try:
                results.append(self._finish(pending, answer))
            except TritonError as exc:
                results.append(exc)
        timing.end_ns = time.monotonic_ns()
        return results, timing


def _set_result(future: asyncio.Future[None], value: None) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[None], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
