"""HttpFrontend against a fake InferenceServer, driven by the real tritonclient.http and raw sockets.

The frontend runs on its own uvloop event loop in a background thread (tritonclient.http is
synchronous); the fake server echoes inputs as outputs and raises errors on demand.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import json
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytest
import tritonclient.http as httpclient
import uvloop
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse
from airtower.core.shared_memory import SystemSharedMemory
from airtower.core.tensor import Tensor
from airtower.errors import (
    InternalError,
    ModelNotFoundError,
    QueueFullError,
    TritonError,
    UnavailableError,
    UnsupportedError,
)
from airtower.frontends.http.app import HttpFrontend
from airtower.options import ServerOptions

if TYPE_CHECKING:
    from airtower.server import InferenceServer

pytestmark = pytest.mark.integration

MAX_INPUT_SIZE = 1 << 20
ALL_DATATYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


def _config(name: str, data_type: str, dims: list[int], max_batch_size: int = 0, inputs: int = 1) -> Any:
    config = model_config_pb2.ModelConfig(name=name, backend="fake", max_batch_size=max_batch_size)
    for index in range(inputs):
        config.input.add(name=f"INPUT{index}", data_type=model_config_pb2.DataType.Value(data_type), dims=dims)
        config.output.add(name=f"OUTPUT{index}", data_type=model_config_pb2.DataType.Value(data_type), dims=dims)
    return config


class FakeInferenceServer:
    """Implements the InferenceServer interface the frontend uses; records calls."""

    def __init__(self) -> None:
        self.options = ServerOptions(model_repositories=())
        self.tracing = False  # no request is traced: the frontend attaches no trace context
        self.shared_memory = SystemSharedMemory()
        self.live = True
        self.ready = True
        self.configs = {
            "echo": _config("echo", "TYPE_FP32", [-1]),
            "raw_bytes": _config("raw_bytes", "TYPE_STRING", [1]),
            "batched": _config("batched", "TYPE_FP32", [4], max_batch_size=8),
            "two_inputs": _config("two_inputs", "TYPE_FP32", [4], inputs=2),
            "two_variable": _config("two_variable", "TYPE_INT32", [-1, -1]),
        }
        self.requests: list[InferenceRequest] = []
        self.loads: list[tuple[str, str | None, dict[str, bytes]]] = []
        self.unloads: list[tuple[str, bool]] = []

    def _known(self, name: str) -> None:
        if name not in self.configs:
            raise ModelNotFoundError(f"Request for unknown model: '{name}' is not found")

    def is_live(self) -> bool:
        return self.live

    def is_ready(self) -> bool:
        return self.ready

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "triton", "version": "2.51.0", "extensions": ["binary_tensor_data", "classification"]}

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        self._known(name)
        return {"name": name, "versions": [version or "1"], "platform": "fake", "inputs": [], "outputs": []}

    def is_model_ready(self, name: str, version: str = "") -> bool:
        return name in self.configs and version in ("", "1")

    def model_config(self, name: str, version: str = "") -> Any:
        self._known(name)
        return self.configs[name]

    def infer_target_config(self, name: str, version: str = "", caller: str | None = None) -> Any:
        return self.model_config(name, version)  # the fake has no decoupled models

    def infer(self, request: InferenceRequest, caller: str = "inference") -> asyncio.Future[InferenceResponse]:
        # Like InferenceServer.infer: look-up errors raise at once, model errors fail the future.
        self.requests.append(request)
        self._known(request.model_name)
        future: asyncio.Future[InferenceResponse] = asyncio.get_running_loop().create_future()
        failure = request.parameters.get("fail")
        if failure is not None:
            future.set_exception(_FAILURES[str(failure)])
        else:
            future.set_result(self._answer(request))
        # Like InferenceServer.infer: the request's response-complete hook follows its future.
        future.get_loop().call_soon(request.notify_complete, future)
        return future

    def _answer(self, request: InferenceRequest) -> InferenceResponse:
        outputs = [
            Tensor(name.replace("INPUT", "OUTPUT"), tensor.datatype, tensor.shape, tensor.data)
            for name, tensor in request.inputs.items()
        ]
        if request.outputs:
            wanted = {output.name: output for output in request.outputs}
            outputs = [_classify(t, wanted[t.name].class_count) for t in outputs if t.name in wanted]
        return InferenceResponse(
            request.model_name, request.model_version or "1", request.id, outputs, dict(request.parameters)
        )

    def model_statistics(self, name: str = "", version: str = "") -> dict[str, Any]:
        if name:
            self._known(name)
        return {"model_stats": [{"name": name or "echo", "version": version or "1", "inference_count": 3}]}

    def repository_index(self, ready: bool = False) -> list[dict[str, Any]]:
        return [{"name": "echo", "version": "1", "state": "READY"}] + ([] if ready else [{"name": "gone"}])

    async def load_model(self, name: str, config: str | None, files: dict[str, bytes], repository: str = "") -> None:
        if name == "bad":
            raise UnavailableError("explicit model load / unload is not allowed if polling is enabled")
        self.loads.append((name, config, files))

    async def unload_model(self, name: str, unload_dependents: bool, repository: str = "") -> None:
        self.unloads.append((name, unload_dependents))


_FAILURES: dict[str, Exception] = {
    "queue": QueueFullError("Exceeds maximum queue size"),
    "internal": InternalError("model failed"),
    "unsupported": UnsupportedError("HTTP end point doesn't support models with decoupled transaction policy"),
    "crash": RuntimeError("boom"),
}


def _classify(tensor: Tensor, class_count: int) -> Tensor:
    if class_count == 0:
        return tensor
    flat = tensor.data.reshape(-1)
    top = np.argsort(-flat, kind="stable")[:class_count]
    labels = np.array([f"{flat[i]:f}:{i}".encode() for i in top], dtype=np.object_)
    return Tensor(tensor.name, "BYTES", (len(labels),), labels)


class _FrontendThread:
    def __init__(self, server: FakeInferenceServer) -> None:
        self.loop = uvloop.new_event_loop()
        # The fake implements what the frontend calls of InferenceServer.
        self.frontend = HttpFrontend(
            cast("InferenceServer", server), host="127.0.0.1", port=0, max_input_size=MAX_INPUT_SIZE
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self.frontend.start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.frontend.aclose(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def fake_server() -> FakeInferenceServer:
    return FakeInferenceServer()


@pytest.fixture(scope="module")
def fake_frontend(fake_server: FakeInferenceServer) -> Iterator[_FrontendThread]:
    running = _FrontendThread(fake_server)
    yield running
    running.close()


@pytest.fixture(autouse=True)
def fake_reset(fake_server: FakeInferenceServer) -> None:
    fake_server.live = fake_server.ready = True
    fake_server.requests.clear()


@pytest.fixture
def fake_client(fake_frontend: _FrontendThread) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{fake_frontend.port}")
    yield client
    client.close()


def fake_raw(
    frontend: _FrontendThread, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", frontend.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.reason, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _infer_json(frontend: _FrontendThread, document: dict[str, Any], model: str = "echo") -> tuple[int, Any]:
    status, _, _, body = fake_raw(frontend, "POST", f"/v2/models/{model}/infer", json.dumps(document).encode())
    return status, json.loads(body)


def _sample(datatype: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    array: np.ndarray
    if datatype == "BYTES":
        array = np.array([f"s{i}é".encode() for i in range(6)], dtype=np.object_).reshape(shape)
    elif datatype == "BOOL":
        array = (np.arange(6) % 2 == 0).reshape(shape)
    else:
        array = np.arange(6).astype(ALL_DATATYPES[datatype]).reshape(shape)
    return array


# ------------------------------------------------------------------------------ health and metadata


def test_http_frontend_health_reports_live_and_ready(
    fake_client: httpclient.InferenceServerClient, fake_server: FakeInferenceServer
) -> None:
    assert fake_client.is_server_live()
    assert fake_client.is_server_ready()
    fake_server.ready = False
    assert not fake_client.is_server_ready()


def test_http_frontend_health_wire_format_matches_triton(fake_frontend: _FrontendThread) -> None:
    assert fake_raw(fake_frontend, "GET", "/v2/health/live")[:2] == (200, "OK")
    status, _, headers, body = fake_raw(fake_frontend, "GET", "/v2/health/ready?x=1")
    assert (status, body, headers["Content-Length"], headers["Content-Type"]) == (200, b"", "0", "text/plain")


def test_http_frontend_health_not_ready_is_400_empty(
    fake_frontend: _FrontendThread, fake_server: FakeInferenceServer
) -> None:
    fake_server.live = False
    assert fake_raw(fake_frontend, "GET", "/v2/health/live")[::3] == (400, b"")


def test_http_frontend_metadata_and_config(fake_client: httpclient.InferenceServerClient) -> None:
    assert fake_client.get_server_metadata()["name"] == "triton"
    assert fake_client.get_model_metadata("echo", "2")["versions"] == ["2"]
    config = fake_client.get_model_config("batched")
    assert config["max_batch_size"] == 8
    assert config["input"][0]["dims"] == [4]


def test_http_frontend_model_ready_and_unknown_model(fake_frontend: _FrontendThread) -> None:
    assert fake_raw(fake_frontend, "GET", "/v2/models/echo/versions/1/ready")[0] == 200
    status, _, _, body = fake_raw(fake_frontend, "GET", "/v2/models/nope/ready")
    assert (status, body) == (400, b'{"error":"Model version not ready"}')
    status, _, _, body = fake_raw(fake_frontend, "GET", "/v2/models/nope")
    assert (status, body) == (404, b'{"error":"Request for unknown model: \'nope\' is not found"}')


def test_http_frontend_unknown_path_and_wrong_method(fake_frontend: _FrontendThread) -> None:
    for path in ("/v2/nothing", "/v2/", "/v2/models", "/v2/models/echo/", "/v2/models/echo/versions/x", "//v2"):
        assert fake_raw(fake_frontend, "GET", path)[::3] == (404, b'{"error":"Not Found"}'), path
    assert fake_raw(fake_frontend, "GET", "/v2/models/echo/infer")[:2] == (405, "Not Allowed")
    assert fake_raw(fake_frontend, "POST", "/v2", b"")[3] == b'{"error":"Method Not Allowed"}'


def test_http_frontend_url_decodes_model_names(
    fake_client: httpclient.InferenceServerClient, fake_server: FakeInferenceServer
) -> None:
    fake_server.configs["a b%c"] = fake_server.configs["echo"]
    try:
        assert fake_client.get_model_metadata("a b%c")["name"] == "a b%c"
    finally:
        del fake_server.configs["a b%c"]


def test_http_frontend_statistics_and_repository(
    fake_client: httpclient.InferenceServerClient, fake_server: FakeInferenceServer
) -> None:
    assert fake_client.get_inference_statistics()["model_stats"][0]["inference_count"] == 3
    assert fake_client.get_inference_statistics("echo", "1")["model_stats"][0]["version"] == "1"
    assert len(fake_client.get_model_repository_index()) == 2
    fake_client.load_model("m", config='{"max_batch_size": 2}', files={"file:1/model.onnx": b"\x00\x01"})
    assert fake_server.loads[-1] == ("m", '{"max_batch_size": 2}', {"file:1/model.onnx": b"\x00\x01"})
    fake_client.unload_model("m", unload_dependents=True)
    assert fake_server.unloads[-1] == ("m", True)
    with pytest.raises(InferenceServerException) as info:
        fake_client.load_model("bad")
    assert info.value.status() == "503"


def test_http_frontend_repository_index_ready_filter_and_named_repository(fake_frontend: _FrontendThread) -> None:
    status, _, _, body = fake_raw(fake_frontend, "POST", "/v2/repository/myrepo/index", b'{"ready":true}')
    assert (status, json.loads(body)) == (200, [{"name": "echo", "version": "1", "state": "READY"}])
    status, _, _, body = fake_raw(fake_frontend, "POST", "/v2/repository/index", b'{"ready":1}')
    assert (status, body) == (500, b'{"error":"attempt to access JSON non-boolean as boolean"}')


# ------------------------------------------------------------------------------ inference


# FP16 cannot travel as JSON (Triton refuses it too; tested separately).
@pytest.mark.parametrize(
    ("datatype", "binary"),
    [(d, b) for d in sorted(ALL_DATATYPES) for b in (True, False) if b or d != "FP16"],
)
def test_http_frontend_infer_round_trips_every_datatype(
    fake_client: httpclient.InferenceServerClient, datatype: str, binary: bool
) -> None:
    data = _sample(datatype)
    infer_input = httpclient.InferInput("INPUT0", list(data.shape), datatype)
    infer_input.set_data_from_numpy(data, binary_data=binary)
    output = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
    result = fake_client.infer("echo", [infer_input], outputs=[output], request_id="r1")
    got = result.as_numpy("OUTPUT0")
    assert got.shape == data.shape
    expected = data if binary or datatype != "BYTES" else np.vectorize(bytes.decode, otypes=[object])(data)
    assert got.tolist() == expected.tolist()  # tritonclient gives str for JSON BYTES, as with Triton
    assert result.get_response()["id"] == "r1"
    assert result.get_response()["model_version"] == "1"


def test_http_frontend_infer_bf16_binary(fake_client: httpclient.InferenceServerClient) -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    data = np.array([1.0, -2.5, 3.0], dtype=ml_dtypes.bfloat16)
    infer_input = httpclient.InferInput("INPUT0", [3], "BF16")
    infer_input.set_data_from_numpy(data)
    result = fake_client.infer("echo", [infer_input])
    assert result.as_numpy("OUTPUT0").astype(np.float32).tolist() == [1.0, -2.5, 3.0]


def test_http_frontend_infer_defaults_to_binary_outputs_with_header(fake_frontend: _FrontendThread) -> None:
    document = {
        "inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}],
        "parameters": {"binary_data_output": True},
    }
    status, _, headers, body = fake_raw(fake_frontend, "POST", "/v2/models/echo/infer", json.dumps(document).encode())
    header_length = int(headers["Inference-Header-Content-Length"])
    assert (status, headers["Content-Type"]) == (200, "application/octet-stream")
    assert json.loads(body[:header_length]) == {
        "model_name": "echo",
        "model_version": "1",
        "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [3], "parameters": {"binary_data_size": 12}}],
    }
    assert body[header_length:] == struct.pack("<3f", 1, 2, 3)


def test_http_frontend_infer_json_response_matches_triton_bytes(fake_frontend: _FrontendThread) -> None:
    document = {"id": "", "inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32", "data": [[1, 2], [3]]}]}
    status, _, headers, body = fake_raw(fake_frontend, "POST", "/v2/models/echo/infer", json.dumps(document).encode())
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body == (
        b'{"model_name":"echo","model_version":"1","outputs":'
        b'[{"name":"OUTPUT0","datatype":"FP32","shape":[3],"data":[1.0,2.0,3.0]}]}'
    )


def test_http_frontend_infer_passes_parameters_and_reserved_fields(
    fake_client: httpclient.InferenceServerClient, fake_server: FakeInferenceServer
) -> None:
    infer_input = httpclient.InferInput("INPUT0", [2], "FP32")
    infer_input.set_data_from_numpy(np.ones(2, np.float32))
    result = fake_client.infer(
        "echo",
        [infer_input],
        model_version="1",
        sequence_id=42,
        sequence_start=True,
        sequence_end=True,
        priority=2,
        timeout=1000,
        parameters={"s": "x", "i": 3, "b": True},
    )
    request = fake_server.requests[-1]
    assert (request.correlation_id, request.flags, request.priority, request.timeout_us) == (42, 3, 2, 1000)
    assert request.model_version == "1"
    assert request.parameters == {"s": "x", "i": 3, "b": True}
    assert result.get_response()["parameters"] == {"s": "x", "i": 3, "b": True}


def test_http_frontend_infer_classification(fake_client: httpclient.InferenceServerClient) -> None:
    infer_input = httpclient.InferInput("INPUT0", [3], "FP32")
    infer_input.set_data_from_numpy(np.array([1, 3, 2], np.float32))
    output = httpclient.InferRequestedOutput("OUTPUT0", class_count=2)
    result = fake_client.infer("echo", [infer_input], outputs=[output])
    assert result.as_numpy("OUTPUT0").tolist() == [b"3.000000:1", b"2.000000:2"]


def test_http_frontend_infer_compression_both_ways(fake_client: httpclient.InferenceServerClient) -> None:
    data = np.arange(1000, dtype=np.float32)
    for request_algorithm, response_algorithm in (("gzip", "deflate"), ("deflate", "gzip")):
        infer_input = httpclient.InferInput("INPUT0", [1000], "FP32")
        infer_input.set_data_from_numpy(data)
        result = fake_client.infer(
            "echo",
            [infer_input],
            request_compression_algorithm=request_algorithm,
            response_compression_algorithm=response_algorithm,
        )
        assert np.array_equal(result.as_numpy("OUTPUT0"), data)


def test_http_frontend_infer_compressed_response_headers(fake_frontend: _FrontendThread) -> None:
    document = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [1]}]}).encode()
    headers = {"Content-Encoding": "gzip", "Accept-Encoding": "br, deflate;q=0.5"}
    status, _, response_headers, body = fake_raw(
        fake_frontend, "POST", "/v2/models/echo/infer", gzip.compress(document), headers
    )
    assert (status, response_headers["Content-Encoding"]) == (200, "deflate")
    assert json.loads(zlib.decompress(body))["outputs"][0]["data"] == [1.0]


def test_http_frontend_infer_rejects_unknown_content_encoding(fake_frontend: _FrontendThread) -> None:
    status, _, headers, body = fake_raw(
        fake_frontend, "POST", "/v2/models/echo/infer", b"{}", {"Content-Encoding": "br"}
    )
    assert (status, body) == (501, b'{"error":"Unsupported compression type"}')
    assert headers["Accept-Encoding"] == "gzip, deflate"


def test_http_frontend_infer_raw_binary_request(
    fake_frontend: _FrontendThread, fake_server: FakeInferenceServer
) -> None:
    body = struct.pack("<4f", 1, 2, 3, 4)
    status, _, headers, response = fake_raw(
        fake_frontend, "POST", "/v2/models/batched/infer", body, {"Inference-Header-Content-Length": "0"}
    )
    assert status == 200
    assert fake_server.requests[-1].inputs["INPUT0"].shape == (1, 4)
    header_length = int(headers["Inference-Header-Content-Length"])
    assert json.loads(response[:header_length])["outputs"][0]["shape"] == [1, 4]
    assert response[header_length:] == body


@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        ("echo", b"\x00" * 11, "input byte size mismatch for input 'raw_input' for model 'echo'. Expected 8, got 11"),
        ("two_inputs", b"", "Raw request must only have 1 input (found 1) to be deduced but got 2 inputs"),
        ("two_variable", b"", "can not be deduced because there are more than one variable-sized dimension"),
    ],
)
def test_http_frontend_infer_raw_binary_errors(
    fake_frontend: _FrontendThread, model: str, body: bytes, message: str
) -> None:
    status, _, _, response = fake_raw(
        fake_frontend, "POST", f"/v2/models/{model}/infer", body, {"Inference-Header-Content-Length": "0"}
    )
    assert status == 400
    assert message in json.loads(response)["error"]


@pytest.mark.parametrize(
    ("failure", "status", "message"),
    [
        ("queue", "503", "Exceeds maximum queue size"),
        ("internal", "500", "model failed"),
        ("unsupported", "501", "HTTP end point doesn't support models with decoupled transaction policy"),
        ("crash", "500", "boom"),
    ],
)
def test_http_frontend_infer_maps_server_errors_to_status(
    fake_client: httpclient.InferenceServerClient, failure: str, status: str, message: str
) -> None:
    infer_input = httpclient.InferInput("INPUT0", [1], "FP32")
    infer_input.set_data_from_numpy(np.ones(1, np.float32))
    with pytest.raises(InferenceServerException) as info:
        fake_client.infer("echo", [infer_input], parameters={"fail": failure})
    assert (info.value.status(), info.value.message()) == (status, message)
    assert fake_client.is_server_live()


def test_http_frontend_infer_unknown_model_is_404(fake_client: httpclient.InferenceServerClient) -> None:
    infer_input = httpclient.InferInput("INPUT0", [1], "FP32")
    infer_input.set_data_from_numpy(np.ones(1, np.float32))
    with pytest.raises(InferenceServerException) as info:
        fake_client.infer("nope", [infer_input])
    assert info.value.status() == "404"


@pytest.mark.parametrize(
    ("document", "status", "message"),
    [
        (
            {"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32", "data": [1, 2]}]},
            500,
            "Unable to parse 'data': Shape does not match true shape of 'data' field",
        ),
        (
            {"inputs": [{"name": "INPUT0", "shape": [2], "datatype": "FP16", "data": [1, 2]}]},
            400,
            "receiving FP16 data via JSON is not supported. Please use the binary data format for input INPUT0",
        ),
        (
            {"inputs": [], "parameters": {"triton_x": 1}},
            400,
            "parameter keys starting with 'triton_' are reserved for Triton usage and should not be specified.",
        ),
        ({}, 500, "Unable to parse 'inputs': attempt to access non-existing object member 'inputs'"),
    ],
)
def test_http_frontend_infer_rejects_bad_json_with_triton_messages(
    fake_frontend: _FrontendThread, document: dict[str, Any], status: int, message: str
) -> None:
    assert _infer_json(fake_frontend, document) == (status, {"error": message})


def test_http_frontend_infer_malformed_json(fake_frontend: _FrontendThread) -> None:
    status, _, _, body = fake_raw(fake_frontend, "POST", "/v2/models/echo/infer", b'{"inputs": [')
    assert status == 500
    assert json.loads(body)["error"].startswith("failed to parse the request JSON buffer: ")


def test_http_frontend_infer_fp16_output_as_json_is_rejected(fake_frontend: _FrontendThread) -> None:
    document = {
        "inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP16", "parameters": {"binary_data_size": 2}}],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": False}}],
    }
    header = json.dumps(document).encode()
    status, _, _, body = fake_raw(
        fake_frontend,
        "POST",
        "/v2/models/echo/infer",
        header + b"\x00\x3c",
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert (status, json.loads(body)["error"]) == (
        400,
        "sending FP16 data via JSON is not supported. Please use the binary data format for output",
    )


@pytest.mark.parametrize(
    ("declared", "extra", "message"),
    [
        (16, b"", "unexpected size for input 'INPUT0', expecting 4 additional bytes for model 'echo'"),
        (12, b"xx", "unexpected additional input data for model 'echo'"),
    ],
)
def test_http_frontend_infer_binary_size_mismatch(
    fake_frontend: _FrontendThread, declared: int, extra: bytes, message: str
) -> None:
    document = {
        "inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": declared}}]
    }
    header = json.dumps(document).encode()
    status, _, _, body = fake_raw(
        fake_frontend,
        "POST",
        "/v2/models/echo/infer",
        header + struct.pack("<3f", 1, 2, 3) + extra,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert (status, json.loads(body)) == (400, {"error": message})


def test_http_frontend_infer_header_length_out_of_range(fake_frontend: _FrontendThread) -> None:
    status, _, _, body = fake_raw(
        fake_frontend, "POST", "/v2/models/echo/infer", b"{}", {"Inference-Header-Content-Length": "10"}
    )
    assert (status, body) == (400, b'{"error":"inference header size should be in range (0, 2), got: 10"}')


# ------------------------------------------------------------------------------ connection handling


def _read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` complete responses (each with Content-Length) from ``sock``."""
    data = b""
    responses: list[bytes] = []
    while len(responses) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode()
            length = int(next(line.split(":")[1] for line in head.split("\r\n") if line.startswith("Content-Length")))
            end = head_end + 4 + length
            if len(data) >= end:
                responses.append(data[:end])
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return responses


