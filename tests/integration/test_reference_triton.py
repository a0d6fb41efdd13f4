"""airtower and the reference Triton 2.51 (``make reference``) answer the same requests, and the
answers are compared: status and body for HTTP, status and details or message for gRPC.

This is the differential check behind docs/compatibility.md: every request below was first sent to
both servers while building airtower. A request whose answers differ fails the test unless it is
in ``KNOWN_DIFFERENCES`` with the reason (each one is in docs/compatibility.md); one listed there
that no longer differs fails it too, so the list stays true. Timings and other values that differ
from run to run are left out of the comparison.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import numpy as np
import pytest
from google.protobuf.json_format import MessageToDict
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.integration.server_process import ServerProcess, start_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "model_repository"
REFERENCE = Path(os.environ.get("TRITON_REF", "/tmp/triton-ref"))

F16 = [float(i) for i in range(16)]


def inp(
    name: str = "INPUT0", shape: tuple[int, ...] = (16,), dt: str = "FP32", data: Any = None, **kw: Any
) -> dict[str, Any]:
    d = {"name": name, "shape": list(shape), "datatype": dt, "data": F16 if data is None else data}
    d.update(kw)
    return d


def body(*inputs: dict[str, Any], **kw: Any) -> bytes:
    d: dict[str, Any] = {"inputs": list(inputs)}
    d.update(kw)
    return json.dumps(d).encode()


def binreq(
    inputs_meta: list[dict[str, Any]], blobs: list[bytes], outputs: Any = None, hdr_len: Any = None
) -> tuple[bytes, dict[str, str]]:
    h: dict[str, Any] = {"inputs": inputs_meta}
    if outputs:
        h["outputs"] = outputs
    hb = json.dumps(h).encode()
    return hb + b"".join(blobs), {"Inference-Header-Content-Length": str(len(hb) if hdr_len is None else hdr_len)}


def J(document: Any) -> bytes:
    return json.dumps(document).encode()


OK2 = [inp(), inp("INPUT1")]


def accumulate(value: int, parameters: dict[str, Any] | None = None) -> tuple[str, str, bytes, dict[str, str]]:
    """A request of the accumulator example (a sequence model) with these request parameters."""
    extra = {"parameters": parameters} if parameters is not None else {}
    return (
        "POST",
        "/v2/models/accumulator/infer",
        body(inp("INPUT", dt="INT32", shape=(1, 1), data=[value]), **extra),
        {},
    )


f32 = struct.pack("<16f", *F16)


def binary_infer(
    second: bytes = f32, sizes: tuple[int, int] = (64, 64), hdr_len: Any = None
) -> tuple[str, str, bytes, dict[str, str]]:
    """add_sub with both inputs as binary data (``second`` the second input's bytes)."""
    meta = [
        {"name": f"INPUT{i}", "shape": [16], "datatype": "FP32", "parameters": {"binary_data_size": size}}
        for i, size in enumerate(sizes)
    ]
    return ("POST", "/v2/models/add_sub/infer", *binreq(meta, [f32, second], hdr_len=hdr_len))


#: HTTP requests: (method, path, body, headers).
CASES: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("GET", "/v2/health/live", b"", {}),
    ("GET", "/v2/health/ready", b"", {}),
    ("GET", "/v2/models/add_sub", b"", {}),
    ("GET", "/v2/models/add_sub/ready", b"", {}),
    ("GET", "/v2/models/add_sub/versions/1", b"", {}),
    ("GET", "/v2/models/add_sub/versions/2", b"", {}),
    ("GET", "/v2/models/add_sub/versions/x", b"", {}),
    ("GET", "/v2/models/nope", b"", {}),
    ("GET", "/v2/models/nope/ready", b"", {}),
    ("GET", "/v2/models/add_sub/versions/2/ready", b"", {}),
    ("GET", "/v2/models/nope/config", b"", {}),
    ("GET", "/v2/models/nope/stats", b"", {}),
    ("PUT", "/v2/health/live", b"", {}),
    ("POST", "/v2/health/live", b"", {}),
    ("GET", "/v3", b"", {}),
    ("GET", "/v2/models/add_sub/infer", b"", {}),
    ("GET", "/", b"", {}),
    ("GET", "/v2/models", b"", {}),
    ("GET", "/v2/health", b"", {}),
    ("GET", "/v2/models/add_sub/", b"", {}),
    ("POST", "/v2/repository/index", b"", {}),
    ("POST", "/v2/repository/index", b'{"ready": true}', {}),
    ("POST", "/v2/repository/index", b"{bad", {}),
    ("POST", "/v2/repository/models/add_sub/load", b"", {}),
    ("POST", "/v2/repository/models/nope/unload", b"", {}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2), {}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2, id="abc"), {}),
    ("POST", "/v2/models/add_sub/versions/1/infer", body(*OK2), {}),
    ("POST", "/v2/models/add_sub/versions/3/infer", body(*OK2), {}),
    ("POST", "/v2/models/nope/infer", body(*OK2), {}),
    ("POST", "/v2/models/add_sub/infer", body(inp()), {}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2, inp("INPUT2")), {}),
    ("POST", "/v2/models/add_sub/infer", body(inp(), inp("INPUT1", shape=(8,), data=F16[:8])), {}),
    ("POST", "/v2/models/add_sub/infer", body(inp(), inp("INPUT1", shape=(2, 8))), {}),
    ("POST", "/v2/models/add_sub/infer", body(inp(), inp("INPUT1", dt="INT32", data=list(range(16)))), {}),
    ("POST", "/v2/models/add_sub/infer", body(inp(), inp("INPUT1", data=F16[:15])), {}),
    ("POST", "/v2/models/add_sub/infer", body(inp(), inp("INPUT1", data=["a"] * 16)), {}),
    ("POST", "/v2/models/add_sub/infer", body(inp(), inp("INPUT1", data=[F16[:8], F16[8:]])), {}),
    ("POST", "/v2/models/add_sub/infer", body(inp(), inp("INPUT1", shape=(-1,))), {}),
    ("POST", "/v2/models/add_sub/infer", body(inp(), inp("INPUT1", dt="FP99")), {}),
    ("POST", "/v2/models/add_sub/infer", body(inp(), inp("INPUT0")), {}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2, outputs=[{"name": "NOPE"}]), {}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2, outputs=[{"name": "OUTPUT0"}]), {}),
    (
        "POST",
        "/v2/models/add_sub/infer",
        body(*OK2, outputs=[{"name": "OUTPUT0", "parameters": {"classification": 2}}]),
        {},
    ),
    (
        "POST",
        "/v2/models/add_sub/infer",
        body(*OK2, outputs=[{"name": "OUTPUT0", "parameters": {"binary_data": True}}]),
        {},
    ),
    ("POST", "/v2/models/add_sub/infer", body(*OK2, parameters={"binary_data_output": True}), {}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2, parameters={"priority": 3}), {}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2, parameters={"timeout": -1}), {}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2, parameters={"sequence_id": 5}), {}),
    ("POST", "/v2/models/add_sub/infer", b"{bad json", {}),
    ("POST", "/v2/models/add_sub/infer", b"", {}),
    ("POST", "/v2/models/add_sub/infer", b"[]", {}),
    ("POST", "/v2/models/add_sub/infer", b'{"inputs": 5}', {}),
    ("POST", "/v2/models/add_sub/infer", b'{"inputs": [{"name": "INPUT0"}]}', {}),
    ("POST", "/v2/models/add_sub/infer", b"{}", {}),
    ("POST", "/v2/models/add_sub/infer", body(inp(), {"name": "INPUT1", "shape": [16], "datatype": "FP32"}), {}),
    (
        "POST",
        "/v2/models/add_sub/infer",
        *binreq(
            [
                inp(data=None) | {"parameters": {"binary_data_size": 64}},
                inp("INPUT1") | {"parameters": {"binary_data_size": 64}},
            ],
            [f32, f32],
        ),
    ),
    binary_infer(),
    binary_infer(second=f32[:60]),
    binary_infer(second=f32 + b"xxxx"),
    binary_infer(sizes=(60, 68)),
    binary_infer(hdr_len=99999),
    binary_infer(hdr_len=-5),
    binary_infer(hdr_len="abc"),
    ("POST", "/v2/models/add_sub/infer", gzip.compress(body(*OK2)), {"Content-Encoding": "gzip"}),
    ("POST", "/v2/models/add_sub/infer", zlib.compress(body(*OK2)), {"Content-Encoding": "deflate"}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2), {"Content-Encoding": "br"}),
    ("POST", "/v2/models/add_sub/infer", b"garbage", {"Content-Encoding": "gzip"}),
    ("POST", "/v2/models/add_sub_batched/infer", body(inp(shape=(1, 16)), inp("INPUT1", shape=(1, 16))), {}),
    (
        "POST",
        "/v2/models/add_sub_batched/infer",
        body(inp(shape=(9, 16), data=F16 * 9), inp("INPUT1", shape=(9, 16), data=F16 * 9)),
        {},
    ),
    ("POST", "/v2/models/add_sub_batched/infer", body(inp(shape=(16,)), inp("INPUT1", shape=(16,))), {}),
    (
        "POST",
        "/v2/models/add_sub_batched/infer",
        body(inp(shape=(0, 16), data=[]), inp("INPUT1", shape=(0, 16), data=[])),
        {},
    ),
    (
        "POST",
        "/v2/models/add_sub_batched/infer",
        body(inp(shape=(1, 16)), inp("INPUT1", shape=(2, 16), data=F16 * 2)),
        {},
    ),
    (
        "POST",
        "/v2/models/add_sub_dynamic/infer",
        body(inp(shape=(1, 16)), inp("INPUT1", shape=(1, 16)), parameters={"priority": 99}),
        {},
    ),
    (
        "POST",
        "/v2/models/add_sub_dynamic/infer",
        body(inp(shape=(1, 16)), inp("INPUT1", shape=(1, 16)), parameters={"timeout": 1}),
        {},
    ),
    ("POST", "/v2/models/string_python/infer", body(inp(dt="BYTES", shape=(2,), data=["hello", "wörld"])), {}),
    ("POST", "/v2/models/string_python/infer", body(inp(dt="BYTES", shape=(2,), data=[1, 2])), {}),
    ("POST", "/v2/models/string_python/infer", body(inp(dt="BYTES", shape=(0,), data=[])), {}),
    accumulate(3),
    accumulate(3, {"sequence_id": 7}),
    accumulate(3, {"sequence_id": 8, "sequence_start": True}),
    accumulate(4, {"sequence_id": 8}),
    accumulate(5, {"sequence_id": 8, "sequence_end": True}),
    accumulate(5, {"sequence_id": "abc", "sequence_start": True, "sequence_end": True}),
    accumulate(5, {"sequence_id": 0, "sequence_start": True}),
    accumulate(5, {"sequence_id": -3, "sequence_start": True}),
    accumulate(5, {"sequence_id": 9, "sequence_start": "yes"}),
    ("POST", "/v2/models/token_streamer/infer", body(inp("text_input", dt="BYTES", shape=(1,), data=["a b c"])), {}),
    ("POST", "/v2/models/token_streamer/generate", b'{"text_input": "a b c"}', {}),
    ("POST", "/v2/models/token_streamer/generate", b'{"text_input": 5}', {}),
    ("POST", "/v2/models/token_streamer/generate", b'{"nope": "x"}', {}),
    ("POST", "/v2/models/add_sub/generate", b'{"INPUT0": [1,2], "INPUT1": [3]}', {}),
    ("POST", "/v2/models/add_sub/generate", json.dumps({"INPUT0": F16, "INPUT1": F16}).encode(), {}),
    ("POST", "/v2/models/nope/generate", b"{}", {}),
    ("POST", "/v2/models/token_streamer/generate_stream", b'{"text_input": "a b"}', {}),
    ("GET", "/v2/models/add_sub/config", b"", {}),
    ("GET", "/v2/models/add_sub_dynamic/config", b"", {}),
    ("GET", "/v2/models/accumulator/config", b"", {}),
    ("GET", "/v2/models/token_streamer", b"", {}),
    ("GET", "/v2/models/string_python", b"", {}),
    ("GET", "/v2/systemsharedmemory/status", b"", {}),
    ("GET", "/v2/cudasharedmemory/status", b"", {}),
    ("POST", "/v2/systemsharedmemory/region/x/register", b'{"key": "/nope", "offset": 0, "byte_size": 64}', {}),
    ("POST", "/v2/systemsharedmemory/region/x/unregister", b"", {}),
    ("GET", "/v2/trace/setting", b"", {}),
    ("GET", "/v2/logging", b"", {}),
    ("POST", "/v2/logging", b'{"log_verbose_level": "x"}', {}),
    ("POST", "/v2/trace/setting", b'{"trace_rate": "abc"}', {}),
]
#: More requests: the trace, logging, repository and shared-memory extensions, versions.
CASES += [
    ("POST", "/v2/repository/foo/index", b"", {}),
    ("POST", "/v2/repository/foo/models/add_sub/load", b"", {}),
    ("POST", "/v2/repository/foo/models/add_sub/unload", b"", {}),
    ("GET", "/v2/models/nope/trace/setting", b"", {}),
    ("GET", "/v2/models/add_sub/trace/setting", b"", {}),
    ("POST", "/v2/models/nope/trace/setting", J({"trace_rate": "5"}), {}),
    ("POST", "/v2/trace/setting", J({"trace_level": ["FOO"]}), {}),
    ("POST", "/v2/trace/setting", J({"trace_level": "TIMESTAMPS"}), {}),
    ("POST", "/v2/trace/setting", J({"trace_level": ["TIMESTAMPS"]}), {}),
    ("POST", "/v2/trace/setting", J({"trace_level": ["OFF", "TIMESTAMPS"]}), {}),
    ("POST", "/v2/trace/setting", J({"trace_level": [5]}), {}),
    ("POST", "/v2/trace/setting", J({"trace_count": "-5"}), {}),
    ("POST", "/v2/trace/setting", J({"trace_count": 5}), {}),
    ("POST", "/v2/trace/setting", J({"trace_count": "2147483648"}), {}),
    ("POST", "/v2/trace/setting", J({"trace_rate": "-1"}), {}),
    ("POST", "/v2/trace/setting", J({"trace_rate": "12abc"}), {}),
    ("POST", "/v2/trace/setting", J({"trace_rate": "99999999999"}), {}),
    ("POST", "/v2/trace/setting", J({"trace_rate": None}), {}),
    ("POST", "/v2/models/add_sub/trace/setting", J({"trace_rate": "5"}), {}),
    ("POST", "/v2/trace/setting", J({"trace_count": "10"}), {}),
    ("GET", "/v2/models/add_sub/trace/setting", b"", {}),
    ("POST", "/v2/models/add_sub/trace/setting", J({"trace_rate": None}), {}),
    ("POST", "/v2/trace/setting", J({"trace_count": None}), {}),
    ("POST", "/v2/trace/setting", J({"log_frequency": "x"}), {}),
    ("POST", "/v2/trace/setting", J({"trace_mode": "opentelemetry"}), {}),
    ("POST", "/v2/trace/setting", J({"trace_file": "/tmp/x.json"}), {}),
    ("POST", "/v2/trace/setting", J([1]), {}),
    ("POST", "/v2/trace/setting", b"", {}),
    ("GET", "/v2/trace/setting", b"", {}),
    ("POST", "/v2/logging", J({"log_verbose_level": -1}), {}),
    ("POST", "/v2/logging", J({"log_verbose_level": 99999999999}), {}),
    ("POST", "/v2/logging", J({"log_info": None}), {}),
    ("POST", "/v2/logging", J({"log_info": 3}), {}),
    ("POST", "/v2/logging", J({"log_format": "xml"}), {}),
    ("POST", "/v2/logging", J({"log_file": None}), {}),
    ("POST", "/v2/logging", J({"nope": 1}), {}),
    ("POST", "/v2/logging", J([1]), {}),
    ("POST", "/v2/logging", b" ", {}),
    ("POST", "/v2/logging", J({"log_verbose_level": 0}), {}),
    ("GET", "/v2/logging", b"", {}),
    ("GET", "/v2/models/add_sub/versions/0", b"", {}),
    ("GET", "/v2/models/add_sub/versions/0/ready", b"", {}),
    ("GET", "/v2/models/stats", b"", {}),
    ("GET", "/v2/models/add_sub/versions/0/stats", b"", {}),
    ("GET", "/v2/models/add_sub/versions/1/config", b"", {}),
    ("GET", "/v2/models/add_sub/versions/9/config", b"", {}),
    ("GET", "/v2/systemsharedmemory/region/x/status", b"", {}),
    ("POST", "/v2/systemsharedmemory/region/x/register", J({"key": "/nope", "offset": 0}), {}),
    ("POST", "/v2/systemsharedmemory/region/x/register", J({"offset": 0, "byte_size": 4}), {}),
    ("POST", "/v2/systemsharedmemory/region/x/register", J({"key": 5, "offset": 0, "byte_size": 4}), {}),
    ("POST", "/v2/systemsharedmemory/region/x/register", J({"key": "/k", "offset": -1, "byte_size": 4}), {}),
    ("POST", "/v2/systemsharedmemory/region/x/register", J([1]), {}),
    ("POST", "/v2/systemsharedmemory/unregister", b"", {}),
    ("GET", "/v2/cudasharedmemory/region/x/status", b"", {}),
    ("POST", "/v2/cudasharedmemory/unregister", b"", {}),
    ("GET", "/v2", b"", {}),
    ("POST", "/v2/repository/models/add_sub/load", b"{x", {}),
    ("POST", "/v2/repository/models/add_sub/load", J({"parameters": 5}), {}),
    ("POST", "/v2/repository/models/add_sub/unload", J({"parameters": {"unload_dependents": "yes"}}), {}),
    ("POST", "/v2/repository/index", J([1]), {}),
    ("POST", "/v2/repository/index", b" ", {}),
    ("POST", "/v2/repository/index", J({"ready": None}), {}),
]


