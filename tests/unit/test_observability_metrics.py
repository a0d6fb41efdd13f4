"""Prometheus families built from the statistics (observability/metrics.py) and their endpoint."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from airtower.cli import build_parser, options_from_args
from airtower.errors import InternalError, InvalidArgumentError, QueueTimeoutError, RequestCancelledError
from airtower.frontends.metrics_http import MetricsFrontend
from airtower.observability.metrics import (
    DEFAULT_QUANTILES,
    SUMMARY_MAX_AGE_NS,
    CpuMonitor,
    MetricsConfig,
    ModelSample,
    SummaryWindow,
    TritonCollector,
    encode_text,
    parse_quantiles,
)
from airtower.observability.stats import ExecutionTiming, LatencyHistogram, ModelStatistics, rejection_reason

MS = 1_000_000  # nanoseconds

#: tritonserver 2.51's per-model families with their types (checked against the reference's /metrics).
TRITON_MODEL_FAMILIES = {
    "nv_inference_request_success": "counter",
    "nv_inference_request_failure": "counter",
    "nv_inference_count": "counter",
    "nv_inference_exec_count": "counter",
    "nv_inference_request_duration_us": "counter",
    "nv_inference_queue_duration_us": "counter",
    "nv_inference_compute_input_duration_us": "counter",
    "nv_inference_compute_infer_duration_us": "counter",
    "nv_inference_compute_output_duration_us": "counter",
    "nv_inference_pending_request_count": "gauge",
    "nv_model_load_duration_secs": "gauge",
}
DURATION_COUNTERS = [name for name in TRITON_MODEL_FAMILIES if name.endswith("_duration_us")]
SUMMARIES = [
    "nv_inference_request_summary_us",
    "nv_inference_queue_summary_us",
    "nv_inference_compute_input_summary_us",
    "nv_inference_compute_infer_summary_us",
    "nv_inference_compute_output_summary_us",
]


def timing(start_ms: int, input_ms: int = 1, infer_ms: int = 2, output_ms: int = 1) -> ExecutionTiming:
    start = start_ms * MS
    return ExecutionTiming(
        start_ns=start,
        input_end_ns=start + input_ms * MS,
        output_start_ns=start + (input_ms + infer_ms) * MS,
        end_ns=start + (input_ms + infer_ms + output_ms) * MS,
    )


def served_stats(name: str = "simple", version: str = "1") -> ModelStatistics:
    """Two successful requests (one execution of batch 2), one BACKEND and one REJECTED failure."""
    stats = ModelStatistics(name, version)
    run = timing(10)
    stats.record_success(0, run, 14 * MS)  # queued 10 ms, 14 ms in all
    stats.record_success(5 * MS, run, 14 * MS)  # queued 5 ms, 9 ms in all
    stats.record_execution(2, run)
    stats.record_failure(0, 3 * MS, "BACKEND")
    stats.record_failure(0, 7 * MS, "REJECTED")
    stats.load_duration_ns = 1_500 * MS
    return stats


def scrape(
    samples: Iterable[ModelSample], config: MetricsConfig | None = None, cpu: CpuMonitor | None = None
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """family name → {sorted labels: value}, parsed back with prometheus_client's parser."""
    collected = list(samples)
    collector = TritonCollector(lambda: collected, config or MetricsConfig(cpu_metrics=False), cpu)
    collector.attach()
    text = encode_text(collector.collect()).decode()
    families: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        values = families.setdefault(family.name, {})
        for sample in family.samples:
            suffix = sample.name[len(family.name) :]
            if family.type == "counter" and suffix == "_total":  # the parser's OpenMetrics spelling
                suffix = ""
            values[(("", suffix), *sorted(sample.labels.items()))] = sample.value
    return families


