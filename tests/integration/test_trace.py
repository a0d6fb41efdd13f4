"""Tracing (triton mode): settings over HTTP and gRPC, and the trace file's records."""

from __future__ import annotations

import http.server
import json
import queue
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.fixture_models import write_python_model
from tests.integration.server_process import start_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL_ORDER = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START",
               "COMPUTE_END", "REQUEST_END"]  # fmt: skip
#: A request the HTTP frontend received: its timestamps around the model's, in Triton's order.
ORDER = ["HTTP_RECV_START", "HTTP_RECV_END", *MODEL_ORDER, "INFER_RESPONSE_COMPLETE", "HTTP_SEND_START",
         "HTTP_SEND_END"]  # fmt: skip


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


BLS_CONFIG = """\
name: "bls_traced"
backend: "python"
max_batch_size: 0
input [ { name: "A" data_type: TYPE_FP32 dims: [ 16 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 16 ] } ]
"""
#: Calls add_sub twice through BLS: once as a child of its own trace (``trace=request.trace()``), once not.
BLS_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            inputs = [pb_utils.Tensor("INPUT0", pb_utils.get_input_tensor_by_name(request, "A").as_numpy()),
                      pb_utils.Tensor("INPUT1", pb_utils.get_input_tensor_by_name(request, "B").as_numpy())]
            traced = pb_utils.InferenceRequest(model_name="add_sub", requested_output_names=["OUTPUT0"],
                                               inputs=inputs, trace=request.trace()).exec()
            pb_utils.InferenceRequest(model_name="add_sub", requested_output_names=["OUTPUT0"], inputs=inputs).exec()
            out = pb_utils.Tensor("OUT", traced.output_tensors()[0].as_numpy())
            responses.append(pb_utils.InferenceResponse([out]))
        return responses
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
    write_python_model(repository / "bls_traced", BLS_CONFIG, BLS_MODEL)
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
        # As Triton: the file cannot be changed over the network, and the mode stays what it was.
        assert post(f"{base}/trace/setting", {"trace_file": str(tmp_path / "elsewhere.json")}) == (
            501,
            {"error": "trace file location can not be updated through network protocol"},
        )
        assert post(f"{base}/trace/setting", {"trace_mode": "opentelemetry"})[1]["trace_mode"] == "triton"
        # Triton's other answers: an unknown model, a setting that would trace nothing, null.
        assert post(f"{base}/models/nope/trace/setting", {"trace_rate": "5"}) == (
            400,
            {"error": "Request for unknown model : nope"},
        )
        assert post(f"{base}/trace/setting", {"trace_rate": "0"}) == (
            400,
            {"error": "Attempting to set invalid trace setting :sample rate must be non-zero"},
        )
        assert post(f"{base}/models/twice/trace/setting", {"trace_rate": "7"})[1]["trace_rate"] == "7"
        assert post(f"{base}/trace/setting", {"trace_count": "50"})[1]["trace_count"] == "50"
        assert post(f"{base}/models/twice/trace/setting", {"trace_rate": None})[1] == {
            "trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "50", "log_frequency": "0",
            "trace_file": str(trace_file), "trace_mode": "triton",
        }  # fmt: skip
        assert post(f"{base}/trace/setting", {"trace_count": None})[1]["trace_count"] == "-1"
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
            client.infer("bls_traced", ensemble_inputs, request_id="b1")
            # Off for this model only: the next request is not traced.
            status, settings = post(f"{base}/models/add_sub/trace/setting", {"trace_level": ["OFF"]})
            assert (status, settings["trace_level"]) == (200, ["OFF"])
            client.infer("add_sub", inputs, request_id="t3")
        with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
            assert grpc.get_trace_settings(as_json=True)["settings"]["trace_level"] == {"value": ["TIMESTAMPS"]}
            updated = grpc.update_trace_settings(settings={"trace_rate": "5"}, as_json=True)
            assert updated["settings"]["trace_rate"] == {"value": ["5"]}
            with pytest.raises(InferenceServerException, match="expect only 1 value for 'trace_count'"):
                grpc.update_trace_settings(settings={"trace_count": ["1", "2"]})
    finally:
        assert server.stop() == 0, server.output()
    records = json.loads(trace_file.read_text())
    heads = [record for record in records if "model_name" in record]
    [ensemble] = [record for record in heads if record["model_name"] == "twice"]
    children = [record for record in heads if record.get("parent_id") == ensemble["id"]]
    assert [(child["model_name"], child["request_id"]) for child in children] == [("add_sub", "e1")] * 2
    [bls] = [record for record in heads if record["model_name"] == "bls_traced"]
    bls_children = [record for record in heads if record.get("parent_id") == bls["id"]]
    assert [child["model_name"] for child in bls_children] == ["add_sub"]  # the request made with its trace only
    for child in children + bls_children:  # a child has no frontend of its own: only the model's timestamps
        names = [r["timestamps"][0]["name"] for r in records if r["id"] == child["id"] and "timestamps" in r]
        assert names == MODEL_ORDER
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


