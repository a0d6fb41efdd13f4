"""Tracing: which requests are traced, and their timestamps, in Triton's two modes.

Settings are ``--trace-config`` (``triton,file=<path>``, ``triton,log-frequency=N``,
``level=TIMESTAMPS|OFF``, ``rate=N``, ``count=N``, ``mode=triton|opentelemetry``,
``opentelemetry,url=...``, ``opentelemetry,resource=k=v``, ``opentelemetry,bsp_*``) and the trace
extension (``/v2/trace/setting``, per model ``/v2/models/<m>/trace/setting``, gRPC
``TraceSetting``), whose values are strings or lists of strings, as in Triton. One request in
``rate`` is traced, at most ``count`` in all (-1: no limit).

``triton`` mode writes a JSON array of Triton's records: one ``{"id", "model_name",
"model_version", "request_id"}`` per trace and one ``{"id", "timestamps": [{"name", "ns"}]}`` per
timestamp (steady clock). Records are kept in memory and written when the server exits, or with
``log_frequency`` N > 0 every N traces to ``<file>.0``, ``<file>.1``, ... (as Triton names them).
``opentelemetry`` mode exports the same timestamps as span events over
OTLP/HTTP (``otel.py``): a request's ``InferRequest`` span (the frontend's timestamps; a child of
the client's W3C ``traceparent`` when it sends one), a span per model and a ``compute`` span.

A request a frontend received carries a ``RequestTraceContext``: when it is traced, its model's
records wait in it until the frontend reports the response sent (``Tracer.finish``), so that one
trace holds the receive, model and send timestamps in order.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from airtower.core.request import RequestTraceContext
from airtower.core.tensor import Tensor
from airtower.errors import InvalidArgumentError, UnavailableError, UnsupportedError

if TYPE_CHECKING:
    from airtower.observability.otel import SpanExporter

_LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")
_MODES = ("triton", "opentelemetry")
#: Where Triton's OpenTelemetry mode sends spans unless ``opentelemetry,url=`` says otherwise.
DEFAULT_OTLP_URL = "http://localhost:4318/v1/traces"
#: The trace settings only ``--trace-config opentelemetry,<key>=`` sets (not the trace extension).
_OTEL_KEYS = frozenset({"url", "resource", "bsp_max_queue_size", "bsp_schedule_delay", "bsp_max_export_batch_size"})


@dataclass(frozen=True, slots=True)
class TraceSettings:
    level: tuple[str, ...] = ("OFF",)
    rate: int = 1000
    count: int = -1
    log_frequency: int = 0
    file: str = ""
    mode: str = "triton"
    #: OpenTelemetry mode: the OTLP/HTTP endpoint, resource attributes and batch span processor.
    url: str = DEFAULT_OTLP_URL
    resource: tuple[str, ...] = ()
    bsp_max_queue_size: int = 2048
    bsp_schedule_delay: int = 5000
    bsp_max_export_batch_size: int = 512

    @property
    def enabled(self) -> bool:
        """Whether requests are traced: a level on, traces left to take, and valid settings (a
        zero rate or, in triton mode, no file traces nothing, as in Triton)."""
        return ("TIMESTAMPS" in self.level or "TENSORS" in self.level) and self.count != 0 and not self.invalid_reason()

    def invalid_reason(self) -> str:
        """Why these settings cannot trace (Triton's words), or "" when they can."""
        if self.rate == 0 and self.mode == "triton":
            return "sample rate must be non-zero"
        if self.mode == "triton" and not self.file:
            return "trace file name is not given"
        return ""

    def to_json(self) -> dict[str, Any]:
        head: dict[str, Any] = {
            "trace_level": list(self.level),
            "trace_rate": str(self.rate),
            "trace_count": str(self.count),
        }
        if self.mode == "opentelemetry":  # Triton shows the exporter's settings instead of the file's
            return head | {
                "trace_mode": self.mode,
                "url": self.url,
                "resource": ",".join(self.resource),
                "bsp_max_export_batch_size": str(self.bsp_max_export_batch_size),
                "bsp_schedule_delay": str(self.bsp_schedule_delay),
                "bsp_max_queue_size": str(self.bsp_max_queue_size),
            }
        return head | {"log_frequency": str(self.log_frequency), "trace_file": self.file, "trace_mode": self.mode}

    def updated(self, changes: dict[str, Any]) -> TraceSettings:
        """These settings with ``--trace-config`` values applied (strings; ``trace_level`` a list).

        Raises:
            InvalidArgumentError: a value that does not parse (Triton's wording).
        """
        fields: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "trace_level":
                for level in value:
                    if level not in _LEVELS:
                        raise InvalidArgumentError(f"Unable to parse 'trace_level', got: {level}")
                fields["level"] = _levels(value) or ("OFF",)
            elif key in _FIELDS:
                fields[_FIELDS[key]] = _integer(key, str(value))
            elif key == "trace_file":
                fields["file"] = str(value)
            elif key == "trace_mode":
                if value not in _MODES:
                    raise InvalidArgumentError(f"Unable to parse 'trace_mode', got: {value}")
                fields["mode"] = value
        return replace(self, **fields)


#: The trace extension's settings a request may change. ``trace_file`` cannot be changed (an
#: error) and ``trace_mode`` is fixed at start-up (ignored), as in Triton; other keys are ignored.
_FIELDS = {"trace_rate": "rate", "trace_count": "count", "log_frequency": "log_frequency"}
#: stoi's digits: leading whitespace, a sign, decimal digits (what follows is ignored).
_STOI = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def extension_changes(changes: Mapping[str, str | Sequence[str] | None]) -> list[tuple[str, Any]]:
    """The trace extension's ``changes`` as ``TraceSettings`` fields and values, read in Triton's
    order (file, level, rate, count, log frequency). ``trace_level`` is a list of names and the
    others strings; None clears a setting (back to the start-up value, or for a model to the
    global one). A level list without OFF, TIMESTAMPS or TENSORS changes nothing.

    Raises:
        UnsupportedError: a ``trace_file`` change (Triton's 501 / UNIMPLEMENTED).
        InvalidArgumentError: a value that does not parse (Triton's wording).
    """
    if "trace_file" in changes:
        raise UnsupportedError("trace file location can not be updated through network protocol")
    fields: list[tuple[str, Any]] = []
    if "trace_level" in changes:
        names = changes["trace_level"]
        levels = None if names is None else _levels(names)
        if names is None or levels is not None:
            fields.append(("level", levels))
    for key, name in _FIELDS.items():
        if key in changes:
            value = changes[key]
            fields.append((name, None if value is None else _integer(key, str(value))))
    return fields


def _levels(names: Sequence[str]) -> tuple[str, ...] | None:
    """Triton's reading of a level list: OFF alone, or TIMESTAMPS and/or TENSORS (other names are
    ignored; None when none is named)."""
    if "OFF" in names:
        if len(names) > 1:
            raise InvalidArgumentError("Expect only one trace level 'OFF' is specified")
        return ("OFF",)
    levels = tuple(level for level in _LEVELS[1:] if level in names)
    return levels or None


def _integer(key: str, text: str) -> int:
    """A rate, count or log frequency read as Triton reads it: C++ ``std::stoi`` (a leading number,
    32-bit), then the rate and log frequency as unsigned 32-bit (so "-1" is 4294967295)."""
    match = _STOI.match(text)
    if match is None:
        raise InvalidArgumentError(f"Unable to parse '{key}', got: {text}")
    value = int(match.group(1))
    limits = "[ -1, 2147483647 ]" if key == "trace_count" else "[ 0, 4294967295 ]"
    if not -(2**31) <= value < 2**31:
        raise InvalidArgumentError(f"Unable to parse '{key}', value is out of range {limits}, got: {text}")
    if key != "trace_count":
        return value % 2**32
    if value < -1:
        raise InvalidArgumentError(f"Unable to parse 'trace_count'. Expecting value >= -1, got:{text}")
    return value


def parse_trace_config(settings: list[tuple[str, str, str]]) -> TraceSettings:
    """``--trace-config`` (``[<mode>,]<key>=<value>`` triples, as ``--backend-config`` parses them)."""
    changes: dict[str, Any] = {}
    names = {"level": "trace_level", "rate": "trace_rate", "count": "trace_count", "file": "trace_file",
             "log-frequency": "log_frequency", "mode": "trace_mode"}  # fmt: skip
    levels: list[str] = []
    otel: dict[str, Any] = {}
    resources: list[str] = []
    for mode, key, value in settings:
        if mode == "opentelemetry" and key in _OTEL_KEYS:
            if key == "resource":
                if "=" not in value:
                    raise InvalidArgumentError(
                        f"--trace-config opentelemetry,resource expects key=value, got '{value}'"
                    )
                resources.append(value)
            elif key == "url":
                otel["url"] = value
            else:
                try:
                    otel[key] = int(value)
                except ValueError:
                    raise InvalidArgumentError(f"Unable to parse '{key}', got: {value}") from None
            continue
        if key not in names:
            raise InvalidArgumentError(f"unknown --trace-config setting '{key}'")
        if key == "level":
            levels.append(value.upper())
        else:
            changes[names[key]] = value
    if levels:
        changes["trace_level"] = levels
    if resources:
        otel["resource"] = tuple(resources)
    return replace(TraceSettings().updated(changes), **otel)


class Tracer:
    """Decides which requests are traced and collects their records. Thread-safe."""

    def __init__(self, settings: TraceSettings) -> None:
        self.settings = settings
        #: The start-up settings, which clearing a global setting goes back to.
        self._startup = settings
        #: The settings each model (and "" the global ones) changed through the extension.
        self._overrides: dict[str, dict[str, Any]] = {}
        self._models: dict[str, TraceSettings] = {}
        #: True while any model may be traced: frontends build a ``RequestTraceContext`` only then.
        self.active = settings.enabled
        #: OpenTelemetry mode's exporter (the mode is fixed at start-up, as in Triton).
        self._otel: SpanExporter | None = None
        if settings.mode == "opentelemetry":
            try:
                from airtower.observability.otel import SpanExporter
            except ImportError as exc:
                raise UnavailableError(
                    f"trace mode 'opentelemetry' needs a package that is not installed ({exc.name}): "
                    "install it with `pip install 'airtower[opentelemetry]'`"
                ) from exc
            self._otel = SpanExporter(settings)
        self._ids = itertools.count(1)
        self._seen: dict[str, int] = {}
        self._traced = 0
        self._records: list[dict[str, Any]] = []
        self._written: list[dict[str, Any]] = []
        self._file_index = 0
        self._pending_traces = 0
        #: Traced requests whose frontend has not reported the response sent yet.
        self._contexts: dict[int, RequestTraceContext] = {}
        self._lock = threading.Lock()

    def settings_for(self, model: str) -> TraceSettings:
        return self._models.get(model, self.settings)

    def update(self, model: str, changes: Mapping[str, str | Sequence[str] | None]) -> TraceSettings:
        """Apply the trace extension's ``changes`` (``extension_changes``) globally (``model`` "")
        or to one model; returns the result. As in Triton, a model's settings follow the global
        ones except where the model's own were set, and a change that leaves tracing on but
        unable to trace is refused.

        Raises:
            UnsupportedError, InvalidArgumentError: see ``extension_changes``; an invalid result
                (Triton's "Attempting to set invalid trace setting :<reason>").
        """
        fields = extension_changes(changes)
        with self._lock:
            overrides = dict(self._overrides.get(model, {}))
            for name, value in fields:
                if value is None:
                    overrides.pop(name, None)
                else:
                    overrides[name] = value
            settings = replace(self.settings if model else self._startup, **overrides)
            reason = settings.invalid_reason()
            if reason and settings.level != ("OFF",):
                raise InvalidArgumentError(f"Attempting to set invalid trace setting :{reason}")
            self._overrides[model] = overrides
            if model:
                self._models[model] = settings
            else:
                self.settings = settings
                self._models = {name: replace(settings, **own) for name, own in self._overrides.items() if name}
            self.active = self.settings.enabled or any(s.enabled for s in self._models.values())
            return settings

    def trace_id(self, model: str, trace_parent: int, context: RequestTraceContext | None) -> int:
        """The trace id of a request of ``model`` (0: not traced): a child of ``trace_parent`` when it
        serves a traced request (an ensemble step, a BLS call made with the trace), else sampled when a
        frontend received it (as in Triton, only frontends sample requests)."""
        if trace_parent:
            return self.child(trace_parent, model)
        if context is None:
            return 0
        return self.sample(model, context)

    def sample(self, model: str, context: RequestTraceContext | None = None) -> int:
        """A new trace id when this request of ``model`` is to be traced, else 0.

        In OpenTelemetry mode a request whose client sent a W3C ``traceparent`` is always traced
        (Triton's rule; ``rate=0`` traces only those).
        """
        settings = self._models.get(model, self.settings)
        if not settings.enabled:
            return 0
        forced = self._otel is not None and context is not None and "traceparent" in context.headers
        with self._lock:
            seen = self._seen[model] = self._seen.get(model, 0) + 1
            if not forced:
                if settings.rate <= 0 or (settings.rate > 1 and seen % settings.rate != 1):
                    return 0
                if settings.count > 0 and self._traced >= settings.count:
                    return 0
            self._traced += 1
            trace_id = next(self._ids)
            if context is not None:
                context.trace_id = trace_id
                context.level = settings.level
                self._contexts[trace_id] = context
        if self._otel is not None:
            self._otel.start(trace_id, model, context)
        return trace_id

    def child(self, parent_id: int = 0, model: str = "") -> int:
        """A trace id for a request made on behalf of a traced one (an ensemble step): always traced."""
        with self._lock:
            trace_id = next(self._ids)
        if self._otel is not None:
            self._otel.start_child(trace_id, model, parent_id)
        return trace_id

    def w3c_context(self, trace_id: int) -> str | None:
        """OpenTelemetry mode: the W3C context of a traced request's model span, as the JSON that
        ``pb_utils.InferenceTrace.get_context()`` returns; None in triton mode."""
        return self._otel.w3c_context(trace_id) if self._otel is not None else None

    def add(
        self,
        trace_id: int,
        model: str,
        version: int,
        request_id: str,
        timestamps: list[tuple[str, int]],
        parent_id: int = 0,
        tensors: tuple[Sequence[Tensor], Sequence[Tensor]] = ((), ()),
    ) -> None:
        """One traced request's records (``parent_id``: the trace of the request it serves).

        ``tensors`` are its inputs and outputs, recorded at the TENSORS level (triton mode only, as
        in Triton) as ``TENSOR_QUEUE_INPUT`` after the queue timestamps and ``TENSOR_BACKEND_OUTPUT``
        once the outputs exist; the timestamps and the model record come with the TIMESTAMPS level.
        """
        if self._otel is not None:
            self._otel.end(trace_id, version, request_id, timestamps, parent_id)
            return
        level = self.settings_for(model).level
        with_timestamps = "TIMESTAMPS" in level
        inputs, outputs = tensors if "TENSORS" in level else ((), ())
        records: list[dict[str, Any]] = []
        if with_timestamps:
            head: dict[str, Any] = {"id": trace_id, "model_name": model, "model_version": version}
            head["request_id"] = request_id
            if parent_id:
                head["parent_id"] = parent_id
            records.append(head)
        for name, ns in timestamps:
            if name == "COMPUTE_START":
                records += [_tensor_record(trace_id, "TENSOR_QUEUE_INPUT", tensor) for tensor in inputs]
                inputs = ()
            elif name == "COMPUTE_END":
                records += [_tensor_record(trace_id, "TENSOR_BACKEND_OUTPUT", tensor) for tensor in outputs]
                outputs = ()
            if with_timestamps:
                records.append({"id": trace_id, "timestamps": [{"name": name, "ns": ns}]})
        records += [_tensor_record(trace_id, "TENSOR_QUEUE_INPUT", tensor) for tensor in inputs]
        records += [_tensor_record(trace_id, "TENSOR_BACKEND_OUTPUT", tensor) for tensor in outputs]
        with self._lock:
            context = self._contexts.get(trace_id)
            if context is not None:  # written once the frontend has sent the response
                context.records.extend(records)
                return
            self._append_locked(records)

    def finish(self, context: RequestTraceContext, sent: tuple[int, int, int] | None) -> None:
        """The frontend is done with a traced request: ``sent`` holds the steady-clock times the
        response was complete, its sending started and ended (None: the client went away). The
        trace gets the frontend's timestamps around the model's."""
        with self._lock:
            if self._contexts.pop(context.trace_id, None) is None:
                return
        protocol = context.protocol
        received = (
            [("GRPC_WAITREAD_START", context.received[0]), ("GRPC_WAITREAD_END", context.received[1])]
            if protocol == "GRPC"
            else [("HTTP_RECV_START", context.received[0]), ("HTTP_RECV_END", context.received[1])]
        )
        sending: list[tuple[str, int]] = []
        if sent is not None:
            sending = [("INFER_RESPONSE_COMPLETE", sent[0]), (f"{protocol}_SEND_START", sent[1]),
                       (f"{protocol}_SEND_END", sent[2])]  # fmt: skip
        if self._otel is not None:
            self._otel.finish(context, received + sending)
            return
        trace_id = context.trace_id
        if "TIMESTAMPS" not in context.level:
            received = sending = []
        # Triton's order: the receive timestamps, the model's records, then the response's.
        records = [{"id": trace_id, "timestamps": [{"name": name, "ns": ns}]} for name, ns in received]
        records += context.records
        records += [{"id": trace_id, "timestamps": [{"name": name, "ns": ns}]} for name, ns in sending]
        with self._lock:
            self._append_locked(records)

    def _append_locked(self, records: list[dict[str, Any]]) -> None:
        self._records.extend(records)
        self._pending_traces += 1
        frequency = self.settings.log_frequency
        if frequency > 0 and self._pending_traces >= frequency:
            self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        """Write what is held (triton mode) or export the spans still queued (OpenTelemetry)."""
        self.flush()
        if self._otel is not None:
            self._otel.close()

    def _flush_locked(self) -> None:
        """Write the records held: with a log frequency N > 0, each group of N traces (and what is
        left at exit) to its own file ``<file>.<index>``, as Triton does; otherwise all of them to
        ``<file>``."""
        if not self._records or not self.settings.file:
            return
        if self.settings.log_frequency > 0:
            path = f"{self.settings.file}.{self._file_index}"
            self._file_index += 1
            Path(path).write_text(json.dumps(self._records, separators=(",", ":")))
            self._records = []
            self._pending_traces = 0
            return
        self._written.extend(self._records)
        self._records = []
        self._pending_traces = 0
        Path(self.settings.file).write_text(json.dumps(self._written, separators=(",", ":")))


def _tensor_record(trace_id: int, activity: str, tensor: Tensor) -> dict[str, Any]:
    """A TENSORS-level record, its values written as Triton writes them (C++ stream formatting:
    ``%g`` floats, quoted strings, 1/0 booleans, comma-separated; the shape likewise)."""
    flat = tensor.data.reshape(-1)
    datatype = tensor.datatype
    if datatype == "BYTES":
        data = ",".join(
            '"' + (item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)) + '"' for item in flat
        )
    elif datatype in ("FP16", "FP32", "FP64", "BF16"):
        data = ",".join(format(float(value), "g") for value in flat.astype(np.float64))
    elif datatype == "BOOL":
        data = ",".join("1" if value else "0" for value in flat)
    else:
        data = ",".join(str(int(value)) for value in flat)
    shape = ",".join(str(dim) for dim in tensor.shape)
    return {"id": trace_id, "activity": activity, "tensor": {"name": tensor.name, "data": data, "shape": shape,
                                                             "dtype": datatype}}  # fmt: skip