def value(families: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    key = (("", ""), *sorted(labels.items()))
    return families[name][key]


def test_metrics_families_have_triton_names_types_help_and_labels() -> None:
    text = encode_text(TritonCollector(lambda: [ModelSample(served_stats(), 3, {})], MetricsConfig()).collect())
    parsed = {family.name: family for family in text_string_to_metric_families(text.decode())}
    for name, kind in TRITON_MODEL_FAMILIES.items():
        assert parsed[name].type == kind
        labels = {tuple(sorted(sample.labels)) for sample in parsed[name].samples}
        expected = ("model", "reason", "version") if name == "nv_inference_request_failure" else ("model", "version")
        assert labels == {expected}, name
    assert parsed["nv_inference_request_success"].documentation == (
        "Number of successful inference requests, all batch sizes"
    )
    assert parsed["nv_inference_pending_request_count"].documentation == (
        "Instantaneous number of pending requests awaiting execution per-model."
    )
    for name in ("nv_cpu_utilization", "nv_cpu_memory_total_bytes", "nv_pinned_memory_pool_total_bytes"):
        assert parsed[name].type == "gauge"
    # Triton's counters carry no ``_total`` suffix; label names are sorted as Triton writes them.
    assert '\nnv_inference_request_success{model="simple",version="1"} 2\n' in text.decode()
    assert 'nv_inference_request_failure{model="simple",reason="BACKEND",version="1"} 1\n' in text.decode()


def test_metrics_values_agree_with_statistics() -> None:
    stats = served_stats()
    families = scrape([ModelSample(stats, 3, {})])
    labels = {"model": "simple", "version": "1"}
    assert value(families, "nv_inference_request_success", **labels) == 2
    assert value(families, "nv_inference_count", **labels) == 2
    assert value(families, "nv_inference_exec_count", **labels) == 1
    assert value(families, "nv_inference_request_duration_us", **labels) == stats.success.ns // 1000 == 23_000
    assert value(families, "nv_inference_queue_duration_us", **labels) == 15_000
    assert value(families, "nv_inference_compute_input_duration_us", **labels) == 2_000
    assert value(families, "nv_inference_compute_infer_duration_us", **labels) == 4_000
    assert value(families, "nv_inference_compute_output_duration_us", **labels) == 2_000
    assert value(families, "nv_inference_pending_request_count", **labels) == 3
    assert value(families, "nv_model_load_duration_secs", **labels) == 1.5
    reasons = {reason: value(families, "nv_inference_request_failure", reason=reason, **labels)
               for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER")}  # fmt: skip
    assert reasons == {"REJECTED": 1, "CANCELED": 0, "BACKEND": 1, "OTHER": 0}
    assert sum(reasons.values()) == stats.fail.count


def test_metrics_record_failure_defaults_to_other() -> None:
    stats = ModelStatistics("m", "1")
    stats.record_failure(0, 5)
    assert stats.failures["OTHER"] == 1
    assert stats.fail.count == 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (QueueTimeoutError("Request timeout expired"), "REJECTED"),
        (RequestCancelledError("request cancelled"), "CANCELED"),
        (InternalError("boom"), "OTHER"),
    ],
)
def test_metrics_rejection_reason_follows_triton(error: Exception, reason: str) -> None:
    assert rejection_reason(error) == reason  # type: ignore[arg-type]


def test_metrics_one_series_per_version_with_metric_tags() -> None:
    families = scrape(
        [ModelSample(served_stats("a", "1"), 0, {"team": "vision"}), ModelSample(served_stats("a", "2"), 0, {})]
    )
    assert value(families, "nv_inference_count", _team="vision", model="a", version="1") == 2
    assert value(families, "nv_inference_count", model="a", version="2") == 2
    text = encode_text(
        TritonCollector(lambda: [ModelSample(served_stats(), 0, {"tier": "gold"})], MetricsConfig()).collect()
    )
    assert 'nv_inference_count{_tier="gold",model="simple",version="1"} 2\n' in text.decode()


def test_metrics_counter_latencies_false_drops_duration_counters() -> None:
    families = scrape([ModelSample(served_stats(), 0, {})], MetricsConfig(counter_latencies=False, cpu_metrics=False))
    assert not set(DURATION_COUNTERS) & families.keys()
    assert "nv_inference_request_success" in families


def test_metrics_without_models_has_only_server_families() -> None:
    families = scrape([])
    assert set(families) == {"nv_pinned_memory_pool_total_bytes", "nv_pinned_memory_pool_used_bytes"}


