"""Python test models, written into a temporary model repository by the tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

#: Every wire datatype the echo model accepts, with its config type.
ECHO_TYPES: dict[str, str] = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "BYTES": "TYPE_STRING",
}

ECHO_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            outputs = [
                pb_utils.Tensor(tensor.name().replace("IN_", "OUT_"), tensor.as_numpy())
                for tensor in request.inputs()
            ]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
"""

# Each instance waits at a barrier shared by the two instances: a request can only finish
# once the other instance is executing at the same time. The timeout only bounds a failure.
BARRIER_MODEL = """
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

BARRIER = threading.Barrier(2, timeout=30)


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_instance_name"]

    def execute(self, requests):
        BARRIER.wait()
        name = np.array([self.name.encode()], dtype=np.object_)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("INSTANCE", name)]) for _ in requests]
"""

FAILING_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            mode = pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0]
            if mode == 1:
                raise RuntimeError("the model raised on purpose")
            if mode == 2:
                error = pb_utils.TritonError("request rejected by the model", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([mode], np.int32))]))
        return responses
"""


def write_python_model(model_dir: Path, config: str, code: str) -> None:
    """``<model_dir>/config.pbtxt`` (dedented) and ``<model_dir>/1/model.py``."""
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(textwrap.dedent(config))
    (model_dir / "1" / "model.py").write_text(code)


def write_echo_model(repository: Path, name: str = "echo") -> None:
    inputs = ",\n".join(
        f'  {{ name: "IN_{wire}" data_type: {cfg} dims: [ -1 ] optional: true }}' for wire, cfg in ECHO_TYPES.items()
    )
    outputs = ",\n".join(
        f'  {{ name: "OUT_{wire}" data_type: {cfg} dims: [ -1 ] }}' for wire, cfg in ECHO_TYPES.items()
    )
    config = f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\ninput [\n{inputs}\n]\noutput [\n{outputs}\n]\n'
    write_python_model(repository / name, config, ECHO_MODEL)


def write_barrier_model(repository: Path, name: str = "barrier") -> None:
    config = f"""\
        name: "{name}"
        backend: "python"
        max_batch_size: 0
        input [ {{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }} ]
        output [ {{ name: "INSTANCE" data_type: TYPE_STRING dims: [ 1 ] }} ]
        instance_group [ {{ count: 2 kind: KIND_CPU }} ]
        """
    write_python_model(repository / name, config, BARRIER_MODEL)


def write_failing_model(repository: Path, name: str = "failing") -> None:
    config = f"""\
        name: "{name}"
        backend: "python"
        max_batch_size: 0
        input [ {{ name: "MODE" data_type: TYPE_INT32 dims: [ 1 ] }} ]
        output [ {{ name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
        """
    write_python_model(repository / name, config, FAILING_MODEL)


def write_broken_models(repository: Path) -> None:
    """A model whose config does not parse, and one whose model file is missing."""
    broken = repository / "broken_config"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('name: "broken_config"\nbackend: "python"\ninput [ { name: \n')
    missing = repository / "missing_file"
    (missing / "1").mkdir(parents=True)
    (missing / "config.pbtxt").write_text(
        'name: "missing_file"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
    )


# Reports, with each request, what its execute call held: how many requests, the sum of their
# batch dimensions, and whether their shapes differed. ``DELAY_MS`` (optional) makes the call
# sleep first, so that a later request can finish before an earlier one on another instance.
BATCHING_MODEL = """
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(request, "IN").as_numpy() for request in requests]
        delays = [pb_utils.get_input_tensor_by_name(request, "DELAY_MS") for request in requests]
        pause = max([int(d.as_numpy().max()) for d in delays if d is not None] or [0])
        if pause:
            time.sleep(pause / 1000)
        total = sum(array.shape[0] for array in arrays)
        mixed = int(len({array.shape[1:] for array in arrays}) > 1)
        responses = []
        for array in arrays:
            batch = array.shape[0]
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("OUT", array * 2),
                        pb_utils.Tensor("REQUESTS", np.full((batch, 1), len(requests), np.int32)),
                        pb_utils.Tensor("TOTAL", np.full((batch, 1), total, np.int32)),
                        pb_utils.Tensor("MIXED", np.full((batch, 1), mixed, np.int32)),
                    ]
                )
            )
        return responses
"""


def write_batching_model(
    repository: Path,
    name: str,
    dynamic_batching: str,
    *,
    max_batch_size: int = 8,
    dims: str = "4",
    instances: int = 1,
) -> None:
    """The batching model with ``dynamic_batching { <dynamic_batching> }``."""
    config = f"""\
        name: "{name}"
        backend: "python"
        max_batch_size: {max_batch_size}
        input [
          {{ name: "IN" data_type: TYPE_INT32 dims: [ {dims} ] }},
          {{ name: "DELAY_MS" data_type: TYPE_INT32 dims: [ 1 ] optional: true }}
        ]
        output [
          {{ name: "OUT" data_type: TYPE_INT32 dims: [ {dims} ] }},
          {{ name: "REQUESTS" data_type: TYPE_INT32 dims: [ 1 ] }},
          {{ name: "TOTAL" data_type: TYPE_INT32 dims: [ 1 ] }},
          {{ name: "MIXED" data_type: TYPE_INT32 dims: [ 1 ] }}
        ]
        instance_group [ {{ count: {instances} kind: KIND_CPU }} ]
        dynamic_batching {{ {dynamic_batching} }}
        """
    write_python_model(repository / name, config, BATCHING_MODEL)
