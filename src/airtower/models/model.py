"""Model: one loaded version of a model — config, backend model, instances, scheduler, stats.

State machine: LOADING → READY → UNLOADING → (gone); a failed load ends in UNAVAILABLE with a
reason. ``infer`` is the hot path: validate, enqueue, await the future.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import functools
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from airtower import shared_loop
from airtower.backends.base import Backend, BackendModel, DeferredAnswer, InstanceSpec, ModelContext
from airtower.core.classification import classified, output_labels
from airtower.core.model_config import is_decoupled
from airtower.core.request import InferenceRequest, ResponseSink
from airtower.core.response import InferenceResponse
from airtower.core.tensor import Tensor
from airtower.core.validation import RequestValidator
from airtower.errors import DECOUPLED_UNSUPPORTED, InvalidArgumentError, TritonError, UnsupportedError
from airtower.models.instance import ModelInstance
from airtower.models.response_cache import ResponseCache, request_key
from airtower.models.warmup import WarmupSample, warmup_failure, warmup_samples
from airtower.observability.stats import ExecutionTiming, ModelStatistics, rejection_reason
from airtower.observability.trace import Tracer
from airtower.scheduling.direct import DirectScheduler
from airtower.scheduling.dynamic_batch_scheduler import DynamicBatchScheduler, ResponseOrder, shape_key_function
from airtower.scheduling.dynamic_batcher import BatcherPolicy
from airtower.scheduling.rate_limiter import RateLimiter
from airtower.scheduling.scheduler import Pending, Scheduler
from airtower.scheduling.sequence_batch_scheduler import SequenceBatchScheduler

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig, ModelInstanceGroup

logger = logging.getLogger(__name__)

#: A decoupled model's instance thread that holds the event loop (``shared_loop``) writes its first
#: response at once and the later ones of the same execution at most this often.
FLUSH_INTERVAL_NS = 100_000


class ModelState(enum.Enum):
    """Triton's model version states, as the repository index reports them."""

    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


def instance_specs(config: ModelConfig) -> list[tuple[InstanceSpec, ModelInstanceGroup]]:
    """One spec per instance of every instance group (``<group>_<index>``), as Triton names them,
    with its group."""
    from tritonclient.grpc.model_config_pb2 import ModelInstanceGroup

    specs: list[tuple[InstanceSpec, ModelInstanceGroup]] = []
    for group in config.instance_group:
        kind = ModelInstanceGroup.Kind.Name(group.kind)
        devices = list(group.gpus) if kind == "KIND_GPU" and group.gpus else [0]
        for device in devices:
            for index in range(max(group.count, 1)):
                specs.append((InstanceSpec(f"{group.name}_{index}", kind, device, group.name), group))
    return specs


