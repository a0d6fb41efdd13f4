"""The JSON bodies of the trace, logging, model repository and shared-memory extensions, read as
Triton reads them.

Pure functions from a request body to the typed values ``InferenceServer`` takes. Triton's HTTP
frontend reads these bodies leniently and in a fixed way, which clients may rely on:

- a body that is not a JSON object is read as one without members (the current settings, or an
  index of every model), but a body that is not JSON at all is an error (for trace and logging
  even an empty one; the repository endpoints take an empty body);
- a member of the wrong JSON type is INTERNAL with RapidJSON's words ("attempt to access JSON
  non-string as string");
- ``null`` clears a trace setting and leaves a log setting as it is;
- an unload reads its body only for ``unload_dependents``, and a body it cannot read unloads
  without dependents (Triton drops that error).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, cast

from airtower.errors import InternalError, InvalidArgumentError, TritonError
from airtower.frontends.http.codec import JSON_NOT_BOOL, JSON_NOT_STRING, parse_json_body
from airtower.observability.log_settings import LOG_SETTING_TYPES

_JSON_NOT_ARRAY = "attempt to access JSON non-array as array"
_JSON_NOT_UINT = "attempt to access JSON non-unsigned-integer as unsigned-integer"
_NOT_OBJECT_MEMBERS = "attempt to get members for non-object"
#: The trace settings the extension reads, in the order Triton reads them.
_TRACE_KEYS = ("trace_file", "trace_level", "trace_rate", "trace_count", "log_frequency")
_JSON_TYPE_ERRORS: dict[type, str] = {bool: JSON_NOT_BOOL, int: _JSON_NOT_UINT, str: JSON_NOT_STRING}


def _members(document: Any) -> dict[str, Any]:
    return document if type(document) is dict else {}


def trace_setting_changes(body: bytes) -> dict[str, str | list[str] | None]:
    """``POST /v2/trace/setting``: the changes for ``observability.trace.extension_changes``
    (``trace_level`` a list of names, the others strings, None to clear; ``trace_mode`` and
    unknown keys dropped)."""
    document = _members(parse_json_body(body))
    changes: dict[str, str | list[str] | None] = {}
    for key in _TRACE_KEYS:
        if key not in document:
            continue
        value = document[key]
        if key == "trace_file":
            changes[key] = ""  # any value, null too: refused by the tracer
        elif value is None:
            changes[key] = None
        elif key == "trace_level":
            if type(value) is not list:
                raise InternalError(_JSON_NOT_ARRAY)
            if any(type(name) is not str for name in value):
                raise InternalError(JSON_NOT_STRING)
            changes[key] = value
        elif type(value) is str:
            changes[key] = value
        else:
            raise InternalError(JSON_NOT_STRING)
    return changes


def log_setting_changes(body: bytes) -> tuple[dict[str, bool | int | str], TritonError | None]:
    """``POST /v2/logging``: the settings to change, read in Triton's order up to the first of the
    wrong type, and that setting's error (None when all were read): Triton applies the ones before
    it. Nulls are skipped; ``log_verbose_level`` is an unsigned 64-bit JSON number kept to its low
    32 bits, as Triton stores it; a ``log_file`` is passed on for the server to refuse.

    Raises:
        InternalError: a body that is not JSON (nothing is applied).
    """
    document = _members(parse_json_body(body))
    changes: dict[str, bool | int | str] = {}
    if document.get("log_file") is not None:
        changes["log_file"] = ""
    for key, kind in LOG_SETTING_TYPES.items():
        value: Any = document.get(key)
        if value is None:
            continue
        if kind is int:  # unsigned; bool is not int here, as in JSON
            if type(value) is not int or value < 0:
                return changes, InternalError(_JSON_NOT_UINT)
            changes[key] = value % 2**32
        elif isinstance(value, kind):  # bool or str
            changes[key] = cast("bool | str", value)
        else:
            return changes, InternalError(_JSON_TYPE_ERRORS[kind])
    return changes, None


def index_ready(body: bytes) -> bool:
    """``POST /v2/repository/index``: the optional ``ready`` member."""
    if not body:
        return False
    ready = _members(parse_json_body(body)).get("ready", False)
    if type(ready) is not bool:
        raise InternalError(JSON_NOT_BOOL)
    return ready


def load_parameters(body: bytes) -> tuple[str | None, dict[str, bytes]]:
    """``POST /v2/repository/models/<m>/load``: the ``config`` override and ``file:<path>``
    contents (base64 in the body). Every parameter must be a string, as in Triton."""
    if not body:
        return None, {}
    document = _members(parse_json_body(body))
    if "parameters" not in document:
        return None, {}
    parameters = document["parameters"]
    if type(parameters) is not dict:
        raise InternalError(_NOT_OBJECT_MEMBERS)
    config: str | None = None
    files: dict[str, bytes] = {}
    for key, value in parameters.items():
        if type(value) is not str:
            raise InternalError(JSON_NOT_STRING)
        if key == "config":
            config = value
        elif key.startswith("file:"):
            try:
                files[key] = base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise InvalidArgumentError(f"unable to decode base64 content of '{key}'") from exc
        else:
            raise InternalError("unexpected error on creating Triton parameter")
    return config, files


def unload_dependents(body: bytes) -> bool:
    """``POST /v2/repository/models/<m>/unload``: ``parameters.unload_dependents`` when the body
    holds it as a boolean, else False (Triton unloads anyway when it cannot read the body)."""
    if not body:
        return False
    try:
        document = _members(parse_json_body(body))
    except TritonError:
        return False
    value = _members(document.get("parameters")).get("unload_dependents", False)
    return value if type(value) is bool else False


def shared_memory_region(body: bytes) -> tuple[str, int, int]:
    """``POST /v2/systemsharedmemory/region/<r>/register``: ``key``, ``offset`` (default 0) and
    ``byte_size``; a missing key or size is 400 with Triton's words."""
    document = _members(parse_json_body(body))
    if "key" not in document:
        raise InvalidArgumentError("Shared memory register request has no 'key' field")
    key = document["key"]
    if type(key) is not str:
        raise InternalError(JSON_NOT_STRING)
    offset = document.get("offset", 0)
    if type(offset) is not int or offset < 0:
        raise InternalError(_JSON_NOT_UINT)
    if "byte_size" not in document:
        raise InvalidArgumentError("Shared memory register request has no 'byte_size' field")
    byte_size = document["byte_size"]
    if type(byte_size) is not int or byte_size < 0:
        raise InternalError(_JSON_NOT_UINT)
    return key, offset, byte_size
