"""OnnxRuntimeBackend: auto-complete, load checks, execution, batching and error mapping."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from tritonclient.grpc import model_config_pb2

from airtower.backends.base import InstanceSpec, ModelContext
from airtower.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeInstance, SessionSettings
from airtower.core.model_config import ModelConfig, parse_config_text
from airtower.core.request import InferenceRequest, RequestedOutput
from airtower.core.response import InferenceResponse
from airtower.core.tensor import Tensor
from airtower.errors import InvalidArgumentError, ModelConfigError, TritonError, UnavailableError
from airtower.types import NUMPY_DTYPE_BY_WIRE, config_to_wire
from tests import models

CPU = InstanceSpec(name="model_0", kind="KIND_CPU")

ADD_SUB_CONFIG = """
name: "add_sub"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] }, { name: "INPUT1" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] }, { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 16 ] } ]
"""


def make_config(text: str) -> ModelConfig:
    return parse_config_text(text, "test")


def make_context(model_dir: Path, backend_config: dict[str, str] | None = None) -> ModelContext:
    return ModelContext(
        name=model_dir.name,
        model_dir=model_dir,
        repository=model_dir.parent,
        backend_config=backend_config or {},
        version=1,
    )


def load_instance(model_dir: Path, config: ModelConfig, spec: InstanceSpec = CPU) -> OnnxRuntimeInstance:
    backend = OnnxRuntimeBackend()
    ctx = make_context(model_dir)
    backend.auto_complete_config(config, ctx)
    return backend.load(config, ctx).create_instance(spec)


def make_request(
    model: str, outputs: Sequence[str] = (), **inputs: tuple[str, np.ndarray[Any, Any]]
) -> InferenceRequest:
    tensors = {name: Tensor.from_numpy(name, wire, array) for name, (wire, array) in inputs.items()}
    return InferenceRequest(model_name=model, inputs=tensors, outputs=[RequestedOutput(n) for n in outputs])


def response_of(result: InferenceResponse | TritonError) -> dict[str, Tensor]:
    assert isinstance(result, InferenceResponse), result
    return {tensor.name: tensor for tensor in result.outputs}


class CountingSession:
    """Wraps an InferenceSession and counts ``run`` calls."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.runs = 0

    def run(self, *args: Any) -> Any:
        self.runs += 1
        return self.session.run(*args)


def test_onnxruntime_backend_executes_add_sub(tmp_path: Path) -> None:
    model_dir = models.build_add_sub(tmp_path)
    instance = load_instance(model_dir, make_config(ADD_SUB_CONFIG))
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 16), dtype=np.float32), rng.standard_normal((2, 16), dtype=np.float32)

    [result] = instance.execute([make_request("add_sub", INPUT0=("FP32", a), INPUT1=("FP32", b))])

    outputs = response_of(result)
    assert isinstance(result, InferenceResponse)
    assert result.model_name == "add_sub"
    assert result.model_version == "1"
    assert outputs["OUTPUT0"].datatype == "FP32"
    assert outputs["OUTPUT0"].shape == (2, 16)
    np.testing.assert_array_equal(outputs["OUTPUT0"].data, a + b)
    np.testing.assert_array_equal(outputs["OUTPUT1"].data, a - b)


def test_onnxruntime_backend_computes_only_requested_outputs(tmp_path: Path) -> None:
    instance = load_instance(models.build_add_sub(tmp_path), make_config(ADD_SUB_CONFIG))
    a = np.ones((1, 16), dtype=np.float32)

    [result] = instance.execute([make_request("add_sub", ["OUTPUT1"], INPUT0=("FP32", a), INPUT1=("FP32", a))])

    outputs = response_of(result)
    assert list(outputs) == ["OUTPUT1"]
    np.testing.assert_array_equal(outputs["OUTPUT1"].data, np.zeros((1, 16), dtype=np.float32))


