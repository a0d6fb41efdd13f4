"""Stateful models (``sequence_batching``): control inputs, correlation IDs (uint64 and string),
sequences pinned to one instance and run in order, and Triton's errors."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.server_process import ServerProcess, start_server
from tests.models import save_model

STATE_CONFIG = """\
name: "acc_state"
backend: "onnxruntime"
max_batch_size: 4
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
sequence_batching {
  state [ {
    input_name: "INPUT_STATE" output_name: "OUTPUT_STATE" data_type: TYPE_FP32 dims: [ 1 ]
    initial_state { name: "zeros" data_type: TYPE_FP32 dims: [ 1 ] zero_data: true }
  } ]
}
"""


def write_state_model(repository: Path) -> None:
    """An ONNX running sum whose total lives in an implicit state: OUTPUT = OUTPUT_STATE = INPUT + INPUT_STATE."""
    from onnx import TensorProto, helper

    tensors = {name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 1]) for name in
               ("INPUT", "INPUT_STATE", "OUTPUT", "OUTPUT_STATE")}  # fmt: skip
    nodes = [
        helper.make_node("Add", ["INPUT", "INPUT_STATE"], ["SUM"]),
        helper.make_node("Identity", ["SUM"], ["OUTPUT"]),
        helper.make_node("Identity", ["SUM"], ["OUTPUT_STATE"]),
    ]
    graph = helper.make_graph(
        nodes, "acc_state", [tensors["INPUT"], tensors["INPUT_STATE"]], [tensors["OUTPUT"], tensors["OUTPUT_STATE"]]
    )
    save_model(graph, repository / "acc_state" / "1" / "model.onnx")
    (repository / "acc_state" / "config.pbtxt").write_text(STATE_CONFIG)


pytestmark = pytest.mark.integration

# Keeps a running total per correlation ID (reset on START) and reports its control inputs.
ACCUMULATOR = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.instance = args["model_instance_name"]
        self.total = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            values = {t.name(): t.as_numpy().tolist() for t in request.inputs()}
            cid = request.correlation_id()
            if values["START"][0][0]:
                self.total[cid] = 0
            self.total[cid] = self.total.get(cid, 0) + values["IN"][0][0]
            info = {"values": values, "cid": cid, "total": self.total[cid], "instance": self.instance}
            out = np.array([[json.dumps(info).encode()]], np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]))
        return responses
"""

