from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from airtower.core.request import RequestTraceContext
from airtower.core.tensor import Tensor
from airtower.errors import InvalidArgumentError, UnavailableError, UnsupportedError
from airtower.observability.trace import Tracer, TraceSettings, extension_changes, parse_trace_config


def test_trace_config_flags() -> None:
    settings = parse_trace_config([("triton", "file", "/tmp/t.json"), ("", "level", "timestamps"), ("", "rate", "1")])
    assert settings == TraceSettings(level=("TIMESTAMPS",), rate=1, file="/tmp/t.json")
    with pytest.raises(InvalidArgumentError, match="unknown --trace-config setting 'nope'"):
        parse_trace_config([("", "nope", "1")])
    with pytest.raises(InvalidArgumentError, match="Unable to parse 'trace_level', got: LOUD"):
        TraceSettings().updated({"trace_level": ["LOUD"]})


def test_rate_and_count_choose_the_traced_requests() -> None:
    tracer = Tracer(TraceSettings(level=("TIMESTAMPS",), rate=3, count=2, file="/tmp/t.json"))
    sampled = [tracer.sample("m") for _ in range(9)]
    assert [bool(trace_id) for trace_id in sampled] == [True, False, False, True, False, False, False, False, False]
    assert Tracer(TraceSettings(file="/tmp/t.json")).sample("m") == 0  # level OFF by default


def test_settings_that_cannot_trace_trace_nothing() -> None:
    # As Triton: tracing on without a file (triton mode) or at rate 0 is allowed at start-up but
    # traces nothing, so no records pile up in memory with nowhere to go.
    assert TraceSettings(level=("TIMESTAMPS",)).invalid_reason() == "trace file name is not given"
    assert Tracer(TraceSettings(level=("TIMESTAMPS",))).sample("m") == 0
    assert TraceSettings(level=("TIMESTAMPS",), rate=0, file="t").invalid_reason() == "sample rate must be non-zero"
    assert not Tracer(TraceSettings(level=("TIMESTAMPS",), rate=0, file="t")).active


def test_the_extension_reads_values_as_triton_does() -> None:
    # Each expectation is the reference Triton 2.51's answer to the same POST /v2/trace/setting.
    def change(**changes: str | list[str] | None) -> dict[str, object]:
        return dict(extension_changes(changes))

    assert change(trace_rate="12abc") == {"rate": 12}  # std::stoi: a leading number
    assert change(trace_rate=" +7") == {"rate": 7}
    assert change(trace_rate="-1") == {"rate": 4294967295}  # then unsigned 32-bit
    assert change(log_frequency="-2147483648") == {"log_frequency": 2147483648}
    assert change(trace_count="-1") == {"count": -1}
    assert change(trace_rate=None) == {"rate": None}  # null clears
    assert change(trace_level=["TENSORS", "FOO", "TIMESTAMPS", "TENSORS"]) == {"level": ("TIMESTAMPS", "TENSORS")}
    assert change(trace_level=["FOO"]) == change(trace_level=[]) == {}  # no known level: no change
    assert change(trace_mode="opentelemetry", other="1") == {}
    errors = {
        "trace_rate": ("abc", "Unable to parse 'trace_rate', got: abc"),
        "log_frequency": ("", "Unable to parse 'log_frequency', got: "),
        "trace_count": ("-2", "Unable to parse 'trace_count'. Expecting value >= -1, got:-2"),
    }
    for key, (value, message) in errors.items():
        with pytest.raises(InvalidArgumentError) as info:
            extension_changes({key: value})
        assert info.value.message == message
    out_of_range = {
        ("trace_rate", "2147483648"): "[ 0, 4294967295 ], got: 2147483648",
        ("trace_count", "-99999999999"): "[ -1, 2147483647 ], got: -99999999999",
    }
    for (key, value), limits in out_of_range.items():
        with pytest.raises(InvalidArgumentError) as info:
            extension_changes({key: value})
        assert info.value.message == f"Unable to parse '{key}', value is out of range {limits}"
    with pytest.raises(InvalidArgumentError, match=r"^Expect only one trace level 'OFF' is specified$"):
        extension_changes({"trace_level": ["OFF", "TIMESTAMPS"]})
    with pytest.raises(UnsupportedError):  # checked first, whatever else is wrong
        extension_changes({"trace_level": ["OFF", "TIMESTAMPS"], "trace_file": None})


