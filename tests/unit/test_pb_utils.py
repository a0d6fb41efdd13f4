"""triton_python_backend_utils: exported names, constants, tensors, BYTES codec, config helpers."""

from __future__ import annotations

import json
import logging
import re
import sys
import types
from typing import Any

import numpy as np
import pytest

from airtower.backends.python import (
    backend,  # installs the module under its upstream name
    triton_python_backend_utils as pb_utils,
)

UPSTREAM_NAMES = [
    # upstream triton_python_backend_utils.py
    "TRITON_STRING_TO_NUMPY", "serialize_byte_tensor", "deserialize_bytes_tensor", "get_input_tensor_by_name",
    "get_output_tensor_by_name", "get_input_config_by_name", "get_output_config_by_name",
    "using_decoupled_model_transaction_policy", "triton_to_numpy_type", "numpy_to_triton_type",
    "triton_string_to_numpy", "ModelConfig", "TRITONSERVER_REQUEST_FLAG_SEQUENCE_START",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_END", "TRITONSERVER_RESPONSE_COMPLETE_FINAL",
    "TRITONSERVER_REQUEST_RELEASE_ALL", "TRITONSERVER_REQUEST_RELEASE_RESCHEDULE",
    # bound by the stub (pb_stub.cc)
    "Tensor", "InferenceRequest", "InferenceResponse", "InferenceResponseSender", "ResponseIterator",
    "TritonError", "TritonModelException", "Logger", "PreferredMemory", "TRITONSERVER_MEMORY_GPU",
    "TRITONSERVER_MEMORY_CPU", "MetricFamily", "load_model", "unload_model", "is_model_ready",
]  # fmt: skip

ALL_DTYPES = [np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64]
ALL_DTYPES += [np.float16, np.float32, np.float64]


def test_pb_utils_exports_every_upstream_name_in_all() -> None:
    for name in UPSTREAM_NAMES:
        assert name in pb_utils.__all__, name
        assert hasattr(pb_utils, name), name
    assert all(hasattr(pb_utils, name) for name in pb_utils.__all__)


def test_pb_utils_is_importable_under_upstream_name() -> None:
    import triton_python_backend_utils  # type: ignore[import-not-found]

    assert triton_python_backend_utils is pb_utils
    assert sys.modules["triton_python_backend_utils"] is pb_utils


def test_pb_utils_constants_have_triton_values() -> None:
    assert pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START == 1
    assert pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END == 2
    assert pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL == 1
    assert pb_utils.TRITONSERVER_REQUEST_RELEASE_ALL == 1
    assert pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE == 2
    assert pb_utils.TRITONSERVER_MEMORY_GPU == 0
    assert pb_utils.TRITONSERVER_MEMORY_CPU == 1
    codes = ["UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE", "UNSUPPORTED", "ALREADY_EXISTS"]
    for value, name in enumerate([*codes, "CANCELLED"]):
        assert getattr(pb_utils.TritonError, name) == value


def test_pb_utils_triton_error_defaults_to_internal() -> None:
    error = pb_utils.TritonError("boom")
    assert error.code() == pb_utils.TritonError.INTERNAL
    assert error.message() == "boom"
    coded = pb_utils.TritonError("gone", pb_utils.TritonError.NOT_FOUND)
    assert coded.code() == pb_utils.TritonError.NOT_FOUND
    assert str(coded.code()) == "__ErrorCode.NOT_FOUND"  # as Triton's pybind11 enum prints
    with pytest.raises(pb_utils.TritonError):
        raise coded
    assert issubclass(pb_utils.TritonModelException, Exception)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_pb_utils_tensor_round_trips_every_dtype(dtype: Any) -> None:
    array = np.arange(6).astype(dtype).reshape(2, 3)
    tensor = pb_utils.Tensor("T", array)
    assert tensor.name() == "T"
    assert tensor.as_numpy() is array
    assert tensor.shape() == [2, 3]
    assert tensor.is_cpu()
    assert tensor.triton_dtype() == pb_utils.numpy_to_triton_type(dtype)
    assert pb_utils.triton_to_numpy_type(tensor.triton_dtype()) == dtype
    via_dlpack = pb_utils.Tensor.from_dlpack("D", tensor)
    np.testing.assert_array_equal(via_dlpack.as_numpy(), array)
    assert via_dlpack.as_numpy().dtype == array.dtype


