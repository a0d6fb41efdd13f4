"""Every nv_* Prometheus family, defined once, and the collector that builds them at scrape time.

The collector reads the per-version ``ModelStatistics`` the statistics extension already keeps,
so the inference hot path pays nothing for metrics (latency summaries, off by default, add one
observer call per successful request). Family names, HELP texts, types and label sets are
tritonserver 2.51's (checked against the reference server's /metrics).

Families are prometheus_client ``Metric`` objects; ``encode_text`` writes them in the Prometheus
text format 0.0.4 as Triton does. prometheus_client's own ``generate_latest`` cannot be used: it
renames every counter family to ``<name>_total``, and Triton's counters have no suffix.

Knows nothing about models, schedulers or sockets: the metrics frontend hands in the samples.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from airtower.errors import InvalidArgumentError
from airtower.observability import custom_metrics
from airtower.observability.stats import FAILURE_REASONS, ExecutionTiming, LatencyHistogram, ModelStatistics

#: ``summary_quantiles`` default: quantile → allowed error, as tritonserver's.
DEFAULT_QUANTILES: tuple[tuple[float, float], ...] = (
    (0.5, 0.05),
    (0.9, 0.01),
    (0.95, 0.001),
    (0.99, 0.001),
    (0.999, 0.0001),
)

#: The first-response histogram: its family, and its buckets (ms) unless a model's
#: ``model_metrics { metric_control { ... histogram_options { buckets } } }`` overrides them.
FIRST_RESPONSE_HISTOGRAM = "nv_inference_first_response_histogram_ms"
DEFAULT_FIRST_RESPONSE_BUCKETS: tuple[float, ...] = (100.0, 500.0, 2000.0, 5000.0)

#: How long a summary keeps observations (prometheus-cpp's default ``max_age``, which Triton uses).
SUMMARY_MAX_AGE_NS = 60 * 1_000_000_000
#: Bound on the observations a summary keeps, whatever the request rate.
SUMMARY_MAX_OBSERVATIONS = 65_536

logger = logging.getLogger(__name__)

_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}

_CACHED = "(includes cached requests)"
_NOT_CACHED = "(does not include cached requests)"

#: (name, HELP) of the duration counters, in Triton's order; each reads one ``ModelStatistics`` duration.
_DURATION_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("nv_inference_request_duration_us", f"Cumulative inference request duration in microseconds {_CACHED}", "success"),
    ("nv_inference_queue_duration_us", f"Cumulative inference queuing duration in microseconds {_CACHED}", "queue"),
    (
        "nv_inference_compute_input_duration_us",
        f"Cumulative compute input duration in microseconds {_NOT_CACHED}",
        "compute_input",
    ),
    (
        "nv_inference_compute_infer_duration_us",
        f"Cumulative compute inference duration in microseconds {_NOT_CACHED}",
        "compute_infer",
    ),
    (
        "nv_inference_compute_output_duration_us",
        f"Cumulative inference compute output duration in microseconds {_NOT_CACHED}",
        "compute_output",
    ),
)

#: (name, HELP) of the latency summaries, in the order of ``SummaryWindow``'s series.
_SUMMARIES: tuple[tuple[str, str], ...] = (
    ("nv_inference_request_summary_us", f"Summary of inference request duration in microseconds {_CACHED}"),
    ("nv_inference_queue_summary_us", f"Summary of inference queuing duration in microseconds {_CACHED}"),
    ("nv_inference_compute_input_summary_us", f"Cumulative compute input duration in microseconds {_NOT_CACHED}"),
    ("nv_inference_compute_infer_summary_us", f"Cumulative compute inference duration in microseconds {_NOT_CACHED}"),
    (
        "nv_inference_compute_output_summary_us",
        f"Cumulative inference compute output duration in microseconds {_NOT_CACHED}",
    ),
)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``--metrics-config``, ``--allow-cpu-metrics`` and ``--metrics-interval-ms``."""

    counter_latencies: bool = True
    summary_latencies: bool = False
    summary_quantiles: tuple[tuple[float, float], ...] = DEFAULT_QUANTILES
    cpu_metrics: bool = True
    interval_ms: float = 2000.0
    #: ``histogram_latencies=true``: the first-response histogram of decoupled models.
    histogram_latencies: bool = False

    @classmethod
    def from_settings(
        cls, settings: Iterable[tuple[str, str]], *, cpu_metrics: bool = True, interval_ms: float = 2000.0
    ) -> MetricsConfig:
        """Build from ``--metrics-config <key>=<value>`` pairs (the last one of a key wins).

        Unknown keys are logged and ignored, as tritonserver ignores them.

        Raises:
            InvalidArgumentError: a value that does not parse, or an interval that is not positive.
        """
        counter_latencies, summary_latencies, quantiles = True, False, DEFAULT_QUANTILES
        histogram_latencies = False
        for key, value in settings:
            if key == "counter_latencies":
                counter_latencies = _parse_bool(key, value)
            elif key == "summary_latencies":
                summary_latencies = _parse_bool(key, value)
            elif key == "histogram_latencies":
                histogram_latencies = _parse_bool(key, value)
            elif key == "summary_quantiles":
                quantiles = parse_quantiles(value)
            else:
                logger.warning("ignoring unsupported --metrics-config setting '%s'", key)
        if not interval_ms > 0:
            raise InvalidArgumentError(f"--metrics-interval-ms must be positive, got {interval_ms}")
        return cls(counter_latencies, summary_latencies, quantiles, cpu_metrics, interval_ms, histogram_latencies)