def _grpc_trace(model: str = "", **settings: list[str]) -> Any:
    request = service_pb2.TraceSettingRequest(model_name=model)
    for key, values in settings.items():
        request.settings[key].value.extend(values)
    return request


def _grpc_log(**settings: bool | int | str | None) -> Any:
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


def _grpc_load(name: str, repository: str = "", **parameters: bool | int | bytes | str) -> Any:
    request = service_pb2.RepositoryModelLoadRequest(model_name=name, repository_name=repository)
    for key, value in parameters.items():
        if isinstance(value, bool):
            request.parameters[key].bool_param = value
        elif isinstance(value, int):
            request.parameters[key].int64_param = value
        elif isinstance(value, bytes):
            request.parameters[key].bytes_param = value
        else:
            request.parameters[key].string_param = value
    return request


pb = service_pb2
#: gRPC requests: (method, request message).
GRPC_CASES: list[tuple[str, Any]] = [
    ("ServerLive", pb.ServerLiveRequest()),
    ("ServerReady", pb.ServerReadyRequest()),
    ("ModelReady", pb.ModelReadyRequest(name="add_sub")),
    ("ModelReady", pb.ModelReadyRequest(name="add_sub", version="2")),
    ("ModelReady", pb.ModelReadyRequest(name="add_sub", version="x")),
    ("ModelReady", pb.ModelReadyRequest(name="add_sub", version="-1")),
    ("ModelReady", pb.ModelReadyRequest(name="add_sub", version="1x")),
    ("ModelReady", pb.ModelReadyRequest(name="nope")),
    ("ModelMetadata", pb.ModelMetadataRequest(name="add_sub")),
    ("ModelMetadata", pb.ModelMetadataRequest(name="string_python")),
    ("ModelMetadata", pb.ModelMetadataRequest(name="add_sub", version="x")),
    ("ModelMetadata", pb.ModelMetadataRequest(name="add_sub", version="99999999999999999999")),
    ("ModelMetadata", pb.ModelMetadataRequest(name="nope")),
    ("ModelConfig", pb.ModelConfigRequest(name="add_sub")),
    ("ModelConfig", pb.ModelConfigRequest(name="add_sub_dynamic")),
    ("ModelConfig", pb.ModelConfigRequest(name="accumulator")),
    ("ModelConfig", pb.ModelConfigRequest(name="token_streamer")),
    ("ModelConfig", pb.ModelConfigRequest(name="add_sub", version="0")),
    ("ModelStatistics", pb.ModelStatisticsRequest(name="nope")),
    ("ModelStatistics", pb.ModelStatisticsRequest(name="add_sub", version="2")),
    ("RepositoryIndex", pb.RepositoryIndexRequest()),
    ("RepositoryIndex", pb.RepositoryIndexRequest(ready=True)),
    ("RepositoryIndex", pb.RepositoryIndexRequest(repository_name="foo")),
    ("RepositoryModelLoad", _grpc_load("add_sub")),
    ("RepositoryModelLoad", _grpc_load("add_sub", "foo")),
    ("RepositoryModelLoad", _grpc_load("add_sub", config=5)),
    ("RepositoryModelLoad", _grpc_load("add_sub", foo=5)),
    ("RepositoryModelLoad", _grpc_load("add_sub", **{"file:1/model.py": "abc"})),
    ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="add_sub")),
    ("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest()),
    ("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest(name="x")),
    ("SystemSharedMemoryRegister", pb.SystemSharedMemoryRegisterRequest(name="x", key="/nope_zz", byte_size=64)),
    ("SystemSharedMemoryUnregister", pb.SystemSharedMemoryUnregisterRequest(name="x")),
    ("CudaSharedMemoryStatus", pb.CudaSharedMemoryStatusRequest()),
    ("TraceSetting", _grpc_trace()),
    ("TraceSetting", _grpc_trace("add_sub")),
    ("TraceSetting", _grpc_trace("nope")),
    ("TraceSetting", _grpc_trace(trace_level=["FOO"])),
    ("TraceSetting", _grpc_trace(trace_level=["OFF", "TIMESTAMPS"])),
    ("TraceSetting", _grpc_trace(trace_rate=["5", "6"])),
    ("TraceSetting", _grpc_trace(trace_rate=["12x"])),
    ("TraceSetting", _grpc_trace(trace_rate=["-1"])),
    ("TraceSetting", _grpc_trace(trace_rate=[])),
    ("TraceSetting", _grpc_trace(trace_count=["2147483648"])),
    ("TraceSetting", _grpc_trace(trace_file=[])),
    ("TraceSetting", _grpc_trace(trace_level=["TIMESTAMPS", "TENSORS", "TIMESTAMPS"])),
    ("LogSettings", _grpc_log()),
    ("LogSettings", _grpc_log(log_verbose_level="x")),
    ("LogSettings", _grpc_log(log_info=3)),
    ("LogSettings", _grpc_log(log_info=None)),
    ("LogSettings", _grpc_log(log_format="xml")),
    ("LogSettings", _grpc_log(log_format=3)),
    ("LogSettings", _grpc_log(log_file="x")),
    ("LogSettings", _grpc_log(foo=3)),
]


#: Python models that misbehave on request (``misbehave``: the CASE input picks how), call other
#: models through BLS (``bls``: CASE names the call; the answer lists what came back), and take
#: mixed inputs through the generate extension (``gen``).
EXTRA_MODELS: dict[str, tuple[str, str]] = {
    "misbehave": (
        'backend: "python"\nmax_batch_size: 0\ninput [{ name: "CASE" data_type: TYPE_STRING dims: [1] }]\n'
        'output [{ name: "OUT" data_type: TYPE_FP32 dims: [2] }]\n',
        """\
import numpy as np
import triton_python_backend_utils as pb_utils


def ok(name="OUT", array=None):
    return pb_utils.InferenceResponse([pb_utils.Tensor(name, np.zeros(2, np.float32) if array is None else array)])


class TritonPythonModel:
    def execute(self, requests):
        case = pb_utils.get_input_tensor_by_name(requests[0], "CASE").as_numpy()[0].decode()
        if case == "raises":
            raise ValueError("boom")
        if case == "model_exception":
            raise pb_utils.TritonModelException("model says no")
        if case == "helper":
            return self.helper()
        if case == "too_few":
            return []
        if case == "not_list":
            return 5
        if case == "not_response":
            return [5]
        if case == "error":
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError("bad input here"))]
        if case == "error_code":
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError("nf", pb_utils.TritonError.NOT_FOUND))]
        if case == "not_in_config":
            return [ok("NOPE")]
        if case == "wrong_dtype":
            return [ok(array=np.zeros(2, np.int32))]
        if case == "wrong_shape":
            return [ok(array=np.zeros(3, np.float32))]
        return [ok()]

    def helper(self):
        raise RuntimeError("deep")
""",
    ),
    "bls": (
        'backend: "python"\nmax_batch_size: 0\ninput [{ name: "CASE" data_type: TYPE_STRING dims: [1] }]\n'
        'output [{ name: "OUT" data_type: TYPE_STRING dims: [-1] }]\n',
        """\
import json

import numpy as np
import triton_python_backend_utils as pb_utils

F = np.arange(16, dtype=np.float32)


def call(model, *inputs, outputs=("OUTPUT0",), version=-1):
    tensors = [pb_utils.Tensor(name, array) for name, array in inputs]
    return pb_utils.InferenceRequest(
        model_name=model, model_version=version, inputs=tensors, requested_output_names=list(outputs)
    )


CALLS = {
    "ok": lambda: call("add_sub", ("INPUT0", F), ("INPUT1", F)),
    "unknown_model": lambda: call("nope", ("INPUT0", F)),
    "missing_input": lambda: call("add_sub", ("INPUT0", F)),
    "wrong_dtype": lambda: call("add_sub", ("INPUT0", F.astype(np.int32)), ("INPUT1", F)),
    "bad_output": lambda: call("add_sub", ("INPUT0", F), ("INPUT1", F), outputs=("NOPE",)),
    "bad_version": lambda: call("add_sub", ("INPUT0", F), ("INPUT1", F), version=7),
    "model_raises": lambda: call("misbehave", ("CASE", np.array([b"raises"], dtype=object)), outputs=("OUT",)),
    "model_error": lambda: call("misbehave", ("CASE", np.array([b"error_code"], dtype=object)), outputs=("OUT",)),
    "decoupled": lambda: call(
        "token_streamer", ("text_input", np.array([b"a b"], dtype=object)), outputs=("text_output",)
    ),
}


def seen(response):
    if response.has_error():
        return ["ERROR", response.error().message(), str(response.error().code())]
    return ["OK"] + sorted(tensor.name() for tensor in response.output_tensors())


class TritonPythonModel:
    def execute(self, requests):
        answers = []
        for request in requests:
            case = pb_utils.get_input_tensor_by_name(request, "CASE").as_numpy()[0].decode()
            if case.startswith("stream_"):
                result = [seen(response) for response in CALLS[case[7:]]().exec(decoupled=True)]
            else:
                result = seen(CALLS[case]().exec())
            out = np.array([json.dumps(result).encode()], dtype=object)
            answers.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]))
        return answers
""",
    ),
    "gen": (
        'backend: "python"\nmax_batch_size: 0\ninput [{ name: "text" data_type: TYPE_STRING dims: [1] }, '
        '{ name: "n" data_type: TYPE_INT32 dims: [1] }, { name: "v" data_type: TYPE_FP32 dims: [-1] }, '
        '{ name: "flag" data_type: TYPE_BOOL dims: [1] optional: true }]\n'
        'output [{ name: "out" data_type: TYPE_STRING dims: [-1] }]\n',
        """\
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        answers = []
        for request in requests:
            values = {t.name(): t.as_numpy().tolist() for t in request.inputs()}
            values = {k: [x.decode() if isinstance(x, bytes) else x for x in v] for k, v in values.items()}
            texts = [json.dumps(values, sort_keys=True).encode(), request.parameters().encode()]
            answers.append(pb_utils.InferenceResponse([pb_utils.Tensor("out", np.array(texts, dtype=object))]))
        return answers
""",
    ),
    "echo64": (
        'backend: "python"\nmax_batch_size: 0\ninput [{ name: "X" data_type: TYPE_FP64 dims: [-1] }]\n'
        'output [{ name: "Y" data_type: TYPE_FP64 dims: [-1] }, { name: "Z" data_type: TYPE_FP32 dims: [-1] }]\n',
        """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        answers = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            outputs = [pb_utils.Tensor("Y", x), pb_utils.Tensor("Z", x.astype(np.float32))]
            answers.append(pb_utils.InferenceResponse(outputs))
        return answers
""",
    ),
}

#: Ensembles: ``pipe`` runs add_sub twice (SUM2 = (A + B) * 2, DIFF = A - B); ``failing`` runs
#: ``misbehave`` (its CASE input picks how the step fails).
_FP32_16 = "data_type: TYPE_FP32 dims: [16]"
ENSEMBLES: dict[str, str] = {
    "pipe": f"""\
platform: "ensemble"
input [{{ name: "A" {_FP32_16} }}, {{ name: "B" {_FP32_16} }}]
output [{{ name: "SUM2" {_FP32_16} }}, {{ name: "DIFF" {_FP32_16} }}]
ensemble_scheduling {{ step [
  {{ model_name: "add_sub" model_version: -1
    input_map {{ key: "INPUT0" value: "A" }} input_map {{ key: "INPUT1" value: "B" }}
    output_map {{ key: "OUTPUT0" value: "S" }} output_map {{ key: "OUTPUT1" value: "DIFF" }} }},
  {{ model_name: "add_sub" model_version: -1
    input_map {{ key: "INPUT0" value: "S" }} input_map {{ key: "INPUT1" value: "S" }}
    output_map {{ key: "OUTPUT0" value: "SUM2" }} }}
] }}
""",
    "failing": """\
platform: "ensemble"
input [{ name: "C" data_type: TYPE_STRING dims: [1] }]
output [{ name: "O" data_type: TYPE_FP32 dims: [2] }]
ensemble_scheduling { step [{ model_name: "misbehave" model_version: -1 input_map { key: "CASE" value: "C" }
  output_map { key: "OUT" value: "O" } }] }
""",
}


def _case(model: str, case: str, name: str = "CASE") -> tuple[str, str, bytes, dict[str, str]]:
    document = {"inputs": [{"name": name, "shape": [1], "datatype": "BYTES", "data": [case]}]}
    return ("POST", f"/v2/models/{model}/infer", J(document), {})


#: Misbehaving models, BLS calls and the generate extension.
CASES += [
    _case("misbehave", case)
    for case in ("raises", "model_exception", "helper", "too_few", "not_list", "not_response", "error",
                 "error_code", "not_in_config", "wrong_dtype", "wrong_shape", "fine")
]  # fmt: skip
CASES += [
    _case("bls", case)
    for case in ("ok", "unknown_model", "missing_input", "wrong_dtype", "bad_output", "bad_version", "model_raises",
                 "model_error", "decoupled", "stream_ok", "stream_unknown_model", "stream_missing_input")
]  # fmt: skip
#: Response compression, binary outputs and classification.
CASES += [
    ("POST", "/v2/models/add_sub/infer", body(*OK2), {"Accept-Encoding": "gzip"}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2), {"Accept-Encoding": "deflate"}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2), {"Accept-Encoding": "gzip;q=0.5, deflate;q=0.9"}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2), {"Accept-Encoding": "br"}),
    ("POST", "/v2/models/add_sub/infer", body(*OK2, parameters={"binary_data_output": True}), {}),
    (
        "POST",
        "/v2/models/add_sub/infer",
        body(*OK2, parameters={"binary_data_output": True}),
        {"Accept-Encoding": "gzip"},
    ),
    (
        "POST",
        "/v2/models/add_sub/infer",
        body(*OK2, outputs=[{"name": "OUTPUT0", "parameters": {"binary_data": True}}, {"name": "OUTPUT1"}]),
        {},
    ),
    *(
        ("POST", "/v2/models/add_sub/infer", body(*OK2, outputs=[{"name": "OUTPUT0", "parameters": parameters}]), {})
        for parameters in (
            {"classification": 3},
            {"classification": 0},
            {"classification": 99},
            {"classification": 2, "binary_data": True},
        )
    ),
    (
        "POST",
        "/v2/models/string_python/infer",
        body(inp(dt="BYTES", shape=(2,), data=["a", "bc"]), parameters={"binary_data_output": True}),
        {},
    ),
]
CASES += [
    ("POST", "/v2/models/pipe/infer", body(inp("A"), inp("B")), {}),
    ("POST", "/v2/models/pipe/infer", body(inp("A"), inp("B"), id="x", outputs=[{"name": "SUM2"}]), {}),
    ("POST", "/v2/models/pipe/infer", body(inp("A"), inp("B"), outputs=[{"name": "S"}]), {}),
    ("POST", "/v2/models/pipe/infer", body(inp("A")), {}),
    ("POST", "/v2/models/pipe/infer", body(inp("A", dt="INT32", data=list(range(16))), inp("B")), {}),
    ("GET", "/v2/models/pipe", b"", {}),
    ("GET", "/v2/models/pipe/config", b"", {}),
    ("GET", "/v2/models/failing/config", b"", {}),
    *(_case("failing", case, "C") for case in ("raises", "error_code", "wrong_shape", "not_in_config", "fine")),
    _case("failing", "fine"),  # an input the ensemble does not have
]
CASES += [
    ("POST", "/v2/models/gen/generate", J({"text": "hi", "n": 3, "v": [1.5, 2], "flag": True}), {}),
    ("POST", "/v2/models/gen/generate", J({"text": "hi", "n": 3, "v": [1], "temperature": 0.5, "stop": True}), {}),
    ("POST", "/v2/models/gen/generate", J({"text": ["hi"], "n": [3], "v": [[1, 2]]}), {}),
    ("POST", "/v2/models/gen/generate", J({"text": "hi", "n": "3", "v": [1]}), {}),
    ("POST", "/v2/models/gen/generate", J({"text": "hi", "n": 3.5, "v": [1]}), {}),
    ("POST", "/v2/models/gen/generate", J({"text": 5, "n": 3, "v": [1]}), {}),
    ("POST", "/v2/models/gen/generate", J({"text": "hi", "n": 3, "v": [1], "flag": 1}), {}),
    ("POST", "/v2/models/gen/generate", J({"text": "hi", "n": 3, "v": [1], "id": 5}), {}),
    ("POST", "/v2/models/gen/generate", J({"text": "hi", "v": [1], "n": 1, "bogus": [1]}), {}),
    ("POST", "/v2/models/gen/generate_stream", J({"text": "hi", "n": 3, "v": [1]}), {}),
]


