"""Ensembles: steps run in the server in data-flow order (parallel branches at once), nested
ensembles, statistics, and Triton's load-time errors for broken graphs."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.fixture_models import write_barrier_model, write_failing_model
from tests.integration.server_process import ServerProcess, start_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    maps = [f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items()]
    maps += [f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items()]
    return f'{{ model_name: "{model}" model_version: -1 {" ".join(maps)} }}'


def write_ensemble(repository: Path, name: str, inputs: list[str], outputs: list[str], steps: list[str]) -> None:
    def tensors(names: list[str]) -> str:
        return ", ".join(f'{{ name: "{n}" data_type: TYPE_FP32 dims: [ 16 ] }}' for n in names)

    (repository / name / "1").mkdir(parents=True)
    config = f"""\
        name: "{name}"
        platform: "ensemble"
        max_batch_size: 0
        input [ {tensors(inputs)} ]
        output [ {tensors(outputs)} ]
        ensemble_scheduling {{ step [ {", ".join(steps)} ] }}
        """
    (repository / name / "config.pbtxt").write_text(textwrap.dedent(config))


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("ensembles")
    shutil.copytree(ROOT / "examples" / "model_repository" / "add_sub", repository / "add_sub")
    first = step("add_sub", {"INPUT0": "A", "INPUT1": "B"}, {"OUTPUT0": "S", "OUTPUT1": "DIFF"})
    # pipe: SUM2 = (A + B) * 2, DIFF = A - B
    write_ensemble(
        repository, "pipe", ["A", "B"], ["SUM2", "DIFF"],
        [first, step("add_sub", {"INPUT0": "S", "INPUT1": "S"}, {"OUTPUT0": "SUM2"})],
    )  # fmt: skip
    # diamond: two independent branches, then a join: J = (A + B) + (A - B) = 2A
    write_ensemble(
        repository, "diamond", ["A", "B"], ["J"],
        [
            step("add_sub", {"INPUT0": "A", "INPUT1": "B"}, {"OUTPUT0": "L"}),
            step("add_sub", {"INPUT0": "A", "INPUT1": "B"}, {"OUTPUT1": "R"}),
            step("add_sub", {"INPUT0": "L", "INPUT1": "R"}, {"OUTPUT0": "J"}),
        ],
    )  # fmt: skip
    # nested: an ensemble step inside an ensemble
    write_ensemble(
        repository, "nested", ["X", "Y"], ["OUT"],
        [step("pipe", {"A": "X", "B": "Y"}, {"SUM2": "OUT"})],
    )  # fmt: skip
    write_ensemble(repository, "missing", ["A"], ["O"], [step("nothere", {"X": "A"}, {"Y": "O"})])
    write_ensemble(
        repository, "unused", ["A", "B", "Z"], ["O"],
        [step("add_sub", {"INPUT0": "A", "INPUT1": "B"}, {"OUTPUT0": "O"})],
    )  # fmt: skip
    write_ensemble(
        repository, "cycle", ["A"], ["O"],
        [
            step("add_sub", {"INPUT0": "A", "INPUT1": "T2"}, {"OUTPUT0": "T1", "OUTPUT1": "O"}),
            step("add_sub", {"INPUT0": "T1", "INPUT1": "A"}, {"OUTPUT0": "T2"}),
        ],
    )  # fmt: skip
    write_ensemble(
        repository, "unwritten", ["A", "B"], ["O", "NEVER"],
        [step("add_sub", {"INPUT0": "A", "INPUT1": "B"}, {"OUTPUT0": "O"})],
    )  # fmt: skip
    write_ensemble(
        repository, "bad_map", ["A", "B"], ["O"],
        [step("add_sub", {"INPUT0": "A", "NOPE": "B"}, {"OUTPUT0": "O"})],
    )  # fmt: skip
    # limited: one request in flight at its only step, whose model has two instances
    tracker = repository / "tracker"
    (tracker / "1").mkdir(parents=True)
    (tracker / "1" / "model.py").write_text(TRACKER_MODEL)
    (tracker / "config.pbtxt").write_text(TRACKER_CONFIG)
    write_ensemble(repository, "limited", ["A"], ["PEAK"], [step("tracker", {"IN": "A"}, {"PEAK": "PEAK"})])
    config = (repository / "limited" / "config.pbtxt").read_text()
    config = config.replace("ensemble_scheduling {", "ensemble_scheduling { max_inflight_requests: 1")
    (repository / "limited" / "config.pbtxt").write_text(config)
    # parallel: two branches that can only finish together (a barrier across the model's two instances)
    write_barrier_model(repository)
    (repository / "parallel" / "1").mkdir(parents=True)
    (repository / "parallel" / "config.pbtxt").write_text(PARALLEL_CONFIG)
    # failing_step: its only step raises
    write_failing_model(repository)
    (repository / "failing_step" / "1").mkdir(parents=True)
    (repository / "failing_step" / "config.pbtxt").write_text(FAILING_STEP_CONFIG)
    return repository


PARALLEL_CONFIG = """\
name: "parallel"
platform: "ensemble"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "LEFT" data_type: TYPE_STRING dims: [ 1 ] }, { name: "RIGHT" data_type: TYPE_STRING dims: [ 1 ] } ]
ensemble_scheduling { step [
  { model_name: "barrier" model_version: -1 input_map { key: "IN" value: "IN" }
    output_map { key: "INSTANCE" value: "LEFT" } },
  { model_name: "barrier" model_version: -1 input_map { key: "IN" value: "IN" }
    output_map { key: "INSTANCE" value: "RIGHT" } }
] }
"""

FAILING_STEP_CONFIG = """\
name: "failing_step"
platform: "ensemble"
max_batch_size: 0
input [ { name: "MODE" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
ensemble_scheduling { step [
  { model_name: "failing" model_version: -1 input_map { key: "MODE" value: "MODE" }
    output_map { key: "OUT" value: "OUT" } }
] }
"""


# Reports the most executions it saw running at once (its two instances share the counter).
TRACKER_MODEL = """
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

LOCK = threading.Lock()
STATE = {"running": 0, "peak": 0}


class TritonPythonModel:
    def execute(self, requests):
        with LOCK:
            STATE["running"] += 1
            STATE["peak"] = max(STATE["peak"], STATE["running"])
        time.sleep(0.02)
        with LOCK:
            STATE["running"] -= 1
            peak = STATE["peak"]
        return [pb_utils.InferenceResponse([pb_utils.Tensor("PEAK", np.full(16, peak, np.float32))]) for _ in requests]
"""

TRACKER_CONFIG = """\
name: "tracker"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "PEAK" data_type: TYPE_FP32 dims: [ 16 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
"""


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    process = start_server([repository], "--exit-on-error=false")
    yield process
    assert process.stop() == 0, process.output()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(server.url) as client:
        yield client


A = np.arange(16, dtype=np.float32)
B = np.full(16, 2, dtype=np.float32)


def inputs(module: object, names: tuple[str, str] = ("A", "B")) -> list[httpclient.InferInput]:
    tensors = []
    for name, value in zip(names, (A, B), strict=True):
        tensor = module.InferInput(name, [16], "FP32")  # type: ignore[attr-defined]
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    return tensors


def test_steps_run_in_data_flow_order(client: httpclient.InferenceServerClient) -> None:
    result = client.infer("pipe", inputs(httpclient), request_id="r1")
    np.testing.assert_array_equal(result.as_numpy("SUM2"), (A + B) * 2)
    np.testing.assert_array_equal(result.as_numpy("DIFF"), A - B)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("pipe", "1", "r1")
    # Triton answers outputs in the order they were produced: DIFF (first step) before SUM2.
    assert [output["name"] for output in response["outputs"]] == ["DIFF", "SUM2"]


def test_parallel_branches_join(client: httpclient.InferenceServerClient) -> None:
    result = client.infer("diamond", inputs(httpclient))
    np.testing.assert_array_equal(result.as_numpy("J"), 2 * A)


def test_nested_ensemble_over_grpc(server: ServerProcess) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        result = client.infer("nested", inputs(grpcclient, ("X", "Y")))
    np.testing.assert_array_equal(result.as_numpy("OUT"), (A + B) * 2)


def test_statistics_count_ensemble_and_composing_requests(client: httpclient.InferenceServerClient) -> None:
    before = client.get_inference_statistics("add_sub")["model_stats"][0]["inference_count"]
    ensemble_before = client.get_inference_statistics("diamond")["model_stats"][0]["inference_count"]
    client.infer("diamond", inputs(httpclient))
    after = client.get_inference_statistics("add_sub")["model_stats"][0]["inference_count"]
    ensemble_after = client.get_inference_statistics("diamond")["model_stats"][0]
    assert after - before == 3
    assert ensemble_after["inference_count"] - ensemble_before == 1
    assert ensemble_after["inference_stats"]["success"]["count"] == ensemble_after["inference_count"]


def test_bad_input_is_refused_like_any_model(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.infer("pipe", inputs(httpclient)[:1])
    assert error.value.status() == "400"
    assert "expected 2 inputs but got 1 inputs for model 'pipe'" in str(error.value.message())


def test_broken_ensembles_are_unavailable_with_triton_s_reasons(client: httpclient.InferenceServerClient) -> None:
    rows = {row["name"]: row for row in client.get_model_repository_index()}
    for name in ("pipe", "diamond", "nested", "add_sub"):
        assert rows[name]["state"] == "READY"
    reasons = {name: rows[name]["reason"] for name in ("missing", "unused", "cycle", "unwritten", "bad_map")}
    assert reasons == {
        "missing": "ensemble missing contains models that are not available or ambiguous: nothere",
        "unused": "ensemble input 'Z' for ensemble unused' is not used",
        "cycle": "output 'O' for ensemble 'cycle' is not written: at least one of its depending tensors, 'T1', "
        "is not connected",
        "unwritten": "output 'NEVER' for ensemble 'unwritten' is not written",
        "bad_map": "in ensemble bad_map, ensemble tensor B is mapped to non-existing input NOPE of model add_sub",
    }
    assert not client.is_model_ready("missing")


def test_max_inflight_requests_limits_each_step(server: ServerProcess) -> None:
    with httpclient.InferenceServerClient(server.url, concurrency=6) as client:
        tensor = httpclient.InferInput("A", [16], "FP32")
        tensor.set_data_from_numpy(A)
        pending = [client.async_infer("limited", [tensor]) for _ in range(6)]
        peaks = [int(request.get_result().as_numpy("PEAK")[0]) for request in pending]
    assert max(peaks) == 1  # two instances, but never two of the ensemble's requests at once


def test_parallel_branches_run_at_the_same_time(client: httpclient.InferenceServerClient) -> None:
    # The barrier model's two instances each wait for the other: the request can only finish if the
    # ensemble runs its two branches at once (a sequential run would fail at the barrier's timeout).
    tensor = httpclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.zeros(1, np.int32))
    result = client.infer("parallel", [tensor])
    instances = {result.as_numpy("LEFT")[0], result.as_numpy("RIGHT")[0]}
    assert instances == {b"barrier_0_0", b"barrier_0_1"}


def test_a_failing_step_fails_the_request_with_its_message(client: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("MODE", [1], "INT32")
    tensor.set_data_from_numpy(np.array([1], np.int32))
    with pytest.raises(InferenceServerException) as error:
        client.infer("failing_step", [tensor])
    assert "the model raised on purpose" in str(error.value.message())
    tensor.set_data_from_numpy(np.array([0], np.int32))
    assert client.infer("failing_step", [tensor]).as_numpy("OUT").tolist() == [0]


STREAM_UPPER = """\
name: "stream_upper"
platform: "ensemble"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ -1 ] } ]
ensemble_scheduling { step [
  { model_name: "token_streamer" model_version: -1
    input_map { key: "text_input" value: "TEXT" } output_map { key: "text_output" value: "TOKEN" } },
  { model_name: "string_python" model_version: -1
    input_map { key: "INPUT0" value: "TOKEN" } output_map { key: "OUTPUT0" value: "OUT" } }
] }
"""


def _stream(client: grpcclient.InferenceServerClient, model: str, text: bytes) -> list[object]:
    """Every response of one streamed request (results, or the error), up to the final flag."""
    import queue

    received: queue.Queue[object] = queue.Queue()
    client.start_stream(callback=lambda result, error: received.put(error or result))
    tensor = grpcclient.InferInput("TEXT", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([text], np.object_))
    client.async_stream_infer(model, [tensor], enable_empty_final_response=True)
    items: list[object] = []
    while True:
        item = received.get(timeout=60)
        items.append(item)
        if isinstance(item, InferenceServerException):
            break
        if item.get_response().parameters["triton_final_response"].bool_param:  # type: ignore[attr-defined]
            break
    client.stop_stream()
    return items


def test_an_ensemble_with_a_decoupled_step_streams_a_response_per_step_response(tmp_path: Path) -> None:
    for name in ("token_streamer", "string_python"):
        shutil.copytree(ROOT / "examples" / "model_repository" / name, tmp_path / name)
    (tmp_path / "stream_upper" / "1").mkdir(parents=True)
    (tmp_path / "stream_upper" / "config.pbtxt").write_text(STREAM_UPPER)
    process = start_server([tmp_path])
    try:
        with grpcclient.InferenceServerClient(process.grpc_url) as client:
            items = _stream(client, "stream_upper", b"one two three")
            # As Triton: the ensemble is decoupled, one response per token (each through the next step).
            outputs = [item.as_numpy("OUT").tolist() for item in items[:-1]]  # type: ignore[attr-defined]
            assert outputs == [[b"ONE"], [b" TWO"], [b" THREE"]]
            final = items[-1].get_response()  # type: ignore[attr-defined]
            assert final.parameters["triton_final_response"].bool_param
            assert not final.outputs
            assert len(_stream(client, "stream_upper", b"")) == 1  # no token: only the final flag
            config = client.get_model_config("stream_upper", as_json=True)["config"]
            assert config["model_transaction_policy"] == {"decoupled": True}
        with httpclient.InferenceServerClient(process.url) as http:
            tensor = httpclient.InferInput("TEXT", [1], "BYTES")
            tensor.set_data_from_numpy(np.array([b"x"], np.object_))
            with pytest.raises(InferenceServerException, match="doesn't support models with decoupled") as info:
                http.infer("stream_upper", [tensor])
            assert info.value.status() == "501"
            stats = http.get_inference_statistics("stream_upper")["model_stats"][0]
            assert (stats["inference_count"], stats["execution_count"]) == (2, 2)
    finally:
        assert process.stop() == 0, process.output()


PICKY_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            token = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy().reshape(-1)[0]
            if token.strip() == b"two":
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("two is not allowed")))
            else:
                output = pb_utils.Tensor("OUTPUT0", np.array([token], np.object_))
                responses.append(pb_utils.InferenceResponse([output]))
        return responses
"""