def _parse_bool(key: str, value: str) -> bool:
    parsed = _BOOLEANS.get(value.lower())
    if parsed is None:
        raise InvalidArgumentError(f"invalid value '{value}' for --metrics-config {key} (expected true or false)")
    return parsed


def parse_quantiles(text: str) -> tuple[tuple[float, float], ...]:
    """``"0.5:0.05,0.9:0.01"`` → ((0.5, 0.05), (0.9, 0.01)).

    Raises:
        InvalidArgumentError: a pair is not ``<quantile>:<error>`` with both in [0, 1].
    """
    pairs: list[tuple[float, float]] = []
    for item in text.split(","):
        quantile, sep, error = item.partition(":")
        try:
            pair = (float(quantile), float(error))
        except ValueError:
            pair = (-1.0, -1.0)
        if not sep or not all(0.0 <= number <= 1.0 for number in pair):
            raise InvalidArgumentError(
                f"invalid summary_quantiles '{text}': expected <quantile>:<error> pairs in [0, 1], e.g. 0.5:0.05"
            )
        pairs.append(pair)
    return tuple(pairs)


class SummaryWindow:
    """The latency summaries of one model version: cumulative counts and sums, and quantiles
    over the observations of the last ``SUMMARY_MAX_AGE_NS`` (a ``SuccessObserver``)."""

    __slots__ = ("count", "observations", "sums")

    def __init__(self) -> None:
        self.count = 0
        #: request, queue, compute input, compute infer, compute output, in microseconds.
        self.sums = [0, 0, 0, 0, 0]
        self.observations: deque[tuple[int, tuple[int, int, int, int, int]]] = deque(maxlen=SUMMARY_MAX_OBSERVATIONS)

    def __call__(self, enqueue_ns: int, timing: ExecutionTiming, now_ns: int) -> None:
        values = (
            (now_ns - enqueue_ns) // 1000,
            (timing.start_ns - enqueue_ns) // 1000,
            (timing.input_end_ns - timing.start_ns) // 1000,
            (timing.output_start_ns - timing.input_end_ns) // 1000,
            (timing.end_ns - timing.output_start_ns) // 1000,
        )
        self.count += 1
        sums = self.sums
        for index, value in enumerate(values):
            sums[index] += value
        self.observations.append((now_ns, values))

    def quantiles(self, quantiles: Sequence[float], now_ns: int) -> list[list[float]]:
        """Per series, the value at each quantile of the recent observations (NaN when none)."""
        observations = self.observations
        while observations and now_ns - observations[0][0] > SUMMARY_MAX_AGE_NS:
            observations.popleft()
        if not observations:
            return [[math.nan] * len(quantiles) for _ in self.sums]
        result: list[list[float]] = []
        for series in range(len(self.sums)):
            ordered = sorted(values[series] for _, values in observations)
            last = len(ordered) - 1
            result.append([float(ordered[min(last, max(0, math.ceil(q * len(ordered)) - 1))]) for q in quantiles])
        return result


