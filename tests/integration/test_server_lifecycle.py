"""Start-up with broken models, auto-complete, input size limit, graceful shutdown, perf_analyzer."""

from __future__ import annotations

import http.client
import json
import shutil
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.integration.fixture_models import write_echo_model
from tests.integration.perf_analyzer import run_perf_analyzer
from tests.integration.server_process import ServerProcess, run_server_to_exit, start_server

pytestmark = pytest.mark.integration


def test_broken_models_do_not_take_others_down(broken_repository: Path) -> None:
    server = start_server([broken_repository], "--exit-on-error=false")
    try:
        client = httpclient.InferenceServerClient(server.url)
        assert client.is_server_live()
        assert not client.is_server_ready()  # strict readiness: a model failed
        assert client.is_model_ready("good")
        rows = {row["name"]: row for row in client.get_model_repository_index()}
        assert rows["good"]["state"] == "READY"
        for name in ("broken_config", "missing_file"):
            assert rows[name]["state"] == "UNAVAILABLE"
            assert rows[name]["reason"]
        assert not client.is_model_ready("broken_config")
        tensor = httpclient.InferInput("IN_INT32", [2], "INT32")
        tensor.set_data_from_numpy(np.array([4, 5], np.int32))
        assert client.infer("good", [tensor]).as_numpy("OUT_INT32").tolist() == [4, 5]
    finally:
        assert server.stop() == 0


def test_broken_model_fails_startup_when_exit_on_error(broken_repository: Path) -> None:
    code, output = run_server_to_exit([broken_repository])
    assert code != 0
    assert "broken_config" in output


def test_readiness_is_relaxed_without_strict_readiness(broken_repository: Path) -> None:
    server = start_server([broken_repository], "--exit-on-error=false", "--strict-readiness=false")
    try:
        assert httpclient.InferenceServerClient(server.url).is_server_ready()
    finally:
        assert server.stop() == 0


def test_missing_repository_fails_startup(tmp_path: Path) -> None:
    code, output = run_server_to_exit([tmp_path / "does-not-exist"])
    assert code != 0
    assert "does-not-exist" in output


def test_body_over_max_input_size_is_rejected(tmp_path: Path) -> None:
    write_echo_model(tmp_path)
    server = start_server([tmp_path], "--http-max-input-size", "1000")
    try:
        body = json.dumps({"inputs": [{"name": "IN_INT32", "shape": [500], "datatype": "INT32", "data": [1] * 500}]})
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("POST", "/v2/models/echo/infer", body=body)
        response = connection.getresponse()
        assert response.status == 400
        assert json.loads(response.read())["error"]
        client = httpclient.InferenceServerClient(server.url)
        tensor = httpclient.InferInput("IN_INT32", [2], "INT32")
        tensor.set_data_from_numpy(np.array([1, 2], np.int32))
        assert client.infer("echo", [tensor]).as_numpy("OUT_INT32").tolist() == [1, 2]
    finally:
        assert server.stop() == 0


AUTO_COMPLETE_PYTHON = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        config.add_input({"name": "X", "data_type": "TYPE_FP32", "dims": [4]})
        config.add_output({"name": "Y", "data_type": "TYPE_FP32", "dims": [4]})
        config.set_max_batch_size(4)
        return config

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() * 2)])
            for r in requests
        ]
"""


def test_auto_complete_fills_configs_from_model_files(tmp_path: Path, examples_repository: Path) -> None:
    # An ONNX model with no config.pbtxt at all, and a Python model with a partial one.
    onnx_dir = tmp_path / "add_sub_noconfig"
    (onnx_dir / "1").mkdir(parents=True)
    shutil.copy(examples_repository / "add_sub_onnx" / "1" / "model.onnx", onnx_dir / "1" / "model.onnx")
    python_dir = tmp_path / "doubler"
    (python_dir / "1").mkdir(parents=True)
    (python_dir / "config.pbtxt").write_text('backend: "python"\n')
    (python_dir / "1" / "model.py").write_text(textwrap.dedent(AUTO_COMPLETE_PYTHON))
    server = start_server([tmp_path])
    try:
        client = httpclient.InferenceServerClient(server.url)
        config = client.get_model_config("add_sub_noconfig")
        assert config["backend"] == "onnxruntime"
        assert {i["name"] for i in config["input"]} == {"INPUT0", "INPUT1"}
        assert {o["name"] for o in config["output"]} == {"OUTPUT0", "OUTPUT1"}
        assert all(i["data_type"] == "TYPE_FP32" for i in config["input"])
        doubler = client.get_model_config("doubler")
        assert doubler["max_batch_size"] == 4
        assert doubler["input"][0]["name"] == "X"
        tensor = httpclient.InferInput("X", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
        assert client.infer("doubler", [tensor]).as_numpy("Y").tolist() == [[2.0] * 4]
    finally:
        assert server.stop() == 0


def test_auto_complete_disabled_rejects_config_less_model(tmp_path: Path, examples_repository: Path) -> None:
    onnx_dir = tmp_path / "noconfig"
    (onnx_dir / "1").mkdir(parents=True)
    shutil.copy(examples_repository / "add_sub_onnx" / "1" / "model.onnx", onnx_dir / "1" / "model.onnx")
    code, output = run_server_to_exit([tmp_path], "--disable-auto-complete-config")
    assert code != 0
    assert "noconfig" in output


SLOW_MODEL = """
import pathlib
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.marker = pathlib.Path(args["model_repository"]) / "started"

    def execute(self, requests):
        self.marker.write_text("executing")
        time.sleep(1.0)  # keeps the request in flight while the test sends SIGTERM
        return [pb_utils.InferenceResponse([pb_utils.get_input_tensor_by_name(r, "IN")]) for r in requests]

    def finalize(self):
        self.marker.with_name("finalized").write_text("done")
"""


def test_sigterm_finishes_in_flight_requests_then_finalizes(tmp_path: Path) -> None:
    model = tmp_path / "slow"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        'backend: "python"\ninput [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
    )
    (model / "1" / "model.py").write_text(textwrap.dedent(SLOW_MODEL))
    server = start_server([tmp_path])
    results: list[object] = []

    def call() -> None:
        client = httpclient.InferenceServerClient(server.url, network_timeout=60)
        tensor = httpclient.InferInput("IN", [1], "INT32")
        tensor.set_data_from_numpy(np.array([7], np.int32))
        try:
            results.append(client.infer("slow", [tensor]).as_numpy("IN").tolist())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    marker = model / "started"
    for _ in range(600):
        if marker.exists():
            break
        threading.Event().wait(0.05)
    assert marker.exists(), server.output()
    code = server.stop()
    thread.join(60)
    assert code == 0, server.output()
    assert results == [[7]], server.output()
    assert (model / "finalized").exists()


def test_perf_analyzer_runs_against_airtower(server: ServerProcess) -> None:
    run_perf_analyzer("add_sub", server.url, "http")