def _sample(wire: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(1)
    if wire == "BYTES":
        values = [f"value-{i}-é".encode() for i in range(int(np.prod(shape)))]
        array = np.empty(len(values), dtype=np.object_)
        array[:] = values
        return array.reshape(shape)
    if wire == "BOOL":
        return rng.integers(0, 2, shape).astype(np.bool_)
    if wire == "BF16":  # bit patterns of float32 values, truncated to their high 16 bits
        return (rng.standard_normal(shape).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    dtype = NUMPY_DTYPE_BY_WIRE[wire]
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, 100, shape).astype(dtype)


@pytest.mark.parametrize("data_type", sorted(models.ONNX_TYPE_BY_CONFIG))
def test_onnxruntime_backend_round_trips_every_datatype_through_identity(tmp_path: Path, data_type: str) -> None:
    wire = config_to_wire(data_type)
    model_dir = models.build_identity(tmp_path, "identity", data_type, ("batch", 3))
    config = make_config('name: "identity" backend: "onnxruntime"')
    instance = load_instance(model_dir, config)
    assert config.input[0].data_type == config.output[0].data_type
    data = _sample(wire, (2, 3))

    [result] = instance.execute([make_request("identity", INPUT0=(wire, data))])

    output = response_of(result)["OUTPUT0"]
    assert output.datatype == wire
    assert output.shape == (2, 3)
    assert output.data.dtype == NUMPY_DTYPE_BY_WIRE[wire]
    np.testing.assert_array_equal(output.data, data)


def test_onnxruntime_backend_rejects_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    instance = load_instance(models.build_identity(tmp_path, "identity", "TYPE_STRING", ("batch", 1)), ModelConfig())
    data = np.array([[b"\xff"]], dtype=np.object_)

    with pytest.raises(InvalidArgumentError, match=r"input 'INPUT0' for model 'identity'.*UTF-8"):
        instance.execute([make_request("identity", INPUT0=("BYTES", data))])


def test_onnxruntime_backend_concatenates_requests_and_splits_outputs(tmp_path: Path) -> None:
    model_dir = models.build_linear(tmp_path)
    instance = load_instance(model_dir, make_config("max_batch_size: 8"))
    counting = CountingSession(instance._session)
    instance._session = counting
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((n, 4), dtype=np.float32) for n in (1, 2, 3)]
    requests = [make_request("linear", INPUT0=("FP32", batch)) for batch in batches]

    results = instance.execute(requests)

    assert counting.runs == 1
    reference = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch, result in zip(batches, results, strict=True):
        output = response_of(result)["OUTPUT0"]
        assert output.shape == (len(batch), 3)
        np.testing.assert_allclose(output.data, reference.run(None, {"INPUT0": batch})[0], rtol=1e-6)


def test_onnxruntime_backend_splits_outputs_per_request_when_requested_outputs_differ(tmp_path: Path) -> None:
    instance = load_instance(models.build_add_sub(tmp_path), make_config(ADD_SUB_CONFIG))
    a = np.full((1, 16), 3, dtype=np.float32)
    b = np.ones((2, 16), dtype=np.float32)
    requests = [
        make_request("add_sub", ["OUTPUT0"], INPUT0=("FP32", a), INPUT1=("FP32", a)),
        make_request("add_sub", ["OUTPUT1"], INPUT0=("FP32", b), INPUT1=("FP32", b)),
    ]

    first, second = (response_of(r) for r in instance.execute(requests))

    assert list(first) == ["OUTPUT0"]
    assert list(second) == ["OUTPUT1"]
    np.testing.assert_array_equal(first["OUTPUT0"].data, a + a)
    np.testing.assert_array_equal(second["OUTPUT1"].data, np.zeros((2, 16), dtype=np.float32))


def test_onnxruntime_backend_runs_requests_one_by_one_when_shapes_differ(tmp_path: Path) -> None:
    model_dir = models.build_identity(tmp_path, "identity", "TYPE_FP32", ("batch", "n"))
    instance = load_instance(model_dir, make_config("max_batch_size: 4"))
    counting = CountingSession(instance._session)
    instance._session = counting
    arrays = [np.ones((1, 2), dtype=np.float32), np.zeros((2, 5), dtype=np.float32)]

    results = instance.execute([make_request("identity", INPUT0=("FP32", x)) for x in arrays])

    assert counting.runs == 2
    for array, result in zip(arrays, results, strict=True):
        np.testing.assert_array_equal(response_of(result)["OUTPUT0"].data, array)


def test_onnxruntime_backend_fails_only_the_bad_request_when_run_one_by_one(tmp_path: Path) -> None:
    model_dir = models.build_linear(tmp_path)
    instance = load_instance(model_dir, make_config("max_batch_size: 8"))
    good = np.ones((1, 4), dtype=np.float32)
    bad = np.ones((1, 5), dtype=np.float32)

    results = instance.execute(
        [make_request("linear", INPUT0=("FP32", good)), make_request("linear", INPUT0=("FP32", bad))]
    )

    assert isinstance(results[0], InferenceResponse)
    assert isinstance(results[1], InvalidArgumentError)