#: Logging requests with a bad setting after good ones: Triton reads the settings in a fixed order
#: (file, info, warning, error, verbose, format) and has applied those before the bad one. Each is
#: followed by a read of the settings; the last request restores the defaults.
LOG_DEFAULTS: dict[str, bool | int | str] = {
    "log_info": True,
    "log_warning": True,
    "log_error": True,
    "log_verbose_level": 0,
    "log_format": "default",
}
CASES += [
    ("POST", "/v2/logging", J({"log_error": False, "log_warning": 3, "log_info": False}), {}),
    ("GET", "/v2/logging", b"", {}),
    ("POST", "/v2/logging", J({"log_format": "bad", "log_info": False, "log_verbose_level": 2}), {}),
    ("GET", "/v2/logging", b"", {}),
    ("POST", "/v2/logging", J({"log_verbose_level": 3, "log_file": "x", "log_warning": False}), {}),
    ("GET", "/v2/logging", b"", {}),
    ("POST", "/v2/logging", J({"log_format": 7, "log_error": False}), {}),
    ("GET", "/v2/logging", b"", {}),
    ("POST", "/v2/logging", J(LOG_DEFAULTS), {}),
]


#: Doubles as JSON output data (compared byte for byte, as every answer without times): Triton writes them
#: with RapidJSON's Grisu2 digits and layout (``frontends/http/rapidjson_double.py``), which differ
#: from Python's repr in a third of values. The doubles go in as binary data (exact bits: Triton's
#: JSON reader rounds some decimal texts to a neighbouring double; docs/compatibility.md).
_RNG = np.random.default_rng(20261126)
DOUBLES = np.array([
    5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308, 0.1, 1 / 3, 2 / 3, 1e21,
    1e22, 1e-7, 1e-6, 123456789.123, 2.0**53, 2.0**63, 2.0**64, 1e16, 1e15 + 0.3, -0.0, 4.35, 0.3, 100.5, 1e-300,
    1.5e300, 299792458.0, 6.02214076e23, 1.602176634e-19, 0.000001234, -2.5e-9, 0.0, 3.0,
    *_RNG.standard_normal(24), *(np.exp(_RNG.uniform(-700, 700, 24)) * _RNG.choice([-1.0, 1.0], 24)),
    *_RNG.integers(0, 2**62, 16, dtype=np.int64).view(np.float64),
])  # fmt: skip
_DOUBLES_HEADER = J({"inputs": [{"name": "X", "shape": [len(DOUBLES)], "datatype": "FP64",
                                 "parameters": {"binary_data_size": DOUBLES.nbytes}}]})  # fmt: skip