def test_a_change_that_leaves_tracing_unable_to_trace_is_refused() -> None:
    tracer = Tracer(TraceSettings())  # no file
    with pytest.raises(
        InvalidArgumentError, match=r"^Attempting to set invalid trace setting :trace file name is not given$"
    ):
        tracer.update("", {"trace_level": ["TIMESTAMPS"]})
    with pytest.raises(
        InvalidArgumentError, match=r"^Attempting to set invalid trace setting :trace file name is not given$"
    ):
        tracer.update("m", {"trace_level": ["TENSORS"]})
    assert tracer.update("", {"trace_rate": "0"}).rate == 0  # allowed while tracing is off
    tracer = Tracer(TraceSettings(level=("TIMESTAMPS",), file="/tmp/t.json"))
    with pytest.raises(InvalidArgumentError, match=r":sample rate must be non-zero$"):
        tracer.update("", {"trace_rate": "0"})
    assert tracer.settings.rate == 1000  # nothing applied


def test_models_follow_the_global_settings_they_did_not_set_and_null_clears() -> None:
    tracer = Tracer(TraceSettings(rate=1000, file="/tmp/t.json"))
    assert tracer.update("m", {"trace_rate": "5"}).rate == 5
    tracer.update("", {"trace_count": "10", "trace_rate": "7"})
    assert (tracer.settings_for("m").rate, tracer.settings_for("m").count) == (5, 10)
    assert tracer.update("m", {"trace_rate": None}).rate == 7  # the model's own cleared: the global one
    assert tracer.update("", {"trace_rate": None, "trace_count": None}).rate == 1000  # the start-up value
    assert tracer.settings_for("m") == tracer.settings


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


def test_opentelemetry_settings_from_the_command_line() -> None:
    settings = parse_trace_config(
        [("", "mode", "opentelemetry"), ("opentelemetry", "url", "collector:4318/v1/traces"),
         ("opentelemetry", "resource", "service.name=svc"), ("opentelemetry", "resource", "team=ml"),
         ("opentelemetry", "bsp_schedule_delay", "200"), ("", "level", "TIMESTAMPS")]
    )  # fmt: skip
    assert settings.mode == "opentelemetry"
    assert settings.resource == ("service.name=svc", "team=ml")
    assert settings.to_json() == {
        "trace_level": ["TIMESTAMPS"], "trace_rate": "1000", "trace_count": "-1", "trace_mode": "opentelemetry",
        "url": "collector:4318/v1/traces", "resource": "service.name=svc,team=ml", "bsp_max_export_batch_size": "512",
        "bsp_schedule_delay": "200", "bsp_max_queue_size": "2048",
    }  # fmt: skip
    with pytest.raises(InvalidArgumentError, match="Unable to parse 'bsp_max_queue_size', got: many"):
        parse_trace_config([("opentelemetry", "bsp_max_queue_size", "many")])
    with pytest.raises(InvalidArgumentError, match="resource expects key=value"):
        parse_trace_config([("opentelemetry", "resource", "novalue")])
    with pytest.raises(InvalidArgumentError, match="Unable to parse 'trace_mode', got: zipkin"):
        parse_trace_config([("", "mode", "zipkin")])


def test_the_extension_cannot_change_the_file_or_the_mode() -> None:
    tracer = Tracer(TraceSettings(level=("TIMESTAMPS",), file="/tmp/t.json"))
    with pytest.raises(UnsupportedError, match="trace file location can not be updated through network protocol"):
        tracer.update("", {"trace_file": "/tmp/other.json"})
    assert tracer.update("", {"trace_mode": "opentelemetry", "trace_rate": "7"}).mode == "triton"
    assert tracer.settings.rate == 7


def test_tracing_is_active_while_any_model_may_be_traced() -> None:
    tracer = Tracer(TraceSettings(file="/tmp/t.json"))

    def active() -> bool:
        return tracer.active

    assert not active()
    tracer.update("one", {"trace_level": ["TIMESTAMPS"]})
    assert active()
    tracer.update("one", {"trace_level": ["OFF"]})
    assert not active()


def test_opentelemetry_mode_without_the_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "airtower.observability.otel", raising=False)
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(UnavailableError, match=r"pip install 'airtower\[opentelemetry\]'"):
        Tracer(TraceSettings(mode="opentelemetry"))


def test_frontend_timestamps_wrap_the_model_s_in_one_trace(tmp_path: Path) -> None:
    trace_file = tmp_path / "t.json"
    tracer = Tracer(TraceSettings(level=("TIMESTAMPS",), rate=1, file=str(trace_file)))
    context = RequestTraceContext("GRPC", {}, (1, 2))
    trace_id = tracer.sample("m", context)
    tracer.add(trace_id, "m", 1, "r", [("REQUEST_START", 3), ("REQUEST_END", 4)])
    tracer.flush()
    assert not trace_file.exists()  # held until the frontend has sent the response
    tracer.finish(context, (5, 6, 7))
    tracer.flush()
    records = json.loads(trace_file.read_text())
    # Triton's order: the receive timestamps, the model record and its timestamps, the response's.
    assert records[2] == {"id": trace_id, "model_name": "m", "model_version": 1, "request_id": "r"}
    assert [(r["timestamps"][0]["name"], r["timestamps"][0]["ns"]) for r in records[:2] + records[3:]] == [
        ("GRPC_WAITREAD_START", 1), ("GRPC_WAITREAD_END", 2), ("REQUEST_START", 3), ("REQUEST_END", 4),
        ("INFER_RESPONSE_COMPLETE", 5), ("GRPC_SEND_START", 6), ("GRPC_SEND_END", 7),
    ]  # fmt: skip


