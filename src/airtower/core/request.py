"""InferenceRequest: what every frontend decodes a request into, before validation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from airtower.core.tensor import Tensor
from airtower.types import ParameterValue

#: Request parameters the server interprets itself; they never reach a backend.
RESERVED_PARAMETERS: frozenset[str] = frozenset(
    {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "binary_data_output", "headers"}
)


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for. ``class_count`` > 0 asks for top-N classification."""

    name: str
    class_count: int = 0
    parameters: dict[str, ParameterValue] = field(default_factory=dict)


@dataclass(slots=True)
class InferenceRequest:
    """A decoded inference request.

    ``model_version`` is "" when the version policy chooses; ``outputs`` is empty when the
    client wants every output; ``inputs`` keeps the client's order.
    """

    model_name: str
    model_version: str = ""
    id: str = ""
    inputs: dict[str, Tensor] = field(default_factory=dict)
    outputs: list[RequestedOutput] = field(default_factory=list)
    parameters: dict[str, ParameterValue] = field(default_factory=dict)
    priority: int = 0
    timeout_us: int = 0
    correlation_id: int | str = 0
    flags: int = 0
    #: Set by the server once the request is accepted: the version that serves it.
    resolved_version: int = 0
    #: Set by the server once the request is queued: whether its client cancelled it or went
    #: away (callable from any thread; Python models see it as ``request.is_cancelled()``).
    is_cancelled: Callable[[], bool] | None = None
