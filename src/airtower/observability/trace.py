"""Tracing in Triton's ``triton`` mode: sampled requests' timestamps written to a JSON trace file.

Settings are ``--trace-config`` (``triton,file=<path>``, ``level=TIMESTAMPS|OFF``, ``rate=N``,
``count=N``, ``log-frequency=N``, ``mode=triton``) and the trace extension
(``/v2/trace/setting``, per model ``/v2/models/<m>/trace/setting``, gRPC ``TraceSetting``), whose
values are strings or lists of strings, as in Triton. One request in ``rate`` is traced, at most
``count`` in all (-1: no limit). The file is a JSON array of Triton's records: one
``{"id", "model_name", "model_version", "request_id"}`` per trace and one ``{"id", "timestamps":
[{"name", "ns"}]}`` per timestamp (steady clock). Records are kept in memory and written every
``log_frequency`` traces (0: when the server exits).
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from airtower.errors import InvalidArgumentError

_LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")


@dataclass(frozen=True, slots=True)
class TraceSettings:
    level: tuple[str, ...] = ("OFF",)
    rate: int = 1000
    count: int = -1
    log_frequency: int = 0
    file: str = ""
    mode: str = "triton"

    @property
    def enabled(self) -> bool:
        return "TIMESTAMPS" in self.level and self.count != 0

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_level": list(self.level),
            "trace_rate": str(self.rate),
            "trace_count": str(self.count),
            "log_frequency": str(self.log_frequency),
            "trace_file": self.file,
            "trace_mode": self.mode,
        }

    def updated(self, changes: dict[str, Any]) -> TraceSettings:
        """These settings with the extension's ``changes`` applied (None clears a model's override).

        Raises:
            InvalidArgumentError: a value that does not parse (Triton's wording).
        """
        fields: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "trace_level":
                levels = [value] if isinstance(value, str) else list(value or [])
                for level in levels:
                    if level not in _LEVELS:
                        raise InvalidArgumentError(f"Unable to parse 'trace_level', got: {level}")
                fields["level"] = tuple(levels) or ("OFF",)
            elif key in ("trace_rate", "trace_count", "log_frequency"):
                text = value[0] if isinstance(value, list) and value else value
                try:
                    number = int(str(text))
                except ValueError:
                    raise InvalidArgumentError(f"Unable to parse '{key}', got: {text}") from None
                fields[{"trace_rate": "rate", "trace_count": "count", "log_frequency": "log_frequency"}[key]] = number
            elif key == "trace_file":
                fields["file"] = str(value[0] if isinstance(value, list) and value else value)
            elif key == "trace_mode":
                fields["mode"] = str(value[0] if isinstance(value, list) and value else value)
        return replace(self, **fields)


def parse_trace_config(settings: list[tuple[str, str, str]]) -> TraceSettings:
    """``--trace-config`` (``[<mode>,]<key>=<value>`` triples, as ``--backend-config`` parses them)."""
    changes: dict[str, Any] = {}
    names = {"level": "trace_level", "rate": "trace_rate", "count": "trace_count", "file": "trace_file",
             "log-frequency": "log_frequency", "mode": "trace_mode"}  # fmt: skip
    levels: list[str] = []
    for _mode, key, value in settings:
        if key not in names:
            raise InvalidArgumentError(f"unknown --trace-config setting '{key}'")
        if key == "level":
            levels.append(value.upper())
        else:
            changes[names[key]] = value
    if levels:
        changes["trace_level"] = levels
    return TraceSettings().updated(changes)


class Tracer:
    """Decides which requests are traced and collects their records. Thread-safe."""

    def __init__(self, settings: TraceSettings) -> None:
        self.settings = settings
        self._models: dict[str, TraceSettings] = {}
        self._ids = itertools.count(1)
        self._seen: dict[str, int] = {}
        self._traced = 0
        self._records: list[dict[str, Any]] = []
        self._written: list[dict[str, Any]] = []
        self._pending_traces = 0
        self._lock = threading.Lock()

    def settings_for(self, model: str) -> TraceSettings:
        return self._models.get(model, self.settings)

    def update(self, model: str, changes: dict[str, Any]) -> TraceSettings:
        """Apply ``changes`` globally (``model`` "") or to one model; returns the result."""
        with self._lock:
            if model:
                self._models[model] = self.settings_for(model).updated(changes)
                return self._models[model]
            self.settings = self.settings.updated(changes)
            return self.settings

    def sample(self, model: str) -> int:
        """A new trace id when this request of ``model`` is to be traced, else 0."""
        settings = self._models.get(model, self.settings)
        if not settings.enabled:
            return 0
        with self._lock:
            seen = self._seen[model] = self._seen.get(model, 0) + 1
            if settings.rate > 1 and seen % settings.rate != 1:
                return 0
            if settings.count > 0 and self._traced >= settings.count:
                return 0
            self._traced += 1
            return next(self._ids)

    def child(self) -> int:
        """A trace id for a request made on behalf of a traced one (an ensemble step): always traced."""
        with self._lock:
            return next(self._ids)

    def add(
        self,
        trace_id: int,
        model: str,
        version: int,
        request_id: str,
        timestamps: list[tuple[str, int]],
        parent_id: int = 0,
    ) -> None:
        """One traced request's records (``parent_id``: the trace of the request it serves)."""
        head: dict[str, Any] = {"id": trace_id, "model_name": model, "model_version": version, "request_id": request_id}
        if parent_id:
            head["parent_id"] = parent_id
        records: list[dict[str, Any]] = [head]
        records += [{"id": trace_id, "timestamps": [{"name": name, "ns": ns}]} for name, ns in timestamps]
        with self._lock:
            self._records.extend(records)
            self._pending_traces += 1
            frequency = self.settings.log_frequency
            if frequency > 0 and self._pending_traces >= frequency:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._records or not self.settings.file:
            return
        self._written.extend(self._records)
        self._records = []
        self._pending_traces = 0
        Path(self.settings.file).write_text(json.dumps(self._written, separators=(",", ":")))