class Model:
    """A loaded model version."""

    def __init__(
        self,
        config: ModelConfig,
        version: int,
        context: ModelContext,
        rate_limiter: RateLimiter | None = None,
        cache: ResponseCache | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.version = version
        self.version_str = str(version)
        self.context = context
        self.state = ModelState.LOADING
        self.reason = ""
        self.stats = ModelStatistics(self.name, self.version_str)
        self.validator = RequestValidator(config)
        self._labels = output_labels(self.config, self.context.model_dir)
        self._batched = config.max_batch_size > 0
        self._backend_model: BackendModel | None = None
        self._instances: list[ModelInstance] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._order: ResponseOrder | None = None
        #: Only the dynamic batcher reads a request's shape key: other schedulers skip computing it.
        self._shape_key: Callable[[InferenceRequest], Hashable] | None = None
        self._rate_limiter = rate_limiter
        self.decoupled = is_decoupled(config)
        # Triton caches only models that ask for it, and never decoupled or stateful ones.
        wants_cache = config.response_cache.enable and not self.decoupled and not config.HasField("sequence_batching")
        self._cache = cache if wants_cache else None
        self._tracer = tracer
        self._sequences: SequenceBatchScheduler | None = None
        self.scheduler: Scheduler | None = None

    async def load(self, backend: Backend) -> None:
        """Load the backend model and start every instance; on failure, clean up and raise."""
        self._loop = asyncio.get_running_loop()
        try:
            samples = warmup_samples(self.config, Path(self.context.model_dir))
            self._backend_model = await asyncio.to_thread(backend.load, self.config, self.context)
            specs = instance_specs(self.config)
            scheduler = self.scheduler = self._new_scheduler(len(specs))
            for index, (spec, group) in enumerate(specs):
                limits = None
                if self._rate_limiter is not None:
                    limits = self._rate_limiter.register(group, spec.device_id, spec.name)
                instance = ModelInstance(spec, self._finish, self._complete, self._rate_limiter, limits, index)
                self._instances.append(instance)
                warmup = self._warmup_batches(samples, spec.group or spec.name)
                results = await instance.start(self._backend_model, scheduler, warmup)
                self._check_warmup(samples, results)
        except BaseException as exc:
            await self.aclose()
            # Not a bare ``raise``: compiled by mypyc, a coroutine does not keep the exception it
            # handles across an ``await``, so a bare raise re-raised another load's error.
            raise exc
        self.state = ModelState.READY

    def _warmup_batches(self, samples: list[WarmupSample], instance: str) -> list[list[InferenceRequest]]:
        """Each sample ``count`` times, checked as Triton checks warmup requests before running them."""
        batches: list[list[InferenceRequest]] = []
        max_batch = self.config.max_batch_size
        for sample in samples:
            if sample.batch_size > max(max_batch, 1):
                too_big = f"batch size {sample.batch_size} for '{instance}', max allowed is {max_batch}"
                raise InvalidArgumentError(warmup_failure(sample, [too_big] * sample.batch_size))
            for request in sample.requests:
                self.validator.validate(request)
            batches.extend([sample.requests] * sample.count)
        return batches

    def _check_warmup(self, samples: list[WarmupSample], results: list[list[InferenceResponse | TritonError]]) -> None:
        batches = iter(results)
        for sample in samples:
            for _ in range(sample.count):
                errors = [result.message for result in next(batches) if isinstance(result, TritonError)]
                if errors:
                    raise InvalidArgumentError(warmup_failure(sample, errors))

    def _new_scheduler(self, instances: int) -> Scheduler:
        """Triton's choice: the sequence batcher or the dynamic batcher when configured, else direct."""
        config = self.config
        if config.HasField("sequence_batching"):
            sequences = self._sequences = SequenceBatchScheduler(
                config, instances, self._reject, Path(self.context.model_dir)
            )
            return sequences
        if config.HasField("dynamic_batching") and config.max_batch_size > 0:
            policy = BatcherPolicy.from_config(config)
            self._shape_key = shape_key_function(config)
            if policy.preserve_ordering:
                self._order = ResponseOrder()
            return DynamicBatchScheduler(policy, self._reject)
        return DirectScheduler(self._reject)

    async def aclose(self) -> None:
        """Finalize every instance (on its thread), then release the backend model."""
        self.state = ModelState.UNLOADING
        # Each thread executes what is still queued, then finalizes its instance and exits.
        if self.scheduler is not None:
            self.scheduler.stop(len(self._instances))
        for instance in self._instances:
            await instance.wait_closed()
        self._instances.clear()
        if self._backend_model is not None:
            model, self._backend_model = self._backend_model, None
            try:
                await asyncio.to_thread(model.close)
            except Exception:
                logger.exception("closing model %s version %s failed", self.name, self.version)

    def submit(
        self, request: InferenceRequest, on_response: ResponseSink | None = None
    ) -> asyncio.Future[InferenceResponse]:
        """Validate ``request`` and queue it; the future resolves with its response.

        A decoupled model's responses go to ``on_response(response, final)`` on the event loop
        (``None`` with ``final`` for a bare final flag); its future resolves after the final one.

        Raises:
            InvalidArgumentError: the request does not match the config.
            UnsupportedError: a decoupled model without ``on_response``.
        """
        batch_size = self.validator.validate(request)
        scheduler = self.scheduler
        assert scheduler is not None
        # The loop the model was loaded on (asking asyncio costs a getpid() system call each time).
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[InferenceResponse] = loop.create_future()
        request.is_cancelled = future.cancelled
        request.resolved_version = self.version
        cache_key = None
        if self._cache is not None:
            started = time.monotonic_ns()
            cache_key = request_key(self.name, self.version, request)
            cached = self._cache.lookup(cache_key)
            now = time.monotonic_ns()
            if cached is not None:
                self.stats.record_cache_hit(started, now, batch_size)
                future.set_result(
                    InferenceResponse(self.name, self.version_str, request.id, cached.outputs, dict(cached.parameters))
                )
                loop.call_soon(request.notify_complete, future)  # once the caller has set its hook
                return future
            self.stats.cache_miss.add(now - started)
        if self.decoupled:
            if on_response is None:
                raise UnsupportedError(DECOUPLED_UNSUPPORTED)
            request.response_sink = self._decoupled_sink(loop, request, future, on_response)
        pending = Pending(
            request,
            future,
            batch_size,
            time.monotonic_ns(),
            request.priority,
            request.timeout_us,
            self._shape_key(request) if self._shape_key is not None else None,
            cache_key=cache_key,
            trace_id=self._trace_id(request),
        )
        if pending.trace_id:
            request.trace_id = pending.trace_id
            request.trace_w3c = self._tracer.w3c_context(pending.trace_id) if self._tracer is not None else None
        scheduler.enqueue(pending)
        return future

    # -- callbacks from instances ---------------------------------------------------------

    def _finish(self, pending: Pending, answer: InferenceResponse) -> InferenceResponse:
        """Keep the requested outputs (in the order the model produced them, as Triton does) and
        apply classification."""
        return self._finish_request(pending.request, answer)

    def _finish_request(self, request: InferenceRequest, answer: InferenceResponse) -> InferenceResponse:
        if self._sequences is not None and self._sequences.states:
            answer.outputs = self._sequences.keep_state(request, answer.outputs)
        answer.model_name = self.name
        answer.model_version = self.version_str
        answer.id = request.id
        if not request.outputs:
            return answer
        wanted = {output.name: output for output in request.outputs}
        outputs: list[Tensor] = []
        for tensor in answer.outputs:
            requested = wanted.get(tensor.name)
            if requested is None:
                continue
            if requested.class_count > 0:
                tensor = self._classify(tensor, requested.class_count)
            outputs.append(tensor)
        answer.outputs = outputs
        return answer

    def _classify(self, tensor: Tensor, class_count: int) -> Tensor:
        return classified(tensor, class_count, self._labels.get(tensor.name, []), batched=self._batched)

    def _complete(
        self,
        batch: Sequence[Pending],
        results: Sequence[InferenceResponse | TritonError | DeferredAnswer | None],
        timing: ExecutionTiming,
    ) -> None:
        """On the event loop after an execution: answer its requests (in order when the model
        preserves it), then record statistics."""
        order = self._order
        cache = self._cache
        for pending, result in zip(batch, results, strict=True):
            if pending.trace_id:
                self._trace(pending, timing, result)
            if cache is not None and pending.cache_key is not None and isinstance(result, InferenceResponse):
                cache.insert(pending.cache_key, result)
            if isinstance(result, DeferredAnswer):  # the backend answers it later, from any thread
                result.when_ready(functools.partial(self._answer_later, pending))
                continue
            if result is None:  # a decoupled model answers through the request's sink
                if pending.request.response_sink is None:  # warmup: nobody listens
                    _settle(pending.request, pending.future, InferenceResponse(self.name, self.version_str, "", []))
                continue
            sink = pending.request.response_sink
            if sink is not None:  # a decoupled request that failed: an error response, then the end
                sink(result, True)
                continue
            if order is not None and pending.order >= 0:
                order.deliver(pending.order, functools.partial(_settle, pending.request, pending.future, result))
            else:
                _settle(pending.request, pending.future, result)
        self._record(batch, results, timing)

    def _answer_later(self, pending: Pending, answer: InferenceResponse | TritonError) -> None:
        """A deferred answer arrived (on any thread): settle its request on the event loop."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._settle_late, pending, answer)

    def _settle_late(self, pending: Pending, answer: InferenceResponse | TritonError) -> None:
        if isinstance(answer, InferenceResponse):
            try:
                answer = self._finish(pending, answer)
            except TritonError as exc:
                answer = exc
        _settle(pending.request, pending.future, answer)

    def _decoupled_sink(
        self,
        loop: asyncio.AbstractEventLoop,
        request: InferenceRequest,
        future: asyncio.Future[InferenceResponse],
        on_response: ResponseSink,
    ) -> ResponseSink:
        """The thread-safe sink of a decoupled request: responses queue up and one loop wake-up
        delivers all those queued (not one wake-up per send)."""
        queued: collections.deque[tuple[InferenceResponse | TritonError | None, bool]] = collections.deque()
        state = {"scheduled": False, "first": True, "delivered": False}
        started = time.monotonic_ns()
        progress = [0, started]  # the next response's index, when the previous one was delivered

        def drain() -> None:
            state["scheduled"] = False
            if not state["delivered"] and queued:
                state["delivered"] = True
                histogram = self.stats.first_response
                if histogram is not None and queued[0][0] is not None:
                    histogram.observe((time.monotonic_ns() - started) / 1e6)
            while queued:
                response, final = queued.popleft()
                if future.done():
                    continue  # the client went away, or the final response was already sent
                arrived = time.monotonic_ns()
                self._deliver(request, future, on_response, response, final)
                if future.done():
                    # The request's sink refers to the request: let go of it once the last response is
                    # out, so that no cycle is left for the garbage collector (the model's response
                    # sender keeps the sink it was given, for its own later errors).
                    request.response_sink = None
                index, previous = progress
                outcome = (
                    "success" if isinstance(response, InferenceResponse) else "fail" if response else "empty_response"
                )
                self.stats.record_response(index, outcome, arrived - previous, time.monotonic_ns() - arrived)
                progress[0], progress[1] = index + 1, arrived

        shared = shared_loop.of(loop)
        flushes = [0, 0, 0]  # when this thread first wrote, the time it spent writing, when it last wrote

        def sink(response: InferenceResponse | TritonError | None, final: bool) -> None:
            queued.append((response, final))
            if shared is not None and shared.sending() and (state["scheduled"] or shared.post(drain)):
                # This instance thread holds the loop, stopped for this execution: it writes the first
                # response itself, at once, and later ones every FLUSH_INTERVAL_NS (the rest when the
                # execution ends and it runs the loop again). A stream that goes on for longer than a
                # quick execution lasts (its own time, not the loop's), or that paused that long since
                # this thread last ran the loop, hands the loop to the main thread, which writes the rest.
                state["scheduled"] = True
                now = time.monotonic_ns()
                if state["first"]:
                    state["first"] = False
                    flushes[0] = now
                elif (
                    now - flushes[2] > shared_loop.MAX_HOLDING_EXECUTION_NS
                    or now - flushes[0] - flushes[1] > shared_loop.MAX_HOLDING_EXECUTION_NS
                ):
                    shared.release()
                    return
                elif now - flushes[2] < FLUSH_INTERVAL_NS:
                    return
                shared.run_briefly()
                flushes[2] = time.monotonic_ns()
                flushes[1] += flushes[2] - now
                return
            if not state["scheduled"]:
                state["scheduled"] = True
                loop.call_soon_threadsafe(drain)
            if state["first"]:
                # Let the loop thread send the first response now rather than when the model's send
                # loop gives up the GIL (time to first response); once per request only.
                state["first"] = False
                time.sleep(0)

        return sink

    def _deliver(
        self,
        request: InferenceRequest,
        future: asyncio.Future[InferenceResponse],
        on_response: ResponseSink,
        response: InferenceResponse | TritonError | None,
        final: bool,
    ) -> None:
        """On the loop: one response a decoupled model sent for ``request``."""
        if future.done():
            return  # the client went away, or the final response was already sent
        if isinstance(response, InferenceResponse):
            try:
                response = self._finish_request(request, response)
            except TritonError as exc:
                response = exc
        on_response(response, final)
        if final:
            future.set_result(InferenceResponse(self.name, self.version_str, request.id, []))

    def _trace_id(self, request: InferenceRequest) -> int:
        tracer = self._tracer
        if tracer is None or (not request.trace_parent and request.trace_context is None):
            return 0  # only a frontend-sampled request or a traced request's child is traced
        return tracer.trace_id(self.name, request.trace_parent, request.trace_context)

    def _trace(self, pending: Pending, timing: ExecutionTiming, result: object) -> None:
        assert self._tracer is not None
        now = time.monotonic_ns()
        timestamps = [
            ("REQUEST_START", pending.enqueue_ns),
            ("QUEUE_START", pending.enqueue_ns),
            ("COMPUTE_START", timing.start_ns),
            ("COMPUTE_INPUT_END", timing.input_end_ns),
            ("COMPUTE_OUTPUT_START", timing.output_start_ns),
            ("COMPUTE_END", timing.end_ns),
            ("REQUEST_END", now),
        ]
        request = pending.request
        outputs = result.outputs if isinstance(result, InferenceResponse) else []
        self._tracer.add(
            pending.trace_id,
            self.name,
            self.version,
            request.id,
            timestamps,
            request.trace_parent,
            tensors=(list(request.inputs.values()), outputs),
        )

    def _reject(self, batch: Sequence[Pending], error: TritonError) -> None:
        """From an instance thread: fail ``batch`` (dropped from the queue) with ``error``, on the loop."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._fail, batch, error)

    def _fail(self, batch: Sequence[Pending], error: TritonError) -> None:
        now = time.monotonic_ns()
        reason = rejection_reason(error)
        for pending in batch:
            _settle(pending.request, pending.future, error)
            self.stats.record_failure(pending.enqueue_ns, now, reason)

    def _record(
        self,
        batch: Sequence[Pending],
        results: Sequence[InferenceResponse | TritonError | DeferredAnswer | None],
        timing: ExecutionTiming,
    ) -> None:
        stats = self.stats
        now = time.monotonic_ns()
        executed = 0
        for pending, result in zip(batch, results, strict=True):
            if isinstance(result, TritonError):
                stats.record_failure(pending.enqueue_ns, now, "BACKEND")
            else:
                stats.record_success(pending.enqueue_ns, timing, now)
                executed += pending.batch_size
        # Triton counts only successful inferences and executions
        if executed:
            stats.record_execution(executed, timing)


def _settle(
    request: InferenceRequest, future: asyncio.Future[InferenceResponse], result: InferenceResponse | TritonError
) -> None:
    """Resolve ``future`` with ``result`` (unless its client went away), then call the request's
    ``on_complete`` hook: the frontend writes the response in this loop iteration."""
    if not future.done():
        if isinstance(result, TritonError):
            future.set_exception(result)
        else:
            future.set_result(result)
    try:
        request.notify_complete(future)
    except Exception:  # a frontend's bug must not leave the rest of the batch unanswered
        logger.exception("the response-complete callback of request '%s' failed", request.id)