def test_a_failing_step_after_a_decoupled_one_ends_the_stream_with_its_error(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples" / "model_repository" / "token_streamer", tmp_path / "token_streamer")
    shutil.copytree(ROOT / "examples" / "model_repository" / "string_python", tmp_path / "picky")
    config = (tmp_path / "picky" / "config.pbtxt").read_text().replace('name: "string_python"', 'name: "picky"')
    (tmp_path / "picky" / "config.pbtxt").write_text(config)
    (tmp_path / "picky" / "1" / "model.py").write_text(PICKY_MODEL)
    (tmp_path / "stream_picky" / "1").mkdir(parents=True)
    (tmp_path / "stream_picky" / "config.pbtxt").write_text(
        STREAM_UPPER.replace('"stream_upper"', '"stream_picky"').replace('"string_python"', '"picky"')
    )
    process = start_server([tmp_path])
    try:
        with grpcclient.InferenceServerClient(process.grpc_url) as client:
            items = _stream(client, "stream_picky", b"one two three")
            assert items[0].as_numpy("OUT").tolist() == [b"one"]  # type: ignore[attr-defined]
            assert isinstance(items[-1], InferenceServerException)
            assert "two is not allowed" in items[-1].message()
            # The server still serves the ensemble afterwards.
            assert [i.as_numpy("OUT").tolist() for i in _stream(client, "stream_picky", b"one")[:-1]] == [[b"one"]]  # type: ignore[attr-defined]
    finally:
        assert process.stop() == 0, process.output()
