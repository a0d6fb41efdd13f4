from __future__ import annotations

import json
from pathlib import Path

import pytest

from airtower.errors import InvalidArgumentError
from airtower.observability.trace import Tracer, TraceSettings, parse_trace_config


def test_trace_config_flags() -> None:
    settings = parse_trace_config([("triton", "file", "/tmp/t.json"), ("", "level", "timestamps"), ("", "rate", "1")])
    assert settings == TraceSettings(level=("TIMESTAMPS",), rate=1, file="/tmp/t.json")
    with pytest.raises(InvalidArgumentError, match="unknown --trace-config setting 'nope'"):
        parse_trace_config([("", "nope", "1")])
    with pytest.raises(InvalidArgumentError, match="Unable to parse 'trace_level', got: LOUD"):
        TraceSettings().updated({"trace_level": ["LOUD"]})


def test_rate_and_count_choose_the_traced_requests() -> None:
    tracer = Tracer(TraceSettings(level=("TIMESTAMPS",), rate=3, count=2))
    sampled = [tracer.sample("m") for _ in range(9)]
    assert [bool(trace_id) for trace_id in sampled] == [True, False, False, True, False, False, False, False, False]
    assert Tracer(TraceSettings()).sample("m") == 0  # level OFF by default


def test_per_model_settings_override_the_global_ones(tmp_path: Path) -> None:
    tracer = Tracer(TraceSettings(level=("TIMESTAMPS",), rate=1, file=str(tmp_path / "t.json")))
    tracer.update("quiet", {"trace_level": ["OFF"]})
    assert tracer.sample("quiet") == 0
    trace_id = tracer.sample("loud")
    assert trace_id
    tracer.add(trace_id, "loud", 1, "r", [("REQUEST_START", 5), ("REQUEST_END", 9)])
    tracer.flush()
    assert json.loads((tmp_path / "t.json").read_text()) == [
        {"id": trace_id, "model_name": "loud", "model_version": 1, "request_id": "r"},
        {"id": trace_id, "timestamps": [{"name": "REQUEST_START", "ns": 5}]},
        {"id": trace_id, "timestamps": [{"name": "REQUEST_END", "ns": 9}]},
    ]
