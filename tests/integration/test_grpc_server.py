"""The real server over gRPC, driven by the real tritonclient.grpc (sync and asyncio) and raw stubs."""

from __future__ import annotations

import asyncio
import base64
import queue
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aiogrpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.integration.fixture_models import ECHO_TYPES, write_echo_model
from tests.integration.perf_analyzer import run_perf_analyzer
from tests.integration.server_process import ServerProcess, start_server

pytestmark = pytest.mark.integration

_OPTIONS = [("grpc.max_receive_message_length", 2**31 - 1), ("grpc.max_send_message_length", 2**31 - 1)]
ModelInferRequest = service_pb2.ModelInferRequest
InputTensor = ModelInferRequest.InferInputTensor


@pytest.fixture
def client(server: ServerProcess) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(server.grpc_url)


@pytest.fixture
def stub(server: ServerProcess) -> Iterator[Any]:
    with grpc.insecure_channel(server.grpc_url, options=_OPTIONS) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def add_sub_inputs(a: np.ndarray, b: np.ndarray) -> list[grpcclient.InferInput]:
    inputs = []
    for name, value in (("INPUT0", a), ("INPUT1", b)):
        tensor = grpcclient.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def assert_add_sub_works(client: grpcclient.InferenceServerClient) -> None:
    a = np.arange(16, dtype=np.float32)
    result = client.infer("add_sub", add_sub_inputs(a, a))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)


