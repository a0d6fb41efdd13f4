"""Model warmup (``model_warmup``): run by every instance before the model is READY, counted
in the statistics, and a failing sample makes the model UNAVAILABLE with Triton's reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.integration.fixture_models import write_python_model
from tests.integration.server_process import ServerProcess, start_server

pytestmark = pytest.mark.integration

# Answers every request with the inputs each earlier execute of its instance received.
RECORDING_MODEL = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.calls = []

    def execute(self, requests):
        self.calls.append([pb_utils.get_input_tensor_by_name(r, "IN").as_numpy().tolist() for r in requests])
        seen = json.dumps(self.calls).encode()
        return [pb_utils.InferenceResponse([pb_utils.Tensor("SEEN", np.array([[seen]], np.object_))]) for _ in requests]
"""

FAILING_MODEL = """
class TritonPythonModel:
    def execute(self, requests):
        raise RuntimeError("boom in warmup")
"""

IN_FP32 = 'key: "IN" value: { data_type: TYPE_FP32 dims: [ 3 ]'
ZEROS = f'name: "zeros" batch_size: 2 count: 2 inputs {{ {IN_FP32} zero_data: true }} }}'
FROM_FILE = f'name: "file" batch_size: 1 inputs {{ {IN_FP32} input_data_file: "in.bin" }} }}'


def write_model(repository: Path, name: str, code: str, warmup: str, instances: int = 1) -> Path:
    model_dir = repository / name
    config = f"""\
        name: "{name}"
        backend: "python"
        max_batch_size: 4
        input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 3 ] }} ]
        output [ {{ name: "SEEN" data_type: TYPE_STRING dims: [ 1 ] }} ]
        instance_group [ {{ count: {instances} kind: KIND_CPU }} ]
        model_warmup [ {warmup} ]
        """
    write_python_model(model_dir, config, code)
    return model_dir


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repository = tmp_path_factory.mktemp("warmup")
    warm = write_model(repository, "warm", RECORDING_MODEL, f"{{ {ZEROS} }}, {{ {FROM_FILE} }}", instances=2)
    (warm / "warmup").mkdir()
    (warm / "warmup" / "in.bin").write_bytes(np.array([1.5, 2.5, 3.5], np.float32).tobytes())
    write_model(repository, "warm_fail", FAILING_MODEL, f"{{ {ZEROS} }}")
    write_model(repository, "warm_too_big", RECORDING_MODEL, f"{{ {ZEROS.replace('batch_size: 2', 'batch_size: 8')} }}")
    write_model(repository, "warm_missing_file", RECORDING_MODEL, f"{{ {FROM_FILE} }}")
    process = start_server([repository], "--exit-on-error=false")
    yield process
    assert process.stop() == 0, process.output()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(server.url) as client:
        yield client


def test_every_instance_runs_every_sample_before_the_first_request(client: httpclient.InferenceServerClient) -> None:
    stats = client.get_inference_statistics("warm")["model_stats"][0]
    # Per instance: "zeros" twice as one batch of 2, "file" once: 3 executions, 5 inferences (Triton's counts).
    assert (stats["execution_count"], stats["inference_count"]) == (6, 10)
    batches = {entry["batch_size"]: entry["compute_infer"]["count"] for entry in stats["batch_stats"]}
    assert batches == {1: 2, 2: 4}
    assert stats["inference_stats"]["success"]["count"] == 10


def test_the_model_saw_the_warmup_data(client: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("IN", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.full((1, 3), 7, np.float32))
    seen = json.loads(client.infer("warm", [tensor]).as_numpy("SEEN")[0][0])
    zeros = [[0.0, 0.0, 0.0]]
    assert seen[:3] == [[zeros, zeros], [zeros, zeros], [[[1.5, 2.5, 3.5]]]]
    assert seen[3] == [[[7.0, 7.0, 7.0]]]


def test_failed_warmups_make_the_model_unavailable_with_the_reason(client: httpclient.InferenceServerClient) -> None:
    rows = {row["name"]: row for row in client.get_model_repository_index()}
    assert rows["warm"]["state"] == "READY"
    for name in ("warm_fail", "warm_too_big", "warm_missing_file"):
        assert rows[name]["state"] == "UNAVAILABLE"
        assert not client.is_model_ready(name)
    # Triton's reasons: the status, then the errors, each Python one with the model's frames.
    model_py = rows["warm_fail"]["reason"].split("\n  ")[1].split("(")[0]
    assert model_py.endswith("warm_fail/1/model.py")
    failure = (
        "Failed to process the request(s) for model 'warm_fail_0_0', message: RuntimeError: boom in warmup"
        f"\n\nAt:\n  {model_py}(4): execute\n; "
    )
    assert rows["warm_fail"]["reason"] == "Invalid argument: failed to run warmup sample 'zeros': " + failure * 2
    too_big = "batch size 8 for 'warm_too_big_0', max allowed is 4; "
    assert rows["warm_too_big"]["reason"] == "Invalid argument: failed to run warmup sample 'zeros': " + too_big * 8
    assert rows["warm_missing_file"]["reason"].startswith("Internal: failed to open text file for read ")
    assert rows["warm_missing_file"]["reason"].endswith("warm_missing_file/warmup/in.bin: No such file or directory")
