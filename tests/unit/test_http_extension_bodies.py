"""The trace, logging and repository extension bodies, read as Triton 2.51's HTTP frontend reads
them (each expectation is the reference server's answer to the same body)."""

from __future__ import annotations

import base64

import pytest

from airtower.errors import InternalError, InvalidArgumentError
from airtower.frontends.http.extension_bodies import (
    index_ready,
    load_parameters,
    log_setting_changes,
    trace_setting_changes,
    unload_dependents,
)


def internal(call: object, body: bytes) -> str:
    with pytest.raises(InternalError) as info:
        call(body)  # type: ignore[operator]
    return info.value.message


def test_trace_settings() -> None:
    assert trace_setting_changes(b'{"trace_rate": "5", "trace_level": ["TIMESTAMPS"], "trace_mode": "x", "no": 1}') == {
        "trace_level": ["TIMESTAMPS"],
        "trace_rate": "5",
    }
    assert trace_setting_changes(b'{"trace_count": null, "trace_file": 5}') == {"trace_file": "", "trace_count": None}
    assert trace_setting_changes(b"[1]") == trace_setting_changes(b'"x"') == {}  # not an object: no members
    assert (
        internal(trace_setting_changes, b"") == "failed to parse the request JSON buffer: The document is empty. at 0"
    )
    assert (
        internal(trace_setting_changes, b'{"trace_level": "TIMESTAMPS"}') == "attempt to access JSON non-array as array"
    )
    assert internal(trace_setting_changes, b'{"trace_level": [5]}') == "attempt to access JSON non-string as string"
    assert internal(trace_setting_changes, b'{"trace_rate": 5}') == "attempt to access JSON non-string as string"


def refused(body: bytes) -> tuple[dict[str, bool | int | str], str]:
    """The changes read before the first bad setting, and its InternalError's message."""
    changes, error = log_setting_changes(body)
    assert isinstance(error, InternalError)
    return changes, error.message


def test_log_settings() -> None:
    assert log_setting_changes(b'{"log_info": false, "log_verbose_level": 99999999999, "log_format": null}') == (
        {"log_info": False, "log_verbose_level": 1215752191},  # kept to 32 bits
        None,
    )
    assert log_setting_changes(b"[1]") == log_setting_changes(b'{"nope": 1}') == ({}, None)
    assert log_setting_changes(b'{"log_file": "/x"}') == ({"log_file": ""}, None)  # refused by the server
    assert log_setting_changes(b'{"log_file": null}') == ({}, None)  # null: as any other setting, unchanged
    assert internal(log_setting_changes, b" ") == "failed to parse the request JSON buffer: The document is empty. at 1"
    uint = "attempt to access JSON non-unsigned-integer as unsigned-integer"
    assert refused(b'{"log_verbose_level": -1}') == ({}, uint)
    assert refused(b'{"log_verbose_level": true}') == ({}, uint)
    assert refused(b'{"log_info": 1}') == ({}, "attempt to access JSON non-boolean as boolean")
    assert refused(b'{"log_format": 5}') == ({}, "attempt to access JSON non-string as string")
    # Read in Triton's order (file, info, warning, error, verbose, format), whatever the body's order:
    # the settings before the bad one are kept, the ones after it are not read.
    assert refused(b'{"log_error": false, "log_warning": 3, "log_info": false}') == (
        {"log_info": False},
        "attempt to access JSON non-boolean as boolean",
    )
    assert refused(b'{"log_format": "ISO8601", "log_verbose_level": 2, "log_file": "f", "log_info": 1}') == (
        {"log_file": ""},
        "attempt to access JSON non-boolean as boolean",
    )


def test_repository_bodies() -> None:
    assert index_ready(b"") is False
    assert index_ready(b'{"ready": true}') is True
    assert index_ready(b"[1]") is False
    assert internal(index_ready, b'{"ready": null}') == "attempt to access JSON non-boolean as boolean"
    assert internal(index_ready, b" ") == "failed to parse the request JSON buffer: The document is empty. at 1"
    code = base64.b64encode(b"print(1)").decode()
    body = f'{{"parameters": {{"config": "{{}}", "file:1/model.py": "{code}"}}}}'.encode()
    assert load_parameters(body) == ("{}", {"file:1/model.py": b"print(1)"})
    assert load_parameters(b"") == load_parameters(b"5") == load_parameters(b"{}") == (None, {})
    assert internal(load_parameters, b'{"parameters": 5}') == "attempt to get members for non-object"
    assert internal(load_parameters, b'{"parameters": {"config": {}}}') == "attempt to access JSON non-string as string"
    assert internal(load_parameters, b'{"parameters": {"other": 1}}') == "attempt to access JSON non-string as string"
    assert (
        internal(load_parameters, b'{"parameters": {"other": "x"}}') == "unexpected error on creating Triton parameter"
    )
    with pytest.raises(InvalidArgumentError, match=r"unable to decode base64 content of 'file:1/model\.py'"):
        load_parameters(b'{"parameters": {"file:1/model.py": "!!"}}')
    # An unload reads only a boolean unload_dependents and never fails on its body.
    assert unload_dependents(b'{"parameters": {"unload_dependents": true}}') is True
    for body in (b"", b" ", b"{bad", b"[1]", b'{"parameters": 5}', b'{"parameters": {"unload_dependents": "yes"}}'):
        assert unload_dependents(body) is False
