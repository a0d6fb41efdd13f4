"""Prometheus metrics on the metrics port, scraped after known traffic (issue 6, item 3).

Counts must agree with the traffic sent and with the statistics extension; failures carry
Triton's reasons (BACKEND for a model error, REJECTED for a queue timeout, CANCELED for a
request its client cancelled while it was queued).
"""

from __future__ import annotations

import queue
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.integration.fixture_models import write_batching_model, write_failing_model
from tests.integration.server_process import ServerProcess, start_server

pytestmark = pytest.mark.integration

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(server: ServerProcess) -> Samples:
    """family → {sorted labels (with the sample's suffix, "_count"...): value}."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        text = response.read().decode()
    families: Samples = {}
    for family in text_string_to_metric_families(text):
        values = families.setdefault(family.name, {})
        for sample in family.samples:
            suffix = sample.name[len(family.name) :]
            suffix = "" if family.type == "counter" and suffix == "_total" else suffix
            values[(("", suffix), *sorted(sample.labels.items()))] = sample.value
    return families


def value(families: Samples, name: str, model: str, suffix: str = "", **labels: str) -> float:
    return families[name][(("", suffix), *sorted({"model": model, "version": "1", **labels}.items()))]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("metrics_repository")
    write_failing_model(repository)
    write_batching_model(repository, "queued", "max_queue_delay_microseconds: 0", max_batch_size=1, dims="1")
    write_batching_model(
        repository,
        "timeout",
        "default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 100000 }",
        max_batch_size=1,
        dims="1",
    )
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    process = start_server([repository], "--metrics-config", "summary_latencies=true", "--metrics-interval-ms", "50")
    yield process
    assert process.stop() == 0, process.output()


def failing_request(mode: int) -> list[httpclient.InferInput]:
    tensor = httpclient.InferInput("MODE", [1], "INT32")
    tensor.set_data_from_numpy(np.array([mode], np.int32))
    return [tensor]


def delayed_inputs(delay_ms: int) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("IN", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[1]], np.int32))
    delay = grpcclient.InferInput("DELAY_MS", [1, 1], "INT32")
    delay.set_data_from_numpy(np.array([[delay_ms]], np.int32))
    return [tensor, delay]


def send_known_traffic(server: ServerProcess) -> Samples:
    """3 successes and 3 model errors on ``failing``; on ``timeout`` 1 success and 2 queue
    timeouts; on ``queued`` 1 success and 1 request cancelled while queued. Returns the scrape
    taken while that cancelled request was still pending."""
    http = httpclient.InferenceServerClient(server.url)
    for mode in (0, 0, 0, 1, 2, 2):
        try:
            http.infer("failing", failing_request(mode))
        except InferenceServerException:
            assert mode != 0
    http.close()
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    results: queue.Queue[tuple[str, object]] = queue.Queue()
    # One instance runs one request at a time: the two behind the first wait past their 100 ms timeout.
    for _ in range(3):
        grpc.async_infer("timeout", delayed_inputs(300), lambda result, error: results.put(("timeout", error)))
    timeout_errors = [results.get(timeout=30)[1] for _ in range(3)]
    assert sum(error is None for error in timeout_errors) == 1
    # A request queued behind a running one, cancelled by its client before it runs.
    grpc.async_infer("queued", delayed_inputs(800), lambda result, error: results.put(("first", error)))
    time.sleep(0.2)
    cancelled = grpc.async_infer("queued", delayed_inputs(0), lambda result, error: results.put(("second", error)))
    deadline = time.monotonic() + 5
    while True:  # wait until the server has queued it
        during = scrape(server)
        if value(during, "nv_inference_pending_request_count", "queued") == 1 or time.monotonic() > deadline:
            break
    cancelled.cancel()
    outcomes = dict(results.get(timeout=30) for _ in range(2))
    assert outcomes["first"] is None
    assert outcomes["second"] is not None
    grpc.close()
    return during


def test_metrics_count_known_traffic_and_agree_with_statistics(server: ServerProcess) -> None:
    during = send_known_traffic(server)
    assert value(during, "nv_inference_pending_request_count", "queued") == 1
    families = scrape(server)
    expected = {
        "failing": (3, {"BACKEND": 3, "REJECTED": 0, "CANCELED": 0, "OTHER": 0}),
        "timeout": (1, {"BACKEND": 0, "REJECTED": 2, "CANCELED": 0, "OTHER": 0}),
        "queued": (1, {"BACKEND": 0, "REJECTED": 0, "CANCELED": 1, "OTHER": 0}),
    }
    http = httpclient.InferenceServerClient(server.url)
    for model, (successes, failures) in expected.items():
        assert value(families, "nv_inference_request_success", model) == successes
        for reason, count in failures.items():
            assert value(families, "nv_inference_request_failure", model, reason=reason) == count, (model, reason)
        assert value(families, "nv_inference_pending_request_count", model) == 0
        assert value(families, "nv_model_load_duration_secs", model) > 0
        stats = http.get_inference_statistics(model)["model_stats"][0]
        inference = stats["inference_stats"]
        assert inference["success"]["count"] == successes
        assert inference["fail"]["count"] == sum(failures.values())
        assert value(families, "nv_inference_count", model) == stats["inference_count"]
        assert value(families, "nv_inference_exec_count", model) == stats["execution_count"]
        for family, key in (
            ("nv_inference_request_duration_us", "success"),
            ("nv_inference_queue_duration_us", "queue"),
            ("nv_inference_compute_input_duration_us", "compute_input"),
            ("nv_inference_compute_infer_duration_us", "compute_infer"),
            ("nv_inference_compute_output_duration_us", "compute_output"),
        ):
            assert value(families, family, model) == int(inference[key]["ns"]) // 1000, (model, family)
        summary = "nv_inference_request_summary_us"
        assert value(families, summary, model, "_count") == successes
        assert value(families, summary, model, quantile="0.5") > 0
    http.close()
    # Only the request that ran counts in the durations (not the two that timed out); it ran 300 ms.
    assert value(families, "nv_inference_queue_duration_us", "timeout") < 100_000
    assert value(families, "nv_inference_compute_infer_duration_us", "timeout") >= 300_000
    assert families["nv_cpu_memory_total_bytes"][(("", ""),)] > 0


def test_metrics_config_switches(repository: Path) -> None:
    process = start_server(
        [repository], "--metrics-config=counter_latencies=false", "--allow-cpu-metrics=false", "--allow-grpc=false"
    )
    try:
        families = scrape(process)
    finally:
        assert process.stop() == 0, process.output()
    assert "Started Metrics Service at 127.0.0.1:" in process.output()
    assert "nv_inference_request_success" in families
    assert "nv_inference_request_duration_us" not in families
    assert "nv_inference_request_summary_us" not in families
    assert "nv_cpu_utilization" not in families


def test_metrics_not_served_when_disallowed(repository: Path) -> None:
    process = start_server([repository], "--allow-metrics=false", "--allow-grpc=false")
    assert process.stop() == 0, process.output()
    assert process.metrics_port == 0
    assert "Metrics Service" not in process.output()


CUSTOM_METRICS_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.requests = pb_utils.MetricFamily(
            name="custom_requests", description="Requests seen by the model", kind=pb_utils.MetricFamily.COUNTER
        ).Metric(labels={"model": "custom"})
        self.sizes = pb_utils.MetricFamily(
            name="custom_sizes", description="Input values", kind=pb_utils.MetricFamily.HISTOGRAM
        ).Metric(labels={"model": "custom"}, buckets=[1.0, 10.0])

    def execute(self, requests):
        for request in requests:
            self.requests.increment(1)
            self.sizes.observe(float(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0]))
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.zeros(1, np.int32))]) for _ in requests]
"""


