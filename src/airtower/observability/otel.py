"""Triton's ``opentelemetry`` trace mode: traced requests exported as spans over OTLP/HTTP.

Spans and their events, as Triton makes them:

- ``InferRequest`` (kind SERVER), for a request a frontend received: the frontend's timestamps
  (``HTTP_RECV_START`` ... ``HTTP_SEND_END`` or the ``GRPC_*`` ones, ``INFER_RESPONSE_COMPLETE``).
  Its parent is the client's span when the request carries a W3C ``traceparent`` header.
- one span per model, named after it, child of ``InferRequest`` or of the model span of the request
  it serves (an ensemble's step): ``REQUEST_START``, ``QUEUE_START``, ``REQUEST_END``, with the
  attributes ``triton.model_name``, ``triton.model_version``, ``triton.trace_id``,
  ``triton.trace_parent_id`` and ``triton.request_id``.
- ``compute``, child of a model span that executed: ``COMPUTE_START`` ... ``COMPUTE_END``.

Timestamps are taken on the steady clock and converted to wall-clock time for OpenTelemetry. The
SDK's batch span processor exports on its own thread (``bsp_*`` settings); ``close`` flushes it.
Imported only in this mode: ``opentelemetry-sdk`` and its OTLP/HTTP exporter are an optional extra.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from airtower.core.request import RequestTraceContext

if TYPE_CHECKING:
    from airtower.observability.trace import TraceSettings

_COMPUTE = ("COMPUTE_START", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START", "COMPUTE_END")
_MODEL = ("REQUEST_START", "QUEUE_START", "REQUEST_END")


def _endpoint(url: str) -> str:
    """Triton takes ``host:port/path`` as well as a full URL."""
    return url if "://" in url else f"http://{url}"


class SpanExporter:
    """Builds the spans of traced requests and hands them to the SDK's batch processor."""

    def __init__(self, settings: TraceSettings) -> None:
        attributes: dict[str, Any] = {"service.name": "triton-inference-server"}
        for pair in settings.resource:
            key, _, value = pair.partition("=")
            attributes[key] = value
        self._provider = TracerProvider(resource=Resource.create(attributes))
        self._provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=_endpoint(settings.url)),
                max_queue_size=settings.bsp_max_queue_size,
                schedule_delay_millis=settings.bsp_schedule_delay,
                max_export_batch_size=min(settings.bsp_max_export_batch_size, settings.bsp_max_queue_size),
            )
        )
        self._tracer = self._provider.get_tracer("airtower")
        self._propagator = TraceContextTextMapPropagator()
        #: Model spans started and not ended yet, by trace id (their children look them up).
        self._spans: dict[int, Any] = {}
        self._lock = threading.Lock()
        #: Steady clock → wall clock, fixed once (OpenTelemetry wants epoch nanoseconds).
        self._offset = time.time_ns() - time.monotonic_ns()

    def start(self, trace_id: int, model: str, context: RequestTraceContext | None) -> None:
        """A traced request of ``model``: its ``InferRequest`` span when a frontend received it,
        and its model span."""
        parent = None
        if context is not None:
            remote = self._propagator.extract(carrier=dict(context.headers))
            context.root = self._tracer.start_span(
                "InferRequest",
                context=remote,
                kind=otel_trace.SpanKind.SERVER,
                start_time=context.received[0] + self._offset,
            )
            parent = otel_trace.set_span_in_context(context.root)
        self._start_model_span(trace_id, model, parent, 0)

    def start_child(self, trace_id: int, model: str, parent_id: int) -> None:
        """A request made on behalf of traced request ``parent_id`` (an ensemble step)."""
        with self._lock:
            parent_span = self._spans.get(parent_id)
        parent = otel_trace.set_span_in_context(parent_span) if parent_span is not None else None
        self._start_model_span(trace_id, model, parent, parent_id)

    def _start_model_span(self, trace_id: int, model: str, parent: Any, parent_id: int) -> None:
        span = self._tracer.start_span(model, context=parent, start_time=time.time_ns())
        span.set_attribute("triton.model_name", model)
        span.set_attribute("triton.trace_id", trace_id)
        span.set_attribute("triton.trace_parent_id", parent_id)
        with self._lock:
            self._spans[trace_id] = span

    def w3c_context(self, trace_id: int) -> str | None:
        with self._lock:
            span = self._spans.get(trace_id)
        if span is None:
            return None
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=otel_trace.set_span_in_context(span))
        return json.dumps(carrier)

    def end(
        self, trace_id: int, version: int, request_id: str, timestamps: list[tuple[str, int]], parent_id: int
    ) -> None:
        """The model is done with a traced request: its events, its compute span, the span's end."""
        with self._lock:
            span = self._spans.pop(trace_id, None)
        if span is None:
            return
        offset = self._offset
        stamps = dict(timestamps)
        span.set_attribute("triton.model_version", version)
        if request_id:
            span.set_attribute("triton.request_id", request_id)
        for name in _MODEL:
            if name in stamps:
                span.add_event(name, timestamp=stamps[name] + offset)
        if "COMPUTE_START" in stamps:
            compute = self._tracer.start_span(
                "compute", context=otel_trace.set_span_in_context(span), start_time=stamps["COMPUTE_START"] + offset
            )
            for name in _COMPUTE:
                if name in stamps:
                    compute.add_event(name, timestamp=stamps[name] + offset)
            compute.end(end_time=stamps.get("COMPUTE_END", stamps["COMPUTE_START"]) + offset)
        span.end(end_time=stamps.get("REQUEST_END", time.monotonic_ns()) + offset)

    def finish(self, context: RequestTraceContext, timestamps: list[tuple[str, int]]) -> None:
        """The frontend is done: the ``InferRequest`` span gets its events and ends."""
        with self._lock:
            dangling = self._spans.pop(context.trace_id, None)  # the request never reached its model
        if dangling is not None:
            dangling.end()
        root = context.root
        if root is None:
            return
        offset = self._offset
        for name, ns in timestamps:
            root.add_event(name, timestamp=ns + offset)
        root.end(end_time=max((ns for _, ns in timestamps), default=time.monotonic_ns()) + offset)

    def close(self) -> None:
        """Export every span still queued, then stop the exporter thread."""
        self._provider.shutdown()