class CpuMonitor:
    """``nv_cpu_*`` from Linux /proc, refreshed at most once per interval (when scraped):
    utilisation over the time since the previous refresh, as Triton reports it."""

    def __init__(self, interval_ms: float, proc: Path = Path("/proc")) -> None:
        self._interval_ns = int(interval_ms * 1_000_000)
        self._proc = proc
        self._last_ns = time.monotonic_ns()
        self._last_times = self._read_times()
        self.utilization = 0.0
        self.memory_total_bytes, self.memory_used_bytes = self._read_memory()

    def refresh(self, now_ns: int | None = None) -> None:
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        if now_ns - self._last_ns < self._interval_ns:
            return
        times = self._read_times()
        if times is not None and self._last_times is not None:
            busy = (times[0] - self._last_times[0]) - (times[1] - self._last_times[1])
            total = times[0] - self._last_times[0]
            self.utilization = max(0.0, min(1.0, busy / total)) if total > 0 else 0.0
        self._last_ns, self._last_times = now_ns, times
        self.memory_total_bytes, self.memory_used_bytes = self._read_memory()

    def _read_times(self) -> tuple[int, int] | None:
        """(total, idle + iowait) jiffies of the aggregate ``cpu`` line of /proc/stat."""
        try:
            first = (self._proc / "stat").read_text().split("\n", 1)[0].split()
        except OSError:
            return None
        if not first or first[0] != "cpu":
            return None
        fields = [int(value) for value in first[1:9]]  # user nice system idle iowait irq softirq steal
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)

    def _read_memory(self) -> tuple[int, int]:
        """(MemTotal, MemTotal - MemAvailable) in bytes; zeros when /proc/meminfo is unreadable."""
        try:
            lines = (self._proc / "meminfo").read_text().splitlines()
        except OSError:
            return 0, 0
        kib: dict[str, int] = {}
        for line in lines:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                kib[key] = int(parts[0])
        total = kib.get("MemTotal", 0) * 1024
        available = kib.get("MemAvailable", 0) * 1024
        return total, max(0, total - available)


class ModelSample(NamedTuple):
    """What the collector needs from one loaded model version at scrape time."""

    stats: ModelStatistics
    #: Requests queued and not yet executing (``nv_inference_pending_request_count``).
    pending: int
    #: The config's ``metric_tags``: each becomes a ``_<key>`` label.
    tags: Mapping[str, str]
    #: Decoupled models get the first-response histogram (when histograms are on), with these
    #: buckets (the config's ``model_metrics`` override, else the default).
    decoupled: bool = False
    first_response_buckets: tuple[float, ...] = DEFAULT_FIRST_RESPONSE_BUCKETS