CONFIG = """\
name: "acc"
backend: "python"
max_batch_size: 4
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
sequence_batching {
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY bool_false_true: [ false, true ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repository = tmp_path_factory.mktemp("sequences")
    (repository / "acc" / "1").mkdir(parents=True)
    (repository / "acc" / "1" / "model.py").write_text(ACCUMULATOR)
    (repository / "acc" / "config.pbtxt").write_text(textwrap.dedent(CONFIG))
    write_state_model(repository)
    one_slot = repository / "one_slot"
    (one_slot / "1").mkdir(parents=True)
    (one_slot / "1" / "model.py").write_text(ACCUMULATOR)
    config = textwrap.dedent(CONFIG).replace('name: "acc"', 'name: "one_slot"').replace("count: 2", "count: 1")
    config = config.replace("max_batch_size: 4", "max_batch_size: 1")
    config = config.replace("sequence_batching {", "sequence_batching {\n  max_sequence_idle_microseconds: 200000")
    (one_slot / "config.pbtxt").write_text(config)
    process = start_server([repository])
    yield process
    assert process.stop() == 0, process.output()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(server.url) as client:
        yield client


def send(client: Any, module: Any, value: int, sequence_id: int | str, **flags: bool) -> dict[str, Any]:
    tensor = module.InferInput("IN", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[value]], np.int32))
    result = client.infer("acc", [tensor], sequence_id=sequence_id, **flags)
    out = result.as_numpy("OUT")[0][0]
    info: dict[str, Any] = json.loads(out.decode() if isinstance(out, bytes) else out)
    return info


def test_a_sequence_accumulates_with_triton_s_control_inputs(client: httpclient.InferenceServerClient) -> None:
    first = send(client, httpclient, 1, 7, sequence_start=True)
    middle = send(client, httpclient, 2, 7)
    last = send(client, httpclient, 3, 7, sequence_end=True)
    assert [first["total"], middle["total"], last["total"]] == [1, 3, 6]
    assert first["values"] == {"IN": [[1]], "START": [[1]], "END": [[0.0]], "READY": [[True]], "CORRID": [[7]]}
    assert last["values"]["START"] == [[0]]
    assert last["values"]["END"] == [[1.0]]
    assert first["cid"] == 7
    assert first["instance"] == middle["instance"] == last["instance"]


def test_string_correlation_ids_over_grpc(server: ServerProcess) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        first = send(client, grpcclient, 5, "abc", sequence_start=True)
        second = send(client, grpcclient, 6, "abc", sequence_end=True)
    assert (first["cid"], second["total"]) == ("abc", 11)
    assert first["instance"] == second["instance"]


def test_interleaved_sequences_keep_their_own_state(client: httpclient.InferenceServerClient) -> None:
    send(client, httpclient, 10, 100, sequence_start=True)
    send(client, httpclient, 20, 200, sequence_start=True)
    assert send(client, httpclient, 1, 100, sequence_end=True)["total"] == 11
    assert send(client, httpclient, 2, 200, sequence_end=True)["total"] == 22


def test_triton_s_errors_and_the_server_keeps_serving(client: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("IN", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[1]], np.int32))
    with pytest.raises(InferenceServerException) as no_id:
        client.infer("acc", [tensor])
    assert no_id.value.status() == "400"
    assert no_id.value.message() == (
        "inference request to model 'acc' must specify a non-zero or non-empty correlation ID"
    )
    with pytest.raises(InferenceServerException) as no_start:
        send(client, httpclient, 1, 999)
    assert no_start.value.message() == (
        "inference request for sequence 999 to model 'acc' must specify the START flag on the first request of the "
        "sequence"
    )
    send(client, httpclient, 1, 8, sequence_start=True, sequence_end=True)
    with pytest.raises(InferenceServerException, match="must specify the START flag"):
        send(client, httpclient, 1, 8)  # that sequence ended
    assert send(client, httpclient, 4, 9, sequence_start=True, sequence_end=True)["total"] == 4


def test_implicit_state_carries_an_onnx_model_s_total(client: httpclient.InferenceServerClient) -> None:
    def add(value: float, sequence_id: int, **flags: bool) -> float:
        tensor = httpclient.InferInput("INPUT", [1, 1], "FP32")
        tensor.set_data_from_numpy(np.array([[value]], np.float32))
        result = client.infer("acc_state", [tensor], sequence_id=sequence_id, **flags)
        assert result.as_numpy("OUTPUT_STATE") is None  # states never reach the client
        return float(result.as_numpy("OUTPUT")[0][0])

    assert add(1, 41, sequence_start=True) == 1
    assert add(10, 42, sequence_start=True) == 10
    assert add(2, 41) == 3
    assert add(20, 42) == 30
    assert add(3, 41, sequence_end=True) == 6
    assert add(5, 41, sequence_start=True) == 5  # a new sequence starts from the initial state
    assert add(30, 42, sequence_end=True) == 60


def test_an_idle_sequence_frees_its_slot(client: httpclient.InferenceServerClient) -> None:
    def add(value: int, sequence_id: int, **flags: bool) -> dict[str, Any]:
        tensor = httpclient.InferInput("IN", [1, 1], "INT32")
        tensor.set_data_from_numpy(np.array([[value]], np.int32))
        result = client.infer("one_slot", [tensor], sequence_id=sequence_id, **flags)
        info: dict[str, Any] = json.loads(result.as_numpy("OUT")[0][0])
        return info

    assert add(1, 61, sequence_start=True)["total"] == 1  # takes the only slot and keeps it
    # This one waits for the slot: it can only run once sequence 61 has been idle for 200 ms.
    assert add(5, 62, sequence_start=True, sequence_end=True)["total"] == 5
    with pytest.raises(InferenceServerException, match="must specify the START flag"):
        add(1, 61)  # released as idle


def test_oldest_strategy_batches_ready_sequences_within_the_queue_delay(tmp_path: Path) -> None:
    model = tmp_path / "acc_oldest"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(ACCUMULATOR)
    config = textwrap.dedent(CONFIG).replace('name: "acc"', 'name: "acc_oldest"').replace("count: 2", "count: 1")
    # Four candidate sequences; a batch waits (up to a minute) until four are ready, its preferred size.
    config = config.replace(
        "sequence_batching {",
        "sequence_batching {\n  oldest { max_candidate_sequences: 4 preferred_batch_size: [ 4 ] "
        "max_queue_delay_microseconds: 60000000 }",
    )
    (model / "config.pbtxt").write_text(config)
    process = start_server([tmp_path])
    try:
        with httpclient.InferenceServerClient(process.url, concurrency=4) as client:
            tensor = httpclient.InferInput("IN", [1, 1], "INT32")
            tensor.set_data_from_numpy(np.array([[5]], np.int32))
            pending = [
                client.async_infer("acc_oldest", [tensor], sequence_id=cid, sequence_start=True) for cid in (1, 2, 3, 4)
            ]
            totals = sorted(json.loads(p.get_result().as_numpy("OUT")[0][0])["total"] for p in pending)
            assert totals == [5, 5, 5, 5]
            stats = client.get_inference_statistics("acc_oldest")["model_stats"][0]
            assert (stats["inference_count"], stats["execution_count"]) == (4, 1)  # one batch of the four
    finally:
        assert process.stop() == 0, process.output()
