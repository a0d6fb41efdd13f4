"""The example models of issue 5: BLS routing, a stateful accumulator, a token-streaming model."""

from __future__ import annotations

import queue
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.server_process import ServerProcess

pytestmark = pytest.mark.integration


def router_inputs(model: str) -> list[httpclient.InferInput]:
    tensors = []
    for name, value in (("INPUT0", np.arange(16, dtype=np.float32)), ("INPUT1", np.ones(16, np.float32))):
        tensor = httpclient.InferInput(name, [16], "FP32")
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    choice = httpclient.InferInput("MODEL", [1], "BYTES")
    choice.set_data_from_numpy(np.array([model.encode()], np.object_))
    return [*tensors, choice]


@pytest.mark.parametrize("model", ["add_sub", "add_sub_onnx"])
def test_bls_router_calls_the_model_it_picks(server: ServerProcess, model: str) -> None:
    with httpclient.InferenceServerClient(server.url) as client:
        before = client.get_inference_statistics(model)["model_stats"][0]["inference_count"]
        result = client.infer("bls_router", router_inputs(model))
        after = client.get_inference_statistics(model)["model_stats"][0]["inference_count"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.arange(16) + 1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), np.arange(16) - 1)
    assert after - before == 1


def test_bls_router_refuses_an_unknown_model(server: ServerProcess) -> None:
    with httpclient.InferenceServerClient(server.url) as client, pytest.raises(InferenceServerException) as error:
        client.infer("bls_router", router_inputs("resnet50"))
    assert "unknown model 'resnet50'" in str(error.value.message())


def test_accumulator_keeps_each_sequence_s_total(server: ServerProcess) -> None:
    def add(client: Any, value: int, sequence_id: int, **flags: bool) -> int:
        tensor = httpclient.InferInput("INPUT", [1, 1], "INT32")
        tensor.set_data_from_numpy(np.array([[value]], np.int32))
        return int(client.infer("accumulator", [tensor], sequence_id=sequence_id, **flags).as_numpy("TOTAL")[0][0])

    with (
        httpclient.InferenceServerClient(server.url) as first,
        httpclient.InferenceServerClient(server.url) as second,
    ):
        assert add(first, 1, 501, sequence_start=True) == 1
        assert add(second, 100, 502, sequence_start=True) == 100
        assert add(first, 2, 501) == 3
        assert add(second, 200, 502, sequence_end=True) == 300
        assert add(first, 3, 501, sequence_end=True) == 6
        # INT32 totals wrap around, as perf_analyzer's random inputs need (numpy 2 raises on overflow).
        assert add(first, 2**31 - 1, 503, sequence_start=True) == 2**31 - 1
        assert add(first, 1, 503, sequence_end=True) == -(2**31)


def test_token_streamer_streams_one_response_per_word(server: ServerProcess) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    text = grpcclient.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"the quick brown fox"], np.object_))
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            client.async_stream_infer("token_streamer", [text], enable_empty_final_response=True)
            tokens = []
            while True:
                result, error = answers.get(timeout=60)
                assert error is None
                response = result.get_response()
                if response.outputs:
                    tokens.append(result.as_numpy("text_output")[0].decode())
                if response.parameters["triton_final_response"].bool_param:
                    break
        finally:
            client.stop_stream()
    assert tokens == ["the", " quick", " brown", " fox"]
