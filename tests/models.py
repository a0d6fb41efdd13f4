"""Small ONNX model builders for tests: seeded, written into a temporary model repository in milliseconds.

Each ``build_*`` writes ``<repository>/<name>/<version>/model.onnx`` (and ``config.pbtxt`` when
given one) and returns the model directory. Uses the ``onnx`` package (a dev dependency).
The example repository's builders (resnet50, classifier...) live in ``examples/generate_models.py``;
:func:`load_example_generator` imports that script as a module.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Opset and IR version every builder uses (supported by onnxruntime 1.17+).
OPSET = 17
IR_VERSION = 8

#: Config datatype → ONNX element type, for every datatype Triton and onnxruntime share.
ONNX_TYPE_BY_CONFIG: dict[str, int] = {
    "TYPE_BOOL": TensorProto.BOOL,
    "TYPE_UINT8": TensorProto.UINT8,
    "TYPE_UINT16": TensorProto.UINT16,
    "TYPE_UINT32": TensorProto.UINT32,
    "TYPE_UINT64": TensorProto.UINT64,
    "TYPE_INT8": TensorProto.INT8,
    "TYPE_INT16": TensorProto.INT16,
    "TYPE_INT32": TensorProto.INT32,
    "TYPE_INT64": TensorProto.INT64,
    "TYPE_FP16": TensorProto.FLOAT16,
    "TYPE_FP32": TensorProto.FLOAT,
    "TYPE_FP64": TensorProto.DOUBLE,
    "TYPE_STRING": TensorProto.STRING,
    "TYPE_BF16": TensorProto.BFLOAT16,
}

Dims = Sequence[int | str]


def save_model(graph: onnx.GraphProto, path: Path) -> Path:
    """Check ``graph`` and write it as an ONNX model at ``path`` (parents created)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="airtower-tests")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def save_onnx_model(model: onnx.ModelProto, path: Path) -> Path:
    """Write an already built model at ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_model_dir(repository: Path, name: str, graph: onnx.GraphProto, config: str | None, version: int) -> Path:
    model_dir = repository / name
    save_model(graph, model_dir / str(version) / "model.onnx")
    if config is not None:
        (model_dir / "config.pbtxt").write_text(config)
    return model_dir


def identity_graph(elem_type: int, dims: Dims, names: tuple[str, str] = ("INPUT0", "OUTPUT0")) -> onnx.GraphProto:
    """``OUTPUT0 = Identity(INPUT0)`` of any element type and shape (a str dim is symbolic)."""
    node = helper.make_node("Identity", [names[0]], [names[1]])
    return helper.make_graph(
        [node],
        "identity",
        [helper.make_tensor_value_info(names[0], elem_type, list(dims))],
        [helper.make_tensor_value_info(names[1], elem_type, list(dims))],
    )


def add_sub_graph(dims: Dims = ("batch", 16), elem_type: int = TensorProto.FLOAT) -> onnx.GraphProto:
    """``OUTPUT0 = INPUT0 + INPUT1``, ``OUTPUT1 = INPUT0 - INPUT1``."""
    inputs = [helper.make_tensor_value_info(n, elem_type, list(dims)) for n in ("INPUT0", "INPUT1")]
    outputs = [helper.make_tensor_value_info(n, elem_type, list(dims)) for n in ("OUTPUT0", "OUTPUT1")]
    nodes = [
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
    ]
    return helper.make_graph(nodes, "add_sub", inputs, outputs)


def linear_graph(features: int = 4, classes: int = 3, seed: int = 0) -> onnx.GraphProto:
    """``OUTPUT0 = INPUT0 @ W + b`` with seeded weights; batch dim symbolic."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((features, classes)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["INPUT0", "W"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["OUTPUT0"])]
    return helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", classes])],
        initializer=[weight, bias],
    )


def scalar_graph() -> onnx.GraphProto:
    """``OUTPUT0 = INPUT0 * 2`` on scalar (rank 0) FP32 tensors."""
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    return helper.make_graph(
        [helper.make_node("Mul", ["INPUT0", "two"], ["OUTPUT0"])],
        "scalar",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, [])],
        initializer=[two],
    )


def build_identity(
    repository: Path,
    name: str,
    data_type: str = "TYPE_FP32",
    dims: Dims = ("batch", 4),
    config: str | None = None,
    version: int = 1,
) -> Path:
    return write_model_dir(repository, name, identity_graph(ONNX_TYPE_BY_CONFIG[data_type], dims), config, version)


def build_add_sub(
    repository: Path, name: str = "add_sub", dims: Dims = ("batch", 16), config: str | None = None, version: int = 1
) -> Path:
    return write_model_dir(repository, name, add_sub_graph(dims), config, version)


def build_linear(repository: Path, name: str = "linear", config: str | None = None, version: int = 1) -> Path:
    return write_model_dir(repository, name, linear_graph(), config, version)


def build_scalar(repository: Path, name: str = "scalar", config: str | None = None, version: int = 1) -> Path:
    return write_model_dir(repository, name, scalar_graph(), config, version)


def load_example_generator() -> ModuleType:
    """``examples/generate_models.py`` imported as a module (it is a script, not a package)."""
    path = Path(__file__).resolve().parents[1] / "examples" / "generate_models.py"
    name = "airtower_examples_generate_models"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