def test_python_models_custom_metrics_are_exported(tmp_path: Path) -> None:
    (tmp_path / "custom" / "1").mkdir(parents=True)
    (tmp_path / "custom" / "1" / "model.py").write_text(CUSTOM_METRICS_MODEL)
    (tmp_path / "custom" / "config.pbtxt").write_text(
        'name: "custom"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
    )
    server = start_server([tmp_path])
    try:
        with httpclient.InferenceServerClient(server.url) as client:
            for value in (0, 5, 50):
                tensor = httpclient.InferInput("IN", [1], "INT32")
                tensor.set_data_from_numpy(np.array([value], np.int32))
                client.infer("custom", [tensor])
        with urllib.request.urlopen(server.metrics_url, timeout=30) as response:
            text = response.read().decode()
    finally:
        assert server.stop() == 0, server.output()
    assert 'custom_requests{model="custom"} 3' in text
    assert 'custom_sizes_bucket{model="custom",le="1"} 1' in text  # as Triton writes a bound
    assert 'custom_sizes_count{model="custom"} 3' in text
    assert 'custom_sizes_sum{model="custom"} 55' in text


def test_first_response_histogram_of_decoupled_models(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "model_repository"
    for name in ("token_streamer", "add_sub"):
        shutil.copytree(examples / name, tmp_path / name)
    shutil.copytree(examples / "token_streamer", tmp_path / "custom_buckets")
    config = (tmp_path / "custom_buckets" / "config.pbtxt").read_text()
    (tmp_path / "custom_buckets" / "config.pbtxt").write_text(
        config.replace('name: "token_streamer"', 'name: "custom_buckets"')
        + "model_metrics { metric_control [ { metric_identifier { family: "
        + '"nv_inference_first_response_histogram_ms" } histogram_options { buckets: [ -1, 0, 1, 2.5 ] } } ] }\n'
    )
    process = start_server([tmp_path], "--metrics-config=histogram_latencies=true", "--allow-cpu-metrics=false")
    try:
        responses: queue.Queue[Any] = queue.Queue()
        with grpcclient.InferenceServerClient(process.grpc_url) as client:
            client.start_stream(callback=lambda result, error: responses.put(error or result))
            text = grpcclient.InferInput("text_input", [1], "BYTES")
            text.set_data_from_numpy(np.array([b"one two"], np.object_))
            for model in ("token_streamer", "token_streamer", "custom_buckets"):
                client.async_stream_infer(model, [text], enable_empty_final_response=True)
                while True:
                    item = responses.get(timeout=60)
                    assert not isinstance(item, InferenceServerException), item
                    if item.get_response().parameters["triton_final_response"].bool_param:
                        break
            client.stop_stream()
        inputs = [httpclient.InferInput(name, [16], "FP32") for name in ("INPUT0", "INPUT1")]
        for tensor in inputs:
            tensor.set_data_from_numpy(np.ones(16, np.float32))
        with httpclient.InferenceServerClient(process.url) as http:
            http.infer("add_sub", inputs)
            # The statistics extension's response_stats, per response index of the decoupled model.
            stats = http.get_inference_statistics("token_streamer")["model_stats"][0]["response_stats"]
            assert sorted(stats) == ["0", "1", "2"]  # "one", " two", then the bare final flag
            assert [stats[i]["success"]["count"] for i in ("0", "1", "2")] == [2, 2, 0]
            assert stats["2"]["empty_response"]["count"] == 2
            assert stats["0"]["compute_infer"]["count"] == 2
            assert stats["0"]["success"]["ns"] >= stats["0"]["compute_infer"]["ns"]
        with grpcclient.InferenceServerClient(process.grpc_url) as grpc_stats:
            over_grpc = grpc_stats.get_inference_statistics("token_streamer").model_stats[0].response_stats
            assert over_grpc["2"].empty_response.count == 2
        with urllib.request.urlopen(f"http://127.0.0.1:{process.metrics_port}/metrics", timeout=30) as response:
            text_format = response.read().decode()
    finally:
        assert process.stop() == 0, process.output()
    [family] = [
        f for f in text_string_to_metric_families(text_format) if f.name == "nv_inference_first_response_histogram_ms"
    ]
    assert family.type == "histogram"
    series: dict[tuple[str, str], float] = {}
    for sample in family.samples:
        series[(sample.labels["model"], sample.name.rsplit("_", 1)[1] + sample.labels.get("le", ""))] = sample.value
    assert {model for model, _ in series} == {"token_streamer", "custom_buckets"}  # decoupled models only
    assert series[("token_streamer", "count")] == 2
    assert series[("token_streamer", "bucket+Inf")] == 2
    assert [key for model, key in series if model == "token_streamer" and key.startswith("bucket")] == [
        "bucket100", "bucket500", "bucket2000", "bucket5000", "bucket+Inf"
    ]  # fmt: skip
    assert [key for model, key in series if model == "custom_buckets" and key.startswith("bucket")] == [
        "bucket-1", "bucket0", "bucket1", "bucket2.5", "bucket+Inf"
    ]  # fmt: skip
    assert series[("custom_buckets", "count")] == 1
    assert series[("token_streamer", "sum")] > 0
