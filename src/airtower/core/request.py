"""InferenceRequest: what every frontend decodes a request into, before validation."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airtower.core.tensor import Tensor
from airtower.errors import InvalidArgumentError
from airtower.types import ParameterValue

if TYPE_CHECKING:
    import asyncio

    from airtower.core.response import InferenceResponse
    from airtower.errors import TritonError

#: Request parameters the server interprets itself; they never reach a backend.
RESERVED_PARAMETERS: frozenset[str] = frozenset(
    {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "binary_data_output", "headers"}
)


#: ``(response, final)`` → None; see ``InferenceRequest.response_sink``.
ResponseSink = Callable[["InferenceResponse | TritonError | None", bool], None]
#: ``(future)`` → None; see ``InferenceRequest.on_complete``.
CompleteHook = Callable[["asyncio.Future[InferenceResponse]"], None]


@dataclass(slots=True, eq=False)
class RequestTraceContext:
    """What a frontend knows of one request, for tracing (created only while tracing is on).

    ``protocol`` is "HTTP" or "GRPC" (it names the timestamps), ``headers`` the request's headers or
    metadata (W3C ``traceparent``/``tracestate``), ``received`` the (start, end) steady-clock times
    of reading the request. The tracer fills the rest when the request is traced.
    """

    protocol: str
    headers: Mapping[str, str]
    received: tuple[int, int]
    trace_id: int = 0
    #: The trace level of its model when it was sampled (which records the trace gets).
    level: tuple[str, ...] = ()
    #: The model's records, held until the frontend has sent the response.
    records: list[dict[str, Any]] = field(default_factory=list)
    #: OpenTelemetry mode: the ``InferRequest`` span.
    root: Any = None


@dataclass(slots=True, init=False)
class RequestedOutput:
    """An output the client asked for. ``class_count`` > 0 asks for top-N classification."""

    name: str
    class_count: int
    parameters: dict[str, ParameterValue]

    def __init__(self, name: str, class_count: int = 0, parameters: dict[str, ParameterValue] | None = None) -> None:
        self.name = name
        self.class_count = class_count
        self.parameters = {} if parameters is None else parameters


def c_string(text: str) -> str:
    """``text`` as Triton's core keeps an id, a tensor name or a string correlation ID: a C string,
    which ends at the first NUL character."""
    return text.partition("\0")[0]


def first_of_each(outputs: list[RequestedOutput], *, settings_only: bool = False) -> list[RequestedOutput]:
    """``outputs`` with each name once: a name asked for twice keeps its first settings, as in Triton,
    whose frontends keep an output's settings in a map they emplace into. Its HTTP frontend enters
    every output (each has a binary flag); its gRPC one (``settings_only``) only those with a
    classification or a shared-memory region, so there the first mention with settings wins."""
    if len(outputs) < 2:
        return outputs
    seen: dict[str, RequestedOutput] = {}
    for output in outputs:
        kept = seen.get(output.name)
        if kept is None or (settings_only and not _has_settings(kept) and _has_settings(output)):
            seen[output.name] = output
    return list(seen.values())


def _has_settings(output: RequestedOutput) -> bool:
    return output.class_count > 0 or "shared_memory_region" in output.parameters


@dataclass(slots=True, init=False)
class InferenceRequest:
    """A decoded inference request.

    ``model_version`` is "" when the version policy chooses; ``outputs`` is empty when the
    client wants every output; ``inputs`` keeps the client's order.

    The hot per-request classes write their ``__init__`` out: mypyc compiles it, where a
    dataclass-generated one stays interpreted Python (docs/architecture.md, "Compiled modules").
    """

    model_name: str
    model_version: str
    id: str
    inputs: dict[str, Tensor]
    outputs: list[RequestedOutput]
    parameters: dict[str, ParameterValue]
    priority: int
    timeout_us: int
    correlation_id: int | str
    flags: int
    #: Set by the server once the request is accepted: the version that serves it.
    resolved_version: int
    #: Set by the server once the request is queued: whether its client cancelled it or went
    #: away (callable from any thread; Python models see it as ``request.is_cancelled()``).
    is_cancelled: Callable[[], bool] | None
    #: Set by the server for a decoupled model's request: takes each response the model sends
    #: (``None`` with ``final`` for a bare final flag; a ``TritonError`` for an error response)
    #: and whether it is the last. Callable from any thread.
    response_sink: ResponseSink | None
    #: gRPC streaming's ``triton_enable_empty_final_response``: end a decoupled request whose
    #: model sent a bare final flag with an empty response marked final.
    enable_empty_final_response: bool
    #: The trace id of the request this one serves (an ensemble's step), so it is traced as its child.
    trace_parent: int
    #: Set by the server when this request is traced: its trace id, and in OpenTelemetry mode its
    #: W3C context (``{"traceparent": ...}`` as JSON), which a Python model reads through
    #: ``request.trace()`` and passes to the BLS requests it makes (they become children).
    trace_id: int
    trace_w3c: str | None
    #: Set by a decoder that replayed a header it had decoded before: a hashable value equal for
    #: every request with the same input names, datatypes and shapes and requested output names,
    #: so a validator checks each layout once. ``None``: check this request in full.
    layout: Hashable | None
    #: Set by a frontend while tracing is on: what it knows of the request, for its trace.
    trace_context: RequestTraceContext | None
    #: Set by a decoder that found an input's data the wrong size: the error per input, which the
    #: validator raises where Triton's core checks byte sizes (after every other check), the input
    #: holding an empty array meanwhile. ``None`` when there is none.
    input_errors: dict[str, InvalidArgumentError] | None
    #: Set by a frontend that waits for the one response of a request (Triton's response-complete
    #: callback): called once, on the event loop, as soon as the model has settled the request's
    #: future (answered it, failed it, or let go of it after the client cancelled it), in the same
    #: loop iteration rather than the next one, as a future's done-callbacks would be. A decoupled
    #: model's requests end through ``response_sink`` instead.
    on_complete: CompleteHook | None

    def __init__(
        self,
        model_name: str,
        model_version: str = "",
        id: str = "",
        inputs: dict[str, Tensor] | None = None,
        outputs: list[RequestedOutput] | None = None,
        parameters: dict[str, ParameterValue] | None = None,
        priority: int = 0,
        timeout_us: int = 0,
        correlation_id: int | str = 0,
        flags: int = 0,
        resolved_version: int = 0,
        is_cancelled: Callable[[], bool] | None = None,
        response_sink: ResponseSink | None = None,
        enable_empty_final_response: bool = False,
        trace_parent: int = 0,
        trace_id: int = 0,
        trace_w3c: str | None = None,
        layout: Hashable | None = None,
        trace_context: RequestTraceContext | None = None,
        on_complete: CompleteHook | None = None,
        input_errors: dict[str, InvalidArgumentError] | None = None,
    ) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.id = id
        self.inputs = {} if inputs is None else inputs
        self.outputs = [] if outputs is None else outputs
        self.parameters = {} if parameters is None else parameters
        self.priority = priority
        self.timeout_us = timeout_us
        self.correlation_id = correlation_id
        self.flags = flags
        self.resolved_version = resolved_version
        self.is_cancelled = is_cancelled
        self.response_sink = response_sink
        self.enable_empty_final_response = enable_empty_final_response
        self.trace_parent = trace_parent
        self.trace_id = trace_id
        self.trace_w3c = trace_w3c
        self.layout = layout
        self.trace_context = trace_context
        self.on_complete = on_complete
        self.input_errors = input_errors

    def notify_complete(self, future: asyncio.Future[InferenceResponse]) -> None:
        """Call ``on_complete`` with ``future``, once: the hook is cleared first."""
        hook = self.on_complete
        if hook is not None:
            self.on_complete = None
            hook(future)