class TritonCollector(Collector):
    """A prometheus_client collector building Triton's families from the models' statistics
    (and the ``nv_cpu_*`` gauges from ``cpu``, by default a ``CpuMonitor`` when the config allows)."""

    def __init__(
        self, models: Callable[[], Iterable[ModelSample]], config: MetricsConfig, cpu: CpuMonitor | None = None
    ) -> None:
        self._models = models
        self.config = config
        if cpu is None and config.cpu_metrics:
            cpu = CpuMonitor(config.interval_ms)
        self._cpu = cpu

    def attach(self) -> None:
        """Give every version's statistics a summary window when summaries are on, and decoupled
        ones a first-response histogram when histograms are on (idempotent: run at start-up, and at
        each scrape for versions loaded since)."""
        config = self.config
        if not (config.summary_latencies or config.histogram_latencies):
            return
        for sample in self._models():
            stats = sample.stats
            if config.summary_latencies and not isinstance(stats.observer, SummaryWindow):
                stats.observer = SummaryWindow()
            if config.histogram_latencies and sample.decoupled and stats.first_response is None:
                stats.first_response = LatencyHistogram(sample.first_response_buckets)

    def collect(self) -> Iterator[Metric]:
        samples = list(self._models())
        labelled = [(sample, _labels(sample)) for sample in samples]
        yield from _model_families(labelled, self.config.counter_latencies)
        yield _gauge("nv_pinned_memory_pool_total_bytes", "Pinned memory pool total memory size, in bytes", 0)
        yield _gauge("nv_pinned_memory_pool_used_bytes", "Pinned memory pool used memory size, in bytes", 0)
        if self._cpu is not None:
            cpu = self._cpu
            cpu.refresh()
            yield _gauge("nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]", cpu.utilization)
            yield _gauge("nv_cpu_memory_total_bytes", "CPU total memory (RAM), in bytes", cpu.memory_total_bytes)
            yield _gauge("nv_cpu_memory_used_bytes", "CPU used memory (RAM), in bytes", cpu.memory_used_bytes)
        self.attach()
        if self.config.histogram_latencies:
            yield from _first_response_histograms(labelled)
        if self.config.summary_latencies:
            yield from self._summaries(labelled)
        yield from custom_metrics.REGISTRY.collect()  # Python models' pb_utils.MetricFamily

    def _summaries(self, labelled: list[tuple[ModelSample, dict[str, str]]]) -> Iterator[Metric]:
        quantiles = [quantile for quantile, _ in self.config.summary_quantiles]
        families = [Metric(name, help_text, "summary") for name, help_text in _SUMMARIES]
        now = time.monotonic_ns()
        for sample, labels in labelled:
            window = sample.stats.observer
            if not isinstance(window, SummaryWindow):
                continue
            values = window.quantiles(quantiles, now)
            for series, family in enumerate(families):
                family.add_sample(f"{family.name}_count", labels, window.count)
                family.add_sample(f"{family.name}_sum", labels, window.sums[series])
                for quantile, value in zip(quantiles, values[series], strict=True):
                    family.add_sample(
                        family.name, {**labels, "quantile": custom_metrics.format_number(quantile)}, value
                    )
        yield from (family for family in families if family.samples)


def _first_response_histograms(labelled: list[tuple[ModelSample, dict[str, str]]]) -> Iterator[Metric]:
    family = Metric(FIRST_RESPONSE_HISTOGRAM, "Duration from request to first response in milliseconds", "histogram")
    for sample, labels in labelled:
        histogram = sample.stats.first_response
        if histogram is None:
            continue
        for bound, count in histogram.cumulative():
            family.add_sample(
                f"{FIRST_RESPONSE_HISTOGRAM}_bucket", {**labels, "le": custom_metrics.format_number(bound)}, count
            )
        family.add_sample(f"{FIRST_RESPONSE_HISTOGRAM}_sum", labels, histogram.sum)
        family.add_sample(f"{FIRST_RESPONSE_HISTOGRAM}_count", labels, histogram.count)
    if family.samples:
        yield family


def _labels(sample: ModelSample) -> dict[str, str]:
    """Triton's label set, sorted by name as Triton writes it: ``_<tag>``…, model, version."""
    labels = {f"_{key}": value for key, value in sample.tags.items()}
    labels["model"] = sample.stats.name
    labels["version"] = sample.stats.version
    return dict(sorted(labels.items()))


