"""Tracing (triton mode): settings over HTTP and gRPC, and the trace file's records."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.integration.server_process import start_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ORDER = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START",
         "COMPUTE_END", "REQUEST_END"]  # fmt: skip


TWICE = """\
name: "twice"
platform: "ensemble"
max_batch_size: 0
input [ { name: "A" data_type: TYPE_FP32 dims: [ 16 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 16 ] } ]
ensemble_scheduling { step [
  { model_name: "add_sub" model_version: -1
    input_map { key: "INPUT0" value: "A" } input_map { key: "INPUT1" value: "B" }
    output_map { key: "OUTPUT0" value: "S" } },
  { model_name: "add_sub" model_version: -1
    input_map { key: "INPUT0" value: "S" } input_map { key: "INPUT1" value: "B" }
    output_map { key: "OUTPUT0" value: "OUT" } }
] }
"""


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_traced_requests_are_written_with_triton_s_records(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(ROOT / "examples" / "model_repository" / "add_sub", repository / "add_sub")
    (repository / "twice" / "1").mkdir(parents=True)
    (repository / "twice" / "config.pbtxt").write_text(TWICE)
    trace_file = tmp_path / "trace.json"
    server = start_server(
        [repository], f"--trace-config=triton,file={trace_file}", "--trace-config=level=TIMESTAMPS",
        "--trace-config=rate=1",
    )  # fmt: skip
    base = f"http://{server.url}/v2"
    try:
        with urllib.request.urlopen(f"{base}/trace/setting", timeout=30) as response:
            assert json.loads(response.read()) == {
                "trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "-1", "log_frequency": "0",
                "trace_file": str(trace_file), "trace_mode": "triton",
            }  # fmt: skip
        assert post(f"{base}/trace/setting", {"trace_rate": "x"}) == (
            400,
            {"error": "Unable to parse 'trace_rate', got: x"},
        )
        with httpclient.InferenceServerClient(server.url) as client:
            inputs = [httpclient.InferInput(name, [16], "FP32") for name in ("INPUT0", "INPUT1")]
            for tensor in inputs:
                tensor.set_data_from_numpy(np.ones(16, np.float32))
            client.infer("add_sub", inputs, request_id="t1")
            client.infer("add_sub", inputs, request_id="t2")
            ensemble_inputs = [httpclient.InferInput(name, [16], "FP32") for name in ("A", "B")]
            for tensor in ensemble_inputs:
                tensor.set_data_from_numpy(np.ones(16, np.float32))
            client.infer("twice", ensemble_inputs, request_id="e1")
            # Off for this model only: the next request is not traced.
            status, settings = post(f"{base}/models/add_sub/trace/setting", {"trace_level": ["OFF"]})
            assert (status, settings["trace_level"]) == (200, ["OFF"])
            client.infer("add_sub", inputs, request_id="t3")
        with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
            assert grpc.get_trace_settings(as_json=True)["settings"]["trace_level"] == {"value": ["TIMESTAMPS"]}
            updated = grpc.update_trace_settings(settings={"trace_rate": "5"}, as_json=True)
            assert updated["settings"]["trace_rate"] == {"value": ["5"]}
    finally:
        assert server.stop() == 0, server.output()
    records = json.loads(trace_file.read_text())
    heads = [record for record in records if "model_name" in record]
    [ensemble] = [record for record in heads if record["model_name"] == "twice"]
    children = [record for record in heads if record.get("parent_id") == ensemble["id"]]
    assert [(child["model_name"], child["request_id"]) for child in children] == [("add_sub", "e1")] * 2
    traces = {
        record["id"]: record for record in heads if record["model_name"] == "add_sub" and "parent_id" not in record
    }
    assert sorted(record["request_id"] for record in traces.values()) == ["t1", "t2"]
    for trace_id, record in traces.items():
        assert (record["model_name"], record["model_version"]) == ("add_sub", 1)
        stamps = [(r["timestamps"][0]["name"], r["timestamps"][0]["ns"]) for r in records
                  if r["id"] == trace_id and "timestamps" in r]  # fmt: skip
        assert [name for name, _ in stamps] == ORDER
        assert [ns for _, ns in stamps] == sorted(ns for _, ns in stamps)
