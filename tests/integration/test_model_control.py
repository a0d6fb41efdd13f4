"""Model control: explicit load/unload (config and file overrides, reload under load, Triton's
answers), and poll mode following the repository."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc  # type: ignore[import-untyped]
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.integration.server_process import ServerProcess, start_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "model_repository"


def add_sub_inputs(batch: tuple[int, ...] = ()) -> list[httpclient.InferInput]:
    shape = [*batch, 16]
    tensors = []
    for name in ("INPUT0", "INPUT1"):
        tensor = httpclient.InferInput(name, shape, "FP32")
        tensor.set_data_from_numpy(np.ones(shape, np.float32))
        tensors.append(tensor)
    return tensors


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    for name in ("add_sub", "string_python"):
        shutil.copytree(EXAMPLES / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def explicit(repository: Path) -> Iterator[ServerProcess]:
    process = start_server([repository], "--model-control-mode=explicit", "--load-model=add_sub")
    yield process
    assert process.stop() == 0, process.output()


def test_strict_readiness_counts_only_models_that_were_loaded(explicit: ServerProcess, repository: Path) -> None:
    # As Triton: models found but never loaded, and unloaded ones, leave the server ready; a failed load does not.
    with httpclient.InferenceServerClient(explicit.url) as client:
        assert client.is_server_ready()
        client.unload_model("add_sub")
        assert client.is_server_ready()
        (repository / "string_python" / "1" / "model.py").write_text("raise ImportError('broken on purpose')\n")
        with pytest.raises(InferenceServerException):
            client.load_model("string_python")
        assert not client.is_server_ready()
        client.load_model("add_sub")
        assert not client.is_server_ready()  # the failure still counts


def test_explicit_mode_loads_what_is_asked(explicit: ServerProcess) -> None:
    with httpclient.InferenceServerClient(explicit.url) as client:
        assert client.get_model_repository_index() == [
            {"name": "add_sub", "version": "1", "state": "READY"},
            {"name": "string_python"},
        ]
        client.load_model("string_python")
        text = httpclient.InferInput("INPUT0", [1], "BYTES")
        text.set_data_from_numpy(np.array([b"hi"], np.object_))
        assert client.infer("string_python", [text]).as_numpy("OUTPUT0").tolist() == [b"HI"]
        client.unload_model("add_sub")
        assert {"name": "add_sub", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"} in (
            client.get_model_repository_index()
        )
        with pytest.raises(InferenceServerException) as unloaded:
            client.infer("add_sub", add_sub_inputs())
        assert unloaded.value.status() == "404"
        assert unloaded.value.message() == "Request for unknown model: 'add_sub' has no available versions"
        with pytest.raises(InferenceServerException) as missing:
            client.load_model("nope")
        assert missing.value.status() == "500"
        assert missing.value.message() == "failed to load 'nope', failed to poll from model repository"
        client.unload_model("nope")  # unknown: no error, as Triton
        client.load_model("add_sub")
        assert client.infer("add_sub", add_sub_inputs()).as_numpy("OUTPUT0").tolist() == [2.0] * 16


def test_triton_s_answers_to_odd_repository_requests(explicit: ServerProcess) -> None:
    # Each answer is the reference Triton 2.51's to the same request.
    base = f"http://{explicit.url}/v2"

    def post(path: str, body: bytes = b"") -> tuple[int, bytes]:
        request = urllib.request.Request(f"{base}{path}", body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    unsupported = (501, b'{"error":"\'repository_name\' specification is not supported"}')
    assert post("/repository/elsewhere/models/add_sub/load") == unsupported
    assert post("/repository/elsewhere/models/add_sub/unload") == unsupported
    assert post("/repository/elsewhere/index")[0] == 200  # HTTP ignores the name here
    assert post("/repository/index", b"[1]")[0] == 200  # not an object: read as {}
    assert post("/repository/models/add_sub/load", b'{"parameters": 5}') == (
        500,
        b'{"error":"attempt to get members for non-object"}',
    )
    assert post("/repository/models/add_sub/unload", b'{"parameters": {"unload_dependents": "yes"}}') == (200, b"")
    with grpcclient.InferenceServerClient(explicit.grpc_url) as client:
        assert not client.is_model_ready("add_sub")  # unloaded, whatever the body said
        with pytest.raises(InferenceServerException) as stats:
            client.get_inference_statistics("add_sub")
        assert stats.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert stats.value.message() == "requested model 'add_sub' is not available"
    # Over gRPC, which tritonclient cannot send with a repository name or a bad version string.
    with grpc.insecure_channel(explicit.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for call, request in (
            (stub.RepositoryIndex, service_pb2.RepositoryIndexRequest(repository_name="elsewhere")),
            (
                stub.RepositoryModelLoad,
                service_pb2.RepositoryModelLoadRequest(model_name="add_sub", repository_name="r"),
            ),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call(request, timeout=60)
            assert (refused.value.code(), refused.value.details()) == (
                grpc.StatusCode.UNIMPLEMENTED,
                "'repository_name' specification is not supported",
            )
        with pytest.raises(grpc.RpcError) as version:
            stub.ModelReady(service_pb2.ModelReadyRequest(name="string_python", version="x"), timeout=60)
        assert (version.value.code(), version.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "failed to get model version from specified version string 'x' (details: stol), "
            "version should be an integral value > 0",
        )
        load = service_pb2.RepositoryModelLoadRequest(model_name="add_sub")
        load.parameters["config"].bytes_param = b"{}"
        with pytest.raises(grpc.RpcError) as parameter:
            stub.RepositoryModelLoad(load, timeout=60)
        assert parameter.value.details() == "invalid value type for load parameter 'config', expected string_param."


def test_config_override_and_a_failed_reload_keeps_the_old_version(explicit: ServerProcess) -> None:
    with httpclient.InferenceServerClient(explicit.url) as client:
        config = client.get_model_config("add_sub")
        config["max_batch_size"] = 4
        client.load_model("add_sub", config=json.dumps(config))
        assert client.get_model_config("add_sub")["max_batch_size"] == 4
        assert client.infer("add_sub", add_sub_inputs((2,))).as_numpy("OUTPUT1").shape == (2, 16)
        with pytest.raises(InferenceServerException) as bad:
            client.load_model("add_sub", config=json.dumps({"name": "add_sub", "max_batch_size": -3}))
        assert bad.value.status() == "500"
        assert bad.value.message() == "failed to load 'add_sub', failed to poll from model repository"
        assert client.get_model_config("add_sub")["max_batch_size"] == 4  # still the one that loaded
        assert client.infer("add_sub", add_sub_inputs((1,))).as_numpy("OUTPUT0").shape == (1, 16)


def test_file_override_over_grpc(explicit: ServerProcess, repository: Path) -> None:
    code = (repository / "add_sub" / "1" / "model.py").read_text().replace("in_0 + in_1", "in_0 + in_1 + 100")
    with grpcclient.InferenceServerClient(explicit.grpc_url) as client:
        client.load_model("add_sub", files={"file:1/model.py": code.encode()})
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            tensor = grpcclient.InferInput(name, [16], "FP32")
            tensor.set_data_from_numpy(np.ones(16, np.float32))
            inputs.append(tensor)
        assert client.infer("add_sub", inputs).as_numpy("OUTPUT0").tolist() == [102.0] * 16


def test_reloads_while_a_client_keeps_sending_lose_nothing(explicit: ServerProcess) -> None:
    stop = threading.Event()
    outcomes = {"ok": 0, "failed": 0}

    def send() -> None:
        with httpclient.InferenceServerClient(explicit.url) as client:
            while not stop.is_set():
                try:
                    client.infer("add_sub", add_sub_inputs())
                    outcomes["ok"] += 1
                except InferenceServerException:
                    outcomes["failed"] += 1

    sender = threading.Thread(target=send)
    sender.start()
    try:
        with httpclient.InferenceServerClient(explicit.url) as client:
            for _ in range(3):
                client.load_model("add_sub")
    finally:
        stop.set()
        sender.join(timeout=60)
    assert outcomes["failed"] == 0
    assert outcomes["ok"] > 0


def test_poll_mode_follows_the_repository(repository: Path) -> None:
    process = start_server([repository], "--model-control-mode=poll", "--repository-poll-secs=1")
    try:
        with httpclient.InferenceServerClient(process.url) as client:
            with pytest.raises(InferenceServerException, match="not allowed if polling is enabled"):
                client.load_model("add_sub")
            shutil.copytree(EXAMPLES / "add_sub", repository / "add_sub_copy")
            config = repository / "add_sub_copy" / "config.pbtxt"
            config.write_text(config.read_text().replace('name: "add_sub"', 'name: "add_sub_copy"'))
            shutil.rmtree(repository / "string_python")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                rows = client.get_model_repository_index()
                names = {row["name"] for row in rows if row.get("state") == "READY"}
                if names == {"add_sub", "add_sub_copy"}:
                    break
                time.sleep(0.2)
            assert names == {"add_sub", "add_sub_copy"}
            assert client.infer("add_sub_copy", add_sub_inputs()).as_numpy("OUTPUT0").tolist() == [2.0] * 16
    finally:
        assert process.stop() == 0, process.output()


CONTROLLER_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        steps = [str(pb_utils.is_model_ready("add_sub"))]
        pb_utils.load_model("add_sub")
        steps.append(str(pb_utils.is_model_ready("add_sub")))
        pb_utils.unload_model("add_sub")
        steps.append(str(pb_utils.is_model_ready("add_sub")))
        try:
            pb_utils.load_model("nope")
        except pb_utils.TritonError as exc:
            steps.append(exc.message())
        out = np.array([" | ".join(steps).encode()], np.object_)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]) for _ in requests]
"""