def test_onnxruntime_backend_maps_shape_error_to_invalid_argument(tmp_path: Path) -> None:
    instance = load_instance(models.build_linear(tmp_path), make_config("max_batch_size: 8"))
    wrong = np.ones((1, 5), dtype=np.float32)

    with pytest.raises(InvalidArgumentError, match=r"model 'linear'.*INVALID_ARGUMENT") as info:
        instance.execute([make_request("linear", INPUT0=("FP32", wrong))])
    assert info.value.__cause__ is not None


def test_onnxruntime_backend_serves_scalar_model_described_as_one_element(tmp_path: Path) -> None:
    model_dir = models.build_scalar(tmp_path)
    config = make_config("")
    instance = load_instance(model_dir, config)
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [1]

    [result] = instance.execute([make_request("scalar", INPUT0=("FP32", np.array([1.5], dtype=np.float32)))])

    output = response_of(result)["OUTPUT0"]
    assert output.shape == (1,)
    np.testing.assert_array_equal(output.data, [3.0])


# -- auto-complete ----------------------------------------------------------------------------


def test_onnxruntime_backend_auto_complete_fills_batching_model(tmp_path: Path) -> None:
    model_dir = models.build_add_sub(tmp_path)
    config = make_config('name: "add_sub"')

    OnnxRuntimeBackend().auto_complete_config(config, make_context(model_dir))

    assert config.max_batch_size == 4
    assert config.HasField("dynamic_batching")
    assert [(io.name, io.data_type, list(io.dims)) for io in config.input] == [
        ("INPUT0", 11, [16]),
        ("INPUT1", 11, [16]),
    ]
    assert [io.name for io in config.output] == ["OUTPUT0", "OUTPUT1"]
    assert [list(io.dims) for io in config.output] == [[16], [16]]


def test_onnxruntime_backend_auto_complete_uses_default_max_batch_size_backend_config(tmp_path: Path) -> None:
    model_dir = models.build_add_sub(tmp_path)
    config = ModelConfig()

    OnnxRuntimeBackend().auto_complete_config(config, make_context(model_dir, {"default-max-batch-size": "16"}))

    assert config.max_batch_size == 16


def test_onnxruntime_backend_auto_complete_fills_non_batching_model(tmp_path: Path) -> None:
    model_dir = models.build_add_sub(tmp_path, dims=(2, 16))
    config = ModelConfig()

    OnnxRuntimeBackend().auto_complete_config(config, make_context(model_dir))

    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert [list(io.dims) for io in (*config.input, *config.output)] == [[2, 16]] * 4


def test_onnxruntime_backend_auto_complete_keeps_user_values(tmp_path: Path) -> None:
    model_dir = models.build_add_sub(tmp_path)
    config = make_config('max_batch_size: 2 input [ { name: "INPUT1" }, { name: "INPUT0" data_type: TYPE_FP32 } ]')

    OnnxRuntimeBackend().auto_complete_config(config, make_context(model_dir))

    assert config.max_batch_size == 2
    assert [(io.name, io.data_type, list(io.dims)) for io in config.input] == [
        ("INPUT1", 11, [16]),
        ("INPUT0", 11, [16]),
    ]
    assert [io.name for io in config.output] == ["OUTPUT0", "OUTPUT1"]


def test_onnxruntime_backend_auto_complete_leaves_complete_config_alone(tmp_path: Path) -> None:
    config = make_config(ADD_SUB_CONFIG)
    expected = config.SerializeToString()

    # No model file at all: a complete config is not checked against the model until load.
    OnnxRuntimeBackend().auto_complete_config(config, make_context(tmp_path / "add_sub"))

    assert config.SerializeToString() == expected


def test_onnxruntime_backend_auto_complete_rejects_conflicting_datatype(tmp_path: Path) -> None:
    model_dir = models.build_add_sub(tmp_path)
    config = make_config('input [ { name: "INPUT0" data_type: TYPE_INT32 } ]')

    with pytest.raises(ModelConfigError, match=r"configuration expects datatype TYPE_INT32 for input 'INPUT0'"):
        OnnxRuntimeBackend().auto_complete_config(config, make_context(model_dir))


