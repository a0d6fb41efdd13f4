"""Dynamic batching through the real clients: batches formed, statistics, queue policies, order.

Every assertion holds whatever the timing: batches that must form are waited for by a queue
delay of a minute (they form as soon as the last request arrives), and no test relies on a
request arriving before another unless the outcome is the same either way.
"""

from __future__ import annotations

import json
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.fixture_models import write_batching_model
from tests.integration.server_process import ServerProcess, start_server
from tests.models import build_linear

pytestmark = pytest.mark.integration

#: A minute of queue delay: a batch waits for its preferred size, never for the clock.
WAIT = "max_queue_delay_microseconds: 60000000"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("batching")
    write_batching_model(repository, "preferred4", f"preferred_batch_size: [ 4 ] {WAIT}")
    write_batching_model(
        repository,
        "shapes",
        "preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 100000",
        max_batch_size=4,
        dims="-1",
    )
    write_batching_model(
        repository,
        "timeout_reject",
        f"preferred_batch_size: [ 4 ] {WAIT} default_queue_policy {{ default_timeout_microseconds: 1000 }}",
    )
    write_batching_model(
        repository,
        "timeout_override",
        f"preferred_batch_size: [ 4 ] {WAIT} default_queue_policy {{ default_timeout_microseconds: 60000000 "
        "allow_timeout_override: true }",
    )
    write_batching_model(
        repository,
        "timeout_delay",
        "preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 100000 "
        "default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000 }",
    )
    write_batching_model(
        repository, "priorities", "priority_levels: 2 default_priority_level: 2 max_queue_delay_microseconds: 0"
    )
    write_batching_model(repository, "ordered", "preserve_ordering: true", instances=2)
    build_linear(
        repository,
        "linear_batched",
        config=f'name: "linear_batched"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
        f"dynamic_batching {{ preferred_batch_size: [ 4 ] {WAIT} }}\n",
    )
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    process = start_server([repository])
    yield process
    assert process.stop() == 0, process.output()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(server.url, concurrency=16) as client:
        yield client


def batch_inputs(data: np.ndarray[Any, Any], delay_ms: int | None = None) -> list[httpclient.InferInput]:
    tensor = httpclient.InferInput("IN", list(data.shape), "INT32")
    tensor.set_data_from_numpy(data.astype(np.int32))
    inputs = [tensor]
    if delay_ms is not None:
        delay = httpclient.InferInput("DELAY_MS", [data.shape[0], 1], "INT32")
        delay.set_data_from_numpy(np.full((data.shape[0], 1), delay_ms, np.int32))
        inputs.append(delay)
    return inputs


def statistics(client: httpclient.InferenceServerClient, model: str) -> dict[str, Any]:
    stats: dict[str, Any] = client.get_inference_statistics(model)["model_stats"][0]
    return stats


def batch_counts(stats: dict[str, Any]) -> dict[int, int]:
    return {entry["batch_size"]: entry["compute_infer"]["count"] for entry in stats["batch_stats"]}


def test_requests_reaching_a_preferred_size_run_as_one_execution(client: httpclient.InferenceServerClient) -> None:
    data = [np.arange(4).reshape(1, 4) + 10 * i for i in range(4)]
    pending = [client.async_infer("preferred4", batch_inputs(array)) for array in data]
    results = [request.get_result() for request in pending]
    for array, result in zip(data, results, strict=True):
        np.testing.assert_array_equal(result.as_numpy("OUT"), array * 2)
        assert result.as_numpy("REQUESTS").tolist() == [[4]]
    stats = statistics(client, "preferred4")
    assert (stats["inference_count"], stats["execution_count"]) == (4, 1)
    assert batch_counts(stats) == {4: 1}


def test_the_batch_size_counts_the_batch_dimension_of_each_request(client: httpclient.InferenceServerClient) -> None:
    before = statistics(client, "preferred4")
    data = [np.ones((2, 4)), np.full((2, 4), 3)]
    results = [r.get_result() for r in [client.async_infer("preferred4", batch_inputs(array)) for array in data]]
    for array, result in zip(data, results, strict=True):
        np.testing.assert_array_equal(result.as_numpy("OUT"), array * 2)
        assert result.as_numpy("REQUESTS").tolist() == [[2], [2]]
        assert result.as_numpy("TOTAL").tolist() == [[4], [4]]
    after = statistics(client, "preferred4")
    assert after["inference_count"] - before["inference_count"] == 4
    assert after["execution_count"] - before["execution_count"] == 1


def test_batches_never_mix_shapes_nor_exceed_max_batch_size(client: httpclient.InferenceServerClient) -> None:
    data = [np.full((1 + i % 2, 3 if i % 3 else 5), i) for i in range(12)]
    results = [r.get_result() for r in [client.async_infer("shapes", batch_inputs(array)) for array in data]]
    for array, result in zip(data, results, strict=True):
        np.testing.assert_array_equal(result.as_numpy("OUT"), array * 2)
        assert result.as_numpy("MIXED").max() == 0
        assert result.as_numpy("TOTAL").max() <= 4
    stats = statistics(client, "shapes")
    assert stats["inference_count"] == sum(array.shape[0] for array in data)
    assert max(batch_counts(stats)) <= 4