#: Short decimal texts, which RapidJSON reads exactly (at most 15 digits, small exponents).
_DECIMALS = [0.1, 0.3, 4.35, 100.5, 123456789.123, 1e-7, 2.5e-9, 1e21, 1e22, 299792458.0, 7.0, -0.0, 0.000123]
CASES += [
    ("POST", "/v2/models/echo64/infer", _DOUBLES_HEADER + DOUBLES.tobytes(),
     {"Inference-Header-Content-Length": str(len(_DOUBLES_HEADER))}),
    ("POST", "/v2/models/echo64/generate", J({"X": _DECIMALS}), {}),
    ("POST", "/v2/models/echo64/generate", J({"X": [0.1]}), {}),
    ("POST", "/v2/models/add_sub/infer", J({"inputs": [{"name": "INPUT0", "shape": [16], "datatype": "FP32",
                                                        "data": (_RNG.standard_normal(16) * 10).round(3).tolist()},
                                                       {"name": "INPUT1", "shape": [16], "datatype": "FP32",
                                                        "data": [0.25] * 16}]}), {}),
]  # fmt: skip


def _add_sub_doc(model: str = "add_sub", batch: int | None = None, **first: Any) -> bytes:
    """An add_sub request (``batch`` rows, or none) whose INPUT0 fields ``first`` override."""
    shape = [16] if batch is None else [batch, 16]
    data = list(range(16)) * (batch or 1)
    inputs = [{"name": name, "shape": shape, "datatype": "FP32", "data": data} for name in ("INPUT0", "INPUT1")]
    inputs[0].update(first)
    return J({"inputs": inputs})