def test_pb_utils_tensor_from_dlpack_accepts_capsule_and_shares_memory() -> None:
    array = np.zeros(4, dtype=np.float32)
    tensor = pb_utils.Tensor.from_dlpack("X", pb_utils.Tensor("A", array).to_dlpack())
    array[0] = 7.0
    assert tensor.as_numpy()[0] == 7.0
    assert pb_utils.Tensor("A", array).__dlpack_device__() == (1, 0)


def test_pb_utils_server_tensor_gives_the_model_a_writable_copy() -> None:
    # A request's input views the request body's bytes (or an array other models read): the server's,
    # read-only. As on Triton, where the model's tensors live in the stub's shared memory, the model
    # gets a copy of its own to change, and later calls (and DLPack) see its changes.
    array = np.frombuffer(np.arange(4, dtype=np.float32).tobytes(), dtype=np.float32)
    tensor = backend._wrap("IN", array, 11)
    mine = tensor.as_numpy()
    assert mine.flags.writeable
    assert not np.shares_memory(mine, array)
    mine += 1
    assert tensor.as_numpy() is mine
    np.testing.assert_array_equal(array, np.arange(4, dtype=np.float32))
    assert np.shares_memory(np.from_dlpack(tensor), mine)
    writable = np.ones(2, np.float32)
    assert pb_utils.Tensor("W", writable).as_numpy() is writable  # a model's own tensor is its array


class FakeTorchTensor:
    """A torch tensor numpy cannot import: on a GPU (kDLCUDA = 2) or, on the CPU, a bfloat16 one."""

    def __init__(self, array: np.ndarray, device: tuple[int, int] = (2, 1)) -> None:
        self.array = array
        self.device = device

    def __dlpack__(self, stream: Any = None, **kwargs: Any) -> Any:
        assert self.device == (1, 0), "numpy must not be asked to read GPU memory"
        raise BufferError("Unsupported dtype in DLTensor.")

    def __dlpack_device__(self) -> tuple[int, int]:
        return self.device


class FakeTorch(types.ModuleType):
    """Just what ``from_dlpack`` uses of torch: ``torch.from_dlpack(t).cpu().numpy()`` and bfloat16."""

    bfloat16 = "bfloat16"
    int16 = "int16"

    def __init__(self) -> None:
        super().__init__("torch")

    class Tensor:
        def __init__(self, array: np.ndarray, dtype: str = "") -> None:
            self.array, self.dtype = array, dtype or str(array.dtype)

        def cpu(self) -> FakeTorch.Tensor:
            return FakeTorch.Tensor(self.array.copy(), self.dtype)

        def view(self, dtype: str) -> FakeTorch.Tensor:
            return FakeTorch.Tensor(self.array.view(np.int16), dtype)

        def numpy(self) -> np.ndarray:
            return self.array

    def from_dlpack(self, tensor: FakeTorchTensor) -> FakeTorch.Tensor:  # torch's own import of either
        bf16 = tensor.array.dtype == np.uint16
        return FakeTorch.Tensor(tensor.array, "bfloat16" if bf16 else "")


def test_pb_utils_tensor_from_dlpack_imports_gpu_and_bfloat16_tensors_through_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "torch", FakeTorch())
    gpu = np.array([1.5, 2.5], dtype=np.float32)
    tensor = pb_utils.Tensor.from_dlpack("OUT", FakeTorchTensor(gpu))
    np.testing.assert_array_equal(tensor.as_numpy(), gpu)
    assert not np.shares_memory(tensor.as_numpy(), gpu)
    assert tensor.triton_dtype() == 11
    bits = np.array([0x3F80, 0x4000], dtype=np.uint16)  # bfloat16 1.0, 2.0
    bf16 = pb_utils.Tensor.from_dlpack("OUT_BF16", FakeTorchTensor(bits))
    assert bf16.triton_dtype() == 14
    np.testing.assert_array_equal(bf16.as_numpy(), bits)
    on_cpu = pb_utils.Tensor.from_dlpack("CPU_BF16", FakeTorchTensor(bits, device=(1, 0)))
    assert on_cpu.triton_dtype() == 14
    np.testing.assert_array_equal(on_cpu.as_numpy(), bits)


