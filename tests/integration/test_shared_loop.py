"""A Python model's instance thread may hold the event loop between quick executions
(``airtower.shared_loop``); the server must still serve everyone else when such a model's
``execute`` blocks, and shut down cleanly whoever holds the loop.

Each test would hang (and fail on its client timeout) if the loop stayed with a blocked holder.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.integration.fixture_models import write_python_model
from tests.integration.server_process import ServerProcess, start_server

pytestmark = pytest.mark.integration

CONFIG = """\
    name: "{name}"
    backend: "python"
    max_batch_size: 0
    input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }} ]
    output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }} ]
    instance_group [ {{ kind: KIND_CPU, count: 1 }} ]
    """

# Both models find the same event through sys.modules (they share the server's process).
SHARED_EVENT = """
import sys
import threading
import types

import numpy as np
import triton_python_backend_utils as pb_utils

GATE = sys.modules.setdefault(
    "_airtower_test_gate", types.SimpleNamespace(event=threading.Event(), stream=threading.Event())
)
"""

# IN 0: answers at once (its instance comes to hold the loop); IN 1: waits until "opener" ran.
GATE_MODEL = (
    SHARED_EVENT
    + """

class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            if x[0] == 1:
                x = np.array([1.0 if GATE.event.wait(60) else -1.0], np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x)]))
        return responses
"""
)

OPENER_MODEL = (
    SHARED_EVENT
    + """

class TritonPythonModel:
    def execute(self, requests):
        for r in requests:  # IN 6 opens the streamer's gate, anything else the gate model's
            opened = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()[0] == 6
            (GATE.stream if opened else GATE.event).set()
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())])
            for r in requests
        ]
"""
)

# Decoupled. IN 0: 8 responses at once (a quick execution: its instance holds the loop and writes the
# first itself); IN -1: 40 responses over several milliseconds (a long stream: it hands the loop back);
# IN -2: 4 responses 2 ms apart (long pauses: it stops holding the loop); IN 1: a first response, then
# one more once "opener" ran with IN 6.
STREAMER_MODEL = (
    SHARED_EVENT
    + """
import time


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0]
            sender = request.get_response_sender()
            if x == 1:
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.zeros(1, np.float32))]))
                opened = 1.0 if GATE.stream.wait(60) else -1.0
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([opened], np.float32))]))
            else:
                for index in range(8 if x == 0 else 40 if x == -1 else 4):
                    if x < 0:
                        time.sleep(0.0002 if x == -1 else 0.002)
                    sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([index], np.float32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repository: Path = tmp_path_factory.mktemp("shared_loop")
    write_python_model(repository / "gate", CONFIG.format(name="gate"), GATE_MODEL)
    write_python_model(repository / "opener", CONFIG.format(name="opener"), OPENER_MODEL)
    streamer_config = CONFIG.format(name="streamer") + "model_transaction_policy { decoupled: true }\n"
    write_python_model(repository / "streamer", streamer_config, STREAMER_MODEL)
    process = start_server([repository])
    yield process
    assert process.stop() == 0, process.output()


def one(value: float) -> list[httpclient.InferInput]:
    tensor = httpclient.InferInput("IN", [1], "FP32")
    tensor.set_data_from_numpy(np.array([value], np.float32))
    return [tensor]


def test_a_blocked_execute_does_not_hold_up_other_models(server: ServerProcess) -> None:
    with httpclient.InferenceServerClient(server.url, concurrency=2, network_timeout=30) as client:
        for _ in range(50):  # quick executions: the gate's instance takes the event loop over
            assert client.infer("gate", one(0)).as_numpy("OUT").tolist() == [0.0]
        blocked = client.async_infer("gate", one(1))
        # Served while the gate's execute blocks: by the main thread, once it took the loop back.
        assert client.is_server_ready()
        assert client.infer("opener", one(5)).as_numpy("OUT").tolist() == [5.0]
        assert blocked.get_result(timeout=30).as_numpy("OUT").tolist() == [1.0]
        # And the gate answers quickly again afterwards (it may hold the loop again).
        for _ in range(20):
            assert client.infer("gate", one(0)).as_numpy("OUT").tolist() == [0.0]


def test_grpc_and_http_are_served_while_an_instance_holds_the_loop(server: ServerProcess) -> None:
    with (
        httpclient.InferenceServerClient(server.url, network_timeout=30) as http,
        grpcclient.InferenceServerClient(server.grpc_url) as grpc,
    ):
        for i in range(30):  # alternate protocols: whichever thread runs the loop serves both
            assert http.infer("gate", one(0)).as_numpy("OUT").tolist() == [0.0]
            tensor = grpcclient.InferInput("IN", [1], "FP32")
            tensor.set_data_from_numpy(np.array([i + 2], np.float32))
            assert grpc.infer("gate", [tensor], client_timeout=30).as_numpy("OUT").tolist() == [float(i + 2)]


def test_a_decoupled_model_holding_the_loop_streams_in_order_and_does_not_hold_up_others(
    server: ServerProcess,
) -> None:
    answers: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    grpc.start_stream(callback=lambda result, error: answers.put((result, error)))

    def stream(value: float) -> list[float]:
        """The OUT values of one request's responses, up to its (empty) final response."""
        tensor = grpcclient.InferInput("IN", [1], "FP32")
        tensor.set_data_from_numpy(np.array([value], np.float32))
        grpc.async_stream_infer("streamer", [tensor], enable_empty_final_response=True)
        values: list[float] = []
        while True:
            result, error = answers.get(timeout=30)
            assert error is None, error
            response = result.get_response()
            if response.outputs:
                values.append(float(result.as_numpy("OUT")[0]))
            if response.parameters["triton_final_response"].bool_param:
                return values

    try:
        with httpclient.InferenceServerClient(server.url, network_timeout=30) as http:
            for _ in range(3):
                for _ in range(20):  # quick streams: the instance comes to hold the loop
                    assert stream(0) == [float(i) for i in range(8)]
                assert stream(-1) == [float(i) for i in range(40)]  # a long one hands it back
                assert stream(0) == [float(i) for i in range(8)]
                assert stream(-2) == [float(i) for i in range(4)]  # pauses: it stops holding it
            # The first response comes while execute still runs; then execute blocks, and the
            # other connections are served meanwhile (by the main thread, which takes the loop).
            tensor = grpcclient.InferInput("IN", [1], "FP32")
            tensor.set_data_from_numpy(np.array([1], np.float32))
            grpc.async_stream_infer("streamer", [tensor], enable_empty_final_response=True)
            result, error = answers.get(timeout=30)
            assert error is None, error
            assert result.as_numpy("OUT").tolist() == [0.0]
            assert http.infer("opener", one(6)).as_numpy("OUT").tolist() == [6.0]
            result, error = answers.get(timeout=30)
            assert error is None, error
            assert result.as_numpy("OUT").tolist() == [1.0]
            result, error = answers.get(timeout=30)
            assert error is None
            assert result.get_response().parameters["triton_final_response"].bool_param
            assert stream(0) == [float(i) for i in range(8)]
    finally:
        grpc.stop_stream()
        grpc.close()