_SEQUENCE = {"sequence_id": 7, "sequence_start": True, "sequence_end": True}
#: Shapes with no elements, batch dimensions of 0 and null members, as Triton's HTTP frontend and
#: core read them: an input of no elements has its 'data' left unread (0 in the shape, or no shape:
#: Triton counts [] as 0); a batch of 0 leaves the batch size unset, and the input is then refused
#: by its byte size; a shape error of a batching model carries Triton's NOTE.
CASES += [
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(shape=[0]), {}),
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(shape=[]), {}),
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(shape=[0], data="x"), {}),
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(shape=[0], data=None), {}),
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(shape=[0], datatype="FP16"), {}),
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(shape=[2], data=[*range(11), "x", *range(20)]), {}),
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(data=[*range(11), "x", 12, 13, 14, 15]), {}),
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(datatype=None), {}),
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(name=None), {}),
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(shape=None), {}),
    ("POST", "/v2/models/add_sub_batched/infer", _add_sub_doc("add_sub_batched", 1, shape=[1, 15], data=[*range(15)]),
     {}),
    ("POST", "/v2/models/add_sub_batched/infer", _add_sub_doc("add_sub_batched", 1, shape=[], data=[1]), {}),
    ("POST", "/v2/models/add_sub_batched/infer", J({"inputs": [
        {"name": "INPUT0", "shape": [2, 16], "datatype": "FP32", "data": list(range(16)) * 2},
        {"name": "INPUT1", "shape": [0, 16], "datatype": "FP32", "data": []}]}), {}),
    ("POST", "/v2/models/accumulator/infer", J({"inputs": [{"name": "INPUT", "shape": [0, 1], "datatype": "INT32",
                                                         "data": []}], "parameters": _SEQUENCE}), {}),
    ("POST", "/v2/models/accumulator/infer", J({"inputs": [{"name": "INPUT", "shape": [1], "datatype": "INT32",
                                                         "data": [1]}], "parameters": _SEQUENCE}), {}),
    ("POST", "/v2/models/add_sub/infer", J({**json.loads(_add_sub_doc()), "parameters": None}), {}),
    ("POST", "/v2/models/add_sub/infer", J({**json.loads(_add_sub_doc()), "outputs": None}), {}),
    # Binary data of an unknown datatype reaches Triton's core ('<invalid>'); binary byte sizes are
    # checked after the names, counts and outputs.
    ("POST", "/v2/models/add_sub/infer", *binreq(
        [{"name": "INPUT0", "shape": [16], "datatype": "FP32", "parameters": {"binary_data_size": 64}},
         {"name": "INPUT1", "shape": [16], "datatype": "xx", "parameters": {"binary_data_size": 64}}], [f32, f32])),
    ("POST", "/v2/models/add_sub/infer", *binreq(
        [{"name": "INPUT0", "shape": [16], "datatype": "FP32", "parameters": {"binary_data_size": 60}},
         {"name": "INPUT1", "shape": [16], "datatype": "FP32", "parameters": {"binary_data_size": 64}}],
        [f32[:60], f32], outputs=[{"name": "NOPE"}])),
    ("POST", "/v2/models/add_sub/infer", *binreq(
        [{"name": "INPUT0", "shape": [16], "datatype": "FP32", "parameters": {"binary_data_size": 60}},
         {"name": "INPUT1", "shape": [16], "datatype": "FP32", "parameters": {"binary_data_size": 64}},
         {"name": "EXTRA", "shape": [16], "datatype": "FP32", "parameters": {"binary_data_size": 64}}],
        [f32[:60], f32, f32])),
    ("POST", "/v2/models/add_sub/infer", J({"inputs": [{"name": "INPUT0", "shape": [0], "datatype": "xx", "data": []},
                                                       json.loads(_add_sub_doc())["inputs"][1]]}), {}),
    *[("POST", "/v2/models/add_sub/infer", J({**json.loads(_add_sub_doc()), "id": request_id}), {})
      for request_id in ("a\0b", "\0", "ab\0")],
    accumulate(1, {"sequence_id": "\0", "sequence_start": True, "sequence_end": True}),
    accumulate(1, {"sequence_id": "s\0t", "sequence_start": True, "sequence_end": True}),
    ("POST", "/v2/models/add_sub/infer", J({**json.loads(_add_sub_doc()), "outputs": [{"name": "OUTPUT0\0x"}]}), {}),
    ("POST", "/v2/models/add_sub/infer", J({**json.loads(_add_sub_doc()), "outputs": [{"name": "\0"}]}), {}),
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(name="INPUT0\0x"), {}),
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(name="\0"), {}),
    ("POST", "/v2/models/add_sub/infer",
     J({"id": "a\0b", "inputs": [{**json.loads(_add_sub_doc())["inputs"][0]},
                                  {**json.loads(_add_sub_doc())["inputs"][1], "shape": [15], "data": [1] * 15}]}), {}),
    ("POST", "/v2/models/add_sub/infer",
     J({**json.loads(_add_sub_doc()), "outputs": [{"name": "OUTPUT0", "parameters": {"classification": 2}},
                                                  {"name": "OUTPUT0"}]}), {}),
    ("POST", "/v2/models/add_sub/infer",
     J({**json.loads(_add_sub_doc()), "outputs": [{"name": "OUTPUT0"},
                                                  {"name": "OUTPUT0", "parameters": {"classification": 2}}]}), {}),
    ("POST", "/v2/models/add_sub/infer",
     J({**json.loads(_add_sub_doc()), "outputs": [{"name": "ZZ"}, {"name": "NOPE"}]}), {}),
    *[("POST", "/v2/models/add_sub_batched/infer",
       J({**json.loads(_add_sub_doc("add_sub_batched", 1)),
          "outputs": [{"name": "OUTPUT0", "parameters": {"classification": count}}]}), {})
      for count in (2**32, 2**32 + 1, 2**63)],
]  # fmt: skip