class OtlpReceiver:
    """An OTLP/HTTP trace receiver on a free loopback port: keeps every span it is sent."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        received: list[Any] = []
        self.requests = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                message = trace_service_pb2.ExportTraceServiceRequest()
                message.ParseFromString(body)
                received.append(message)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        out = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    out += [(attributes, span) for span in scope.spans]
        return out

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_opentelemetry_mode_exports_triton_s_spans_with_context_propagation(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(ROOT / "examples" / "model_repository" / "add_sub", repository / "add_sub")
    (repository / "twice" / "1").mkdir(parents=True)
    (repository / "twice" / "config.pbtxt").write_text(TWICE)
    write_python_model(repository / "bls_traced", BLS_CONFIG, BLS_MODEL)
    receiver = OtlpReceiver()
    server = start_server(
        [repository], "--trace-config=mode=opentelemetry", "--trace-config=level=TIMESTAMPS",
        "--trace-config=rate=1", f"--trace-config=opentelemetry,url=127.0.0.1:{receiver.port}/v1/traces",
        "--trace-config=opentelemetry,resource=test.key=test.value",
        "--trace-config=opentelemetry,resource=service.name=test_triton",
        "--trace-config=opentelemetry,bsp_schedule_delay=100",
    )  # fmt: skip
    client_trace, client_span = "0af7651916cd43dd8448eb211c12666c", "b7ad6b7169242424"
    try:
        with urllib.request.urlopen(f"http://{server.url}/v2/trace/setting", timeout=30) as response:
            assert json.loads(response.read()) == {
                "trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "-1", "trace_mode": "opentelemetry",
                "url": f"127.0.0.1:{receiver.port}/v1/traces",
                "resource": "test.key=test.value,service.name=test_triton",
                "bsp_max_export_batch_size": "512", "bsp_schedule_delay": "100", "bsp_max_queue_size": "2048",
            }  # fmt: skip
        with httpclient.InferenceServerClient(server.url) as client:
            inputs = [httpclient.InferInput(name, [16], "FP32") for name in ("INPUT0", "INPUT1")]
            for tensor in inputs:
                tensor.set_data_from_numpy(np.ones(16, np.float32))
            client.infer(
                "add_sub", inputs, request_id="h1", headers={"traceparent": f"00-{client_trace}-{client_span}-01"}
            )
            ensemble_inputs = [httpclient.InferInput(name, [16], "FP32") for name in ("A", "B")]
            for tensor in ensemble_inputs:
                tensor.set_data_from_numpy(np.ones(16, np.float32))
            client.infer("twice", ensemble_inputs, request_id="e1")
            client.infer("bls_traced", ensemble_inputs, request_id="b1")
        with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
            grpc_inputs = [grpcclient.InferInput(name, [16], "FP32") for name in ("INPUT0", "INPUT1")]
            for tensor in grpc_inputs:
                tensor.set_data_from_numpy(np.ones(16, np.float32))
            grpc.infer("add_sub", grpc_inputs, request_id="g1")
            streamed: queue.Queue[Any] = queue.Queue()
            grpc.start_stream(callback=lambda result, error: streamed.put(error or result), headers={
                "traceparent": f"00-{client_trace}-{client_span}-01"})  # fmt: skip
            grpc.async_stream_infer("add_sub", grpc_inputs, request_id="s1")
            assert streamed.get(timeout=60).as_numpy("OUTPUT0") is not None
            grpc.stop_stream()
    finally:
        assert server.stop() == 0, server.output()  # the exporter flushes its queue on shutdown
        receiver.close()
    received = receiver.spans()
    assert received, "no spans reached the OTLP receiver"
    for resource, _ in received:
        assert resource["service.name"] == "test_triton"
        assert resource["test.key"] == "test.value"
    spans = [span for _, span in received]
    by_id = {span.span_id: span for span in spans}

    def events(span: Any) -> list[str]:
        return [event.name for event in span.events]

    def children(parent: Any) -> list[Any]:
        return sorted((s for s in spans if s.parent_span_id == parent.span_id), key=lambda s: s.name)

    def attributes(span: Any) -> dict[str, Any]:
        return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}

    roots = [span for span in spans if span.name == "InferRequest"]
    assert len(roots) == 5
    # A root per request; add_sub x3: model + compute; twice: 1 + 2 steps x 2; bls_traced: model + compute + its
    # traced BLS call (model + compute); the BLS call made without the trace has no span (Triton's rule).
    assert len(spans) == 5 + 3 * 2 + 5 + 4
    http_events = ["HTTP_RECV_START", "HTTP_RECV_END", "INFER_RESPONSE_COMPLETE", "HTTP_SEND_START", "HTTP_SEND_END"]
    grpc_events = ["GRPC_WAITREAD_START", "GRPC_WAITREAD_END", "INFER_RESPONSE_COMPLETE", "GRPC_SEND_START",
                   "GRPC_SEND_END"]  # fmt: skip
    for root in roots:
        [model] = children(root)
        assert model.parent_span_id == root.span_id
        assert model.trace_id == root.trace_id
        request_id = attributes(model)["triton.request_id"]
        assert events(root) == (grpc_events if request_id in ("g1", "s1") else http_events)
        if request_id in ("h1", "s1"):  # the client's context: same trace, the client's span as parent
            assert (root.trace_id.hex(), root.parent_span_id.hex()) == (client_trace, client_span)
        else:
            assert root.parent_span_id == b""
        if model.name == "add_sub":
            assert events(model) == ["REQUEST_START", "QUEUE_START", "REQUEST_END"]
            assert attributes(model)["triton.model_version"] == 1
            [compute] = children(model)
            assert compute.name == "compute"
            assert events(compute) == ["COMPUTE_START", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START", "COMPUTE_END"]
        elif model.name == "bls_traced":
            assert request_id == "b1"
            call, compute = children(model)
            assert (call.name, compute.name) == ("add_sub", "compute")
            assert attributes(call)["triton.trace_parent_id"] == attributes(model)["triton.trace_id"]
            assert [c.name for c in children(call)] == ["compute"]
        else:
            assert (model.name, request_id) == ("twice", "e1")
            assert events(model) == ["REQUEST_START", "REQUEST_END"]
            steps = children(model)
            assert [step.name for step in steps] == ["add_sub", "add_sub"]
            for step in steps:
                assert attributes(step)["triton.trace_parent_id"] == attributes(model)["triton.trace_id"]
                assert [c.name for c in children(step)] == ["compute"]
    for span in spans:
        assert span.start_time_unix_nano <= span.end_time_unix_nano
        if span.parent_span_id in by_id:
            parent = by_id[span.parent_span_id]
            assert parent.start_time_unix_nano <= span.start_time_unix_nano


def test_tensors_level_writes_the_inputs_and_outputs_as_triton_does(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(ROOT / "examples" / "model_repository" / "add_sub", repository / "add_sub")
    trace_file = tmp_path / "trace.json"
    server = start_server(
        [repository],
        f"--trace-config=triton,file={trace_file}",
        "--trace-config=level=TENSORS",
        "--trace-config=rate=1",
    )
    try:
        with httpclient.InferenceServerClient(server.url) as client:
            inputs = [httpclient.InferInput(name, [16], "FP32") for name in ("INPUT0", "INPUT1")]
            for tensor in inputs:
                tensor.set_data_from_numpy(np.arange(16, dtype=np.float32))
            client.infer("add_sub", inputs)
    finally:
        assert server.stop() == 0, server.output()
    counting = ",".join(str(i) for i in range(16))

    def record(activity: str, name: str, data: str) -> dict[str, Any]:
        return {"id": 1, "activity": activity, "tensor": {"name": name, "data": data, "shape": "16", "dtype": "FP32"}}

    # What the reference Triton 2.51 writes for the same request (level=TENSORS alone).
    assert json.loads(trace_file.read_text()) == [
        record("TENSOR_QUEUE_INPUT", "INPUT0", counting),
        record("TENSOR_QUEUE_INPUT", "INPUT1", counting),
        record("TENSOR_BACKEND_OUTPUT", "OUTPUT0", ",".join(str(2 * i) for i in range(16))),
        record("TENSOR_BACKEND_OUTPUT", "OUTPUT1", ",".join("0" for _ in range(16))),
    ]


def test_generate_and_streamed_grpc_requests_are_traced(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(ROOT / "examples" / "model_repository" / "add_sub", repository / "add_sub")
    trace_file = tmp_path / "trace.json"
    server = start_server(
        [repository], f"--trace-config=triton,file={trace_file}", "--trace-config=level=TIMESTAMPS",
        "--trace-config=rate=1",
    )  # fmt: skip
    try:
        ones = [1.0] * 16
        status, body = post(f"http://{server.url}/v2/models/add_sub/generate", {"INPUT0": ones, "INPUT1": ones})
        assert (status, body["OUTPUT0"]) == (200, [2.0] * 16)
        with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
            inputs = [grpcclient.InferInput(name, [16], "FP32") for name in ("INPUT0", "INPUT1")]
            for tensor in inputs:
                tensor.set_data_from_numpy(np.ones(16, np.float32))
            streamed: queue.Queue[Any] = queue.Queue()
            grpc.start_stream(callback=lambda result, error: streamed.put(error or result))
            grpc.async_stream_infer("add_sub", inputs, request_id="s1")
            assert streamed.get(timeout=60).as_numpy("OUTPUT0").tolist() == [2.0] * 16
            grpc.stop_stream()
    finally:
        assert server.stop() == 0, server.output()
    records = json.loads(trace_file.read_text())
    names_by_id: dict[int, list[str]] = {}
    for record in records:
        if "timestamps" in record:
            names_by_id.setdefault(record["id"], []).append(record["timestamps"][0]["name"])
    assert sorted(names_by_id.values()) == [
        ["GRPC_WAITREAD_START", "GRPC_WAITREAD_END", *MODEL_ORDER, "INFER_RESPONSE_COMPLETE", "GRPC_SEND_START",
         "GRPC_SEND_END"],
        ORDER,
    ]  # fmt: skip