def test_pb_utils_tensor_from_dlpack_of_a_gpu_tensor_without_torch_or_cupy_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    with pytest.raises(pb_utils.TritonError, match=r"'OUT' from device type 2 \(device 1\): .* torch or cupy"):
        pb_utils.Tensor.from_dlpack("OUT", FakeTorchTensor(np.zeros(2, np.float32)))


def test_pb_utils_dlpack_capsule_reports_its_device() -> None:
    capsule = np.zeros(3, np.float32).__dlpack__()
    assert pb_utils._DLPackCapsule(capsule).__dlpack_device__() == (1, 0)
    assert pb_utils._DLPackCapsule(object()).__dlpack_device__() == (1, 0)


def test_pb_utils_tensor_holds_bytes_and_rejects_unsupported_dtype() -> None:
    strings = np.array([b"a", b"bc"], dtype=np.object_)
    tensor = pb_utils.Tensor("S", strings)
    assert tensor.triton_dtype() == 13
    assert tensor.as_numpy()[1] == b"bc"
    with pytest.raises(pb_utils.TritonError):
        tensor.to_dlpack()
    with pytest.raises(pb_utils.TritonError, match="NumPy dtype is not supported"):
        pb_utils.Tensor("C", np.zeros(2, dtype=np.complex64))


def test_pb_utils_serialize_byte_tensor_round_trips() -> None:
    array = np.array([[b"", b"abc"], ["h\u00e9", b"\x00\x01"]], dtype=np.object_)
    encoded = pb_utils.serialize_byte_tensor(array)
    assert encoded == b"\x00\x00\x00\x00\x03\x00\x00\x00abc\x03\x00\x00\x00h\xc3\xa9\x02\x00\x00\x00\x00\x01"
    decoded = pb_utils.deserialize_bytes_tensor(encoded)
    assert decoded.dtype == np.object_
    assert decoded.tolist() == [b"", b"abc", "h\u00e9".encode(), b"\x00\x01"]
    assert pb_utils.deserialize_bytes_tensor(np.frombuffer(encoded, dtype=np.uint8)).tolist() == decoded.tolist()
    assert pb_utils.serialize_byte_tensor(np.zeros(2, dtype=np.float32)) is None


def test_pb_utils_type_helpers_match_upstream_tables() -> None:
    assert pb_utils.triton_string_to_numpy("TYPE_BOOL") is bool
    assert pb_utils.triton_string_to_numpy("TYPE_STRING") is np.object_
    assert pb_utils.numpy_to_triton_type(np.bytes_) == 13
    assert pb_utils.numpy_to_triton_type(np.complex64) is None
    assert pb_utils.triton_to_numpy_type(13) is np.object_
    with pytest.raises(KeyError):
        pb_utils.triton_string_to_numpy("TYPE_NOPE")


def test_pb_utils_request_and_response_accessors() -> None:
    tensor = pb_utils.Tensor("IN", np.ones(2, np.float32))
    request = pb_utils.InferenceRequest(
        model_name="m", inputs=[tensor], requested_output_names=["OUT"], correlation_id="seq", parameters={"k": 1}
    )
    assert pb_utils.get_input_tensor_by_name(request, "IN") is tensor
    assert pb_utils.get_input_tensor_by_name(request, "NOPE") is None
    assert request.correlation_id() == "seq"
    assert request.request_id() == ""
    assert json.loads(request.parameters()) == {"k": 1}
    assert request.requested_output_names() == {"OUT"}
    assert not request.is_cancelled()
    assert request.trace().get_context() is None
    response = pb_utils.InferenceResponse([tensor], parameters={"p": True})
    assert pb_utils.get_output_tensor_by_name(response, "IN") is tensor
    assert not response.has_error()
    assert json.loads(response.parameters()) == {"p": True}
    failed = pb_utils.InferenceResponse(error=pb_utils.TritonError("bad"))
    assert failed.has_error()
    assert failed.output_tensors() == []
    with pytest.raises(TypeError, match="Expect parameters values"):
        pb_utils.InferenceResponse([], parameters={"p": [1]})  # type: ignore[dict-item]