#: A version number beyond 64 bits is refused as unreadable before the model is looked up, on every
#: endpoint that takes a version (ready and statistics included).
_HUGE = "99999999999999999999"
CASES += [
    ("GET", f"/v2/models/add_sub/versions/{_HUGE}/ready", b"", {}),
    ("GET", f"/v2/models/nope/versions/{_HUGE}/ready", b"", {}),
    ("GET", f"/v2/models/nope/versions/{_HUGE}/stats", b"", {}),
    ("GET", "/v2/models/add_sub/versions/0/ready", b"", {}),
    # A decoupled model over HTTP infer is refused before its body is read; a JSON BYTES element count
    # is checked after the input's datatype.
    ("POST", "/v2/models/token_streamer/infer", b"{}", {}),
    ("POST", "/v2/models/add_sub/generate", J({"INPUT0": list(range(16)), "INPUT1": [1] * 16, "id": "\0"}), {}),
    ("POST", "/v2/models/add_sub/generate", J({"INPUT0": list(range(16)), "INPUT1": [1] * 16, "id": "g\0h"}), {}),
    ("POST", "/v2/models/token_streamer/infer", b'{"inputs": "x"}', {}),
    ("POST", "/v2/models/add_sub/infer", _add_sub_doc(datatype="BYTES", data=[]), {}),
]


def _stream(*requests: Any) -> tuple[str, Any]:
    return ("ModelStreamInfer", list(requests))


def _text(text: str, model: str = "token_streamer", empty_final: bool | None = None) -> Any:
    request = pb.ModelInferRequest(model_name=model, id="t")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "text_input", "BYTES"
    tensor.shape.extend([1])
    tensor.contents.bytes_contents.append(text.encode())
    if empty_final is not None:
        request.parameters["triton_enable_empty_final_response"].bool_param = empty_final
    return request


def _accumulate(value: int, sequence: int | str | None = None, start: bool = False, end: bool = False) -> Any:
    request = pb.ModelInferRequest(model_name="accumulator", id=f"a{value}")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "INPUT", "INT32"
    tensor.shape.extend([1, 1])
    tensor.contents.int_contents.append(value)
    if isinstance(sequence, str):
        request.parameters["sequence_id"].string_param = sequence
    elif sequence is not None:
        request.parameters["sequence_id"].int64_param = sequence
    if start:
        request.parameters["sequence_start"].bool_param = True
    if end:
        request.parameters["sequence_end"].bool_param = True
    return request


#: Sequences and streams.
GRPC_CASES += [
    ("ModelInfer", _accumulate(1)),
    ("ModelInfer", _accumulate(1, 101)),
    ("ModelInfer", _accumulate(1, 0, start=True)),
    ("ModelInfer", _accumulate(1, "abc", start=True)),
    ("ModelInfer", _accumulate(2, "abc")),
    ("ModelInfer", _accumulate(3, "abc", end=True)),
    ("ModelInfer", _accumulate(4, "abc")),
    ("ModelInfer", _accumulate(1, 5, start=True)),
    ("ModelInfer", _accumulate(2, 5, start=True)),
    ("ModelInfer", _accumulate(3, 5, end=True)),
    _stream(_text("a b c")),
    _stream(_text("a b", empty_final=True)),
    _stream(_text("a", model="nope"), _text("x y")),
    _stream(pb.ModelInferRequest(model_name="token_streamer", id="bad"), _text("z")),
    _stream(_accumulate(1, 11, start=True, end=True)),
]


def _add_sub(request_id: str) -> Any:
    request = pb.ModelInferRequest(model_name="add_sub", id=request_id)
    for name in ("INPUT0", "INPUT1"):
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = name, "FP32"
        tensor.shape.extend([16])
        request.raw_input_contents.append(bytes(range(64)))
    return request


#: Request messages that do not parse: grpc++ answers INTERNAL "Unable to parse request"; in a
#: stream, reading ends there (the answers to the requests before it are sent, then the stream ends OK).
GRPC_CASES += [
    ("ServerReady", b"\x08"),
    ("ModelConfig", b"\xff\xff\xff"),
    ("ModelInfer", b"\x0a\x05ab"),
    _stream(b"\x0a\xff"),
    _stream(_add_sub("before"), b"\x0a\xff", _add_sub("after")),
]


def _short_input1(request: Any) -> Any:
    """``request`` with INPUT1 one element short (the only wrong input: Triton's hash order is moot)."""
    request.inputs[1].shape[0] = 15
    request.raw_input_contents[1] = request.raw_input_contents[1][:60]
    return request


#: Request ids are C strings in Triton: cut at the first NUL (in responses and error messages; a
#: stream's error response carries the message's whole id, as 2.51 does).
GRPC_CASES += [
    ("ModelInfer", _add_sub("a\0b")),
    ("ModelInfer", _add_sub("\0b")),
    ("ModelInfer", _short_input1(_add_sub("a\0b"))),
    _stream(_add_sub("x\0y")),
    _stream(_short_input1(_add_sub("x\0y"))),
    ("ModelInfer", _accumulate(1, "\0", start=True)),
]


