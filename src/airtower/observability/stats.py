"""Per model-version counters and durations: the source of the statistics extension.

Updated only from the event loop thread (completion callbacks), so no locks are needed.
Semantics follow Triton's statistics extension: ``inference_count`` counts inferences
(batch elements), ``execution_count`` counts backend executions, ``inference_stats`` holds
per-request durations and ``batch_stats`` per-execution durations keyed by batch size.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from airtower.errors import QueueTimeoutError, RequestCancelledError, TritonError
from airtower.types import JSONValue

#: Why a request failed, as the ``reason`` label of ``nv_inference_request_failure`` names it.
FailureReason = Literal["REJECTED", "CANCELED", "BACKEND", "OTHER"]
FAILURE_REASONS: tuple[FailureReason, ...] = ("REJECTED", "CANCELED", "BACKEND", "OTHER")


def rejection_reason(error: TritonError) -> FailureReason:
    """The reason of a request a scheduler dropped: a queue timeout is REJECTED, a client's
    cancellation CANCELED (as Triton labels them)."""
    if isinstance(error, RequestCancelledError):
        return "CANCELED"
    if isinstance(error, QueueTimeoutError):
        return "REJECTED"
    return "OTHER"


#: Called with ``(enqueue_ns, timing, now_ns)`` after each successful request (summary metrics).
SuccessObserver = Callable[[int, "ExecutionTiming", int], None]


@dataclass(slots=True)
class Duration:
    """A count and a total in nanoseconds, as the statistics extension reports them."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class BatchStatistics:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class ResponseStatistics:
    """The statistics of the responses at one index of decoupled requests (``response_stats``)."""

    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    empty_response: Duration = field(default_factory=Duration)
    cancel: Duration = field(default_factory=Duration)

    def to_json(self) -> dict[str, dict[str, int]]:
        return {
            "compute_infer": self.compute_infer.to_json(),
            "compute_output": self.compute_output.to_json(),
            "success": self.success.to_json(),
            "fail": self.fail.to_json(),
            "empty_response": self.empty_response.to_json(),
            "cancel": self.cancel.to_json(),
        }


@dataclass(slots=True, init=False)
class ExecutionTiming:
    """Monotonic nanosecond timestamps of one execution, taken on the instance thread."""

    start_ns: int
    input_end_ns: int
    output_start_ns: int
    end_ns: int

    # Written out so that mypyc compiles it (see core.request.InferenceRequest).
    def __init__(self, start_ns: int = 0, input_end_ns: int = 0, output_start_ns: int = 0, end_ns: int = 0) -> None:
        self.start_ns = start_ns
        self.input_end_ns = input_end_ns
        self.output_start_ns = output_start_ns
        self.end_ns = end_ns


class LatencyHistogram:
    """A Prometheus histogram's state: observations per bucket (``bounds`` are the upper bounds,
    inclusive; the last bucket is +Inf), their sum and count. Updated on the event loop."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it) per bucket, ending with +Inf."""
        total = 0
        out: list[tuple[float, int]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


@dataclass(slots=True)
class ModelStatistics:
    """Statistics of one model version."""

    name: str
    version: str
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    cache_hit: Duration = field(default_factory=Duration)
    cache_miss: Duration = field(default_factory=Duration)
    batch_stats: dict[int, BatchStatistics] = field(default_factory=dict)
    #: Decoupled models: per response index (0: a request's first response).
    response_stats: dict[int, ResponseStatistics] = field(default_factory=dict)
    #: Failed requests by reason (``fail`` holds their total count and duration).
    failures: dict[FailureReason, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_REASONS, 0))
    #: How long loading this version took (``nv_model_load_duration_secs``); 0 until it is loaded.
    load_duration_ns: int = 0
    #: Set by the metrics service when latency summaries are on; None keeps the hot path free.
    observer: SuccessObserver | None = None
    #: Set by the metrics service for a decoupled model when latency histograms are on: the time
    #: from a request's arrival to its first response, in milliseconds.
    first_response: LatencyHistogram | None = None

    def record_execution(self, batch_size: int, timing: ExecutionTiming) -> None:
        """One backend execution of ``batch_size`` inferences finished."""
        self.execution_count += 1
        self.inference_count += batch_size
        self.last_inference_ms = time.time_ns() // 1_000_000
        stats = self.batch_stats.get(batch_size)
        if stats is None:
            stats = self.batch_stats[batch_size] = BatchStatistics()
        stats.compute_input.add(timing.input_end_ns - timing.start_ns)
        stats.compute_infer.add(timing.output_start_ns - timing.input_end_ns)
        stats.compute_output.add(timing.end_ns - timing.output_start_ns)

    def record_cache_hit(self, start_ns: int, now_ns: int, batch_size: int) -> None:
        """A request answered from the response cache: a success and an inference, no execution."""
        self.cache_hit.add(now_ns - start_ns)
        self.success.add(now_ns - start_ns)
        self.inference_count += batch_size
        self.last_inference_ms = time.time_ns() // 1_000_000

    def record_success(self, enqueue_ns: int, timing: ExecutionTiming, now_ns: int) -> None:
        """One request of an execution succeeded."""
        self.success.add(now_ns - enqueue_ns)
        self.queue.add(timing.start_ns - enqueue_ns)
        self.compute_input.add(timing.input_end_ns - timing.start_ns)
        self.compute_infer.add(timing.output_start_ns - timing.input_end_ns)
        self.compute_output.add(timing.end_ns - timing.output_start_ns)
        if self.observer is not None:
            self.observer(enqueue_ns, timing, now_ns)

    def record_response(self, index: int, outcome: str, infer_ns: int, output_ns: int) -> None:
        """The ``index``-th response of a decoupled request: ``outcome`` "success" (a response),
        "fail" (an error response) or "empty_response" (a bare final flag). ``infer_ns`` is the time
        the model took to produce it (since the request was queued, or since its previous response),
        ``output_ns`` the time to turn it into the client's response."""
        stats = self.response_stats.get(index)
        if stats is None:
            stats = self.response_stats[index] = ResponseStatistics()
        if outcome == "success":
            stats.compute_infer.add(infer_ns)
            stats.compute_output.add(output_ns)
            stats.success.add(infer_ns + output_ns)
        elif outcome == "fail":
            stats.fail.add(infer_ns + output_ns)
        else:
            stats.empty_response.add(infer_ns + output_ns)

    def record_failure(self, enqueue_ns: int, now_ns: int, reason: FailureReason = "OTHER") -> None:
        self.fail.add(now_ns - enqueue_ns)
        self.failures[reason] += 1

    def to_json(self) -> dict[str, JSONValue]:
        """The statistics extension's JSON for this version (HTTP shape)."""
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.to_json(),
                "fail": self.fail.to_json(),
                "queue": self.queue.to_json(),
                "compute_input": self.compute_input.to_json(),
                "compute_infer": self.compute_infer.to_json(),
                "compute_output": self.compute_output.to_json(),
                "cache_hit": self.cache_hit.to_json(),
                "cache_miss": self.cache_miss.to_json(),
            },
            "response_stats": {str(index): stats.to_json() for index, stats in sorted(self.response_stats.items())},
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": stats.compute_input.to_json(),
                    "compute_infer": stats.compute_infer.to_json(),
                    "compute_output": stats.compute_output.to_json(),
                }
                for size, stats in sorted(self.batch_stats.items())
            ],
            "memory_usage": [],
        }
