"""Ensembles (``platform: "ensemble"``): a data-flow graph of composing models, run in the server.

``EnsemblePlan`` is the graph checked at load with Triton's rules and messages (core
``ensemble_utils.cc``): every ensemble input is used, every output is written by a step whose
inputs are all connected to the ensemble inputs (no cycles), and a tensor has one producer.

``EnsembleModel`` serves it. A request becomes a task on the event loop that starts every step
whose input tensors exist, submitting the step's request straight to the composing model (no
network hop; the composing model's scheduler, batching included, applies), and starts more as
outputs arrive, so independent branches run at once. Tensors pass between steps by reference
(renamed, never copied). The ensemble's outputs come in the order they were produced, as in
Triton.

An ensemble with a decoupled step is decoupled itself (as Triton marks it): each response of that
step runs the rest of the graph on its own copy of the tensors produced so far, and each copy that
reaches the ensemble's outputs becomes one response of the ensemble; the request ends when every
copy has and every decoupled step has sent its final flag.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airtower.backends.base import ModelContext
from airtower.core.classification import classified, output_labels
from airtower.core.request import InferenceRequest, RequestedOutput, ResponseSink
from airtower.core.response import InferenceResponse
from airtower.core.tensor import Tensor
from airtower.core.validation import RequestValidator
from airtower.errors import DECOUPLED_UNSUPPORTED, InternalError, ModelConfigError, TritonError, UnsupportedError
from airtower.models.model import Model, ModelState
from airtower.observability.stats import ExecutionTiming, ModelStatistics
from airtower.observability.trace import Tracer
from airtower.scheduling.sequence_batch_scheduler import SEQUENCE_END, SEQUENCE_START
from airtower.types import ParameterValue

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Step:
    """One ``ensemble_scheduling.step``: ``inputs`` maps the model's input names to ensemble
    tensors, ``outputs`` the model's output names to ensemble tensors."""

    model_name: str
    model_version: str  # "" = the latest READY version
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class EnsemblePlan:
    name: str
    steps: tuple[Step, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @classmethod
    def from_config(cls, config: ModelConfig) -> EnsemblePlan:
        """The checked graph of ``config``.

        Raises:
            ModelConfigError: an unused input, an output that is not written or not connected
                (a cycle, a tensor nobody produces), or a tensor produced by two steps.
        """
        steps = tuple(
            Step(
                step.model_name,
                str(step.model_version) if step.model_version > 0 else "",
                dict(sorted(step.input_map.items())),
                dict(sorted(step.output_map.items())),
            )
            for step in config.ensemble_scheduling.step
        )
        plan = cls(config.name, steps, tuple(t.name for t in config.input), tuple(t.name for t in config.output))
        plan._check()
        return plan

    @property
    def composing_models(self) -> list[str]:
        return sorted({step.model_name for step in self.steps})

    def _check(self) -> None:
        name = self.name
        producer: dict[str, int] = {}
        for index, step in enumerate(self.steps):
            for tensor in step.outputs.values():
                if tensor in producer or tensor in self.inputs:
                    raise ModelConfigError(
                        f"ensemble tensor '{tensor}' for ensemble '{name}' is the output of more than one step "
                        "or an ensemble input"
                    )
                producer[tensor] = index
        consumed = {tensor for step in self.steps for tensor in step.inputs.values()}
        for tensor in self.inputs:
            if tensor not in consumed:
                # Triton's message, its missing quote included.
                raise ModelConfigError(f"ensemble input '{tensor}' for ensemble {name}' is not used")
        connected = set(self.inputs)
        changed = True
        while changed:
            changed = False
            for step in self.steps:
                if all(t in connected for t in step.inputs.values()) and not set(step.outputs.values()) <= connected:
                    connected.update(step.outputs.values())
                    changed = True
        for tensor in self.outputs:
            if tensor not in producer:
                raise ModelConfigError(f"output '{tensor}' for ensemble '{name}' is not written")
            if tensor not in connected:
                missing = self._first_unconnected(producer[tensor], producer, connected, set())
                raise ModelConfigError(
                    f"output '{tensor}' for ensemble '{name}' is not written: at least one of its depending "
                    f"tensors, '{missing}', is not connected"
                )

    def _first_unconnected(self, index: int, producer: dict[str, int], connected: set[str], seen: set[int]) -> str:
        seen.add(index)
        for tensor in self.steps[index].inputs.values():
            if tensor in connected:
                continue
            source = producer.get(tensor)
            if source is None or source in seen:
                return tensor
            return self._first_unconnected(source, producer, connected, seen)
        return ""  # pragma: no cover - only called for a step with an unconnected input


#: Finds the READY composing model serving ``(name, version)``; raises like ``ModelManager.get``.
ModelLookup = Callable[[str, str], "Model | EnsembleModel"]


class EnsembleModel:
    """A loaded ensemble version: the same face as ``Model`` to the server and frontends."""

    scheduler = None  # no queue of its own: its steps queue at the composing models

    def __init__(
        self,
        config: ModelConfig,
        version: int,
        context: ModelContext,
        lookup: ModelLookup,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.version = version
        self.version_str = str(version)
        self.context = context
        self.state: ModelState = ModelState.LOADING
        self.reason = ""
        self.stats = ModelStatistics(self.name, self.version_str)
        self.validator = RequestValidator(config)
        self.plan = EnsemblePlan.from_config(config)
        self._labels = output_labels(config, context.model_dir)
        self._lookup = lookup
        self._tracer = tracer
        self._tasks: set[asyncio.Task[None]] = set()
        #: True when a composing model is decoupled (set at load; the config then says so too).
        self.decoupled = config.model_transaction_policy.decoupled
        # ``max_inflight_requests``: at most that many requests in flight at each step (0: no limit).
        limit = int(config.ensemble_scheduling.max_inflight_requests)
        self._step_slots = [asyncio.Semaphore(limit) for _ in self.plan.steps] if limit > 0 else None

    async def load(self) -> None:
        """Check that the composing models serve the tensors the steps map, then become READY."""
        for step in self.plan.steps:
            model = self._lookup(step.model_name, step.model_version)
            inputs = {tensor.name for tensor in model.config.input}
            outputs = {tensor.name for tensor in model.config.output}
            for key in step.inputs:
                if key not in inputs:
                    raise ModelConfigError(
                        f"in ensemble {self.name}, ensemble tensor {step.inputs[key]} is mapped to non-existing "
                        f"input {key} of model {step.model_name}"
                    )
            for key in step.outputs:
                if key not in outputs:
                    raise ModelConfigError(
                        f"in ensemble {self.name}, ensemble tensor {step.outputs[key]} is mapped from non-existing "
                        f"output {key} of model {step.model_name}"
                    )
            if model.decoupled:
                self.decoupled = True
        # As Triton shows it in the ensemble's config: decoupled or not, the policy is there.
        self.config.model_transaction_policy.decoupled = self.decoupled
        self.config.model_transaction_policy.SetInParent()
        self.state = ModelState.READY

    async def aclose(self) -> None:
        self.state = ModelState.UNLOADING
        for task in list(self._tasks):
            task.cancel()

    def submit(
        self, request: InferenceRequest, on_response: ResponseSink | None = None
    ) -> asyncio.Future[InferenceResponse]:
        """Validate ``request`` and start running the graph on it. A decoupled ensemble sends its
        responses to ``on_response(response, final)`` (``None`` with ``final`` to end); its future
        resolves after the last.

        Raises:
            InvalidArgumentError: the request does not match the ensemble's config.
            UnsupportedError: a decoupled ensemble without ``on_response``.
        """
        batch_size = self.validator.validate(request)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[InferenceResponse] = loop.create_future()
        if self.decoupled:
            if on_response is None:
                raise UnsupportedError(DECOUPLED_UNSUPPORTED)
            task = loop.create_task(self._run_decoupled(request, batch_size, future, on_response))
        else:
            task = loop.create_task(self._run(request, batch_size, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # A client that goes away cancels the graph and, through it, the running steps.
        future.add_done_callback(lambda done: task.cancel() if done.cancelled() else None)
        future.add_done_callback(request.notify_complete)
        return future

    async def _run(self, request: InferenceRequest, batch_size: int, future: asyncio.Future[InferenceResponse]) -> None:
        start = time.monotonic_ns()
        running: dict[asyncio.Future[InferenceResponse], Step] = {}
        trace_id = self._trace_id(request)
        try:
            response = await self._execute(request, running, trace_id)
        except asyncio.CancelledError:
            for step_future in running:
                step_future.cancel()
            raise
        except TritonError as exc:
            for step_future in running:
                step_future.cancel()
            if not future.done():
                future.set_exception(self._failed(exc))
            self.stats.record_failure(start, time.monotonic_ns(), "OTHER")  # as Triton labels ensemble failures
            return
        if not future.done():
            future.set_result(response)
        self._record_success(request, batch_size, start, trace_id)

    def _failed(self, error: TritonError) -> TritonError:
        """A step's (or the graph's) error as the ensemble's, worded as Triton words it."""
        return type(error)(f"in ensemble '{self.name}', {error.message}")

    def _trace_id(self, request: InferenceRequest) -> int:
        tracer = self._tracer
        return tracer.trace_id(self.name, request.trace_parent, request.trace_context) if tracer is not None else 0

    def _record_success(self, request: InferenceRequest, batch_size: int, start: int, trace_id: int) -> None:
        """Statistics (one execution per request) and the trace of a request the graph answered."""
        end = time.monotonic_ns()
        timing = ExecutionTiming(start_ns=start, input_end_ns=start, output_start_ns=end, end_ns=end)
        self.stats.record_success(start, timing, end)
        self.stats.record_execution(batch_size, timing)
        if trace_id and self._tracer is not None:
            stamps = [("REQUEST_START", start), ("REQUEST_END", end)]
            self._tracer.add(trace_id, self.name, self.version, request.id, stamps, request.trace_parent)

    def _outputs(self, request: InferenceRequest, tensors: Mapping[str, Tensor]) -> list[Tensor]:
        """The ensemble outputs the request asked for (all by default), in the order produced, those
        asked for with a classification replaced by their top classes (the ensemble's labels)."""
        requested = {output.name: output for output in request.outputs}
        wanted = set(requested) or set(self.plan.outputs)
        outputs: list[Tensor] = []
        for name, tensor in tensors.items():
            if name in wanted and name not in request.inputs:
                asked = requested.get(name)
                if asked is not None and asked.class_count > 0:
                    labels = self._labels.get(name, [])
                    tensor = classified(tensor, asked.class_count, labels, batched=self.config.max_batch_size > 0)
                outputs.append(tensor)
        return outputs

    async def _run_decoupled(
        self,
        request: InferenceRequest,
        batch_size: int,
        future: asyncio.Future[InferenceResponse],
        on_response: ResponseSink,
    ) -> None:
        start = time.monotonic_ns()
        trace_id = self._trace_id(request)

        def emit(response: InferenceResponse) -> None:
            if not future.done():
                on_response(response, False)

        try:
            await self._flow(request, dict(request.inputs), list(enumerate(self.plan.steps)), trace_id, emit)
        except TritonError as exc:
            if not future.done():
                on_response(self._failed(exc), True)
                future.set_result(InferenceResponse(self.name, self.version_str, request.id, []))
            self.stats.record_failure(start, time.monotonic_ns(), "OTHER")
            return
        if not future.done():
            on_response(None, True)
            future.set_result(InferenceResponse(self.name, self.version_str, request.id, []))
        self._record_success(request, batch_size, start, trace_id)

    async def _flow(
        self,
        request: InferenceRequest,
        tensors: dict[str, Tensor],
        waiting: list[tuple[int, Step]],
        trace_parent: int,
        emit: Callable[[InferenceResponse], None],
    ) -> None:
        """Run ``waiting`` over ``tensors``, in a decoupled ensemble: ordinary steps as in
        ``_run_steps``; each response of a decoupled step continues the graph in a copy of this flow
        (once the ordinary steps running here have finished, so that the copy has their outputs).
        A flow that did not fork and holds the ensemble's outputs emits one response."""
        running: dict[asyncio.Future[InferenceResponse], Step] = {}
        streams: dict[asyncio.Future[InferenceResponse], asyncio.Queue[tuple[object, bool]]] = {}
        step_of: dict[asyncio.Future[InferenceResponse], Step] = {}
        forks: list[asyncio.Task[None]] = []
        forked = False
        try:
            while True:
                for index, step in list(waiting):
                    if not all(source in tensors for source in step.inputs.values()):
                        continue
                    waiting.remove((index, step))
                    step_request = self._step_request(request, step, tensors, trace_parent)
                    model = self._lookup(step.model_name, step.model_version)
                    if model.decoupled:
                        responses: asyncio.Queue[tuple[object, bool]] = asyncio.Queue()
                        stream_future = model.submit(step_request, _enqueue_to(responses))
                        streams[stream_future] = responses
                        step_of[stream_future] = step
                    else:
                        step_future = model.submit(step_request)
                        running[step_future] = step
                if running:  # ordinary steps first: forks copy their outputs
                    done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for step_future in done:
                        self._collect(running.pop(step_future), step_future.result(), tensors)
                    continue
                if not streams:
                    break
                getters: dict[asyncio.Task[tuple[object, bool]], asyncio.Future[InferenceResponse]] = {
                    asyncio.ensure_future(queue.get()): key for key, queue in streams.items()
                }
                try:
                    arrived, _ = await asyncio.wait(getters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for getter in getters:
                        if not getter.done():
                            getter.cancel()
                for getter in arrived:
                    key = getters[getter]
                    item, final = getter.result()
                    queue = streams[key]
                    items = [(item, final)]
                    while not queue.empty():
                        items.append(queue.get_nowait())
                    for item, final in items:
                        if isinstance(item, TritonError):
                            raise item
                        if isinstance(item, InferenceResponse):
                            forked = True
                            branch = dict(tensors)
                            self._collect(step_of[key], item, branch)
                            forks.append(
                                asyncio.ensure_future(self._flow(request, branch, list(waiting), trace_parent, emit))
                            )
                        if final:
                            del streams[key]
            if forks:
                await asyncio.gather(*forks)
        except BaseException:
            for step_future in (*running, *streams):
                step_future.cancel()
            for fork in forks:
                fork.cancel()
            raise
        if forked or waiting:
            return
        outputs = self._outputs(request, tensors)
        if outputs:
            emit(self._response(request, outputs))

    def _step_request(
        self, request: InferenceRequest, step: Step, tensors: Mapping[str, Tensor], trace_parent: int
    ) -> InferenceRequest:
        step_request = InferenceRequest(
            step.model_name,
            step.model_version,
            request.id,
            {key: _renamed(tensors[source], key) for key, source in step.inputs.items()},
            [RequestedOutput(name) for name in step.outputs],
            dict(request.parameters),
            request.priority,
            request.timeout_us,
            request.correlation_id,
            request.flags,
        )
        step_request.trace_parent = trace_parent
        return step_request

    def _collect(self, step: Step, answer: InferenceResponse, tensors: dict[str, Tensor]) -> None:
        """A step's outputs into ``tensors`` under their ensemble names."""
        produced = {tensor.name: tensor for tensor in answer.outputs}
        for key, target in step.outputs.items():
            tensor = produced.get(key)
            if tensor is None:
                raise InternalError(f"model '{step.model_name}' did not produce output '{key}'")
            tensors[target] = _renamed(tensor, target)

    async def _execute(
        self, request: InferenceRequest, running: dict[asyncio.Future[InferenceResponse], Step], trace_parent: int
    ) -> InferenceResponse:
        tensors: dict[str, Tensor] = dict(request.inputs)
        waiting = list(enumerate(self.plan.steps))
        held: list[asyncio.Semaphore] = []
        try:
            return await self._run_steps(request, running, tensors, waiting, held, trace_parent)
        finally:
            for slot in held:
                slot.release()

    async def _run_steps(
        self,
        request: InferenceRequest,
        running: dict[asyncio.Future[InferenceResponse], Step],
        tensors: dict[str, Tensor],
        waiting: list[tuple[int, Step]],
        held: list[asyncio.Semaphore],
        trace_parent: int,
    ) -> InferenceResponse:
        slots: dict[asyncio.Future[InferenceResponse], asyncio.Semaphore] = {}
        while True:
            for index, step in list(waiting):
                if all(source in tensors for source in step.inputs.values()):
                    waiting.remove((index, step))
                    slot = self._step_slots[index] if self._step_slots is not None else None
                    if slot is not None:
                        await slot.acquire()
                        held.append(slot)
                    model = self._lookup(step.model_name, step.model_version)
                    step_future = model.submit(self._step_request(request, step, tensors, trace_parent))
                    running[step_future] = step
                    if slot is not None:
                        slots[step_future] = slot
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for step_future in done:
                step = running.pop(step_future)
                slot = slots.pop(step_future, None)
                if slot is not None:
                    held.remove(slot)
                    slot.release()
                self._collect(step, step_future.result(), tensors)  # a step's error is the ensemble's error
        return self._response(request, self._outputs(request, tensors))

    def _response(self, request: InferenceRequest, outputs: list[Tensor]) -> InferenceResponse:
        """The ensemble's response: with the request's sequence parameters, as Triton adds them."""
        parameters: dict[str, ParameterValue] = {
            "sequence_id": request.correlation_id,
            "sequence_start": bool(request.flags & SEQUENCE_START),
            "sequence_end": bool(request.flags & SEQUENCE_END),
        }
        return InferenceResponse(self.name, self.version_str, request.id, outputs, parameters)


def _renamed(tensor: Tensor, name: str) -> Tensor:
    """The same data under another name (no copy)."""
    return tensor if tensor.name == name else Tensor(name, tensor.datatype, tensor.shape, tensor.data)


def _enqueue_to(queue: asyncio.Queue[tuple[object, bool]]) -> ResponseSink:
    """A decoupled step's response sink (on the loop) that queues what it is sent."""

    def sink(item: InferenceResponse | TritonError | None, final: bool) -> None:
        queue.put_nowait((item, final))

    return sink
