"""The response cache: a repeated request is answered without executing the model."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.fixture_models import write_python_model
from tests.integration.server_process import run_server_to_exit, start_server

pytestmark = pytest.mark.integration

# Answers with how many times it has executed: a cached answer repeats an old count.
COUNTER = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.executions = 0

    def execute(self, requests):
        self.executions += 1
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("COUNT", np.array([self.executions], np.int32))])
            for _ in requests
        ]
"""


def write_counter(repository: Path, name: str, cached: bool) -> None:
    config = f"""\
        name: "{name}"
        backend: "python"
        max_batch_size: 0
        input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 2 ] }} ]
        output [ {{ name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
        response_cache {{ enable: {"true" if cached else "false"} }}
        """
    write_python_model(repository / name, config, COUNTER)


def test_a_repeated_request_is_answered_from_the_cache(tmp_path: Path) -> None:
    write_counter(tmp_path, "cached", cached=True)
    write_counter(tmp_path, "uncached", cached=False)
    server = start_server([tmp_path], "--cache-config=local,size=1048576")
    try:
        with httpclient.InferenceServerClient(server.url) as client:

            def count(model: str, values: list[float], request_id: str = "") -> int:
                tensor = httpclient.InferInput("X", [2], "FP32")
                tensor.set_data_from_numpy(np.array(values, np.float32))
                result = client.infer(model, [tensor], request_id=request_id)
                assert result.get_response().get("id", "") == request_id
                return int(result.as_numpy("COUNT")[0])

            assert count("cached", [1, 2]) == 1
            assert count("cached", [1, 2], request_id="again") == 1  # from the cache, with its own id
            assert count("cached", [3, 4]) == 2
            assert count("uncached", [1, 2]) == 1
            assert count("uncached", [1, 2]) == 2
            stats = client.get_inference_statistics("cached")["model_stats"][0]
            with urllib.request.urlopen(server.metrics_url, timeout=30) as response:
                families = {family.name: family for family in text_string_to_metric_families(response.read().decode())}
    finally:
        assert server.stop() == 0, server.output()
    assert (stats["inference_count"], stats["execution_count"]) == (3, 2)
    assert stats["inference_stats"]["cache_hit"]["count"] == 1
    assert stats["inference_stats"]["cache_miss"]["count"] == 2
    assert stats["inference_stats"]["success"]["count"] == 3
    hits = {sample.labels["model"]: sample.value for sample in families["nv_cache_num_hits_per_model"].samples}
    misses = {sample.labels["model"]: sample.value for sample in families["nv_cache_num_misses_per_model"].samples}
    assert (hits, misses) == ({"cached": 1}, {"cached": 2})


def test_an_unknown_cache_is_refused_at_start(tmp_path: Path) -> None:
    code, output = run_server_to_exit([tmp_path], "--cache-config=redis,size=1")
    assert code == 2
    assert "only the 'local' cache is available" in output
