"""ModelInstance: one backend instance and the dedicated thread that runs it.

The thread is created with the instance and runs ``create_instance``, every ``execute`` and
``close`` of that backend instance, so a backend may keep thread-affine state. Work reaches
the thread through a ``SimpleQueue``; results come back to the event loop with one
``call_soon_threadsafe`` per execution.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from airtower.backends.base import BackendInstance, BackendModel, InstanceSpec
from airtower.core.response import InferenceResponse
from airtower.errors import BackendExecutionError, InternalError, TritonError
from airtower.observability.stats import ExecutionTiming
from airtower.scheduling.scheduler import DoneCallback, Pending

logger = logging.getLogger(__name__)

#: Turns a backend's raw answer for one request into the client's response (filters
#: outputs, applies classification). Runs on the instance thread; may raise TritonError.
Finisher = Callable[[Pending, InferenceResponse], InferenceResponse]
#: Called on the event loop after each execution with its batch, per-request results and timing.
Recorder = Callable[[Sequence[Pending], Sequence["InferenceResponse | TritonError"], ExecutionTiming], None]

_STOP = object()


class ModelInstance:
    """Runs one backend instance on its own thread; implements ``scheduling.Executor``."""

    def __init__(self, spec: InstanceSpec, finish: Finisher, record: Recorder) -> None:
        self.spec = spec
        self._finish = finish
        self._record = record
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"instance-{spec.name}", daemon=True)
        self._backend: BackendInstance | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, model: BackendModel) -> None:
        """Start the thread and create the backend instance on it."""
        self._loop = asyncio.get_running_loop()
        self._thread.start()
        created: asyncio.Future[None] = self._loop.create_future()
        self._work.put((self._create, (model, created)))
        await created

    async def aclose(self) -> None:
        """Finalize the backend instance on its thread, then stop the thread."""
        if not self._thread.is_alive():
            return
        assert self._loop is not None
        closed: asyncio.Future[None] = self._loop.create_future()
        self._work.put((self._close, (closed,)))
        self._work.put(_STOP)
        await closed

    def execute(self, batch: Sequence[Pending], done: DoneCallback) -> None:
        self._work.put((self._execute, (batch, done)))

    # -- on the instance thread ---------------------------------------------------------

    def _run(self) -> None:
        work = self._work
        while True:
            item = work.get()
            if item is _STOP:
                return
            function, args = item
            function(*args)

    def _create(self, model: BackendModel, created: asyncio.Future[None]) -> None:
        assert self._loop is not None
        try:
            self._backend = model.create_instance(self.spec)
        except Exception as exc:  # noqa: BLE001 - reported to the loader, which marks the model unavailable
            error = exc if isinstance(exc, TritonError) else InternalError(f"{type(exc).__name__}: {exc}")
            self._loop.call_soon_threadsafe(_set_exception, created, error)
        else:
            self._loop.call_soon_threadsafe(_set_result, created, None)

    def _close(self, closed: asyncio.Future[None]) -> None:
        assert self._loop is not None
        try:
            if self._backend is not None:
                self._backend.close()
        except Exception:
            logger.exception("finalizing instance %s failed", self.spec.name)
        self._loop.call_soon_threadsafe(_set_result, closed, None)

    def _execute(self, batch: Sequence[Pending], done: DoneCallback) -> None:
        assert self._loop is not None
        assert self._backend is not None
        timing = ExecutionTiming(start_ns=time.monotonic_ns())
        timing.input_end_ns = timing.start_ns
        results: list[InferenceResponse | TritonError]
        try:
            raw = self._backend.execute([p.request for p in batch])
        except TritonError as exc:
            raw = [exc] * len(batch)
        except Exception as exc:
            logger.exception("instance %s: execute failed", self.spec.name)
            raw = [BackendExecutionError(f"{type(exc).__name__}: {exc}")] * len(batch)
        timing.output_start_ns = time.monotonic_ns()
        if len(raw) != len(batch):
            error = InternalError(f"instance {self.spec.name} returned {len(raw)} responses for {len(batch)} requests")
            raw = [error] * len(batch)
        results = []
        for pending, answer in zip(batch, raw, strict=True):
            if isinstance(answer, TritonError):
                results.append(answer)
                continue
            try:
                results.append(self._finish(pending, answer))
            except TritonError as exc:
                results.append(exc)
        timing.end_ns = time.monotonic_ns()
        self._loop.call_soon_threadsafe(self._complete, batch, results, timing, done)

    # -- back on the event loop -----------------------------------------------------------

    def _complete(
        self,
        batch: Sequence[Pending],
        results: Sequence[InferenceResponse | TritonError],
        timing: ExecutionTiming,
        done: DoneCallback,
    ) -> None:
        for pending, result in zip(batch, results, strict=True):
            future = pending.future
            if future.done():
                continue
            if isinstance(result, TritonError):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._record(batch, results, timing)
        done(self, batch)


def _set_result(future: asyncio.Future[None], value: None) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[None], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