def test_http_frontend_answers_pipelined_requests_in_order(fake_frontend: _FrontendThread) -> None:
    infer_body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [7]}]}).encode()
    requests = (
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(infer_body)
        + infer_body
        + b"GET /v2/nothing HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(infer_body), infer_body)
        + b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", fake_frontend.port), timeout=10) as sock:
        sock.sendall(requests)
        responses = _read_responses(sock, 5)
    assert [response.split(b"\r\n", 1)[0] for response in responses] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
    ]
    assert b'"data":[7.0]' in responses[1]
    assert b'"data":[7.0]' in responses[3]


def test_http_frontend_expect_100_continue(fake_frontend: _FrontendThread) -> None:
    body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [1]}]}).encode()
    with socket.create_connection(("127.0.0.1", fake_frontend.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
            % len(body)
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert _read_responses(sock, 1)[0].startswith(b"HTTP/1.1 200 OK")


def test_http_frontend_rejects_oversized_body_and_closes(fake_frontend: _FrontendThread) -> None:
    size = MAX_INPUT_SIZE + 1
    with socket.create_connection(("127.0.0.1", fake_frontend.port), timeout=10) as sock:
        sock.sendall(b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        response = _read_responses(sock, 1)[0]
        assert sock.recv(100) == b""
    assert response.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"Connection: close" in response
    assert (
        b"Request JSON size of %d bytes exceeds the maximum allowed value of %d bytes" % (size, MAX_INPUT_SIZE)
        in response
    )


def test_http_frontend_rejects_oversized_decompressed_body(fake_frontend: _FrontendThread) -> None:
    bomb = gzip.compress(b" " * (MAX_INPUT_SIZE + 10))
    status, _, _, body = fake_raw(fake_frontend, "POST", "/v2/models/echo/infer", bomb, {"Content-Encoding": "gzip"})
    assert status == 400
    assert b"exceeds the maximum allowed value" in body


def test_http_frontend_malformed_request_line_gets_400_and_close(fake_frontend: _FrontendThread) -> None:
    with socket.create_connection(("127.0.0.1", fake_frontend.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n\r\nBLAH\x00\r\n\r\n")
        responses = _read_responses(sock, 2)
        assert sock.recv(100) == b""
    assert responses[0].startswith(b"HTTP/1.1 200 OK")
    assert responses[1].startswith(b"HTTP/1.1 400 Bad Request")


def test_http_frontend_connection_close_header_closes(fake_frontend: _FrontendThread) -> None:
    with socket.create_connection(("127.0.0.1", fake_frontend.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nConnection: close\r\n\r\n")
        response = _read_responses(sock, 1)[0]
        assert sock.recv(100) == b""
    assert b"Connection: close" in response


def test_http_frontend_load_decodes_base64_files(
    fake_frontend: _FrontendThread, fake_server: FakeInferenceServer
) -> None:
    content = base64.b64encode(b"weights").decode()
    body = json.dumps({"parameters": {"config": "{}", "file:1/model.onnx": content}}).encode()
    status, _, headers, response = fake_raw(fake_frontend, "POST", "/v2/repository/models/m2/load", body)
    assert (status, response, headers["Content-Length"]) == (200, b"", "0")
    assert fake_server.loads[-1] == ("m2", "{}", {"file:1/model.onnx": b"weights"})


def test_http_frontend_unload_ignores_a_non_bool_unload_dependents(
    fake_frontend: _FrontendThread, fake_server: FakeInferenceServer
) -> None:
    # As 2.51, which drops the error reading the body and unloads without dependents.
    body = b'{"parameters":{"unload_dependents":1}}'
    status, _, _, response = fake_raw(fake_frontend, "POST", "/v2/repository/models/m/unload", body)
    assert (status, response) == (200, b"")
    assert fake_server.unloads[-1] == ("m", False)


def test_http_frontend_survives_unexpected_errors(
    fake_frontend: _FrontendThread, fake_server: FakeInferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(name: str = "", version: str = "") -> dict[str, Any]:
        raise ValueError("kaput")

    monkeypatch.setattr(fake_server, "model_statistics", explode)
    assert fake_raw(fake_frontend, "GET", "/v2/models/stats")[::3] == (500, b'{"error":"kaput"}')
    assert fake_raw(fake_frontend, "GET", "/v2/health/live")[0] == 200


def test_http_frontend_triton_error_subclass_status(fake_frontend: _FrontendThread) -> None:
    assert isinstance(_FAILURES["queue"], TritonError)
    status, _ = _infer_json(fake_frontend, {"inputs": [], "parameters": {"fail": "queue"}})
    assert status == 503