def test_python_models_manage_models_in_explicit_mode(repository: Path) -> None:
    controller = repository / "controller"
    (controller / "1").mkdir(parents=True)
    (controller / "1" / "model.py").write_text(CONTROLLER_MODEL)
    (controller / "config.pbtxt").write_text(
        'name: "controller"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
    )
    process = start_server([repository], "--model-control-mode=explicit", "--load-model=controller")
    try:
        with httpclient.InferenceServerClient(process.url) as client:
            tensor = httpclient.InferInput("IN", [1], "INT32")
            tensor.set_data_from_numpy(np.zeros(1, np.int32))
            steps = client.infer("controller", [tensor]).as_numpy("OUT")[0].decode()
    finally:
        assert process.stop() == 0, process.output()
    assert steps == "False | True | False | failed to load 'nope', failed to poll from model repository"


def test_unload_dependents_also_unloads_the_ensembles_using_the_model(repository: Path) -> None:
    # As 2.51 (checked): unloading add_sub with unload_dependents also unloads the ensemble built on it;
    # unloading the ensemble so leaves add_sub loaded.
    (repository / "twice" / "1").mkdir(parents=True)
    (repository / "twice" / "config.pbtxt").write_text(
        'name: "twice" platform: "ensemble" max_batch_size: 0\n'
        'input [ { name: "A" data_type: TYPE_FP32 dims: [ 16 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
        'ensemble_scheduling { step [ { model_name: "add_sub" model_version: -1 input_map { key: "INPUT0" value: "A" }'
        ' input_map { key: "INPUT1" value: "B" } output_map { key: "OUTPUT0" value: "OUT" } } ] }\n'
    )
    process = start_server([repository], "--model-control-mode=explicit", "--load-model=add_sub", "--load-model=twice")
    try:
        with httpclient.InferenceServerClient(process.url) as client:

            def states() -> dict[str, str]:
                return {row["name"]: row.get("state", "") for row in client.get_model_repository_index()}

            assert (states()["add_sub"], states()["twice"]) == ("READY", "READY")
            client.unload_model("twice", unload_dependents=True)
            assert (states()["add_sub"], states()["twice"]) == ("READY", "UNAVAILABLE")
            client.load_model("twice")
            client.unload_model("add_sub", unload_dependents=True)
            assert (states()["add_sub"], states()["twice"]) == ("UNAVAILABLE", "UNAVAILABLE")
    finally:
        assert process.stop() == 0, process.output()