def test_onnx_model_gets_one_concatenated_batch(client: httpclient.InferenceServerClient, repository: Path) -> None:
    session = ort.InferenceSession(str(repository / "linear_batched" / "1" / "model.onnx"))
    rng = np.random.default_rng(7)
    data = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(4)]

    def inputs(array: np.ndarray[Any, Any]) -> list[httpclient.InferInput]:
        tensor = httpclient.InferInput("INPUT0", list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        return [tensor]

    # Four requests of batch size 2: whatever their order, every pair reaches the preferred size 4.
    results = [r.get_result() for r in [client.async_infer("linear_batched", inputs(array)) for array in data]]
    for array, result in zip(data, results, strict=True):
        expected = session.run(None, {"INPUT0": array})[0]
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), expected, rtol=1e-5, atol=1e-6)
    stats = statistics(client, "linear_batched")
    assert (stats["inference_count"], stats["execution_count"]) == (8, 2)
    assert batch_counts(stats) == {4: 2}


def test_a_request_timed_out_in_the_queue_is_rejected(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.infer("timeout_reject", batch_inputs(np.ones((1, 4))))
    assert error.value.status() == "503"
    assert error.value.message() == "Request timeout expired"
    assert statistics(client, "timeout_reject")["inference_stats"]["fail"]["count"] == 1
    # The model still serves: four requests fill a batch before their timeout.
    assert client.is_model_ready("timeout_reject")


def test_a_request_may_lower_its_queue_timeout(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="Request timeout expired"):
        client.infer("timeout_override", batch_inputs(np.ones((1, 4))), timeout=1000)


def test_a_delayed_request_still_executes(client: httpclient.InferenceServerClient) -> None:
    result = client.infer("timeout_delay", batch_inputs(np.ones((1, 4))))
    np.testing.assert_array_equal(result.as_numpy("OUT"), np.full((1, 4), 2))


@pytest.mark.parametrize("priority", [0, 1, 2, 7])
def test_any_priority_is_served(client: httpclient.InferenceServerClient, priority: int) -> None:
    result = client.infer("priorities", batch_inputs(np.ones((1, 4))), priority=priority)
    np.testing.assert_array_equal(result.as_numpy("OUT"), np.full((1, 4), 2))


def test_preserve_ordering_answers_a_stream_in_request_order(server: ServerProcess) -> None:
    # Two instances: the first request sleeps, the second does not. Without preserve_ordering
    # the second would be answered first; with it, never.
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            for index, delay in enumerate([300, 0, 0]):
                tensors = []
                for name, value in (("IN", np.full((1, 4), index)), ("DELAY_MS", np.full((1, 1), delay))):
                    tensor = grpcclient.InferInput(name, list(value.shape), "INT32")
                    tensor.set_data_from_numpy(value.astype(np.int32))
                    tensors.append(tensor)
                client.async_stream_infer("ordered", tensors, request_id=str(index))
            received = [answers.get(timeout=60) for _ in range(3)]
        finally:
            client.stop_stream()
    assert [error for _, error in received] == [None, None, None]
    assert [result.get_response().id for result, _ in received] == ["0", "1", "2"]


def test_a_full_queue_refuses_requests_and_queued_ones_run_at_exit(tmp_path: Path) -> None:
    write_batching_model(
        tmp_path, "small_queue", f"preferred_batch_size: [ 4 ] {WAIT} default_queue_policy {{ max_queue_size: 2 }}"
    )
    process = start_server([tmp_path])
    outcomes: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()

    def send(value: int) -> None:
        body = {"inputs": [{"name": "IN", "datatype": "INT32", "shape": [1, 4], "data": [value] * 4}]}
        request = urllib.request.Request(f"http://{process.url}/v2/models/small_queue/infer", json.dumps(body).encode())
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                outcomes.put((response.status, json.loads(response.read())))
        except urllib.error.HTTPError as error:
            outcomes.put((error.code, json.loads(error.read())))

    threads = [threading.Thread(target=send, args=(value,)) for value in range(3)]
    try:
        for thread in threads:
            thread.start()
        # The three can never form a batch of 4: two wait in the queue, the third is refused.
        first = outcomes.get(timeout=60)
    finally:
        code = process.stop()  # exiting runs the two queued requests without waiting for a batch
        for thread in threads:
            thread.join(timeout=60)
    assert code == 0, process.output()
    assert first == (503, {"error": "[request id: <id_unknown>] Exceeds maximum queue size"})
    rest = [outcomes.get(timeout=1) for _ in range(2)]
    assert sorted(status for status, _ in rest) == [200, 200]
    assert all(body["outputs"][0]["data"] == [body["outputs"][0]["data"][0]] * 4 for _, body in rest)