def _contents_of_unknown_datatype() -> Any:
    request = pb.ModelInferRequest(model_name="add_sub")
    for name, datatype in (("INPUT0", "zz"), ("INPUT1", "FP32")):
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[16])
        tensor.contents.fp32_contents.extend([1.0] * 16)
    return request


def _typed_then_raw_twice() -> Any:
    """INPUT0 twice, first with typed contents beside raw contents: the repeat is Triton's error."""
    request = _infer("add_sub", _F16)
    tensor = request.inputs.add(name="INPUT0", datatype="FP32", shape=[16])
    tensor.contents.fp32_contents.extend([1.0] * 16)
    request.inputs[0].CopyFrom(tensor)
    request.inputs[1].contents.Clear()
    return request


def _text_id(text: str, request_id: str) -> Any:
    request = _text(text, empty_final=True)
    request.id = request_id
    return request


def _infer(model: str, *inputs: tuple[str, str, list[int], bytes], outputs: Any = (), **parameters: Any) -> Any:
    """A ModelInfer request: ``inputs`` as (name, datatype, shape, raw bytes), ``outputs`` as (name,
    classification or None), ``parameters`` as InferParameter fields, e.g. ``priority={"int64_param": 1}``."""
    request = pb.ModelInferRequest(model_name=model, id="q")
    for name, datatype, shape, data in inputs:
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = name, datatype
        tensor.shape.extend(shape)
        request.raw_input_contents.append(data)
    for name, classification in outputs:
        output = request.outputs.add(name=name)
        if classification is not None:
            output.parameters["classification"].CopyFrom(pb.InferParameter(**classification))
    for key, value in parameters.items():
        request.parameters[key].CopyFrom(pb.InferParameter(**value))
    return request


_F16 = ("INPUT0", "FP32", [16], bytes(64))
_G16 = ("INPUT1", "FP32", [16], bytes(64))
#: When several things are wrong, the one Triton meets first: requested outputs (as a sorted set)
#: before the input count (inputs listed in its hash map's order: core/unordered_map.py), batch
#: sizes before max_batch_size, datatypes and shapes in hash order, byte sizes last; classification
#: and triton_ parameters checked as 2.51's gRPC frontend does; a repeated output keeps its first
#: settings.
GRPC_CASES += [
    ("ModelInfer", _infer("add_sub", _F16, _G16, ("EXTRA", "FP32", [16], bytes(64)))),
    ("ModelInfer", _infer("add_sub", _F16, _G16, ("A", "FP32", [1], b""), ("EXTRA", "FP32", [1], b""))),
    ("ModelInfer", _infer("add_sub", _F16, _G16, outputs=[("ZZ", None), ("NOPE", None)])),
    ("ModelInfer", _infer("add_sub", _F16, ("EXTRA", "FP32", [16], bytes(64)), outputs=[("NOPE", None)])),
    ("ModelInfer", _infer("add_sub", ("INPUT0", "FP32", [16], bytes(3)), _G16, ("EXTRA", "FP32", [1], b""))),
    ("ModelInfer", _infer("add_sub", ("INPUT0", "FP32", [16], bytes(3)), ("INPUT1", "FP64", [16], bytes(128)))),
    ("ModelInfer", _infer("add_sub", ("INPUT0", "FP32", [16], bytes(3)), ("INPUT1", "FP32", [15], bytes(60)))),
    ("ModelInfer", _infer("add_sub", ("INPUT0", "xx", [16], bytes(64)), ("EXTRA", "FP32", [16], bytes(64)))),
    ("ModelInfer", _infer("add_sub", ("INPUT0", "xx", [16], bytes(64)), _G16)),
    ("ModelInfer", _infer("add_sub", _F16, ("INPUT1", "FP32", [-1], b""))),
    ("ModelInfer", _infer("add_sub", _F16, _G16, ("INPUT0", "FP32", [16], bytes(3)))),
    ("ModelInfer", _infer("add_sub_batched", ("INPUT0", "FP32", [1, 16], bytes(64)),
                          ("INPUT1", "FP32", [17, 16], bytes(64 * 17)))),
    ("ModelInfer", _infer("add_sub_batched", ("INPUT0", "FP32", [2, 16], bytes(128)),
                          ("INPUT1", "FP32", [0, 16], b""))),
    ("ModelInfer", _infer("add_sub_batched", ("INPUT0", "FP32", [0, 16], b""),
                          ("INPUT1", "FP32", [2, 16], bytes(128)))),
    *[("ModelInfer", _infer("add_sub", _F16, _G16, outputs=[("OUTPUT0", classification)]))
      for classification in ({"int64_param": 0}, {"int64_param": -1}, {"string_param": "x"}, {"bool_param": True})],
    ("ModelInfer", _infer("add_sub", _F16, _G16, outputs=[("NOPE", {"int64_param": 0})])),
    ("ModelInfer", _infer("add_sub", _F16, _G16, outputs=[("OUTPUT0", {"int64_param": 2}), ("OUTPUT0", None)])),
    ("ModelInfer", _infer("add_sub", _F16, _G16, outputs=[("OUTPUT0", None), ("OUTPUT0", {"int64_param": 2})])),
    *[("ModelInfer", _infer("add_sub", _F16, _G16, triton_enable_empty_final_response=value))
      for value in ({"int64_param": 7}, {"string_param": "s"}, {"bool_param": True})],
    # Each input's datatype, shape, then byte size, input by input in hash order; names first.
    ("ModelInfer", _infer("add_sub", ("INPUT0", "FP32", [15], bytes(3)), _G16)),
    ("ModelInfer", _infer("add_sub", ("INPUT0", "FP64", [16], bytes(3)), _G16)),
    ("ModelInfer", _infer("add_sub", ("INPUT0", "FP32", [15], bytes(60)), ("INPUT1", "FP32", [16], bytes(3)))),
    ("ModelInfer", _infer("add_sub", ("INPUT0", "FP64", [16], bytes(128)), ("INPUT1", "FP32", [16], bytes(3)))),
    ("ModelInfer", _infer("add_sub", ("input0", "FP32", [16], bytes(64)), ("INPUT1", "FP32", [], bytes(4)))),
    ("ModelInfer", _infer("add_sub_batched", ("INPUT0", "FP32", [1, 1, 16], bytes(64)),
                          ("INPUT1", "FP32", [1, 16], bytes(1)))),
    ("ModelInfer", _infer("add_sub_batched", ("INPUT0", "FP32", [1, 16], bytes(1)),
                          ("INPUT1", "FP32", [1, 1, 16], bytes(64)))),
    ("ModelInfer", _infer("add_sub_batched", ("INPUT0", "FP32", [-1, 16], b""), ("INPUT1", "FP32", [-1, 16], b""))),
    ("ModelInfer", _infer("add_sub", ("INPUT0", "FP32", [2, -1], b""), _G16)),
    ("ModelInfer", _infer("add_sub", ("INPUT0", "BYTES", [16], b"\x01\0\0\0a"), _G16)),
    ("ModelInfer", _infer("add_sub", ("INPUT0", "BYTES", [2], b"\x01\0\0\0a"), ("INPUT1", "FP32", [15], bytes(60)))),
    ("ModelInfer", _infer("add_sub", ("INPUT0\0x", "FP32", [16], bytes(64)), _G16, outputs=[("OUTPUT1\0", None)])),
    ("ModelReady", pb.ModelReadyRequest(name="nope", version=_HUGE)),
    ("ModelStatistics", pb.ModelStatisticsRequest(name="nope", version=_HUGE)),
    ("ModelMetadata", pb.ModelMetadataRequest(name="add_sub", version=_HUGE)),
    # Typed contents of an unknown datatype: 2.51's frontend finds no field for '<invalid>'.
    ("ModelInfer", _contents_of_unknown_datatype()),
    # Bytes left after a BYTES input's elements: too few for a length, Triton's length error.
    ("ModelInfer", _infer("add_sub", ("INPUT0", "BYTES", [1], b"\x01\0\0\0a\0"), _G16)),
    # A stream's empty final response repeats the id as the client sent it (a NUL included).
    _stream(_text_id("one", "x\0y")),
    # Negative dimensions on BYTES and other inputs; every name is added before any data is read.
    ("ModelInfer", _infer("string_python", ("INPUT0", "BYTES", [-2], b"\x01\0\0\0a"))),
    ("ModelInfer", _infer("string_python", ("INPUT0", "BYTES", [-1], b"\x01\0\0\0a"))),
    ("ModelInfer", _infer("add_sub", ("INPUT0", "FP32", [-1, -1], bytes(4)), _G16)),
    ("ModelInfer", _typed_then_raw_twice()),
    # Classification applies to an ensemble's outputs too.
    ("ModelInfer", _infer("pipe", ("A", "FP32", [16], f32), ("B", "FP32", [16], f32),
                          outputs=[("SUM2", {"int64_param": 2}), ("DIFF", {"int64_param": 20})])),
    # ModelInfer refuses a decoupled model before reading its inputs.
    ("ModelInfer", _infer("token_streamer", ("text_input", "FP32", [1], b""))),
    # A sequence model takes one batch item per request, checked before the correlation ID.
    ("ModelInfer", _infer("accumulator", ("INPUT", "INT32", [2, 1], bytes(8)))),
    ("ModelInfer", _infer("accumulator", ("INPUT", "INT32", [2, 1], bytes(8)), sequence_id={"int64_param": 79},
                          sequence_start={"bool_param": True})),
]  # fmt: skip