def test_onnxruntime_backend_auto_complete_rejects_batching_for_fixed_shape_model(tmp_path: Path) -> None:
    model_dir = models.build_add_sub(tmp_path, dims=(2, 16))
    config = make_config("max_batch_size: 4")

    with pytest.raises(ModelConfigError, match="model does not support batching"):
        OnnxRuntimeBackend().auto_complete_config(config, make_context(model_dir))


# -- load ---------------------------------------------------------------------------------------


def test_onnxruntime_backend_load_fails_when_model_file_is_missing(tmp_path: Path) -> None:
    model_dir = tmp_path / "missing"
    (model_dir / "1").mkdir(parents=True)
    ctx = make_context(model_dir)

    with pytest.raises(UnavailableError, match=r"unable to find '.*missing/1/model.onnx' for model 'missing'"):
        OnnxRuntimeBackend().load(make_config(ADD_SUB_CONFIG), ctx)


def test_onnxruntime_backend_load_uses_default_model_filename(tmp_path: Path) -> None:
    model_dir = models.build_add_sub(tmp_path)
    (model_dir / "1" / "model.onnx").rename(model_dir / "1" / "custom.onnx")
    config = make_config(ADD_SUB_CONFIG + 'default_model_filename: "custom.onnx"')

    instance = load_instance(model_dir, config)

    assert isinstance(instance, OnnxRuntimeInstance)


def test_onnxruntime_backend_gpu_instance_without_cuda_is_a_clear_error(tmp_path: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    model = OnnxRuntimeBackend().load(make_config(ADD_SUB_CONFIG), make_context(models.build_add_sub(tmp_path)))

    with pytest.raises(UnavailableError, match=r"model 'add_sub'.*KIND_GPU.*onnxruntime-gpu"):
        model.create_instance(InstanceSpec(name="add_sub_0", kind="KIND_GPU", device_id=0))


def test_onnxruntime_backend_prefers_the_kind_its_onnxruntime_was_built_for(monkeypatch: pytest.MonkeyPatch) -> None:
    # onnxruntime_backend's preferred instance group: GPU in a CUDA build, else CPU (even on a GPU machine).
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert OnnxRuntimeBackend().preferred_instance_kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert OnnxRuntimeBackend().preferred_instance_kind == model_config_pb2.ModelInstanceGroup.KIND_GPU


def test_onnxruntime_backend_rejects_config_datatype_that_model_does_not_provide(tmp_path: Path) -> None:
    model = OnnxRuntimeBackend().load(
        make_config(ADD_SUB_CONFIG.replace("TYPE_FP32", "TYPE_FP64")), make_context(models.build_add_sub(tmp_path))
    )

    with pytest.raises(ModelConfigError, match=r"configuration expects datatype TYPE_FP64 for input 'INPUT0'"):
        model.create_instance(CPU)


def test_onnxruntime_backend_rejects_config_dims_that_model_does_not_provide(tmp_path: Path) -> None:
    model = OnnxRuntimeBackend().load(
        make_config(ADD_SUB_CONFIG.replace("dims: [ 16 ]", "dims: [ 8 ]")), make_context(models.build_add_sub(tmp_path))
    )

    with pytest.raises(ModelConfigError, match=r"tensor 'INPUT0': the model expects dims \[-1,16\]"):
        model.create_instance(CPU)


def test_onnxruntime_backend_rejects_unknown_config_input(tmp_path: Path) -> None:
    config = make_config(ADD_SUB_CONFIG.replace('"INPUT1"', '"EXTRA"'))
    model = OnnxRuntimeBackend().load(config, make_context(models.build_add_sub(tmp_path)))

    with pytest.raises(
        ModelConfigError, match=r"unexpected inference input 'EXTRA', allowed inputs are: INPUT0, INPUT1"
    ):
        model.create_instance(CPU)


def test_onnxruntime_backend_shares_session_between_instances_when_asked(tmp_path: Path) -> None:
    config = make_config(
        ADD_SUB_CONFIG + 'parameters { key: "share_session_between_instances" value { string_value: "true" } }'
    )
    model = OnnxRuntimeBackend().load(config, make_context(models.build_add_sub(tmp_path)))

    first, second = model.create_instance(CPU), model.create_instance(InstanceSpec("add_sub_1", "KIND_CPU"))

    assert first._session is second._session


def test_session_settings_read_triton_parameters() -> None:
    config = make_config(
        """
        optimization { graph { level: 1 } }
        parameters { key: "intra_op_thread_count" value { string_value: "2" } }
        parameters { key: "inter_op_thread_count" value { string_value: "3" } }
        parameters { key: "execution_mode" value { string_value: "1" } }
        parameters { key: "enable_mem_arena" value { string_value: "0" } }
        parameters { key: "enable_mem_pattern" value { string_value: "true" } }
        """
    )

    settings = SessionSettings.from_config(config)
    options = settings.session_options("m")

    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 3
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.enable_cpu_mem_arena is False
    assert options.enable_mem_pattern is True
    assert settings.providers(CPU, "m") == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (0, ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
        (-1, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
        (2, ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
    ],
)
def test_session_settings_map_graph_level(level: int, expected: Any) -> None:
    config = make_config(f"optimization {{ graph {{ level: {level} }} }}")

    assert SessionSettings.from_config(config).graph_level == expected


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("execution_mode", "2", "Expected values for execution_mode are 0 or 1"),
        ("intra_op_thread_count", "many", "failed to convert 'intra_op_thread_count'"),
        ("enable_mem_arena", "maybe", "failed to convert 'enable_mem_arena'"),
    ],
)
def test_session_settings_reject_invalid_parameters(key: str, value: str, message: str) -> None:
    config = make_config(f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}')

    with pytest.raises(ModelConfigError, match=message):
        SessionSettings.from_config(config)