def test_metrics_summaries_report_count_sum_and_quantiles() -> None:
    stats = ModelStatistics("m", "1")
    config = MetricsConfig(summary_latencies=True, summary_quantiles=((0.5, 0.05), (0.9, 0.01)), cpu_metrics=False)
    sample = ModelSample(stats, 0, {})
    TritonCollector(lambda: [sample], config).attach()
    assert isinstance(stats.observer, SummaryWindow)
    base = time.monotonic_ns() - SUMMARY_MAX_AGE_NS // 2  # recent: inside the summary's window
    for index in range(10):  # request durations 5, 10, ... 50 ms; queue 1 ms each
        start = index * 100
        run = timing(start, 1, 2, 1)
        for name in ("start_ns", "input_end_ns", "output_start_ns", "end_ns"):
            setattr(run, name, getattr(run, name) + base)
        stats.record_success(base + (start - 1) * MS, run, base + (start - 1 + 5 * (index + 1)) * MS)
    families = scrape([sample], config)
    labels = {"model": "m", "version": "1"}
    request = families["nv_inference_request_summary_us"]
    assert request[(("", "_count"), *sorted(labels.items()))] == 10
    assert request[(("", "_sum"), *sorted(labels.items()))] == sum(5_000 * (i + 1) for i in range(10))
    assert value(families, "nv_inference_request_summary_us", quantile="0.5", **labels) == 25_000
    assert value(families, "nv_inference_request_summary_us", quantile="0.9", **labels) == 45_000
    assert value(families, "nv_inference_queue_summary_us", quantile="0.9", **labels) == 1_000
    assert set(SUMMARIES) <= families.keys()
    assert stats.success.count == 10  # the counters are unchanged by the summaries


def test_metrics_summary_window_forgets_old_observations() -> None:
    window = SummaryWindow()
    window(0, timing(0), 5 * MS)
    assert window.quantiles([0.5], 5 * MS)[0] == [5_000]
    later = 5 * MS + SUMMARY_MAX_AGE_NS + 1
    assert all(math.isnan(values[0]) for values in window.quantiles([0.5], later))
    assert window.count == 1  # count and sum stay cumulative, as a Prometheus summary's


def test_metrics_summaries_off_by_default_leave_hot_path_alone() -> None:
    stats = ModelStatistics("m", "1")
    families = scrape([ModelSample(stats, 0, {})])
    assert stats.observer is None
    assert not set(SUMMARIES) & families.keys()


def test_metrics_config_from_settings(caplog: pytest.LogCaptureFixture) -> None:
    config = MetricsConfig.from_settings(
        [("counter_latencies", "false"), ("summary_latencies", "true"), ("summary_quantiles", "0.5:0.05,0.99:0.001"),
         ("histogram_latencies", "true"), ("exotic_latencies", "true")],
        cpu_metrics=False, interval_ms=500,
    )  # fmt: skip
    assert config == MetricsConfig(False, True, ((0.5, 0.05), (0.99, 0.001)), False, 500, histogram_latencies=True)
    assert "exotic_latencies" in caplog.text  # unknown keys are logged and ignored
    assert MetricsConfig.from_settings([]).summary_quantiles == DEFAULT_QUANTILES


@pytest.mark.parametrize(
    "settings",
    [[("summary_latencies", "maybe")], [("summary_quantiles", "0.5")], [("summary_quantiles", "1.5:0.1")]],
)
def test_metrics_config_rejects_bad_values(settings: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidArgumentError, match=settings[0][0]):
        MetricsConfig.from_settings(settings)


def test_metrics_parse_quantiles() -> None:
    assert parse_quantiles("0.5:0.05") == ((0.5, 0.05),)
    with pytest.raises(InvalidArgumentError, match="summary_quantiles 'x:y'"):
        parse_quantiles("x:y")


def test_metrics_cli_flags_reach_options() -> None:
    args = build_parser().parse_args(
        ["serve", "--model-repository", "/m", "--metrics-config", "summary_latencies=true", "--metrics-config=a=b",
         "--allow-cpu-metrics=false", "--metrics-interval-ms", "250", "--metrics-port", "0"]
    )  # fmt: skip
    options = options_from_args(args)
    assert options.metrics_config == (("summary_latencies", "true"), ("a", "b"))
    assert options.allow_cpu_metrics is False
    assert options.metrics_interval_ms == 250
    assert options.metrics_port == 0


def write_proc(proc: Path, busy: int, idle: int) -> None:
    # user nice system idle iowait irq softirq steal
    proc.joinpath("stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n")
    proc.joinpath("meminfo").write_text("MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\n")