#: The gRPC logging requests with a bad setting after good ones (as the HTTP ones above).
GRPC_CASES += [
    ("LogSettings", _grpc_log(log_format="xml", log_info=False, log_warning=False)),
    ("LogSettings", _grpc_log()),
    ("LogSettings", _grpc_log(log_error=3, log_verbose_level=2, log_info=True)),
    ("LogSettings", _grpc_log()),
    ("LogSettings", _grpc_log(log_file="f", log_error=False)),
    ("LogSettings", _grpc_log()),
    ("LogSettings", _grpc_log(**LOG_DEFAULTS)),
]

#: Requests whose answers differ on purpose or for a reason airtower does not copy, by case
#: (``http <index>`` or ``grpc <index>``), with the reason; docs/compatibility.md lists them.
KNOWN_DIFFERENCES: dict[str, str] = {
    "http 67": "Triton reads an undecodable gzip body as empty; airtower says why it cannot decode it",
    "http 150": "2.51's Python backend reports no response_stats for decoupled models; airtower does",
    "http 163": "airtower does not list cuda_shared_memory, which it does not implement",
    "http 206": "byte for byte only: 2.51 writes an ensemble's sequence parameters twice (duplicate JSON keys)",
    "http 217": "an ensemble step that does not produce a mapped output: Triton answers 200 without the output",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Reference:
    """The reference tritonserver on free loopback ports."""

    def __init__(self, repository: Path, log: Path) -> None:
        server = REFERENCE / "bin" / "tritonserver"
        assert server.exists(), "run `make reference` (../shared/reference/setup.sh) first"
        self.port, self.grpc_port = _free_port(), _free_port()
        args = [str(server), f"--model-repository={repository}", f"--http-port={self.port}",
                f"--grpc-port={self.grpc_port}", "--allow-metrics=false"]  # fmt: skip
        self._log = log.open("wb")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                self._log.close()
                raise AssertionError(log.read_text())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/health/ready", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(log.read_text()) from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, int]]]:
    """HTTP and gRPC ports of airtower and of the reference, serving the same repository."""
    repository = tmp_path_factory.mktemp("differential")
    for name in ("add_sub", "string_python", "accumulator", "token_streamer"):
        shutil.copytree(EXAMPLES / name, repository / name)
    for name, extra in (("add_sub_batched", ""), ("add_sub_dynamic", "dynamic_batching { }\n")):
        shutil.copytree(EXAMPLES / "add_sub", repository / name)
        config = (repository / name / "config.pbtxt").read_text()
        config = config.replace('name: "add_sub"', f'name: "{name}"').replace("max_batch_size: 0", "max_batch_size: 8")
        (repository / name / "config.pbtxt").write_text(config + extra)
    for name, (config, code) in EXTRA_MODELS.items():
        (repository / name / "1").mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(config)
        (repository / name / "1" / "model.py").write_text(code)
    for name, config in ENSEMBLES.items():
        (repository / name / "1").mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(config)
    reference = _Reference(repository, repository.parent / "reference.log")
    airtower: ServerProcess | None = None
    try:
        airtower = start_server([repository], "--allow-metrics=false")
        yield {"airtower": (airtower.port, airtower.grpc_port), "triton": (reference.port, reference.grpc_port)}
    finally:
        reference.stop()
        if airtower is not None:
            assert airtower.stop() == 0, airtower.output()


def _timeless(value: Any) -> Any:
    """``value`` without what differs from run to run (durations, times)."""
    if isinstance(value, dict):
        return {k: "<t>" if k in ("ns", "last_inference", "lastInference") else _timeless(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _http(port: int, method: str, path: str, data: bytes, headers: dict[str, str]) -> tuple[Any, ...]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=data or None, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    encoding = response.getheader("Content-Encoding")
    if encoding == "gzip":  # the content is compared, not how each zlib compressed it
        raw = gzip.decompress(raw)
    elif encoding == "deflate":
        raw = zlib.decompress(raw)
    binary = response.getheader("Inference-Header-Content-Length")
    try:
        document = json.loads(raw)
    except ValueError:
        return response.status, encoding, binary, raw[:300]
    if isinstance(document, dict) and "ensemble_scheduling" in document:
        # An ensemble's config holds protobuf maps (input_map, output_map), which both servers write
        # in an order their protobuf library randomizes per process: compared as parsed JSON.
        return response.status, encoding, binary, document
    timeless = _timeless(document)
    # Byte for byte (the JSON text of numbers, key order, escapes), unless the answer holds times.
    return response.status, encoding, binary, raw if timeless == document else timeless


def _grpc(port: int, method: str, request: Any) -> tuple[Any, Any]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call: Callable[..., Any] = getattr(service_pb2_grpc.GRPCInferenceServiceStub(channel), method)
        if isinstance(request, bytes) or (isinstance(request, list) and any(isinstance(m, bytes) for m in request)):
            call = _raw_call(channel, method)  # request messages as they are: some do not parse
        try:
            if method == "ModelStreamInfer":
                return "OK", [_timeless(MessageToDict(answer)) for answer in call(iter(request), timeout=60)]
            return "OK", _timeless(MessageToDict(call(request, timeout=60)))
        except grpc.RpcError as error:
            return error.code().name, error.details()


def _raw_call(channel: grpc.Channel, method: str) -> Any:
    """``method`` sending bytes (or messages) as they are; answers read as its response type."""
    path = f"/inference.GRPCInferenceService/{method}"
    response = getattr(service_pb2, f"{method}Response").FromString
    serialize: Callable[[Any], bytes] = lambda m: m if isinstance(m, bytes) else m.SerializeToString()  # noqa: E731
    if method == "ModelStreamInfer":
        return channel.stream_stream(path, request_serializer=serialize, response_deserializer=response)
    return channel.unary_unary(path, request_serializer=serialize, response_deserializer=response)


def _assert_alike(protocol: str, labels: list[str], answers: dict[str, list[Any]]) -> None:
    """The two servers' answers agree but for ``KNOWN_DIFFERENCES``, which all still differ
    (``labels``: what each request was, for the failure message)."""
    differing = {
        f"{protocol} {index}": f"{label}:\n  airtower {a!r:.400}\n  triton {t!r:.400}"
        for index, (label, a, t) in enumerate(zip(labels, answers["airtower"], answers["triton"], strict=True))
        if a != t
    }
    unexpected = [f"{name} {text}" for name, text in differing.items() if name not in KNOWN_DIFFERENCES]
    assert not unexpected, "\n".join(unexpected)
    stale = [name for name in KNOWN_DIFFERENCES if name.startswith(f"{protocol} ") and name not in differing]
    assert not stale, f"listed as different but answered alike: {stale}"


def test_http_answers_as_the_reference(servers: dict[str, tuple[int, int]]) -> None:
    answers = {who: [_http(ports[0], *case) for case in CASES] for who, ports in servers.items()}
    _assert_alike("http", [f"{method} {path}" for method, path, _, _ in CASES], answers)


def test_grpc_answers_as_the_reference(servers: dict[str, tuple[int, int]]) -> None:
    answers = {who: [_grpc(ports[1], *case) for case in GRPC_CASES] for who, ports in servers.items()}
    _assert_alike("grpc", [method for method, _ in GRPC_CASES], answers)