def test_pb_utils_bls_outside_a_server_is_unavailable() -> None:
    request = pb_utils.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])
    with pytest.raises(pb_utils.TritonError, match="while the server runs the model") as caught:
        request.exec(decoupled=True)
    assert caught.value.code() == pb_utils.TritonError.UNAVAILABLE
    with pytest.raises(pb_utils.TritonError):
        request.get_response_sender()
    with pytest.raises(TypeError, match="Correlation ID"):
        pb_utils.InferenceRequest(model_name="m", inputs=[], requested_output_names=[], correlation_id=1.5)  # type: ignore[arg-type]


def test_pb_utils_logger_routes_to_python_model_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="airtower.python_model"):
        pb_utils.Logger.log_info("info msg")
        pb_utils.Logger.log_warn("warn msg")
        pb_utils.Logger.log_error("error msg")
        pb_utils.Logger.log_verbose("verbose msg")
        pb_utils.Logger.log("specific msg", pb_utils.Logger.ERROR)
    levels = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert levels == [
        ("airtower.python_model", logging.INFO, "info msg"),
        ("airtower.python_model", logging.WARNING, "warn msg"),
        ("airtower.python_model", logging.ERROR, "error msg"),
        ("airtower.python_model", logging.DEBUG, "verbose msg"),
        ("airtower.python_model", logging.ERROR, "specific msg"),
    ]


def test_pb_utils_config_helpers_read_config_dicts() -> None:
    config = {"input": [{"name": "A", "data_type": "TYPE_FP32"}], "output": [{"name": "B"}]}
    assert pb_utils.get_input_config_by_name(config, "A") == {"name": "A", "data_type": "TYPE_FP32"}
    assert pb_utils.get_input_config_by_name(config, "B") is None
    assert pb_utils.get_output_config_by_name(config, "B") == {"name": "B"}
    assert not pb_utils.using_decoupled_model_transaction_policy(config)
    assert pb_utils.using_decoupled_model_transaction_policy({"model_transaction_policy": {"decoupled": True}})


def make_model_config(**fields: Any) -> pb_utils.ModelConfig:
    config = {"name": "m", "max_batch_size": 0, "input": [], "output": []}
    config.update(fields)
    return pb_utils.ModelConfig(json.dumps(config))


def test_pb_utils_model_config_adds_inputs_outputs_and_batching() -> None:
    config = make_model_config(input=[{"name": "IN", "data_type": "TYPE_INVALID", "dims": []}])
    config.set_max_batch_size(8)
    config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [4]})
    config.add_input({"name": "OPT", "data_type": "TYPE_INT32", "dims": [1], "optional": True})
    config.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": [4]})
    config.set_dynamic_batching()
    config.set_model_transaction_policy({"decoupled": False})
    as_dict = config.as_dict()
    assert as_dict["max_batch_size"] == 8
    assert as_dict["input"] == [
        {"name": "IN", "data_type": "TYPE_FP32", "dims": [4]},
        {"name": "OPT", "data_type": "TYPE_INT32", "dims": [1], "optional": True},
    ]
    assert as_dict["output"] == [{"name": "OUT", "data_type": "TYPE_FP32", "dims": [4]}]
    assert as_dict["dynamic_batching"] == {}
    assert as_dict["model_transaction_policy"] == {"decoupled": False}


CONFLICTS: list[tuple[Any, str]] = [
    (
        lambda c: c.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [4]}),
        "unable to load model 'm', configuration expects datatype TYPE_INT32 for input 'IN', model provides TYPE_FP32",
    ),
    (
        lambda c: c.add_input({"name": "IN", "data_type": "TYPE_INT32", "dims": [5]}),
        "model 'm', tensor 'IN': the model expects dims [5] but the model configuration specifies dims [4]",
    ),
    (
        lambda c: c.add_input({"name": "X", "dims": [1]}),
        "input 'X' in auto-complete-config function for model 'm' is missing 'data_type' property.",
    ),
    (
        lambda c: c.add_output({"name": "X", "data_type": "TYPE_FP32", "dims": [1], "optional": True}),
        "contains property other than 'name', 'data_type' and 'dims'.",
    ),
    (
        lambda c: c.set_max_batch_size(2),
        "configuration specified max_batch_size 4, but in auto-complete-config function for model 'm' "
        "specified max_batch_size 2",
    ),
    (lambda c: c.set_model_transaction_policy({"decoupled": False}), "trying to change decoupled property"),
]


