"""InferenceResponse: what a model answered to one request."""

from __future__ import annotations

from dataclasses import dataclass

from airtower.core.tensor import Tensor
from airtower.types import ParameterValue


@dataclass(slots=True, init=False)
class InferenceResponse:
    """Outputs of one request, in the order the client asked for (or the config's order)."""

    model_name: str
    model_version: str
    id: str
    outputs: list[Tensor]
    parameters: dict[str, ParameterValue]

    # Written out so that mypyc compiles it (see InferenceRequest).
    def __init__(
        self,
        model_name: str,
        model_version: str,
        id: str = "",
        outputs: list[Tensor] | None = None,
        parameters: dict[str, ParameterValue] | None = None,
    ) -> None:
        self.model_name = model_name
        self.model_version = model_version
        self.id = id
        self.outputs = [] if outputs is None else outputs
        self.parameters = {} if parameters is None else parameters