def status_and_message(stub: Any, rpc: str, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        getattr(stub, rpc)(request)
    return raised.value.code(), raised.value.details()


# -- health, metadata, config, statistics, repository ----------------------------------------


def test_server_health_and_metadata(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("add_sub")
    assert client.is_model_ready("add_sub", "1")
    assert not client.is_model_ready("add_sub", "9")
    assert not client.is_model_ready("nope")
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "triton"
    assert metadata["version"] == "2.51.0"
    assert "classification" in metadata["extensions"]


def test_standard_health_service_reports_readiness(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_model_metadata_and_config(client: grpcclient.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("add_sub_onnx", as_json=True)
    assert metadata["name"] == "add_sub_onnx"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("INPUT0", "FP32", ["-1", "16"]),
        ("INPUT1", "FP32", ["-1", "16"]),
    ]
    config = client.get_model_config("add_sub").config
    assert config.name == "add_sub"
    assert [i.name for i in config.input] == ["INPUT0", "INPUT1"]
    as_json = client.get_model_config("add_sub", as_json=True)
    assert as_json["config"]["input"][0]["dims"] == ["16"]
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_config("nope")
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    assert raised.value.message() == "Request for unknown model: 'nope' is not found"


def test_statistics_and_repository_index(client: grpcclient.InferenceServerClient) -> None:
    before = client.get_inference_statistics("add_sub").model_stats[0]
    for _ in range(3):
        assert_add_sub_works(client)
    after = client.get_inference_statistics("add_sub", "1").model_stats[0]
    assert after.name == "add_sub"
    assert after.version == "1"
    assert after.inference_stats.success.count - before.inference_stats.success.count == 3
    assert after.execution_count - before.execution_count == 3
    names = {stats.name for stats in client.get_inference_statistics().model_stats}
    assert {"add_sub", "add_sub_onnx", "echo"} <= names
    rows = {row.name: row for row in client.get_model_repository_index().models}
    assert (rows["add_sub"].version, rows["add_sub"].state) == ("1", "READY")


def test_load_and_unload_in_control_mode_none_are_unavailable(client: grpcclient.InferenceServerClient) -> None:
    for call in (client.load_model, client.unload_model):
        with pytest.raises(InferenceServerException) as raised:
            call("add_sub")
        assert raised.value.status() == "StatusCode.UNAVAILABLE"
        assert raised.value.message() == "explicit model load / unload is not allowed if polling is enabled"


def test_shared_memory_rpcs_answer_as_the_http_side(client: grpcclient.InferenceServerClient) -> None:
    # No region registered: status lists none, unregistering succeeds (as in Triton); CUDA regions are refused.
    assert client.get_system_shared_memory_status(as_json=True) == {}
    assert client.get_cuda_shared_memory_status(as_json=True) == {}
    client.unregister_system_shared_memory()
    client.unregister_system_shared_memory("r1")
    client.unregister_cuda_shared_memory()
    with pytest.raises(InferenceServerException) as raised:
        client.get_system_shared_memory_status("r1")
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    assert raised.value.message() == "Unable to find system shared memory region: 'r1'"
    with pytest.raises(InferenceServerException) as raised:
        client.register_system_shared_memory("r1", "/airtower_no_such_region", 64)
    assert raised.value.status() == "StatusCode.INTERNAL"  # as 2.51 answers a key it cannot open
    assert raised.value.message() == "Unable to open shared memory region: '/airtower_no_such_region'"
    with pytest.raises(InferenceServerException) as raised:
        client.register_cuda_shared_memory("r2", base64.b64encode(b"handle"), 0, 64)
    assert raised.value.status() == "StatusCode.UNIMPLEMENTED"


# -- inference -------------------------------------------------------------------------------


def test_add_sub_matches_numpy(client: grpcclient.InferenceServerClient) -> None:
    a = np.random.default_rng(0).random(16, np.float32)
    b = np.random.default_rng(1).random(16, np.float32)
    result = client.infer("add_sub", add_sub_inputs(a, b), request_id="req-7")
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("req-7", "add_sub", "1")


def _echo_value(wire: str) -> np.ndarray:
    if wire == "BYTES":
        return np.array([b"air", b"", b"t\x00wer"], dtype=np.object_)
    if wire == "BOOL":
        return np.array([True, False, True])
    return np.arange(5).astype(np.dtype(ECHO_TYPES[wire].removeprefix("TYPE_").lower().replace("fp", "float")))


@pytest.mark.parametrize("wire", list(ECHO_TYPES))
def test_every_datatype_round_trips(client: grpcclient.InferenceServerClient, wire: str) -> None:
    value = _echo_value(wire)
    tensor = grpcclient.InferInput(f"IN_{wire}", list(value.shape), wire)
    tensor.set_data_from_numpy(value)
    got = client.infer("echo", [tensor]).as_numpy(f"OUT_{wire}")
    if wire == "BYTES":
        assert [bytes(x) for x in got] == list(value)
    else:
        assert got.dtype == value.dtype
        np.testing.assert_array_equal(got, value)


def test_outputs_in_raw_output_contents_in_order(stub: Any) -> None:
    request = ModelInferRequest(
        model_name="echo",
        inputs=[InputTensor(name="IN_INT32", datatype="INT32", shape=[2]),
                InputTensor(name="IN_BOOL", datatype="BOOL", shape=[1])],
        raw_input_contents=[np.array([1, 2], np.int32).tobytes(), b"\x01"],
    )  # fmt: skip
    response = stub.ModelInfer(request)
    names = [output.name for output in response.outputs]
    assert sorted(names) == ["OUT_BOOL", "OUT_INT32"]
    contents = dict(zip(names, response.raw_output_contents, strict=True))
    assert contents == {"OUT_INT32": np.array([1, 2], np.int32).tobytes(), "OUT_BOOL": b"\x01"}


def test_typed_contents_are_accepted(stub: Any) -> None:
    request = ModelInferRequest(
        model_name="echo",
        inputs=[
            InputTensor(name="IN_INT32", datatype="INT32", shape=[3],
                        contents=service_pb2.InferTensorContents(int_contents=[1, -2, 3])),
            InputTensor(name="IN_BYTES", datatype="BYTES", shape=[2],
                        contents=service_pb2.InferTensorContents(bytes_contents=[b"a", b"bc"])),
        ],
        outputs=[ModelInferRequest.InferRequestedOutputTensor(name="OUT_INT32"),
                 ModelInferRequest.InferRequestedOutputTensor(name="OUT_BYTES")],
    )  # fmt: skip
    response = stub.ModelInfer(request)
    assert np.frombuffer(response.raw_output_contents[0], np.int32).tolist() == [1, -2, 3]
    assert response.raw_output_contents[1] == b"\x01\x00\x00\x00a\x02\x00\x00\x00bc"


def test_request_parameters(client: grpcclient.InferenceServerClient, stub: Any) -> None:
    a = np.ones(16, np.float32)
    result = client.infer("add_sub", add_sub_inputs(a, a), parameters={"custom": "x", "n": 3, "flag": True})
    assert result.as_numpy("OUTPUT0").tolist() == [2.0] * 16
    result = client.infer("add_sub", add_sub_inputs(a, a), priority=1, timeout=1_000_000)
    assert result.as_numpy("OUTPUT0").tolist() == [2.0] * 16
    # tritonclient refuses reserved keys itself: send them raw
    request = _infer_request("echo", ("IN_INT32", "INT32", [1], b"\0" * 4))
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    request.parameters["ratio"].double_param = 0.5
    assert stub.ModelInfer(request).raw_output_contents[0] == b"\0" * 4
    request.parameters["triton_x"].int64_param = 1
    code, message = status_and_message(stub, "ModelInfer", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == (
        "parameter keys starting with 'triton_' are reserved for Triton usage. Only the following keys starting with "
        "'triton_' are allowed: triton_enable_empty_final_response"
    )
    del request.parameters["triton_x"]
    request.parameters["priority"].int64_param = -1
    code, message = status_and_message(stub, "ModelInfer", request)
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid value for 'priority', expected value >= 0.")


def test_classification_uses_labels(client: grpcclient.InferenceServerClient, examples_repository: Path) -> None:
    features = np.random.default_rng(3).random((2, 4), np.float32)
    tensor = grpcclient.InferInput("INPUT0", [2, 4], "FP32")
    tensor.set_data_from_numpy(features)
    requested = grpcclient.InferRequestedOutput("OUTPUT0", class_count=3)
    got = client.infer("classifier", [tensor], outputs=[requested]).as_numpy("OUTPUT0")
    assert got.shape == (2, 3)
    labels = (examples_repository / "classifier" / "labels.txt").read_text().split()
    for row in got:
        _, index, label = bytes(row[0]).decode().split(":")
        assert label == labels[int(index)]


def test_100_megabyte_input(client: grpcclient.InferenceServerClient) -> None:
    value = np.tile(np.arange(256, dtype=np.uint8), 400 * 1024)  # 100 MiB
    tensor = grpcclient.InferInput("IN_UINT8", list(value.shape), "UINT8")
    tensor.set_data_from_numpy(value)
    got = client.infer("echo", [tensor]).as_numpy("OUT_UINT8")
    assert got.shape == value.shape
    assert np.array_equal(got, value)


async def test_asyncio_client(server: ServerProcess) -> None:
    async with aiogrpcclient.InferenceServerClient(server.grpc_url) as client:
        assert await client.is_server_ready()
        a = np.arange(16, dtype=np.float32)
        results = await asyncio.gather(*(client.infer("add_sub", add_sub_inputs(a, a * i)) for i in range(8)))
        for i, result in enumerate(results):
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a * i)


# -- streaming -------------------------------------------------------------------------------


def _mode(mode: int) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("MODE", [1], "INT32")
    tensor.set_data_from_numpy(np.array([mode], np.int32))
    return [tensor]


def test_stream_with_requests_in_flight_and_an_error(client: grpcclient.InferenceServerClient) -> None:
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        a = np.arange(16, dtype=np.float32)
        for i in range(6):
            client.async_stream_infer("add_sub", add_sub_inputs(a, a * i), request_id=f"ok-{i}")
        client.async_stream_infer("failing", _mode(1), request_id="raises")
        client.async_stream_infer("nope", _mode(0), request_id="unknown")
        client.async_stream_infer("failing", _mode(0), request_id="after")
        got = [results.get(timeout=60) for _ in range(9)]
    finally:
        client.stop_stream()
    ok = {result.get_response().id: result for result, error in got if error is None}
    errors = [error for result, error in got if error is not None]
    assert set(ok) == {f"ok-{i}" for i in range(6)} | {"after"}
    for i in range(6):
        np.testing.assert_array_equal(ok[f"ok-{i}"].as_numpy("OUTPUT0"), a + a * i)
    assert ok["after"].as_numpy("OUT").tolist() == [0]
    messages = sorted(error.message() for error in errors)
    assert len(messages) == 2
    assert "the model raised on purpose" in messages[0]
    assert messages[1] == "Request for unknown model: 'nope' is not found"


def start_grpc_error_stream(client: grpcclient.InferenceServerClient) -> queue.Queue[tuple[Any, Any]]:
    """A stream with header ``triton_grpc_error: true``; its callbacks' ``(result, error)`` go to the queue."""
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(
        callback=lambda result, error: results.put((result, error)), headers={"triton_grpc_error": "true"}
    )
    return results


def test_stream_with_triton_grpc_error_header_ends_on_the_first_error(
    client: grpcclient.InferenceServerClient,
) -> None:
    results = start_grpc_error_stream(client)
    try:
        client.async_stream_infer("nope", _mode(0), request_id="unknown")
        result, error = results.get(timeout=60)
    finally:
        client.stop_stream()
    assert result is None
    assert error.status() == "StatusCode.NOT_FOUND"
    assert error.message() == "Request for unknown model: 'nope' is not found"
    assert_add_sub_works(client)


def test_stream_with_triton_grpc_error_header_writes_nothing_after_the_error(
    client: grpcclient.InferenceServerClient,
) -> None:
    results = start_grpc_error_stream(client)
    a = np.arange(16, dtype=np.float32)
    try:
        for i in range(20):  # answers being written while the stream ends on the error
            client.async_stream_infer("add_sub", add_sub_inputs(a, a), request_id=f"before{i}")
        client.async_stream_infer("nope", _mode(0), request_id="unknown")
        for i in range(20):
            client.async_stream_infer("add_sub", add_sub_inputs(a, a), request_id=f"after{i}")
        seen: list[tuple[Any, Any]] = []
        while not seen or seen[-1][1] is None:
            seen.append(results.get(timeout=60))
    finally:
        client.stop_stream()
    *answers, (_, error) = seen
    assert error.status() == "StatusCode.NOT_FOUND"
    assert all(result.get_response().id.startswith("before") for result, _ in answers)
    assert results.empty()  # the stream ended with the error: nothing came after it
    assert_add_sub_works(client)


async def test_asyncio_stream(server: ServerProcess) -> None:
    a = np.arange(16, dtype=np.float32)

    async def requests() -> Any:
        for i in range(4):
            yield {"model_name": "add_sub", "inputs": add_sub_inputs(a, a * i), "request_id": str(i)}
        yield {"model_name": "failing", "inputs": _mode(2), "request_id": "rejected"}

    async with aiogrpcclient.InferenceServerClient(server.grpc_url) as client:
        seen: dict[str, Any] = {}
        errors: list[Any] = []
        async for result, error in client.stream_infer(requests()):
            if error is not None:
                errors.append(error)
            else:
                seen[result.get_response().id] = result
            if len(seen) + len(errors) == 5:
                break
    assert sorted(seen) == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(seen["3"].as_numpy("OUTPUT1"), a - a * 3)
    assert [error.message() for error in errors] == ["request rejected by the model"]


# -- errors: each answered with Triton's status and message; the server keeps serving --------


def _infer_request(model: str, *inputs: tuple[str, str, list[int], bytes | None], version: str = "") -> Any:
    tensors = [InputTensor(name=name, datatype=datatype, shape=shape) for name, datatype, shape, _ in inputs]
    raw = [data for *_, data in inputs if data is not None]
    return ModelInferRequest(model_name=model, model_version=version, inputs=tensors, raw_input_contents=raw)


_F16 = np.ones(16, np.float32).tobytes()


@pytest.mark.parametrize(
    ("request_message", "code", "message"),
    [
        (_infer_request("nope"), grpc.StatusCode.NOT_FOUND, "Request for unknown model: 'nope' is not found"),
        (_infer_request("add_sub", version="9"), grpc.StatusCode.NOT_FOUND,
         "Request for unknown model: 'add_sub' version 9 is not found"),
        (_infer_request("add_sub", ("INPUT0", "FP32", [15], _F16[:60]), ("INPUT1", "FP32", [16], _F16)),
         grpc.StatusCode.INVALID_ARGUMENT,
         "unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [16], got [15]"),
        (_infer_request("add_sub", ("INPUT0", "INT32", [16], _F16), ("INPUT1", "FP32", [16], _F16)),
         grpc.StatusCode.INVALID_ARGUMENT,
         "inference input 'INPUT0' data-type is 'INT32', but model 'add_sub' expects 'FP32'"),
        (_infer_request("add_sub", ("INPUT0", "FP32", [16], _F16)), grpc.StatusCode.INVALID_ARGUMENT,
         "expected 2 inputs but got 1 inputs for model 'add_sub'"),
        (_infer_request("add_sub", ("INPUT0", "FP32", [16], _F16[:60]), ("INPUT1", "FP32", [16], _F16)),
         grpc.StatusCode.INVALID_ARGUMENT,
         "[request id: <id_unknown>] input byte size mismatch for input 'INPUT0' for model 'add_sub'. "
         "Expected 64, got 60"),
        (_infer_request("add_sub", ("INPUT0", "FP32", [16], _F16), ("INPUT1", "FP32", [16], None)),
         grpc.StatusCode.INVALID_ARGUMENT,
         "unable to find data for input tensor 'INPUT1' for model 'add_sub' in request."),
        (ModelInferRequest(model_name="add_sub", inputs=[
            InputTensor(name="INPUT0", datatype="FP32", shape=[16]),
            InputTensor(name="INPUT1", datatype="FP32", shape=[16],
                        contents=service_pb2.InferTensorContents(fp32_contents=[1] * 16))],
            raw_input_contents=[_F16]),
         grpc.StatusCode.INVALID_ARGUMENT,
         "contents field must not be specified when using raw_input_contents for 'INPUT1' for model 'add_sub'"),
        (_infer_request("add_sub_onnx", ("INPUT0", "FP32", [9, 16], _F16 * 9), ("INPUT1", "FP32", [9, 16], _F16 * 9)),
         grpc.StatusCode.INVALID_ARGUMENT, "inference request batch-size must be <= 8 for 'add_sub_onnx'"),
        (_infer_request("echo", ("IN_BYTES", "BYTES", [2], b"\x05\x00\x00\x00ab")), grpc.StatusCode.INVALID_ARGUMENT,
         "expected 2 string elements for inference input 'IN_BYTES' for model 'echo', got 1"),
        (_infer_request("nope", ("INPUT0", "FP32", [16], _F16[:60])), grpc.StatusCode.NOT_FOUND,
         "Request for unknown model: 'nope' is not found"),
        (_infer_request("add_sub", ("INPUT0", "FOO", [16], _F16), ("INPUT1", "FP32", [16], _F16)),
         grpc.StatusCode.INVALID_ARGUMENT,
         "inference input 'INPUT0' data-type is '<invalid>', but model 'add_sub' expects 'FP32'"),
    ],
    ids=["unknown-model", "unknown-version", "wrong-shape", "wrong-datatype", "missing-input", "byte-size",
         "missing-raw", "mixed-contents", "batch-too-big", "bad-bytes", "unknown-model-before-bad-input",
         "unknown-datatype"],
)  # fmt: skip
def test_bad_requests_get_triton_errors_and_server_keeps_serving(
    stub: Any, client: grpcclient.InferenceServerClient, request_message: Any, code: grpc.StatusCode, message: str
) -> None:
    got_code, got_message = status_and_message(stub, "ModelInfer", request_message)
    assert got_code == code, got_message
    assert message in got_message
    assert_add_sub_works(client)


def test_model_errors_fail_only_their_request(client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.infer("failing", _mode(1))
    assert raised.value.status() == "StatusCode.INTERNAL"
    assert "the model raised on purpose" in raised.value.message()
    with pytest.raises(InferenceServerException) as rejected:
        client.infer("failing", _mode(2))
    assert rejected.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert rejected.value.message() == "request rejected by the model"
    assert client.infer("failing", _mode(0)).as_numpy("OUT").tolist() == [0]


# -- perf_analyzer ---------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True], ids=["unary", "streaming"])
def test_perf_analyzer_grpc_runs_against_airtower(server: ServerProcess, streaming: bool) -> None:
    run_perf_analyzer("add_sub", server.grpc_url, "grpc", *(["--streaming"] if streaming else []))


# -- a dedicated server: TLS, mutual TLS, cancellation ---------------------------------------

SLOW_MODEL = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(1.0)
        outputs = [pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() for r in requests]
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", value)]) for value in outputs]
"""


@pytest.fixture(scope="module")
def small_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("grpc_repository")
    write_echo_model(repository)
    slow = repository / "slow"
    (slow / "1").mkdir(parents=True)
    (slow / "1" / "model.py").write_text(SLOW_MODEL)
    (slow / "config.pbtxt").write_text(textwrap.dedent("""\
        name: "slow"
        backend: "python"
        max_batch_size: 0
        input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
        instance_group [ { count: 1 kind: KIND_CPU } ]
        """))  # fmt: skip
    return repository


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with openssl."""
    directory = tmp_path_factory.mktemp("certs")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=airtower-test-ca")  # fmt: skip
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={'localhost' if name == 'server' else 'airtower-client'}")  # fmt: skip
        extra = ["-extfile", "server.ext"] if name == "server" else []
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", *extra)  # fmt: skip
    return {name: directory / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def _echo_int(client: grpcclient.InferenceServerClient) -> list[int]:
    tensor = grpcclient.InferInput("IN_INT32", [2], "INT32")
    tensor.set_data_from_numpy(np.array([4, 5], np.int32))
    result: list[int] = client.infer("echo", [tensor]).as_numpy("OUT_INT32").tolist()
    return result


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
def test_tls(small_repository: Path, certificates: dict[str, Path], mutual: bool) -> None:
    flags = ["--grpc-use-ssl", "true", "--grpc-server-cert", str(certificates["server.pem"]),
             "--grpc-server-key", str(certificates["server.key"])]  # fmt: skip
    if mutual:
        flags += ["--grpc-use-ssl-mutual", "true", "--grpc-root-cert", str(certificates["ca.pem"])]
    process = start_server([small_repository], *flags)
    try:
        root = str(certificates["ca.pem"])
        client_cert = {
            "private_key": str(certificates["client.key"]),
            "certificate_chain": str(certificates["client.pem"]),
        }
        secure = grpcclient.InferenceServerClient(process.grpc_url, ssl=True, root_certificates=root, **client_cert)
        assert _echo_int(secure) == [4, 5]
        plain = grpcclient.InferenceServerClient(process.grpc_url)
        with pytest.raises(InferenceServerException):
            plain.is_server_live()
        if mutual:
            anonymous = grpcclient.InferenceServerClient(process.grpc_url, ssl=True, root_certificates=root)
            with pytest.raises(InferenceServerException):
                anonymous.is_server_live()
        assert secure.is_server_ready()
    finally:
        assert process.stop() == 0, process.output()


async def test_client_cancel_drops_the_request_and_server_keeps_serving(small_repository: Path) -> None:
    process = start_server([small_repository], "--grpc-keepalive-time", "60000", "--reuse-grpc-port", "false",
                           "--grpc-infer-response-compression-level", "low")  # fmt: skip
    try:
        async with aiogrpcclient.InferenceServerClient(process.grpc_url) as client:

            def slow_input(value: int) -> list[aiogrpcclient.InferInput]:
                tensor = aiogrpcclient.InferInput("IN", [1], "INT32")
                tensor.set_data_from_numpy(np.array([value], np.int32))
                return [tensor]

            # The first request occupies the only instance; the second waits in the queue. Both are cancelled.
            running = asyncio.create_task(client.infer("slow", slow_input(1)))
            queued = asyncio.create_task(client.infer("slow", slow_input(2)))
            await asyncio.sleep(0.3)
            running.cancel()
            queued.cancel()
            for task in (running, queued):
                with pytest.raises(asyncio.CancelledError):
                    await task
            result = await client.infer("slow", slow_input(3))
            assert result.as_numpy("OUT").tolist() == [3]
            stats = (await client.get_inference_statistics("slow")).model_stats[0]
            # The queued request never executed: at most the first one and the last one did.
            assert stats.execution_count <= 2
            assert stats.inference_stats.success.count >= 1
    finally:
        assert process.stop() == 0, process.output()


def test_deadlines_and_compression_over_the_native_transport(small_repository: Path) -> None:
    """grpc-timeout ends a call with DEADLINE_EXCEEDED (the server goes on); compressed requests are
    read, and responses compressed at the flag's level reach the client intact."""
    process = start_server([small_repository], "--grpc-infer-response-compression-level", "high")
    try:
        client = grpcclient.InferenceServerClient(process.grpc_url)
        tensor = grpcclient.InferInput("IN_INT32", [3], "INT32")
        tensor.set_data_from_numpy(np.array([1, 2, 3], np.int32))
        for algorithm in (None, "gzip", "deflate"):
            result = client.infer("echo", [tensor], compression_algorithm=algorithm)
            assert result.as_numpy("OUT_INT32").tolist() == [1, 2, 3]
        slow = grpcclient.InferInput("IN", [1], "INT32")
        slow.set_data_from_numpy(np.array([7], np.int32))
        with pytest.raises(InferenceServerException) as raised:
            client.infer("slow", [slow], client_timeout=0.2)
        assert raised.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        assert client.infer("slow", [slow]).as_numpy("OUT").tolist() == [7]
        assert client.is_server_ready()
    finally:
        assert process.stop() == 0, process.output()
