"""Custom metrics that Python models create (``pb_utils.MetricFamily``), exported on /metrics.

A family has a name, a description and a kind (counter, gauge or histogram) and holds one series
per label set. Models update series from their instance threads; the metrics endpoint reads them
on the event loop: every update and read holds the family's lock.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import Metric

KINDS = ("counter", "gauge", "histogram")


def format_number(value: float) -> str:
    """A number as Triton writes it in /metrics: integers without a fraction (bucket bounds and
    counters), NaN and infinities as Prometheus spells them, other floats in their shortest form."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class Series:
    """One labelled series: a value, or a histogram's bucket counts, sum and count."""

    def __init__(self, family: CustomFamily, labels: dict[str, str], buckets: Sequence[float] | None) -> None:
        self.family = family
        self.labels = dict(sorted(labels.items()))  # written in key order, as Triton writes them
        self.value = 0.0
        self.buckets = sorted(float(b) for b in buckets) if buckets is not None else None
        self.bucket_counts = [0] * (len(self.buckets) + 1) if self.buckets is not None else []
        self.sum = 0.0
        self.count = 0

    def increment(self, value: float) -> None:
        with self.family.lock:
            self.value += value

    def set(self, value: float) -> None:
        with self.family.lock:
            self.value = float(value)

    def observe(self, value: float) -> None:
        assert self.buckets is not None
        with self.family.lock:
            self.bucket_counts[bisect.bisect_left(self.buckets, value)] += 1
            self.sum += value
            self.count += 1


class CustomFamily:
    def __init__(self, name: str, description: str, kind: str) -> None:
        self.name = name
        self.description = description
        self.kind = kind
        self.lock = threading.Lock()
        self.series: list[Series] = []

    def add(self, labels: dict[str, str], buckets: Sequence[float] | None) -> Series:
        series = Series(self, labels, buckets)
        with self.lock:
            self.series.append(series)
        return series

    def remove(self, series: Series) -> None:
        with self.lock:
            if series in self.series:
                self.series.remove(series)

    def collect(self) -> Metric:
        metric = Metric(self.name, self.description, self.kind)
        with self.lock:
            for series in self.series:
                if series.buckets is None:
                    metric.add_sample(self.name, series.labels, series.value)
                    continue
                cumulative = 0
                for bound, count in zip([*series.buckets, math.inf], series.bucket_counts, strict=True):
                    cumulative += count
                    metric.add_sample(f"{self.name}_bucket", {**series.labels, "le": format_number(bound)}, cumulative)
                metric.add_sample(f"{self.name}_sum", series.labels, series.sum)
                metric.add_sample(f"{self.name}_count", series.labels, series.count)
        return metric


class CustomRegistry:
    """Every custom family of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, CustomFamily] = {}

    def family(self, name: str, description: str, kind: str) -> CustomFamily:
        """The family called ``name`` (created on first use).

        Raises:
            ValueError: it exists with another kind.
        """
        with self._lock:
            family = self._families.get(name)
            if family is None:
                family = self._families[name] = CustomFamily(name, description, kind)
            elif family.kind != kind:
                raise ValueError(f"metric family '{name}' already exists as a {family.kind}")
            return family

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = list(self._families.values())
        for family in families:
            metric = family.collect()
            if metric.samples:
                yield metric


#: The process's registry: ``pb_utils`` registers into it, the metrics collector reads it.
REGISTRY = CustomRegistry()