def _model_families(labelled: list[tuple[ModelSample, dict[str, str]]], counter_latencies: bool) -> Iterator[Metric]:
    success = Metric(
        "nv_inference_request_success", "Number of successful inference requests, all batch sizes", "counter"
    )
    failure = Metric("nv_inference_request_failure", "Number of failed inference requests, all batch sizes", "counter")
    count = Metric("nv_inference_count", f"Number of inferences performed {_NOT_CACHED}", "counter")
    executions = Metric("nv_inference_exec_count", f"Number of model executions performed {_NOT_CACHED}", "counter")
    durations = [Metric(name, help_text, "counter") for name, help_text, _ in _DURATION_COUNTERS]
    pending = Metric(
        "nv_inference_pending_request_count",
        "Instantaneous number of pending requests awaiting execution per-model.",
        "gauge",
    )
    load = Metric("nv_model_load_duration_secs", "Model load time in seconds", "gauge")
    for sample, labels in labelled:
        stats = sample.stats
        success.add_sample(success.name, labels, stats.success.count)
        for reason in FAILURE_REASONS:
            failure.add_sample(failure.name, dict(sorted({**labels, "reason": reason}.items())), stats.failures[reason])
        count.add_sample(count.name, labels, stats.inference_count)
        executions.add_sample(executions.name, labels, stats.execution_count)
        if counter_latencies:
            for family, (_, _, field_name) in zip(durations, _DURATION_COUNTERS, strict=True):
                family.add_sample(family.name, labels, getattr(stats, field_name).ns // 1000)
        pending.add_sample(pending.name, labels, sample.pending)
        load.add_sample(load.name, labels, stats.load_duration_ns / 1e9)
    families = [success, failure, count, executions, *durations, pending, load]
    yield from (family for family in families if family.samples)
    yield from _cache_families(labelled)


def _cache_families(labelled: list[tuple[ModelSample, dict[str, str]]]) -> Iterator[Metric]:
    """``nv_cache_*_per_model``, for the models that use the response cache."""
    hits = Metric("nv_cache_num_hits_per_model", "Number of cache hits per model", "counter")
    misses = Metric("nv_cache_num_misses_per_model", "Number of cache misses per model", "counter")
    hit_time = Metric(
        "nv_cache_hit_duration_per_model", "Total cache hit duration per model, in microseconds", "counter"
    )
    miss_time = Metric(
        "nv_cache_miss_duration_per_model",
        "Total cache miss (insert+lookup) duration per model, in microseconds",
        "counter",
    )
    for sample, labels in labelled:
        stats = sample.stats
        if not stats.cache_hit.count and not stats.cache_miss.count:
            continue
        hits.add_sample(hits.name, labels, stats.cache_hit.count)
        misses.add_sample(misses.name, labels, stats.cache_miss.count)
        hit_time.add_sample(hit_time.name, labels, stats.cache_hit.ns // 1000)
        miss_time.add_sample(miss_time.name, labels, stats.cache_miss.ns // 1000)
    yield from (family for family in (hits, misses, hit_time, miss_time) if family.samples)


def _gauge(name: str, help_text: str, value: float) -> Metric:
    family = Metric(name, help_text, "gauge")
    family.add_sample(name, {}, value)
    return family


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def encode_text(families: Iterable[Metric]) -> bytes:
    """The Prometheus text exposition format (0.0.4) of ``families``, family names unchanged."""
    lines: list[str] = []
    for family in families:
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        lines.append(f"# HELP {family.name} {help_text}\n# TYPE {family.name} {family.type}\n")
        for sample in family.samples:
            labels = ",".join(f'{key}="{_escape_label(value)}"' for key, value in sample.labels.items())
            label_text = f"{{{labels}}}" if labels else ""
            lines.append(f"{sample.name}{label_text} {custom_metrics.format_number(sample.value)}\n")
    return "".join(lines).encode()


#: The Content-Type of ``encode_text`` (tritonserver's).
CONTENT_TYPE = "text/plain; charset=utf-8"
