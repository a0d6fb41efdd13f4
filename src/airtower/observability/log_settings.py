"""Log settings: Triton's logging extension (``/v2/logging``, gRPC ``LogSettings``) applied live.

The settings are the flags ``--log-info``, ``--log-warning``, ``--log-error``, ``--log-verbose``,
``--log-format`` (``default`` or ``ISO8601``) and ``--log-file``; an update over the network may
change all but the file, with Triton's errors. They drive airtower's own loggers (``airtower``
and below; ``pb_utils.Logger`` writes to ``airtower.python_model``) and the event loop's
(``asyncio``): verbose > 0 shows airtower's DEBUG records; a severity switched off is filtered out
at the handler. The root logger is left as Python starts it, as in Triton's Python stub, so the
libraries a model imports log as they do there (their warnings and errors reach stderr, their INFO
and DEBUG records are dropped) and a model's ``logging.basicConfig`` takes effect.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from airtower.errors import TritonError, UnavailableError, UnsupportedError

#: ``default``: Triton's glog-like ``I1125 18:12:11.060 <pid> <logger>] message``.
LOG_FORMATS = {
    "default": ("%(levelname).1s%(asctime)s.%(msecs)03d %(process)d %(name)s] %(message)s", "%m%d %H:%M:%S"),
    "ISO8601": ("%(asctime)s.%(msecs)03dZ %(levelname).1s %(process)d %(name)s] %(message)s", "%Y-%m-%dT%H:%M:%S"),
}


@dataclass(frozen=True, slots=True)
class LogSettings:
    log_file: str = ""
    log_info: bool = True
    log_warning: bool = True
    log_error: bool = True
    log_verbose_level: int = 0
    log_format: str = "default"

    def to_json(self) -> dict[str, Any]:
        """The extension's JSON, keys in Triton's order."""
        return {
            "log_file": self.log_file,
            "log_info": self.log_info,
            "log_warning": self.log_warning,
            "log_error": self.log_error,
            "log_verbose_level": self.log_verbose_level,
            "log_format": self.log_format,
        }

    def updated(self, changes: Mapping[str, bool | int | str]) -> tuple[LogSettings, TritonError | None]:
        """These settings with the extension's ``changes`` applied in Triton's order (``log_file``,
        then as in ``LOG_SETTING_TYPES``) up to the first one refused, and that refusal (None when
        all were applied): Triton applies the settings before a bad one and answers its error.
        ``log_info``, ``log_warning`` and ``log_error`` are booleans, ``log_verbose_level`` an
        unsigned 32-bit int, ``log_format`` a string (each frontend checks the types with its
        protocol's words); other keys are ignored.

        The refusals: UnsupportedError for ``log_file`` (it can't be changed over the network;
        nothing is applied), UnavailableError for an unknown ``log_format`` (Triton's HTTP wording;
        see ``LOG_FORMATS``).
        """
        if "log_file" in changes:
            return self, UnsupportedError("log file location can not be updated through network protocol")
        updates: dict[str, Any] = {}
        for key in LOG_SETTING_TYPES:
            if key not in changes:
                continue
            value = changes[key]
            if key == "log_format" and value not in LOG_FORMATS:
                return replace(self, **updates), UnavailableError(f"invalid argument for --log_format, got: {value}")
            updates[key] = value
        return replace(self, **updates), None


#: The settings the extension may change, in the order Triton reads them (after ``log_file``), and
#: the type each takes.
LOG_SETTING_TYPES: dict[str, type] = {
    "log_info": bool, "log_warning": bool, "log_error": bool, "log_verbose_level": int, "log_format": str,
}  # fmt: skip


class _SeverityFilter(logging.Filter):
    """Drops the records whose severity the settings switch off."""

    def __init__(self) -> None:
        super().__init__()
        self.settings = LogSettings()

    def filter(self, record: logging.LogRecord) -> bool:
        settings = self.settings
        if record.levelno >= logging.ERROR:
            return settings.log_error
        if record.levelno >= logging.WARNING:
            return settings.log_warning
        if record.levelno >= logging.INFO:
            return settings.log_info
        return settings.log_verbose_level > 0


_filter = _SeverityFilter()


#: The loggers the settings drive (with their descendants); the level is set on the first only.
_LOGGERS = ("airtower", "asyncio")


def apply(settings: LogSettings) -> None:
    """Make airtower's logging follow ``settings`` (the first call installs the handler)."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    handler = next((h for h in loggers[0].handlers if _filter in h.filters), None)
    if handler is None:
        handler = logging.FileHandler(settings.log_file) if settings.log_file else logging.StreamHandler(sys.stderr)
        handler.addFilter(_filter)
        for logger in loggers:
            logger.addHandler(handler)
            logger.propagate = False  # a model's own root handler (logging.basicConfig) does not repeat them
    log_format, date_format = LOG_FORMATS[settings.log_format]
    handler.setFormatter(logging.Formatter(log_format, date_format))
    loggers[0].setLevel(logging.DEBUG if settings.log_verbose_level > 0 else logging.INFO)
    _filter.settings = settings