PY_CONFIG = """\
backend: "python"
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""
RAISES_IN_INITIALIZE = """\
class TritonPythonModel:
    def initialize(self, args):
        raise ValueError("boom in {name}")

    def execute(self, requests):
        return []
"""


def write_python(repository: Path, name: str, code: str, config: str = PY_CONFIG) -> Path:
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(config)
    (repository / name / "1" / "model.py").write_text(code.replace("{name}", name))
    return repository / name / "1" / "model.py"


def test_failed_versions_as_triton_reports_them(tmp_path: Path) -> None:
    # Each expectation is what the reference Triton 2.51 answers for the same repository.
    first = write_python(tmp_path, "first", RAISES_IN_INITIALIZE)
    second = write_python(tmp_path, "second", RAISES_IN_INITIALIZE)  # loads at the same time as first
    write_python(tmp_path, "syntax", "class TritonPythonModel\n    pass\n")
    write_python(tmp_path, "no_execute", "class TritonPythonModel:\n    pass\n")
    write_python(
        tmp_path, "bad_batching", "", PY_CONFIG + "max_batch_size: 2\ndynamic_batching { preferred_batch_size: [4] }\n"
    )
    server = start_server([tmp_path], "--model-control-mode=explicit", "--load-model=*", "--exit-on-error=false")
    try:
        with httpclient.InferenceServerClient(server.url) as client:
            rows = {row["name"]: row for row in client.get_model_repository_index()}
            for name, path in (("first", first), ("second", second)):
                assert rows[name] == {
                    "name": name, "version": "1", "state": "UNAVAILABLE",
                    "reason": f"Internal: ValueError: boom in {name}\n\nAt:\n  {path}(3): initialize\n",
                }  # fmt: skip
            # The model's own code did not run: no frames.
            assert rows["syntax"]["reason"] == "Internal: SyntaxError: expected ':' (model.py, line 1)"
            assert rows["no_execute"]["state"] == "READY"  # as Triton: it loads, and each execution fails
            tensor = httpclient.InferInput("IN", [1], "FP32")
            tensor.set_data_from_numpy(np.ones(1, np.float32))
            with pytest.raises(InferenceServerException) as failed:
                client.infer("no_execute", [tensor])
            assert failed.value.message().endswith("does not implement `execute` method.")
            # A version that failed: 404 with no available versions, 503 for that version.
            with pytest.raises(InferenceServerException) as unavailable:
                client.infer("first", [tensor])
            assert (unavailable.value.status(), unavailable.value.message()) == (
                "404",
                "Request for unknown model: 'first' has no available versions",
            )
            with pytest.raises(InferenceServerException) as version:
                client.get_model_metadata("first", "1")
            assert version.value.status() == "503"
            # A configuration that failed: Triton has no such model.
            with pytest.raises(InferenceServerException) as config:
                client.infer("bad_batching", [tensor])
            assert (config.value.status(), config.value.message()) == (
                "404",
                "Request for unknown model: 'bad_batching' is not found",
            )
            # Loading again: 400 naming each version's state, or 500 for the configuration.
            with pytest.raises(InferenceServerException) as load:
                client.load_model("first")
            assert (load.value.status(), load.value.message()) == (
                "400",
                "load failed for model 'first': version 1 is at UNAVAILABLE state: "
                f"Internal: ValueError: boom in first\n\nAt:\n  {first}(3): initialize\n;\n",
            )
            with pytest.raises(InferenceServerException) as poll:
                client.load_model("bad_batching")
            assert (poll.value.status(), poll.value.message()) == (
                "500",
                "failed to load 'bad_batching', failed to poll from model repository",
            )
    finally:
        assert server.stop() == 0, server.output()
