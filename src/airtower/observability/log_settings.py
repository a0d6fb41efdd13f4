"""Log settings: Triton's logging extension (``/v2/logging``, gRPC ``LogSettings``) applied live.

The settings are the flags ``--log-info``, ``--log-warning``, ``--log-error``, ``--log-verbose``,
``--log-format`` (``default`` or ``ISO8601``) and ``--log-file``; an update over the network may
change all but the file, with Triton's errors. They drive Python's ``logging`` for the whole
process (``pb_utils.Logger`` writes there too): verbose > 0 shows DEBUG records; a severity
switched off is filtered out at the handlers.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, replace
from typing import Any

from airtower.errors import InternalError, UnavailableError, UnsupportedError

#: ``default``: Triton's glog-like ``I1125 18:12:11.060 <pid> <logger>] message``.
_FORMATS = {
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

    def updated(self, changes: dict[str, Any]) -> LogSettings:
        """These settings with ``changes`` (the request's JSON object) applied; unknown keys are ignored.

        Raises:
            UnsupportedError: ``log_file`` (it can't be changed over the network).
            InternalError: a value of the wrong JSON type (Triton's wording).
            UnavailableError: an unknown ``log_format``.
        """
        if "log_file" in changes:
            raise UnsupportedError("log file location can not be updated through network protocol")
        fields: dict[str, Any] = {}
        for key in ("log_info", "log_warning", "log_error"):
            if key in changes:
                if type(changes[key]) is not bool:
                    raise InternalError("attempt to access JSON non-boolean as boolean")
                fields[key] = changes[key]
        if "log_verbose_level" in changes:
            level = changes["log_verbose_level"]
            if type(level) is not int or level < 0:
                raise InternalError("attempt to access JSON non-unsigned-integer as unsigned-integer")
            fields["log_verbose_level"] = level
        if "log_format" in changes:
            log_format = changes["log_format"]
            if type(log_format) is not str:
                raise InternalError("attempt to access JSON non-string as string")
            if log_format not in _FORMATS:
                raise UnavailableError(f"invalid argument for --log_format, got: {log_format}")
            fields["log_format"] = log_format
        return replace(self, **fields)


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


def apply(settings: LogSettings) -> None:
    """Make the process's logging follow ``settings`` (the first call installs the handler)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if _filter in h.filters), None)
    if handler is None:
        handler = logging.FileHandler(settings.log_file) if settings.log_file else logging.StreamHandler(sys.stderr)
        handler.addFilter(_filter)
        root.addHandler(handler)
    log_format, date_format = _FORMATS[settings.log_format]
    handler.setFormatter(logging.Formatter(log_format, date_format))
    root.setLevel(logging.DEBUG if settings.log_verbose_level > 0 else logging.INFO)
    _filter.settings = settings
