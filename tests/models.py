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


# --------------------------------------------------------------------------------------------
# Ragged batching models: a ragged INPUT plus server-generated batch inputs (model_config.proto BatchInput)

#: (target, kind, config datatype) of every batch input that :func:`ragged_batch_inputs_graph` takes.
RAGGED_BATCH_INPUTS: tuple[tuple[str, str, str], ...] = (
    ("COUNT", "BATCH_ELEMENT_COUNT", "TYPE_INT32"),
    ("ACC", "BATCH_ACCUMULATED_ELEMENT_COUNT", "TYPE_INT32"),
    ("ACC0", "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO", "TYPE_FP32"),
    ("MAX", "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE", "TYPE_FP32"),
    ("ITEM", "BATCH_ITEM_SHAPE", "TYPE_INT32"),
    ("FLAT", "BATCH_ITEM_SHAPE_FLATTEN", "TYPE_FP32"),
)


def _int64(name: str, values: Sequence[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def ragged_batch_inputs_graph() -> onnx.GraphProto:
    """A ragged FP32 ``INPUT`` [-1] and every batch input kind; for batches of batch-1 requests.

    Outputs, each with one row per request:

    * ``SUM`` [n, 1]: each request's sum of elements (segments cut by ``ACC0``, the accumulated
      counts with zero), the way a real ragged model uses its index input;
    * ``COUNT_OUT``, ``ACC_OUT``, ``ACC0_OUT``, ``FLAT_OUT`` [n, len]: the whole batch input,
      repeated on every row (so every response carries it, as in Triton's qa ragged models);
    * ``MAX_OUT`` [n, 1] (INT64): the length of ``MAX``, which is the max element count;
    * ``ITEM_OUT`` [n, 1]: ``ITEM`` itself, one row per batch item;
    * ``DOUBLED`` [-1]: ``INPUT * 2`` in its flat form, for ``BATCH_SCATTER_WITH_INPUT_SHAPE``.
    """
    nodes = [
        # Segment sums: prefix sums with a leading 0, read at the accumulated counts.
        helper.make_node("Concat", ["zero", "INPUT"], ["padded"], axis=0),
        helper.make_node("CumSum", ["padded", "cumsum_axis"], ["prefix"]),
        helper.make_node("Cast", ["ACC0"], ["bounds"], to=TensorProto.INT64),
        helper.make_node("Slice", ["bounds", "start0", "end_last"], ["starts"]),
        helper.make_node("Slice", ["bounds", "start1", "end_max"], ["ends"]),
        helper.make_node("Gather", ["prefix", "starts"], ["at_start"]),
        helper.make_node("Gather", ["prefix", "ends"], ["at_end"]),
        helper.make_node("Sub", ["at_end", "at_start"], ["sums"]),
        helper.make_node("Unsqueeze", ["sums", "axis1"], ["SUM"]),
        helper.make_node("Shape", ["COUNT"], ["rows"]),
        helper.make_node("Shape", ["MAX"], ["max_shape"]),
        helper.make_node("Unsqueeze", ["max_shape", "axes0"], ["max_row"]),
        helper.make_node("Concat", ["rows", "one"], ["rows_by_one"], axis=0),
        helper.make_node("Expand", ["max_row", "rows_by_one"], ["MAX_OUT"]),
        helper.make_node("Identity", ["ITEM"], ["ITEM_OUT"]),
        helper.make_node("Mul", ["INPUT", "two"], ["DOUBLED"]),
    ]
    for name in ("COUNT", "ACC", "ACC0", "FLAT"):
        nodes += [
            helper.make_node("Shape", [name], [f"{name}_len"]),
            helper.make_node("Concat", ["rows", f"{name}_len"], [f"{name}_target"], axis=0),
            helper.make_node("Unsqueeze", [name, "axes0"], [f"{name}_row"]),
            helper.make_node("Expand", [f"{name}_row", f"{name}_target"], [f"{name}_OUT"]),
        ]
    initializers = [
        numpy_helper.from_array(np.zeros(1, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "cumsum_axis"),
        _int64("axes0", [0]),
        _int64("axis1", [1]),
        _int64("one", [1]),
        _int64("start0", [0]),
        _int64("start1", [1]),
        _int64("end_last", [-1]),
        _int64("end_max", [np.iinfo(np.int64).max]),
    ]
    elem = {"TYPE_INT32": TensorProto.INT32, "TYPE_FP32": TensorProto.FLOAT}
    inputs = [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["total"])]
    for target, kind, data_type in RAGGED_BATCH_INPUTS:
        dims: list[int | str] = ["items", "rank"] if kind == "BATCH_ITEM_SHAPE" else [f"{target.lower()}_len"]
        inputs.append(helper.make_tensor_value_info(target, elem[data_type], dims))
    outputs = [
        helper.make_tensor_value_info("SUM", TensorProto.FLOAT, ["n", 1]),
        helper.make_tensor_value_info("COUNT_OUT", TensorProto.INT32, ["n", "c"]),
        helper.make_tensor_value_info("ACC_OUT", TensorProto.INT32, ["n", "a"]),
        helper.make_tensor_value_info("ACC0_OUT", TensorProto.FLOAT, ["n", "z"]),
        helper.make_tensor_value_info("FLAT_OUT", TensorProto.FLOAT, ["n", "f"]),
        helper.make_tensor_value_info("MAX_OUT", TensorProto.INT64, ["n", 1]),
        helper.make_tensor_value_info("ITEM_OUT", TensorProto.INT32, ["items", "rank"]),
        helper.make_tensor_value_info("DOUBLED", TensorProto.FLOAT, ["total"]),
    ]
    return helper.make_graph(nodes, "ragged_batch_inputs", inputs, outputs, initializer=initializers)


def ragged_batch_inputs_config(name: str, max_batch_size: int = 8, scheduling: str = "") -> str:
    """The config.pbtxt of :func:`ragged_batch_inputs_graph`; ``scheduling`` is e.g. a ``dynamic_batching`` block."""
    batch_inputs = ", ".join(
        f'{{ kind: {kind} target_name: "{target}" data_type: {data_type} source_input: "INPUT" }}'
        for target, kind, data_type in RAGGED_BATCH_INPUTS
    )
    return f"""name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true }} ]
batch_input [ {batch_inputs} ]
output [
  {{ name: "SUM" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "COUNT_OUT" data_type: TYPE_INT32 dims: [ -1 ] }},
  {{ name: "ACC_OUT" data_type: TYPE_INT32 dims: [ -1 ] }},
  {{ name: "ACC0_OUT" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "FLAT_OUT" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "MAX_OUT" data_type: TYPE_INT64 dims: [ 1 ] }},
  {{ name: "ITEM_OUT" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "DOUBLED" data_type: TYPE_FP32 dims: [ -1 ] }}
]
batch_output [ {{ kind: BATCH_SCATTER_WITH_INPUT_SHAPE target_name: "DOUBLED" source_input: "INPUT" }} ]
{scheduling}
"""


def build_ragged_batch_inputs(
    repository: Path, name: str = "ragged_batch_inputs", config: str | None = None, version: int = 1
) -> Path:
    """:func:`ragged_batch_inputs_graph` with ``config`` (default: :func:`ragged_batch_inputs_config`)."""
    text = ragged_batch_inputs_config(name) if config is None else config
    return write_model_dir(repository, name, ragged_batch_inputs_graph(), text, version)


def ragged_item_shape_graph() -> onnx.GraphProto:
    """A ragged FP32 ``INPUT`` [-1] and ``ITEM`` (BATCH_ITEM_SHAPE, INT32 [items, rank]).

    ``ITEM_OUT = ITEM`` (one row per batch item, so requests of any batch size split by batch
    dimension) and ``DOUBLED = INPUT * 2`` (flat, for ``BATCH_SCATTER_WITH_INPUT_SHAPE``).
    """
    nodes = [
        helper.make_node("Identity", ["ITEM"], ["ITEM_OUT"]),
        helper.make_node("Mul", ["INPUT", "two"], ["DOUBLED"]),
    ]
    return helper.make_graph(
        nodes,
        "ragged_item_shape",
        [
            helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["total"]),
            helper.make_tensor_value_info("ITEM", TensorProto.INT32, ["items", "rank"]),
        ],
        [
            helper.make_tensor_value_info("ITEM_OUT", TensorProto.INT32, ["items", "rank"]),
            helper.make_tensor_value_info("DOUBLED", TensorProto.FLOAT, ["total"]),
        ],
        initializer=[numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")],
    )


def ragged_item_shape_config(name: str, rank: int = 2, max_batch_size: int = 8, scheduling: str = "") -> str:
    """The config.pbtxt of :func:`ragged_item_shape_graph` for requests of ``rank`` dims after the batch dim."""
    dims = ", ".join(["-1"] * rank)
    return f"""name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT" data_type: TYPE_FP32 dims: [ {dims} ] allow_ragged_batch: true }} ]
batch_input [ {{ kind: BATCH_ITEM_SHAPE target_name: "ITEM" data_type: TYPE_INT32 source_input: "INPUT" }} ]
output [
  {{ name: "ITEM_OUT" data_type: TYPE_INT32 dims: [ {rank} ] }},
  {{ name: "DOUBLED" data_type: TYPE_FP32 dims: [ {dims} ] }}
]
batch_output [ {{ kind: BATCH_SCATTER_WITH_INPUT_SHAPE target_name: "DOUBLED" source_input: "INPUT" }} ]
{scheduling}
"""


def build_ragged_item_shape(
    repository: Path, name: str = "ragged_item_shape", config: str | None = None, version: int = 1
) -> Path:
    """:func:`ragged_item_shape_graph` with ``config`` (default: :func:`ragged_item_shape_config`)."""
    text = ragged_item_shape_config(name) if config is None else config
    return write_model_dir(repository, name, ragged_item_shape_graph(), text, version)
