"""Model warmup: the ``model_warmup`` samples of a config, turned into requests.

As in Triton (core ``backend_model_instance.cc``), every instance executes every sample before
the model is READY: a sample of ``batch_size`` N is N requests of batch 1 executed together, run
``count`` times (once when 0). Input data is zeros, random values (zeros for strings) or the raw
contents of ``<model>/warmup/<input_data_file>``. Warmup executions appear in the statistics
like any other. A sample that fails makes the model UNAVAILABLE with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from airtower.core.request import InferenceRequest
from airtower.core.tensor import Tensor, array_from_buffer, element_count
from airtower.errors import InternalError, InvalidArgumentError
from airtower.types import NUMPY_DTYPE_BY_WIRE, config_to_wire

if TYPE_CHECKING:
    from airtower.core.model_config import ModelConfig

#: Seed of the random warmup data, so that a warmup is the same at every start.
_SEED = 0


@dataclass(slots=True)
class WarmupSample:
    """One ``model_warmup`` entry: its requests, executed together ``count`` times."""

    name: str
    requests: list[InferenceRequest]
    count: int

    @property
    def batch_size(self) -> int:
        return len(self.requests)


def warmup_samples(config: ModelConfig, model_dir: Path) -> list[WarmupSample]:
    """The config's warmup samples; a sample of batch size 0 is skipped, as in Triton.

    Inputs the model does not have are left out (the request then fails validation, as in
    Triton); the caller validates the requests and checks the batch size.

    Raises:
        InternalError: an input data file is missing or has the wrong size (Triton's wording).
    """
    from tritonclient.grpc.model_config_pb2 import DataType

    samples: list[WarmupSample] = []
    rng = np.random.default_rng(_SEED)
    batched = config.max_batch_size > 0
    known_inputs = {tensor.name for tensor in config.input}
    for setting in config.model_warmup:
        if setting.batch_size == 0:
            continue
        tensors: dict[str, Tensor] = {}
        for name, spec in setting.inputs.items():
            if name not in known_inputs:
                continue
            wire = config_to_wire(DataType.Name(spec.data_type))
            dims = tuple(int(d) for d in spec.dims)
            data = _sample_data(wire, dims, spec, model_dir, rng)
            shape = (1, *dims) if batched else dims
            tensors[name] = Tensor(name, wire, shape, data.reshape(shape))
        requests = [InferenceRequest(config.name, inputs=dict(tensors)) for _ in range(setting.batch_size)]
        samples.append(WarmupSample(setting.name, requests, max(int(setting.count), 1)))
    return samples


def _sample_data(
    wire: str, dims: tuple[int, ...], spec: Any, model_dir: Path, rng: np.random.Generator
) -> npt.NDArray[Any]:
    count = element_count(dims)
    which = spec.WhichOneof("input_data_type")
    if which == "input_data_file":
        path = model_dir / "warmup" / spec.input_data_file
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InternalError(f"failed to open text file for read {path}: {exc.strerror}") from exc
        try:
            return array_from_buffer(wire, (count,), raw)
        except InvalidArgumentError as exc:
            raise InternalError(f"warmup input data file {path}: {exc.message}") from exc
    if wire == "BYTES":  # Triton has no random strings: both kinds give empty strings
        data = np.empty(count, dtype=np.object_)
        data[:] = [b""] * count
        return data
    dtype = NUMPY_DTYPE_BY_WIRE[wire]
    if which == "random_data":
        if wire == "BOOL":
            return rng.integers(0, 2, count).astype(np.bool_)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            return rng.integers(max(info.min, -128), min(info.max, 127), count, endpoint=True).astype(dtype)
        return rng.standard_normal(count).astype(dtype)
    return np.zeros(count, dtype=dtype)


def warmup_failure(sample: WarmupSample, errors: list[str]) -> str:
    """Triton's reason for a failed warmup sample: every request's error, each followed by "; "."""
    return f"failed to run warmup sample '{sample.name}': " + "".join(f"{error}; " for error in errors)
