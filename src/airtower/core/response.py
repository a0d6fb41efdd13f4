"""InferenceResponse: what a model answered to one request."""

from __future__ import annotations

from dataclasses import dataclass, field

from airtower.core.tensor import Tensor
from airtower.types import ParameterValue


@dataclass(slots=True)
class InferenceResponse:
    """Outputs of one request, in the order the client asked for (or the config's order)."""

    model_name: str
    model_version: str
    id: str = ""
    outputs: list[Tensor] = field(default_factory=list)
    parameters: dict[str, ParameterValue] = field(default_factory=dict)
