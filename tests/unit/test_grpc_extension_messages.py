"""The trace, logging and repository extension messages, read as Triton 2.51's gRPC frontend reads
them (each expected message is the reference server's)."""

from __future__ import annotations

import pytest
from tritonclient.grpc import service_pb2

from airtower.errors import InvalidArgumentError
from airtower.frontends.grpc.extension_messages import (
    load_parameters,
    log_setting_changes,
    trace_setting_changes,
    unload_dependents,
)


def trace_request(**settings: list[str]) -> service_pb2.TraceSettingRequest:
    request = service_pb2.TraceSettingRequest()
    for key, values in settings.items():
        request.settings[key].value.extend(values)
    return request


def log_request(**settings: bool | int | str | None) -> service_pb2.LogSettingsRequest:
    request = service_pb2.LogSettingsRequest()
    for key, value in settings.items():
        if value is None:
            request.settings[key].SetInParent()
        elif isinstance(value, bool):
            request.settings[key].bool_param = value
        elif isinstance(value, int):
            request.settings[key].uint32_param = value
        else:
            request.settings[key].string_param = value
    return request


def invalid(call: object, request: object) -> str:
    with pytest.raises(InvalidArgumentError) as info:
        call(request)  # type: ignore[operator]
    return info.value.message


def test_trace_settings() -> None:
    request = trace_request(trace_level=["TIMESTAMPS", "TENSORS"], trace_rate=["7"], trace_count=[], trace_mode=["x"])
    assert trace_setting_changes(request) == {
        "trace_level": ["TIMESTAMPS", "TENSORS"],
        "trace_rate": "7",
        "trace_count": None,
    }
    assert trace_setting_changes(trace_request(trace_level=[])) == {"trace_level": None}  # empty clears
    assert trace_setting_changes(trace_request(trace_file=[])) == {"trace_file": ""}  # refused by the tracer
    assert (
        invalid(trace_setting_changes, trace_request(trace_rate=["5", "6"])) == "expect only 1 value for 'trace_rate'"
    )


def refused(request: object) -> tuple[dict[str, bool | int | str], str]:
    """The changes read before the first bad setting, and its INVALID_ARG message."""
    changes, error = log_setting_changes(request)
    assert isinstance(error, InvalidArgumentError)
    return changes, error.message


def test_log_settings() -> None:
    assert log_setting_changes(log_request(log_info=False, log_verbose_level=2, log_format="ISO8601", nope=1)) == (
        {"log_info": False, "log_verbose_level": 2, "log_format": "ISO8601"},
        None,
    )
    assert refused(log_request(log_verbose_level="x")) == ({}, "expect int32 for 'log_verbose_level'")
    assert refused(log_request(log_info=3)) == ({}, "expect boolean for 'log_info'")
    assert refused(log_request(log_warning=None)) == ({}, "expect boolean for 'log_warning'")
    assert refused(log_request(log_format=True)) == ({}, "expect string for 'log_format'")
    assert refused(log_request(log_format="xml")) == ({}, "invalid argument for log_format, got: xml")
    # Read in Triton's order up to the bad setting: Triton applies the ones before it.
    assert refused(log_request(log_format="xml", log_error=False, log_info=True)) == (
        {"log_info": True, "log_error": False},
        "invalid argument for log_format, got: xml",
    )
    assert refused(log_request(log_verbose_level=1, log_warning=2, log_file="f")) == (
        {"log_file": ""},
        "expect boolean for 'log_warning'",
    )


def test_repository_messages() -> None:
    load = service_pb2.RepositoryModelLoadRequest(model_name="m")
    load.parameters["config"].string_param = "{}"
    load.parameters["file:1/model.py"].bytes_param = b"code"
    assert load_parameters(load) == ("{}", {"file:1/model.py": b"code"})
    load.parameters["config"].bytes_param = b"{}"
    assert invalid(load_parameters, load) == "invalid value type for load parameter 'config', expected string_param."
    load = service_pb2.RepositoryModelLoadRequest(model_name="m")
    load.parameters["file:1/model.py"].string_param = "code"
    assert invalid(load_parameters, load) == (
        "invalid value type for load parameter 'file:1/model.py', expected bytes_param."
    )
    load = service_pb2.RepositoryModelLoadRequest(model_name="m")
    load.parameters["other"].int64_param = 1
    assert invalid(load_parameters, load) == "unrecognized load parameter 'other'."
    unload = service_pb2.RepositoryModelUnloadRequest(model_name="m")
    assert unload_dependents(unload) is False
    unload.parameters["unload_dependents"].bool_param = True
    assert unload_dependents(unload) is True
    unload.parameters["unload_dependents"].string_param = "yes"
    assert invalid(unload_dependents, unload) == (
        "invalid value type for 'unload_dependents' parameter, expected bool_param."
    )
