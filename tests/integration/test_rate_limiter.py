"""The rate limiter: instances of two models sharing one resource never execute at once."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.integration.fixture_models import write_python_model
from tests.integration.server_process import run_server_to_exit, start_server

pytestmark = pytest.mark.integration

# Reports when its execute started and ended (the server's monotonic clock, shared by its models).
TIMED_MODEL = """
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        start = time.monotonic()
        time.sleep(0.02)
        end = time.monotonic()
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("SPAN", np.array([start, end], np.float64))])
            for _ in requests
        ]
"""


def write_model(repository: Path, name: str, instances: int, need: int) -> None:
    config = f"""\
        name: "{name}"
        backend: "python"
        max_batch_size: 0
        input [ {{ name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }} ]
        output [ {{ name: "SPAN" data_type: TYPE_FP64 dims: [ 2 ] }} ]
        instance_group [ {{
          count: {instances} kind: KIND_CPU
          rate_limiter {{ resources [ {{ name: "R" count: {need} }} ] }}
        }} ]
        """
    write_python_model(repository / name, config, TIMED_MODEL)


def spans(client: httpclient.InferenceServerClient, models: list[str]) -> list[tuple[float, float]]:
    tensor = httpclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.zeros(1, np.int32))
    pending = [client.async_infer(model, [tensor]) for model in models]
    return [tuple(request.get_result().as_numpy("SPAN").tolist()) for request in pending]


def test_instances_sharing_a_resource_never_overlap(tmp_path: Path) -> None:
    write_model(tmp_path, "limited_a", instances=2, need=1)
    write_model(tmp_path, "limited_b", instances=1, need=1)
    server = start_server([tmp_path], "--rate-limit=execution_count", "--rate-limit-resource=R:1")
    try:
        with httpclient.InferenceServerClient(server.url, concurrency=12) as client:
            executed = sorted(spans(client, ["limited_a", "limited_b"] * 6))
    finally:
        assert server.stop() == 0, server.output()
    assert len(executed) == 12
    for (_, end), (start, _) in itertools.pairwise(executed):
        assert end <= start


def test_an_amount_below_an_instance_need_makes_the_model_unavailable(tmp_path: Path) -> None:
    write_model(tmp_path, "greedy", instances=1, need=2)
    code, output = run_server_to_exit([tmp_path], "--rate-limit=execution_count", "--rate-limit-resource=R:1")
    assert code != 0
    assert "Resource count for 'R' is limited to 1" in output


def test_a_malformed_resource_flag_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, output = run_server_to_exit([tmp_path], "--rate-limit-resource=R")
    assert code == 2
    assert "expected <name>:<count>[:<device>]" in output
