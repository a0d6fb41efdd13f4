"""The real server over HTTP, driven by the real tritonclient: endpoints, datatypes, errors."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.fixture_models import ECHO_TYPES
from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def client(server: ServerProcess) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.url, concurrency=4)


def raw(server: ServerProcess, method: str, path: str, body: bytes | str | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def add_sub_inputs(a: np.ndarray, b: np.ndarray, binary: bool = True) -> list[httpclient.InferInput]:
    inputs = []
    for name, value in (("INPUT0", a), ("INPUT1", b)):
        tensor = httpclient.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value, binary_data=binary)
        inputs.append(tensor)
    return inputs


# -- health, metadata, config -------------------------------------------------------------


def test_server_health_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "triton"
    assert {"binary_tensor_data", "classification", "statistics", "model_configuration"} <= set(metadata["extensions"])


def test_model_metadata_shows_batch_dimension(client: httpclient.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("resnet50")
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input_0", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    assert metadata["outputs"] == [{"name": "output_0", "datatype": "FP32", "shape": [-1, 1000]}]
    assert client.get_model_metadata("add_sub")["platform"] == "python"


def test_model_ready_per_version(client: httpclient.InferenceServerClient) -> None:
    assert client.is_model_ready("add_sub")
    assert client.is_model_ready("add_sub", "1")
    assert not client.is_model_ready("add_sub", "7")
    assert not client.is_model_ready("no_such_model")


def test_model_config_is_triton_json(client: httpclient.InferenceServerClient) -> None:
    config = client.get_model_config("resnet50")
    assert config["name"] == "resnet50"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == 8
    assert config["input"][0]["dims"] == [3, 224, 224]
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    assert config["instance_group"][0]["kind"] == "KIND_CPU"


# -- inference ------------------------------------------------------------------------------


def test_json_data_carries_nan_and_infinity_as_triton_does(client: httpclient.InferenceServerClient) -> None:
    # tritonclient writes JSON with Python's json.dumps: non-finite floats become NaN / Infinity.
    a = np.array([np.nan, np.inf, -np.inf, *range(13)], np.float32)
    b = np.ones(16, np.float32)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=False) for n in ("OUTPUT0", "OUTPUT1")]
    result = client.infer("add_sub", add_sub_inputs(a, b, binary=False), outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


@pytest.mark.parametrize("model", ["add_sub", "add_sub_onnx"])
@pytest.mark.parametrize("binary", [True, False])
def test_add_sub_matches_numpy(client: httpclient.InferenceServerClient, model: str, binary: bool) -> None:
    rng = np.random.default_rng(1)
    batched = model == "add_sub_onnx"
    shape = (2, 16) if batched else (16,)
    a, b = rng.random(shape, np.float32), rng.random(shape, np.float32)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")]
    result = client.infer(model, add_sub_inputs(a, b, binary), outputs=outputs, request_id="req-1")
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)
    response = result.get_response()
    assert response["id"] == "req-1"
    assert response["model_version"] == "1"


def test_resnet50_matches_onnxruntime(client: httpclient.InferenceServerClient, examples_repository: Path) -> None:
    import onnxruntime

    image = np.random.default_rng(2).random((2, 3, 224, 224), np.float32)
    tensor = httpclient.InferInput("input_0", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)
    result = client.infer("resnet50", [tensor])
    session = onnxruntime.InferenceSession(str(examples_repository / "resnet50" / "1" / "model.onnx"))
    (expected,) = session.run(["output_0"], {"input_0": image})
    got = result.as_numpy("output_0")
    assert got.shape == (2, 1000)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_image_pipeline_ensemble_runs_the_seed_pipeline(
    client: httpclient.InferenceServerClient, examples_repository: Path
) -> None:
    """preprocess → resnet50 → postprocess inside the server equals the three steps done by hand."""
    import importlib.util

    import onnxruntime

    import airtower.backends.python.backend  # noqa: F401 - makes triton_python_backend_utils importable

    images = (np.random.default_rng(3).random((2, 300, 400, 3)) * 255).astype(np.uint8)
    tensor = httpclient.InferInput("IMAGE", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    top5 = client.infer("image_pipeline", [tensor]).as_numpy("TOP5")
    spec = importlib.util.spec_from_file_location("preprocess", examples_repository / "preprocess" / "1" / "model.py")
    assert spec is not None
    assert spec.loader is not None
    preprocess = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preprocess)
    batch = np.stack([preprocess.to_tensor(image) for image in images]).astype(np.float32)
    session = onnxruntime.InferenceSession(str(examples_repository / "resnet50" / "1" / "model.onnx"))
    (scores,) = session.run(["output_0"], {"input_0": batch})
    assert top5.shape == (2, 5)
    for row, got in zip(scores, top5, strict=True):
        expected = np.argsort(-row)[:5]
        assert [int(item.split(b":")[0]) for item in got] == expected.tolist()


def echo_values(wire: str) -> np.ndarray:
    if wire == "BYTES":
        return np.array([b"hello", b"", "ünïcode".encode()], dtype=np.object_)
    if wire == "BOOL":
        return np.array([True, False, True])
    dtype = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}.get(wire) or np.dtype(wire.lower())
    return np.array([0, 1, 2, 3, 127], dtype=dtype)


# FP16 cannot travel as JSON, in Triton as here (see test_fp16_json_is_rejected).
@pytest.mark.parametrize(("wire", "binary"), [(w, b) for w in ECHO_TYPES for b in (True, False) if b or w != "FP16"])
def test_every_datatype_round_trips(client: httpclient.InferenceServerClient, wire: str, binary: bool) -> None:
    value = echo_values(wire)
    tensor = httpclient.InferInput(f"IN_{wire}", list(value.shape), wire)
    tensor.set_data_from_numpy(value, binary_data=binary)
    out = httpclient.InferRequestedOutput(f"OUT_{wire}", binary_data=binary)
    result = client.infer("echo", [tensor], outputs=[out])
    got = result.as_numpy(f"OUT_{wire}")
    if wire == "BYTES":
        # tritonclient gives BYTES from JSON as str, from binary as bytes
        assert [x.encode() if isinstance(x, str) else bytes(x) for x in got] == list(value)
    else:
        assert got.dtype == value.dtype
        np.testing.assert_array_equal(got, value)


def test_bf16_round_trips_in_binary_and_is_refused_as_json(
    server: ServerProcess, client: httpclient.InferenceServerClient
) -> None:
    import ml_dtypes  # what tritonclient uses for BF16 (a dependency of tritonclient)

    values = np.array([[1.0, -2.5, 0.15625, 3.0e38]], ml_dtypes.bfloat16)
    tensor = httpclient.InferInput("INPUT0", [1, 4], "BF16")
    tensor.set_data_from_numpy(values)
    result = client.infer("identity_bf16", [tensor], outputs=[httpclient.InferRequestedOutput("OUTPUT0")])
    got = result.as_numpy("OUTPUT0")
    np.testing.assert_array_equal(np.asarray(got, np.float32), values.astype(np.float32))
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "BF16", "data": [1.0, 2.0, 3.0, 4.0]}]}
    status, _, data = raw(server, "POST", "/v2/models/identity_bf16/infer", json.dumps(body))
    assert status == 400
    assert "binary" in json.loads(data)["error"]


def test_fp16_json_is_rejected(server: ServerProcess) -> None:
    body = {"inputs": [{"name": "IN_FP16", "shape": [1], "datatype": "FP16", "data": [1.0]}]}
    status, _, data = raw(server, "POST", "/v2/models/echo/infer", json.dumps(body))
    assert status == 400
    assert "binary" in json.loads(data)["error"]


def test_string_model(client: httpclient.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("string_python")
    name_in, name_out = metadata["inputs"][0]["name"], metadata["outputs"][0]["name"]
    words = np.array([b"air", b"tower"], dtype=np.object_)
    shape = [1, 2] if metadata["inputs"][0]["shape"][0] == -1 and len(metadata["inputs"][0]["shape"]) == 2 else [2]
    tensor = httpclient.InferInput(name_in, shape, "BYTES")
    tensor.set_data_from_numpy(words.reshape(shape))
    got = client.infer("string_python", [tensor]).as_numpy(name_out)
    assert [bytes(x) for x in got.ravel()] == [b"AIR", b"TOWER"]


def test_classification_uses_labels(client: httpclient.InferenceServerClient, examples_repository: Path) -> None:
    import onnxruntime

    features = np.random.default_rng(3).random((2, 4), np.float32)
    tensor = httpclient.InferInput("INPUT", [2, 4], "FP32")
    metadata = client.get_model_metadata("classifier")
    input_name, output_name = metadata["inputs"][0]["name"], metadata["outputs"][0]["name"]
    tensor = httpclient.InferInput(input_name, [2, 4], "FP32")
    tensor.set_data_from_numpy(features)
    result = client.infer("classifier", [tensor], outputs=[httpclient.InferRequestedOutput(output_name, class_count=3)])
    got = result.as_numpy(output_name)
    assert got.shape == (2, 3)
    labels = (examples_repository / "classifier" / "labels.txt").read_text().split()
    session = onnxruntime.InferenceSession(str(examples_repository / "classifier" / "1" / "model.onnx"))
    (scores,) = session.run([output_name], {input_name: features})
    for row, expected in zip(got, scores, strict=True):
        best = int(np.argmax(expected))
        value, index, label = bytes(row[0]).decode().split(":")
        assert int(index) == best
        assert label == labels[best]
        assert float(value) == pytest.approx(float(expected[best]), abs=1e-5)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_request_and_response(client: httpclient.InferenceServerClient, algorithm: str) -> None:
    a = np.arange(16, dtype=np.float32)
    result = client.infer(
        "add_sub",
        add_sub_inputs(a, a),
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)


def test_gzip_response_header(server: ServerProcess) -> None:
    body = {"inputs": [{"name": "IN_INT32", "shape": [2], "datatype": "INT32", "data": [1, 2]}]}
    status, headers, data = raw(server, "POST", "/v2/models/echo/infer", json.dumps(body), {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(data))["outputs"][0]["data"] == [1, 2]


def test_instances_of_a_count_2_group_execute_at_the_same_time(server: ServerProcess) -> None:
    # The barrier model only answers when both of its instances execute at once.
    results: list[str] = []
    errors: list[Exception] = []

    def call() -> None:
        tensor = httpclient.InferInput("IN", [1], "INT32")
        tensor.set_data_from_numpy(np.array([1], np.int32))
        try:
            own_client = httpclient.InferenceServerClient(server.url)
            results.append(bytes(own_client.infer("barrier", [tensor]).as_numpy("INSTANCE")[0]).decode())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sorted(results) == ["barrier_0_0", "barrier_0_1"]


def test_statistics_count_known_traffic(client: httpclient.InferenceServerClient) -> None:
    before = client.get_inference_statistics("add_sub_onnx")["model_stats"][0]
    a = np.ones((3, 16), np.float32)
    for _ in range(5):
        client.infer("add_sub_onnx", add_sub_inputs(a, a))
    after = client.get_inference_statistics("add_sub_onnx", "1")["model_stats"][0]
    assert after["name"] == "add_sub_onnx"
    assert after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == 15
    assert after["execution_count"] - before["execution_count"] == 5
    success = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    assert success == 5
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert {"batch_size": 3}.items() <= next(b for b in after["batch_stats"] if b["batch_size"] == 3).items()
    all_stats = client.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in all_stats} >= {"add_sub", "add_sub_onnx", "resnet50"}


def test_statistics_of_unknown_model_or_version_is_invalid_argument(server: ServerProcess) -> None:
    status, _, data = raw(server, "GET", "/v2/models/nope/stats")
    assert (status, json.loads(data)) == (400, {"error": "requested model 'nope' is not available"})
    status, _, data = raw(server, "GET", "/v2/models/add_sub/versions/7/stats")
    assert (status, json.loads(data)) == (
        400,
        {"error": "requested model version is not available for model 'add_sub'"},
    )


def test_repository_index_lists_models(client: httpclient.InferenceServerClient) -> None:
    index = client.get_model_repository_index()
    rows = {row["name"]: row for row in index}
    assert rows["add_sub"] == {"name": "add_sub", "version": "1", "state": "READY"}


def test_load_in_control_mode_none_is_unavailable(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.load_model("add_sub")
    assert info.value.status() == "503"


# -- errors: each answered with Triton's status and message; the server keeps serving --------


def test_outputs_come_in_the_models_order_like_triton(client: httpclient.InferenceServerClient) -> None:
    a = np.ones(16, np.float32)
    outputs = [httpclient.InferRequestedOutput(name) for name in ("OUTPUT1", "OUTPUT0")]
    result = client.infer("add_sub", add_sub_inputs(a, a), outputs=outputs)
    assert [output["name"] for output in result.get_response()["outputs"]] == ["OUTPUT0", "OUTPUT1"]


def test_model_errors_fail_only_their_request(client: httpclient.InferenceServerClient) -> None:
    def call(mode: int) -> httpclient.InferResult:
        tensor = httpclient.InferInput("MODE", [1], "INT32")
        tensor.set_data_from_numpy(np.array([mode], np.int32))
        return client.infer("failing", [tensor])

    with pytest.raises(InferenceServerException) as raised:
        call(1)
    assert raised.value.status() == "500"
    assert "the model raised on purpose" in raised.value.message()
    with pytest.raises(InferenceServerException) as rejected:
        call(2)
    assert rejected.value.status() == "400"
    assert rejected.value.message() == "request rejected by the model"
    assert call(0).as_numpy("OUT").tolist() == [0]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/nope/infer", "{}", 404, "Request for unknown model: 'nope' is not found"),
        ("/v2/models/add_sub/versions/9/infer", "{}", 404,
         "Request for unknown model: 'add_sub' version 9 is not found"),
        # Triton answers JSON it cannot parse with 500 (INTERNAL), and so does airtower
        ("/v2/models/add_sub/infer", "{nope", 500, "failed to parse the request JSON buffer"),
        ("/v2/models/add_sub/infer",
         '{"inputs":[{"name":"INPUT0","shape":[15],"datatype":"FP32","data":[' + ",".join(["1"] * 15) + "]},"
         '{"name":"INPUT1","shape":[16],"datatype":"FP32","data":[' + ",".join(["1"] * 16) + "]}]}",
         400, "unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [16], got [15]."),
        ("/v2/models/add_sub/infer",
         '{"inputs":[{"name":"INPUT0","shape":[16],"datatype":"INT32","data":[' + ",".join(["1"] * 16) + "]},"
         '{"name":"INPUT1","shape":[16],"datatype":"FP32","data":[' + ",".join(["1"] * 16) + "]}]}",
         400, "inference input 'INPUT0' data-type is 'INT32', but model 'add_sub' expects 'FP32'"),
        ("/v2/models/add_sub/infer",
         '{"inputs":[{"name":"INPUT0","shape":[16],"datatype":"FP32","data":[' + ",".join(["1"] * 16) + "]}]}",
         400, "expected 2 inputs but got 1 inputs for model 'add_sub'"),
        ("/v2/models/add_sub/infer",
         '{"inputs":[{"name":"INPUT0","shape":[16],"datatype":"FP32","data":[1,2]},'
         '{"name":"INPUT1","shape":[16],"datatype":"FP32","data":[' + ",".join(["1"] * 16) + "]}]}",
         500, "Unable to parse 'data'"),
        ("/v2/models/add_sub_onnx/infer",
         '{"inputs":[{"name":"INPUT0","shape":[9,16],"datatype":"FP32","data":[' + ",".join(["1"] * 144) + "]},"
         '{"name":"INPUT1","shape":[9,16],"datatype":"FP32","data":[' + ",".join(["1"] * 144) + "]}]}",
         400, "inference request batch-size must be <= 8 for 'add_sub_onnx'"),
        ("/v2/models/add_sub/infer",
         '{"inputs":[{"name":"INPUT0","shape":[16],"datatype":"FP32","data":[' + ",".join(["1"] * 16) + "]},"
         '{"name":"INPUT0","shape":[16],"datatype":"FP32","data":[' + ",".join(["1"] * 16) + "]}]}",
         400, "[request id: <id_unknown>] input 'INPUT0' already exists in request"),
        # Like Triton, an empty body is a raw binary request (as with Inference-Header-Content-Length: 0).
        ("/v2/models/add_sub/infer", "", 400,
         "Raw request must only have 1 input (found 1) to be deduced but got 2 inputs in 'add_sub' model"),
        ("/v2/models/add_sub/infer", '{"inputs": [1', 500,
         "failed to parse the request JSON buffer: Missing a comma or ']' after an array element. at 13"),
    ],
    ids=["unknown-model", "unknown-version", "malformed-json", "wrong-shape", "wrong-datatype", "missing-input",
         "data-count", "batch-too-big", "repeated-input", "empty-body", "rapidjson-message"],
)  # fmt: skip
def test_bad_requests_get_triton_errors_and_server_keeps_serving(
    server: ServerProcess, client: httpclient.InferenceServerClient, path: str, body: str, status: int,
    message: str | None,
) -> None:  # fmt: skip
    got_status, _, data = raw(server, "POST", path, body)
    assert got_status == status, data
    error = json.loads(data)["error"]
    assert error
    if message is not None:
        assert message in error
    a = np.ones(16, np.float32)
    assert client.infer("add_sub", add_sub_inputs(a, a)).as_numpy("OUTPUT0").tolist() == [2.0] * 16


@pytest.mark.parametrize("delta", [-4, 4])
def test_binary_body_of_wrong_length_is_rejected(server: ServerProcess, delta: int) -> None:
    header = json.dumps(
        {"inputs": [{"name": "IN_INT32", "shape": [4], "datatype": "INT32", "parameters": {"binary_data_size": 16}}]}
    ).encode()
    payload = np.arange(4, dtype=np.int32).tobytes()
    payload = payload[:delta] if delta < 0 else payload + b"\0" * delta
    status, _, data = raw(
        server, "POST", "/v2/models/echo/infer", header + payload,
        {"Inference-Header-Content-Length": str(len(header))},
    )  # fmt: skip
    assert status == 400
    assert json.loads(data)["error"]


def test_raw_binary_request(server: ServerProcess) -> None:
    a = np.arange(4, dtype=np.int32)
    status, headers, data = raw(
        server, "POST", "/v2/models/failing/infer", np.array([0], np.int32).tobytes(),
        {"Inference-Header-Content-Length": "0"},
    )  # fmt: skip
    assert status == 200, data
    length = int(headers["inference-header-content-length"])
    assert np.frombuffer(data[length:], np.int32).tolist() == [0]
    del a


def test_shared_memory_endpoints_answer_as_triton_does_with_no_region(server: ServerProcess) -> None:
    # What the reference 2.51 answers while no region is registered; CUDA regions cannot be registered (501).
    for kind in ("system", "cuda"):
        status, _, body = raw(server, "GET", f"/v2/{kind}sharedmemory/status")
        assert (status, body) == (200, b"[]")
        status, _, body = raw(server, "GET", f"/v2/{kind}sharedmemory/region/r1/status")
        assert (status, json.loads(body)) == (404, {"error": f"Unable to find {kind} shared memory region: 'r1'"})
        assert raw(server, "POST", f"/v2/{kind}sharedmemory/unregister")[0] == 200
        assert raw(server, "POST", f"/v2/{kind}sharedmemory/region/r1/unregister")[0] == 200
    # System regions are registered from a POSIX shared-memory object (tests/integration/test_shared_memory.py).
    status, _, body = raw(server, "POST", "/v2/systemsharedmemory/region/r1/register", '{"byte_size": 64}')
    assert (status, json.loads(body)) == (400, {"error": "Shared memory register request has no 'key' field"})
    status, _, body = raw(server, "POST", "/v2/systemsharedmemory/region/r1/register", '{"key": "/k"}')
    assert (status, json.loads(body)) == (400, {"error": "Shared memory register request has no 'byte_size' field"})
    status, _, body = raw(server, "POST", "/v2/systemsharedmemory/region/r1/register", '{"key": "/k", "offset": -8}')
    assert (status, json.loads(body)) == (
        500,
        {"error": "attempt to access JSON non-unsigned-integer as unsigned-integer"},
    )
    status, _, body = raw(server, "POST", "/v2/systemsharedmemory/region/r1/register",
                          '{"key": "/airtower_no_such_region", "offset": 0, "byte_size": 64}')  # fmt: skip
    assert (status, json.loads(body)) == (
        500,
        {"error": "Unable to open shared memory region: '/airtower_no_such_region'"},
    )
    status, _, body = raw(server, "POST", "/v2/cudasharedmemory/region/r1/register", '{"byte_size": 64}')
    assert status == 501
    assert "CUDA shared memory is not supported by airtower" in json.loads(body)["error"]
    assert raw(server, "POST", "/v2/systemsharedmemory/status")[0] == 405