@pytest.mark.parametrize(("call", "message"), CONFLICTS)
def test_pb_utils_model_config_rejects_conflicts_with_upstream_wording(call: Any, message: str) -> None:
    config = make_model_config(
        max_batch_size=4,
        input=[{"name": "IN", "data_type": "TYPE_INT32", "dims": ["4"]}],
        model_transaction_policy={"decoupled": True},
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        call(config)


def test_pb_utils_model_config_refuses_dynamic_batching_over_sequence_batching() -> None:
    config = make_model_config(sequence_batching={})
    with pytest.raises(ValueError, match="Configuration specified scheduling_choice as 'sequence_batching'"):
        config.set_dynamic_batching()


def test_pb_utils_metric_family_keeps_values() -> None:
    counter = pb_utils.MetricFamily("requests", "requests seen", pb_utils.MetricFamily.COUNTER).Metric({"m": "x"})
    counter.increment(2)
    assert counter.value() == 2
    gauge = pb_utils.MetricFamily("g", "a gauge", pb_utils.MetricFamily.GAUGE).Metric()
    gauge.set(5)
    assert gauge.value() == 5
    with pytest.raises(pb_utils.TritonModelException, match=r"^Failed to create metric\. Missing required buckets\.$"):
        pb_utils.MetricFamily("h", "a histogram", pb_utils.MetricFamily.HISTOGRAM).Metric()


def test_pb_utils_metric_misuse_gets_tritons_messages() -> None:
    import threading

    counter = pb_utils.MetricFamily("calls_total", "calls", pb_utils.MetricFamily.COUNTER).Metric({"m": "x"})
    histogram = pb_utils.MetricFamily("sizes", "sizes", pb_utils.MetricFamily.HISTOGRAM).Metric(buckets=[1.0])
    errors: list[str] = []

    def misuse() -> None:  # on an instance thread the message names the instance, as Triton's
        for call in (
            lambda: counter.set(1),
            lambda: counter.increment(-1),
            lambda: histogram.increment(1),
            lambda: histogram.value(),
            lambda: pb_utils.MetricFamily("bad name", "d", pb_utils.MetricFamily.COUNTER),
            lambda: pb_utils.MetricFamily("calls_total", "d", pb_utils.MetricFamily.GAUGE),
        ):
            try:
                call()
            except pb_utils.TritonModelException as exc:
                errors.append(str(exc))

    thread = threading.Thread(target=misuse, name="instance-m_0_0")
    thread.start()
    thread.join()
    prefix = "Failed to process the request for model 'm_0_0', message: "
    assert errors == [
        f"Failed to set metric value: {prefix}TRITONSERVER_METRIC_KIND_COUNTER does not support Set",
        f"Failed to increment metric value: {prefix}TRITONSERVER_METRIC_KIND_COUNTER can only be incremented "
        "monotonically by non-negative values.",
        f"Failed to increment metric value: {prefix}TRITONSERVER_METRIC_KIND_HISTOGRAM does not support Increment",
        f"Failed to get metric value: {prefix}TRITONSERVER_METRIC_KIND_HISTOGRAM does not support Value",
        f"Error when creating MetricFamily: {prefix}Invalid metric name",
        f"Error when creating MetricFamily: {prefix}Family name already exists with different type",
    ]


def test_custom_histograms_are_written_as_triton_writes_them() -> None:
    family = pb_utils.MetricFamily("latency_x", "l", pb_utils.MetricFamily.HISTOGRAM)
    series = family.Metric(labels={"z": "1", "a": "2"}, buckets=[0.5, 1.0, 5.0])
    series.observe(0.7)
    samples = [(s.name, s.labels, s.value) for s in family._family.collect().samples]
    assert samples[:3] == [
        ("latency_x_bucket", {"a": "2", "z": "1", "le": "0.5"}, 0),
        ("latency_x_bucket", {"a": "2", "z": "1", "le": "1"}, 1),  # label keys in order, le as Triton writes it
        ("latency_x_bucket", {"a": "2", "z": "1", "le": "5"}, 1),
    ]


def test_get_input_tensor_by_name_takes_any_object_with_the_public_methods() -> None:
    # The fast path reads pb_utils' own fields; a model's own request or tensor types (test doubles,
    # wrappers) still work through inputs() and name().
    class FakeTensor:
        def __init__(self, name: str) -> None:
            self._label = name

        def name(self) -> str:
            return self._label

    class FakeRequest:
        def __init__(self, tensors: list[Any]) -> None:
            self._tensors = tensors

        def inputs(self) -> list[Any]:
            return self._tensors

    wanted: Any = FakeTensor("B")
    request: Any = FakeRequest([FakeTensor("A"), wanted])
    real = pb_utils.Tensor("IN", np.zeros(2, np.float32))
    mixed = pb_utils.InferenceRequest(model_name="m", inputs=[real], requested_output_names=[])
    mixed._inputs.append(wanted)  # a foreign tensor among ours
    assert pb_utils.get_input_tensor_by_name(request, "B") is wanted
    assert pb_utils.get_input_tensor_by_name(mixed, "B") is wanted
    assert pb_utils.get_input_tensor_by_name(mixed, "IN") is real


def test_tensor_of_a_big_endian_array_gets_its_triton_type() -> None:
    assert (
        pb_utils.Tensor("X", np.zeros(2, ">f4")).triton_dtype()
        == pb_utils.Tensor("Y", np.zeros(2, "<f4")).triton_dtype()
    )


def test_bls_request_parameters_are_checked_and_written_as_triton_does() -> None:
    def request(parameters: Any) -> pb_utils.InferenceRequest:
        return pb_utils.InferenceRequest(model_name="m", inputs=[], requested_output_names=[], parameters=parameters)

    assert request({"a": 1, "b": "s", "c": True}).parameters() == '{"a": 1, "b": "s", "c": true}'  # json.dumps
    assert request(None).parameters() == "{}"
    assert request('{"a":1}').parameters() == '{"a":1}'  # JSON text is taken as it is
    cases = [
        ({"a": 1.5}, "Expect parameters values to have type bool/int/str, found type <class 'float'>"),
        ({"a": None}, "Expect parameters values to have type bool/int/str, found type <class 'NoneType'>"),
        ({"a": np.int64(3)}, "Expect parameters values to have type bool/int/str, found type <class 'numpy.int64'>"),
        ({1: 1}, "Expect parameters keys to have type str, found type <class 'int'>"),
        ([1], "Expect parameters to be a dict, got <class 'list'>"),
    ]
    for parameters, message in cases:
        with pytest.raises(pb_utils.TritonModelException) as raised:
            request(parameters)
        assert str(raised.value) == message


def test_bls_request_output_names_are_a_set_and_keep_their_order_for_the_request() -> None:
    request = pb_utils.InferenceRequest(model_name="m", inputs=[], requested_output_names=["b", "a", "b"])
    assert request.requested_output_names() == {"a", "b"}
    assert request._output_order == ["b", "a"]


def test_get_model_dir_answers_only_for_model_code() -> None:
    with pytest.raises(pb_utils.TritonError, match="only for the code of a Python model"):
        pb_utils.get_model_dir()
    module = types.ModuleType(pb_utils._MODEL_MODULE_PREFIX + "m_1_1")
    module.__file__ = "/repo/m/1/model.py"
    exec(
        "import triton_python_backend_utils as pb_utils\ndef where():\n    return pb_utils.get_model_dir()",
        module.__dict__,
    )
    assert module.where() == "/repo/m/1"


def test_errors_of_pb_utils_calls_are_caught_as_tritons_model_exception() -> None:
    with pytest.raises(pb_utils.TritonModelException):
        pb_utils.Tensor("B", np.array([b"x"], dtype=np.object_)).to_dlpack()  # a TritonError here
    assert issubclass(pb_utils.TritonError, pb_utils.TritonModelException)


def test_execute_request_parameters_are_written_as_triton_writes_them() -> None:
    request = pb_utils.InferenceRequest._for_execute(
        "r", 0, [], set(), "m", 1, 0, 0, {"s": 'é"\\\n\t\x01', "n": 3, "b": True}
    )
    assert request.parameters() == '{"s":"é\\"\\\\\\n\\t\\u0001","n":3,"b":true}'  # UTF-8 kept, compact