def test_metrics_cpu_monitor_reads_proc(tmp_path: Path) -> None:
    write_proc(tmp_path, busy=100, idle=100)
    cpu = CpuMonitor(2000, tmp_path)
    assert (cpu.utilization, cpu.memory_total_bytes, cpu.memory_used_bytes) == (0.0, 1000 * 1024, 750 * 1024)
    write_proc(tmp_path, busy=130, idle=110)  # 30 busy of 40 jiffies
    cpu.refresh(cpu._last_ns + 1)  # within the interval: unchanged
    assert cpu.utilization == 0.0
    cpu.refresh(cpu._last_ns + 2000 * MS)
    assert cpu.utilization == 0.75
    families = scrape([], MetricsConfig(), cpu)
    assert families["nv_cpu_memory_used_bytes"][(("", ""),)] == 750 * 1024


def test_metrics_cpu_monitor_without_proc_reports_zeros(tmp_path: Path) -> None:
    cpu = CpuMonitor(1, tmp_path / "missing")
    cpu.refresh(cpu._last_ns + MS)
    assert (cpu.utilization, cpu.memory_total_bytes, cpu.memory_used_bytes) == (0.0, 0, 0)


def test_metrics_encode_text_escapes_labels_and_formats_numbers() -> None:
    stats = served_stats(name='we"ird\\name')
    text = encode_text(TritonCollector(lambda: [ModelSample(stats, 0, {})], MetricsConfig()).collect()).decode()
    assert 'model="we\\"ird\\\\name"' in text
    assert 'nv_model_load_duration_secs{model="we\\"ird\\\\name",version="1"} 1.5\n' in text
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert parsed["nv_inference_count"].samples[0].labels["model"] == 'we"ird\\name'


class FakeServer:
    """What ``model_samples`` reads: ``server.models.models()``."""

    class _Models:
        def models(self) -> list[object]:
            return []

    models = _Models()


class Writer:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        pass


async def answer(request: bytes) -> tuple[bool, bytes]:
    frontend = MetricsFrontend(FakeServer(), MetricsConfig(cpu_metrics=False), "127.0.0.1", 0)  # type: ignore[arg-type]
    reader = asyncio.StreamReader()
    reader.feed_data(request)
    reader.feed_eof()
    writer = Writer()
    keep_alive = await frontend._answer(reader, writer)  # type: ignore[arg-type]
    return keep_alive, writer.data


async def test_metrics_endpoint_answers_get_with_text_format() -> None:
    keep_alive, data = await answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert keep_alive
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/plain; charset=utf-8" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert b"# TYPE nv_pinned_memory_pool_total_bytes gauge" in body


@pytest.mark.parametrize(
    ("request_bytes", "status", "keep_alive"),
    [
        (b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", b"200", False),
        (b"GET /metrics HTTP/1.0\r\n\r\n", b"200", False),
        (b"HEAD /metrics HTTP/1.1\r\n\r\n", b"200", True),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", b"405", True),
        (b"nonsense\r\n\r\n", b"400", False),
    ],
)
async def test_metrics_endpoint_status_and_connection(request_bytes: bytes, status: bytes, keep_alive: bool) -> None:
    alive, data = await answer(request_bytes)
    assert data.split(b" ")[1] == status
    assert alive is keep_alive
    if request_bytes.startswith(b"HEAD"):
        assert data.endswith(b"\r\n\r\n")


def test_metrics_collector_registers_in_a_registry() -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TritonCollector(lambda: [ModelSample(served_stats(), 0, {})], MetricsConfig(cpu_metrics=False)))
    names = {metric.name for metric in registry.collect()}
    assert set(TRITON_MODEL_FAMILIES) <= names


def test_metrics_logger_quiet_by_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        MetricsConfig.from_settings([("counter_latencies", "true")])
    assert not caplog.records


def test_latency_histogram_buckets_are_inclusive_upper_bounds() -> None:
    histogram = LatencyHistogram((500.0, 100.0))
    for value in (50, 100, 100.5, 5000):
        histogram.observe(value)
    assert histogram.cumulative() == [(100.0, 2), (500.0, 3), (float("inf"), 4)]
    assert (histogram.count, histogram.sum) == (4, 5250.5)