def test_session_settings_reject_unknown_cpu_accelerator() -> None:
    config = make_config('optimization { execution_accelerators { cpu_execution_accelerator [ { name: "magic" } ] } }')

    with pytest.raises(InvalidArgumentError, match="unknown Execution Accelerator 'magic'"):
        SessionSettings.from_config(config).providers(CPU, "m")


# -- the example model repository ---------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "model_repository"


def _example(tmp_path: Path, name: str, onnx_model: Any) -> tuple[Path, ModelConfig]:
    model_dir = tmp_path / name
    shutil.copytree(EXAMPLES / name, model_dir, ignore=shutil.ignore_patterns("*.onnx"))
    models.save_onnx_model(onnx_model, model_dir / "1" / "model.onnx")
    return model_dir, make_config((model_dir / "config.pbtxt").read_text())


def test_example_add_sub_onnx_matches_its_config(tmp_path: Path) -> None:
    generator = models.load_example_generator()
    model_dir, config = _example(tmp_path, "add_sub_onnx", generator.add_sub_model())
    instance = load_instance(model_dir, config)
    a = np.arange(32, dtype=np.float32).reshape(2, 16)

    outputs = response_of(instance.execute([make_request("add_sub_onnx", INPUT0=("FP32", a), INPUT1=("FP32", a))])[0])

    np.testing.assert_array_equal(outputs["OUTPUT0"].data, 2 * a)
    np.testing.assert_array_equal(outputs["OUTPUT1"].data, np.zeros_like(a))


def test_example_classifier_outputs_probabilities_for_its_labels(tmp_path: Path) -> None:
    generator = models.load_example_generator()
    model_dir, config = _example(tmp_path, "classifier", generator.classifier_model())
    instance = load_instance(model_dir, config)
    x = np.random.default_rng(3).standard_normal((3, 4), dtype=np.float32)

    probabilities = response_of(instance.execute([make_request("classifier", INPUT0=("FP32", x))])[0])["OUTPUT0"].data

    labels = (model_dir / config.output[0].label_filename).read_text().split()
    assert probabilities.shape == (3, len(labels))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_example_resnet50_graph_is_finite_and_input_dependent(tmp_path: Path) -> None:
    generator = models.load_example_generator()
    # The real example uses base_width=64 (~100 MB); a narrow copy of the same graph keeps this fast.
    model_dir, config = _example(tmp_path, "resnet50", generator.resnet50_model(base_width=8))
    instance = load_instance(model_dir, config)
    x = np.random.default_rng(4).standard_normal((2, 3, 224, 224), dtype=np.float32)

    [result] = instance.execute([make_request("resnet50", input_0=("FP32", x))])

    logits = response_of(result)["output_0"].data
    assert logits.shape == (2, 1000)
    assert np.isfinite(logits).all()
    assert not np.allclose(logits[0], logits[1])