def _timestamps(names: list[str]) -> list[tuple[str, int]]:
    return [(name, index) for index, name in enumerate(names, start=1)]


def test_tensors_level_records_inputs_and_outputs_as_triton_writes_them(tmp_path: Path) -> None:
    trace_file = tmp_path / "t.json"
    tracer = Tracer(TraceSettings(level=("TIMESTAMPS", "TENSORS"), rate=1, file=str(trace_file)))
    inputs = [Tensor.from_numpy("F", "FP32", np.array([0.5, 1e-7, 123456789.0, 1 / 3, 1e20, 0], np.float32)),
              Tensor.from_numpy("S", "BYTES", np.array([[b"ab"], [b"c"]], np.object_))]  # fmt: skip
    outputs = [Tensor.from_numpy("B", "BOOL", np.array([True, False])), Tensor.from_numpy("I", "INT64", np.arange(3))]
    stamps = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START",
              "COMPUTE_END", "REQUEST_END"]  # fmt: skip
    tracer.add(
        tracer.sample("m", RequestTraceContext("HTTP", {}, (0, 0))), "m", 1, "", _timestamps(stamps)
    )  # no tensors
    tracer.add(7, "m", 1, "", _timestamps(stamps), tensors=(inputs, outputs))
    tracer.flush()
    records = [record for record in json.loads(trace_file.read_text()) if record["id"] == 7]
    order = [
        record.get("activity") or record.get("model_name") or record["timestamps"][0]["name"] for record in records
    ]
    assert order == ["m", "REQUEST_START", "QUEUE_START", "TENSOR_QUEUE_INPUT", "TENSOR_QUEUE_INPUT", "COMPUTE_START",
                     "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START", "TENSOR_BACKEND_OUTPUT", "TENSOR_BACKEND_OUTPUT",
                     "COMPUTE_END", "REQUEST_END"]  # fmt: skip
    tensors = [record["tensor"] for record in records if "tensor" in record]
    assert tensors == [
        {"name": "F", "data": "0.5,1e-07,1.23457e+08,0.333333,1e+20,0", "shape": "6", "dtype": "FP32"},
        {"name": "S", "data": '"ab","c"', "shape": "2,1", "dtype": "BYTES"},
        {"name": "B", "data": "1,0", "shape": "2", "dtype": "BOOL"},
        {"name": "I", "data": "0,1,2", "shape": "3", "dtype": "INT64"},
    ]


def test_tensors_level_alone_records_only_tensors(tmp_path: Path) -> None:
    trace_file = tmp_path / "t.json"
    tracer = Tracer(TraceSettings(level=("TENSORS",), rate=1, file=str(trace_file)))
    context = RequestTraceContext("HTTP", {}, (1, 2))
    trace_id = tracer.sample("m", context)
    assert trace_id  # TENSORS alone turns tracing on
    tensor = Tensor.from_numpy("X", "INT32", np.array([4, 5], np.int32))
    tracer.add(trace_id, "m", 1, "r", _timestamps(["REQUEST_START", "COMPUTE_START", "COMPUTE_END"]),
               tensors=([tensor], [tensor]))  # fmt: skip
    tracer.finish(context, (3, 4, 5))
    tracer.flush()
    assert json.loads(trace_file.read_text()) == [  # as Triton 2.51 writes it: no model record, no timestamps
        {"id": trace_id, "activity": "TENSOR_QUEUE_INPUT",
         "tensor": {"name": "X", "data": "4,5", "shape": "2", "dtype": "INT32"}},
        {"id": trace_id, "activity": "TENSOR_BACKEND_OUTPUT",
         "tensor": {"name": "X", "data": "4,5", "shape": "2", "dtype": "INT32"}},
    ]  # fmt: skip


def test_log_frequency_writes_each_group_of_traces_to_its_own_file(tmp_path: Path) -> None:
    trace_file = tmp_path / "t.json"
    tracer = Tracer(TraceSettings(level=("TIMESTAMPS",), rate=1, log_frequency=2, file=str(trace_file)))
    for trace_id in (1, 2, 3):
        tracer.add(trace_id, "m", 1, "", [("REQUEST_START", trace_id)])
    tracer.close()  # what is left at exit goes to the next file
    assert not trace_file.exists()  # as Triton: <file>.<index> only
    first = json.loads((tmp_path / "t.json.0").read_text())
    second = json.loads((tmp_path / "t.json.1").read_text())
    assert sorted({record["id"] for record in first}) == [1, 2]
    assert {record["id"] for record in second} == {3}
