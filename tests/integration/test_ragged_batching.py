"""Ragged batching through the real clients: ragged inputs, every batch input kind, batch outputs.

Requests of different lengths form one batch (a minute of queue delay: the batch forms as soon as
its last request arrives, never by the clock). The order of requests inside a batch is their
arrival order, which the test does not control: assertions hold for any order.

The last tests drive the ONNX Runtime backend directly (no server) for its load-time checks of
ragged models.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from airtower.backends.base import InstanceSpec, ModelContext
from airtower.backends.onnxruntime import OnnxRuntimeBackend
from airtower.core.model_config import ModelConfig, parse_config_text
from airtower.errors import ModelConfigError
from tests.integration.server_process import ServerProcess, start_server
from tests.models import (
    build_identity,
    build_ragged_batch_inputs,
    build_ragged_item_shape,
    ragged_batch_inputs_config,
    ragged_item_shape_config,
)

pytestmark = pytest.mark.integration

#: A minute of queue delay: a batch waits for its preferred size, never for the clock.
WAIT = "max_queue_delay_microseconds: 60000000"
LENGTHS = [3, 1, 4, 2]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("ragged")
    scheduling = f"dynamic_batching {{ preferred_batch_size: [ {len(LENGTHS)} ] {WAIT} }}"
    build_ragged_batch_inputs(repository, "ragged", ragged_batch_inputs_config("ragged", scheduling=scheduling))
    build_ragged_batch_inputs(repository, "ragged_single")
    # Requests of batch sizes 2 and 1 make one batch of 3 items.
    scheduling = f"dynamic_batching {{ preferred_batch_size: [ 3 ] {WAIT} }}"
    build_ragged_item_shape(repository, "item_shape", ragged_item_shape_config("item_shape", scheduling=scheduling))
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    process = start_server([repository])
    yield process
    assert process.stop() == 0, process.output()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(server.url, concurrency=8) as client:
        yield client


def ragged_input(array: np.ndarray[Any, Any]) -> list[httpclient.InferInput]:
    tensor = httpclient.InferInput("INPUT", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array.astype(np.float32))
    return [tensor]


def statistics(client: httpclient.InferenceServerClient, model: str) -> dict[str, Any]:
    stats: dict[str, Any] = client.get_inference_statistics(model)["model_stats"][0]
    return stats


def test_requests_of_different_lengths_run_as_one_batch_with_every_batch_input(
    client: httpclient.InferenceServerClient,
) -> None:
    data = [np.arange(n, dtype=np.float32).reshape(1, n) + 10 * i for i, n in enumerate(LENGTHS)]

    pending = [client.async_infer("ragged", ragged_input(array)) for array in data]
    results = [request.get_result() for request in pending]

    counts = results[0].as_numpy("COUNT_OUT")[0].tolist()  # the batch's element counts, in its order
    assert sorted(counts) == sorted(LENGTHS)
    for array, result in zip(data, results, strict=True):
        # What each request gets for itself: its sum, its shape, its own elements doubled.
        np.testing.assert_allclose(result.as_numpy("SUM"), [[array.sum()]])
        assert result.as_numpy("ITEM_OUT").tolist() == [[array.shape[1]]]
        np.testing.assert_array_equal(result.as_numpy("DOUBLED"), array * 2)
        # What the model saw of the whole batch: the same in every response, in one order.
        assert result.as_numpy("COUNT_OUT").tolist() == [counts]
        assert result.as_numpy("ACC_OUT").tolist() == [np.cumsum(counts).tolist()]
        assert result.as_numpy("ACC0_OUT").tolist() == [[0, *np.cumsum(counts).tolist()]]
        assert result.as_numpy("FLAT_OUT").tolist() == [counts]
        assert result.as_numpy("MAX_OUT").tolist() == [[max(LENGTHS)]]
    stats = statistics(client, "ragged")
    assert (stats["inference_count"], stats["execution_count"]) == (len(LENGTHS), 1)
    assert [entry["batch_size"] for entry in stats["batch_stats"]] == [len(LENGTHS)]


def test_a_request_alone_still_gets_its_batch_inputs(client: httpclient.InferenceServerClient) -> None:
    array = np.arange(5, dtype=np.float32).reshape(1, 5)

    result = client.infer("ragged_single", ragged_input(array))

    assert result.as_numpy("SUM").tolist() == [[10.0]]
    assert result.as_numpy("COUNT_OUT").tolist() == [[5]]
    assert result.as_numpy("ACC_OUT").tolist() == [[5]]
    assert result.as_numpy("ACC0_OUT").tolist() == [[0, 5]]
    assert result.as_numpy("FLAT_OUT").tolist() == [[5]]
    assert result.as_numpy("MAX_OUT").tolist() == [[5]]
    assert result.as_numpy("ITEM_OUT").tolist() == [[5]]
    np.testing.assert_array_equal(result.as_numpy("DOUBLED"), array * 2)


def test_requests_with_several_batch_items_are_batched_and_scattered_by_input_shape(
    client: httpclient.InferenceServerClient,
) -> None:
    data = [np.arange(12, dtype=np.float32).reshape(2, 3, 2), np.full((1, 4, 1), 7, dtype=np.float32)]

    results = [r.get_result() for r in [client.async_infer("item_shape", ragged_input(array)) for array in data]]

    first, second = results
    assert first.as_numpy("ITEM_OUT").tolist() == [[3, 2], [3, 2]]
    assert second.as_numpy("ITEM_OUT").tolist() == [[4, 1]]
    np.testing.assert_array_equal(first.as_numpy("DOUBLED"), data[0] * 2)
    np.testing.assert_array_equal(second.as_numpy("DOUBLED"), data[1] * 2)
    stats = statistics(client, "item_shape")
    assert (stats["inference_count"], stats["execution_count"]) == (3, 1)


def test_the_config_of_a_ragged_model_keeps_its_batch_inputs(client: httpclient.InferenceServerClient) -> None:
    config = client.get_model_config("ragged")
    assert config["input"][0]["allow_ragged_batch"] is True
    assert [entry["target_name"] for entry in config["batch_input"]] == [
        ["COUNT"],
        ["ACC"],
        ["ACC0"],
        ["MAX"],
        ["ITEM"],
        ["FLAT"],
    ]
    assert [entry["name"] for entry in config["input"]] == ["INPUT"]


# --------------------------------------------------------------------------------------------
# Load-time checks of the ONNX Runtime backend (no server)


def _load(model_dir: Path, config: ModelConfig) -> None:
    backend = OnnxRuntimeBackend()
    ctx = ModelContext(name=model_dir.name, model_dir=model_dir, repository=model_dir.parent, version=1)
    backend.auto_complete_config(config, ctx)
    backend.load(config, ctx).create_instance(InstanceSpec(name=f"{model_dir.name}_0", kind="KIND_CPU"))


def test_a_ragged_input_must_be_one_dimensional_in_the_model(tmp_path: Path) -> None:
    model_dir = build_identity(tmp_path, "identity", dims=("batch", "n"))
    config = parse_config_text(
        'max_batch_size: 4 input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]',
        "test",
    )

    with pytest.raises(ModelConfigError) as error:
        _load(model_dir, config)

    assert error.value.message == (
        "unable to load model 'identity', configuration expects model provides input with shape [-1]  for ragged "
        "input 'INPUT0', model provides [-1,-1]"
    )


def test_a_batch_input_target_must_be_a_model_input_of_its_datatype(tmp_path: Path) -> None:
    model_dir = build_ragged_batch_inputs(tmp_path, "ragged")
    text = ragged_batch_inputs_config("ragged").replace(
        'target_name: "COUNT" data_type: TYPE_INT32', 'target_name: "COUNT" data_type: TYPE_FP32'
    )
    with pytest.raises(ModelConfigError, match="expects datatype TYPE_FP32 for batch input 'COUNT', model provides"):
        _load(model_dir, parse_config_text(text, "test"))

    text = ragged_batch_inputs_config("ragged").replace('target_name: "COUNT"', 'target_name: "NOPE"')
    with pytest.raises(ModelConfigError, match="batch input 'NOPE' is not an input of the model"):
        _load(model_dir, parse_config_text(text, "test"))


def test_auto_complete_leaves_batch_input_targets_out_of_the_inputs(tmp_path: Path) -> None:
    model_dir = build_ragged_batch_inputs(tmp_path, "ragged")
    full = parse_config_text(ragged_batch_inputs_config("ragged"), "test")
    config = ModelConfig()
    config.max_batch_size = 8
    config.batch_input.extend(full.batch_input)
    config.batch_output.extend(full.batch_output)
    config.output.extend(full.output)

    _load(model_dir, config)

    assert [io.name for io in config.input] == ["INPUT"]
