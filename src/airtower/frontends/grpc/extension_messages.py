"""The trace, logging and model repository extension messages, read as Triton's gRPC frontend reads them.

Pure functions from a request message to the typed values ``InferenceServer`` takes; a value of
the wrong kind is INVALID_ARG with Triton's gRPC words ("expect boolean for 'log_info'", "invalid
value type for load parameter 'config', expected string_param."). An empty trace setting clears
it, as ``null`` does over HTTP.
"""

from __future__ import annotations

from typing import Any

from airtower.errors import InvalidArgumentError, TritonError
from airtower.observability.log_settings import LOG_FORMATS, LOG_SETTING_TYPES

#: The trace settings the extension reads (``trace_mode`` is fixed at start-up; others ignored).
_TRACE_KEYS = ("trace_file", "trace_level", "trace_rate", "trace_count", "log_frequency")
#: The ``LogSettingsRequest`` parameter each log setting must use, and the word Triton names it by.
_LOG_PARAMETERS: dict[type, tuple[str, str]] = {
    bool: ("bool_param", "boolean"),
    int: ("uint32_param", "int32"),
    str: ("string_param", "string"),
}


def trace_setting_changes(request: Any) -> dict[str, str | list[str] | None]:
    """A ``TraceSettingRequest``'s changes for ``observability.trace.extension_changes``."""
    changes: dict[str, str | list[str] | None] = {}
    for key in _TRACE_KEYS:
        if key not in request.settings:
            continue
        values = list(request.settings[key].value)
        if key == "trace_file":
            changes[key] = ""  # any value, none too: refused by the tracer
        elif not values:
            changes[key] = None
        elif key == "trace_level":
            changes[key] = values
        elif len(values) > 1:
            raise InvalidArgumentError(f"expect only 1 value for '{key}'")
        else:
            changes[key] = values[0]
    return changes


def log_setting_changes(request: Any) -> tuple[dict[str, bool | int | str], TritonError | None]:
    """A ``LogSettingsRequest``'s changes, read in Triton's order up to the first bad setting, and
    that setting's error (None when all were read): Triton applies the ones before it. A
    ``log_file`` is passed on for the server to refuse."""
    settings = request.settings
    changes: dict[str, bool | int | str] = {}
    if "log_file" in settings:
        changes["log_file"] = ""
    for key, kind in LOG_SETTING_TYPES.items():
        if key not in settings:
            continue
        parameter = settings[key]
        field, word = _LOG_PARAMETERS[kind]
        if parameter.WhichOneof("parameter_choice") != field:
            return changes, InvalidArgumentError(f"expect {word} for '{key}'")
        value = getattr(parameter, field)
        if key == "log_format" and value not in LOG_FORMATS:
            return changes, InvalidArgumentError(f"invalid argument for log_format, got: {value}")
        changes[key] = value
    return changes, None


def load_parameters(request: Any) -> tuple[str | None, dict[str, bytes]]:
    """A ``RepositoryModelLoadRequest``'s ``config`` override and ``file:<path>`` contents."""
    config: str | None = None
    files: dict[str, bytes] = {}
    for key, parameter in request.parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if key == "config":
            if choice != "string_param":
                raise InvalidArgumentError(f"invalid value type for load parameter '{key}', expected string_param.")
            config = parameter.string_param
        elif key.startswith("file:"):
            if choice != "bytes_param":
                raise InvalidArgumentError(f"invalid value type for load parameter '{key}', expected bytes_param.")
            files[key] = parameter.bytes_param
        else:
            raise InvalidArgumentError(f"unrecognized load parameter '{key}'.")
    return config, files


def unload_dependents(request: Any) -> bool:
    """A ``RepositoryModelUnloadRequest``'s ``unload_dependents`` parameter (False when absent)."""
    if "unload_dependents" not in request.parameters:
        return False
    parameter = request.parameters["unload_dependents"]
    if parameter.WhichOneof("parameter_choice") != "bool_param":
        raise InvalidArgumentError("invalid value type for 'unload_dependents' parameter, expected bool_param.")
    return bool(parameter.bool_param)
