"""Client cancellation: a running Python model sees ``is_cancelled()``, a queued request whose
client cancelled it is never executed, and the statistics count it as a failure."""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.integration.fixture_models import write_python_model
from tests.integration.server_process import start_server

pytestmark = pytest.mark.integration

# IN = 1: touch <model>/waiting, then wait (at most 60 s) until the request is cancelled. IN = 0: answer at once. Every
# answer lists the ids of the requests executed so far and whether a wait saw its cancellation.
PROBE_MODEL = """
import json
import pathlib
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.executed = []
        self.saw_cancel = False
        self.marker = pathlib.Path(args["model_repository"]) / "waiting"

    def execute(self, requests):
        responses = []
        for request in requests:
            self.executed.append(request.request_id())
            if pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0] == 1:
                self.marker.touch()  # tells the test that the request is executing
                deadline = time.monotonic() + 60
                while not request.is_cancelled() and time.monotonic() < deadline:
                    time.sleep(0.005)
                self.saw_cancel = request.is_cancelled()
            state = json.dumps({"executed": self.executed, "saw_cancel": self.saw_cancel}).encode()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("STATE", np.array([state], np.object_))]))
        return responses
"""


def probe_inputs(value: int) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([value], np.int32))
    return [tensor]


def test_cancelled_requests_are_seen_by_the_model_and_dropped_from_the_queue(tmp_path: Path) -> None:
    write_python_model(
        tmp_path / "probe",
        """\
        name: "probe"
        backend: "python"
        max_batch_size: 0
        input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "STATE" data_type: TYPE_STRING dims: [ 1 ] } ]
        """,
        PROBE_MODEL,
    )
    server = start_server([tmp_path])
    try:
        answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            running = client.async_infer(
                "probe", probe_inputs(1), lambda result, error: answers.put((result, error)), request_id="running"
            )
            marker = tmp_path / "probe" / "waiting"
            deadline = time.monotonic() + 60
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            queued = client.async_infer(
                "probe", probe_inputs(0), lambda result, error: answers.put((result, error)), request_id="queued"
            )
            queued.cancel()
            running.cancel()
            for _ in range(2):  # both calls end as cancelled on the client
                _, error = answers.get(timeout=60)
                assert error is not None
            state = client.infer("probe", probe_inputs(0), request_id="after").as_numpy("STATE")[0]
            stats = client.get_inference_statistics("probe", as_json=True)["model_stats"][0]
    finally:
        assert server.stop() == 0, server.output()
    seen = json.loads(state)
    assert seen["executed"] == ["running", "after"]  # the queued request never ran
    assert seen["saw_cancel"] is True
    assert int(stats["inference_stats"]["success"]["count"]) >= 1
