"""The generate extension over real HTTP: /generate and /generate_stream (server-sent events) for a
normal and a decoupled Python model, Triton's error answers, and a client leaving mid-stream."""

from __future__ import annotations

import http.client
import json
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server_process import ServerProcess, start_server

pytestmark = pytest.mark.integration

ECHO_MODEL = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            outputs = [pb_utils.Tensor("OUT_" + t.name(), t.as_numpy()) for t in request.inputs()]
            outputs.append(pb_utils.Tensor("PARAMS", np.array([request.parameters().encode()], dtype=np.object_)))
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
"""

# N tokens from another thread, then a bare final flag; N < 0 raises. With a "gate" parameter
# (a file path) it waits for that file after the first token; with "until_cancelled" it sends
# until the client goes away, then writes "cancelled" to that path.
TOKENS_MODEL = """
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def token(i):
    return pb_utils.InferenceResponse([
        pb_utils.Tensor("OUT", np.array([i], np.int32)),
        pb_utils.Tensor("TEXT", np.array([("tok%d" % i).encode()], dtype=np.object_)),
    ])


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            if n < 0:
                raise RuntimeError("negative count")
            parameters = __import__("json").loads(request.parameters())
            sender = request.get_response_sender()

            def work(sender=sender, n=n, parameters=parameters):
                marker = parameters.get("until_cancelled")
                if marker:
                    deadline = time.monotonic() + 30
                    i = 0
                    while not sender.is_cancelled() and time.monotonic() < deadline:
                        sender.send(token(i))
                        i += 1
                        time.sleep(0.01)
                    with open(marker + ".tmp", "w") as f:
                        f.write("cancelled" if sender.is_cancelled() else "timeout")
                    os.replace(marker + ".tmp", marker)
                    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                    return
                for i in range(n):
                    if i == 1 and parameters.get("gate"):
                        deadline = time.monotonic() + 30
                        while not os.path.exists(parameters["gate"]) and time.monotonic() < deadline:
                            time.sleep(0.01)
                    if i == 1 and parameters.get("fail_second"):
                        sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError("bad token")))
                        continue
                    sender.send(token(i))
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

            threading.Thread(target=work).start()
        return None
"""

FAILING_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            mode = int(pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0])
            if mode == 1:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("rejected by the model")))
            else:
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([mode], np.int32))]))
        return responses
"""


def _write(repository: Path, name: str, model: str, config: str) -> None:
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "1" / "model.py").write_text(model)
    (repository / name / "config.pbtxt").write_text(textwrap.dedent(config))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repository = tmp_path_factory.mktemp("generate")
    _write(
        repository,
        "echo",
        ECHO_MODEL,
        """\
        name: "echo"
        backend: "python"
        max_batch_size: 0
        input [
          { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] optional: true },
          { name: "f" data_type: TYPE_FP32 dims: [ -1 ] optional: true },
          { name: "i" data_type: TYPE_INT32 dims: [ 1 ] optional: true }
        ]
        output [
          { name: "OUT_text_input" data_type: TYPE_STRING dims: [ 1 ] },
          { name: "OUT_f" data_type: TYPE_FP32 dims: [ -1 ] },
          { name: "OUT_i" data_type: TYPE_INT32 dims: [ 1 ] },
          { name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] }
        ]
        """,
    )
    _write(
        repository,
        "tokens",
        TOKENS_MODEL,
        """\
        name: "tokens"
        backend: "python"
        max_batch_size: 0
        model_transaction_policy { decoupled: true }
        input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [
          { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] },
          { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] }
        ]
        """,
    )
    _write(
        repository,
        "failing",
        FAILING_MODEL,
        """\
        name: "failing"
        backend: "python"
        max_batch_size: 0
        input [ { name: "MODE" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
        """,
    )
    process = start_server([repository])
    yield process
    assert process.stop() == 0, process.output()
    # The transport and the loop saw no error (the model's own failures are logged on purpose).
    for trouble in ("unexpected error while handling an HTTP request", "Exception in callback", "exception was never"):
        assert trouble not in process.output()


def post(server: ServerProcess, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """(status, headers, body) of one request; http.client undoes the chunked encoding."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        connection.request("POST", path, data, headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


class RawStream:
    """A raw HTTP/1.1 connection that reads a chunked response chunk by chunk."""

    def __init__(self, server: ServerProcess) -> None:
        self.socket = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        self.file = self.socket.makefile("rb")

    def send(self, path: str, body: Any) -> None:
        data = json.dumps(body).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        self.socket.sendall(head + data)

    def head(self) -> list[bytes]:
        lines = []
        while (line := self.file.readline()) != b"\r\n":
            lines.append(line.rstrip(b"\r\n"))
        return lines

    def chunk(self) -> bytes:
        """The next chunk's data; b"" for the last chunk."""
        size = int(self.file.readline().strip(), 16)
        data = self.file.read(size)
        assert self.file.read(2) == b"\r\n"
        return data

    def close(self) -> None:
        self.file.close()
        self.socket.close()


def events(body: bytes) -> list[Any]:
    assert body.endswith(b"\n\n"), body
    parts = body[:-2].split(b"\n\n")
    assert all(part.startswith(b"data: ") for part in parts), body
    return [json.loads(part[len(b"data: ") :]) for part in parts]


def test_generate_maps_json_to_inputs_and_parameters(server: ServerProcess) -> None:
    status, headers, body = post(
        server, "/v2/models/echo/generate", {"text_input": "hello", "f": [1.5, 2], "max_tokens": 5, "id": "r1"}
    )
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Transfer-Encoding"] == "chunked"
    answer = json.loads(body)
    assert json.loads(answer.pop("PARAMS")) == {"max_tokens": 5, "id": "r1"}
    assert answer == {
        "OUT_f": [1.5, 2.0],
        "OUT_text_input": "hello",
        "id": "r1",
        "model_name": "echo",
        "model_version": "1",
    }
    # Keys sorted as Triton writes them.
    assert body.startswith(b'{"OUT_f":[1.5,2.0],"OUT_text_input":"hello","PARAMS":')


def test_generate_stream_of_a_normal_model_is_one_event(server: ServerProcess) -> None:
    status, headers, body = post(server, "/v2/models/echo/versions/1/generate_stream", {"i": 3})
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert events(body) == [{"OUT_i": 3, "PARAMS": "{}", "model_name": "echo", "model_version": "1"}]


def test_generate_stream_sends_each_response_of_a_decoupled_model(server: ServerProcess) -> None:
    status, _, body = post(server, "/v2/models/tokens/generate_stream", {"N": 3})
    assert status == 200
    assert events(body) == [
        {"OUT": i, "TEXT": f"tok{i}", "model_name": "tokens", "model_version": "1"} for i in range(3)
    ]


def test_generate_stream_events_arrive_as_the_model_sends_them(server: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    stream = RawStream(server)
    try:
        stream.send("/v2/models/tokens/generate_stream", {"N": 3, "gate": str(gate)})
        assert stream.head() == [
            b"HTTP/1.1 200 OK",
            b"Content-Type: text/event-stream; charset=utf-8",
            b"Transfer-Encoding: chunked",
        ]
        # The model is blocked until the gate exists: the first token came before the rest.
        assert events(stream.chunk())[0]["TEXT"] == "tok0"
        gate.touch()
        assert [events(stream.chunk())[0]["TEXT"] for _ in range(2)] == ["tok1", "tok2"]
        assert stream.chunk() == b""
        # The connection stays open for the next request.
        stream.send("/v2/models/tokens/generate_stream", {"N": 0})
        assert stream.head()[0] == b"HTTP/1.1 200 OK"
        assert stream.chunk() == b""
    finally:
        stream.close()


def test_generate_stream_error_responses_are_events(server: ServerProcess) -> None:
    status, _, body = post(server, "/v2/models/tokens/generate_stream", {"N": 3, "fail_second": True})
    assert status == 200
    assert [event.get("error", event.get("TEXT")) for event in events(body)] == ["tok0", "bad token", "tok2"]
    status, _, body = post(server, "/v2/models/tokens/generate_stream", {"N": -1})
    assert status == 400
    [event] = events(body)
    assert "negative count" in event["error"]
    status, _, body = post(server, "/v2/models/tokens/generate_stream", {"N": 0})
    assert (status, body) == (200, b"")


def test_generate_wants_exactly_one_response(server: ServerProcess) -> None:
    status, _, body = post(server, "/v2/models/tokens/generate", {"N": 1})
    assert (status, json.loads(body)) == (200, {"OUT": 0, "TEXT": "tok0", "model_name": "tokens", "model_version": "1"})
    for n in (0, 2):
        status, _, body = post(server, "/v2/models/tokens/generate", {"N": n})
        assert status == 200
        assert json.loads(body) == {
            "error": "generate expects model to produce exactly 1 response, use generate stream for model that "
            "generates various number of responses"
        }


def test_generate_model_error_is_a_400_error_body(server: ServerProcess) -> None:
    status, headers, body = post(server, "/v2/models/failing/generate", {"MODE": 1})
    assert (status, headers["Transfer-Encoding"], body) == (400, "chunked", b'{"error":"rejected by the model"}')
    status, _, body = post(server, "/v2/models/failing/generate_stream", {"MODE": 1})
    assert (status, body) == (400, b'data: {"error":"rejected by the model"}\n\n')


UNKNOWN_VERSION = "Request for unknown model: 'echo' version 2 is not found"
NOT_INT = "Unable to parse 'data': attempt to access JSON non-signed-integer as signed-integer"
BAD_SHAPE = "The schema can not convert input 'i' to tensor with proper shape"
BAD_PARAMETER = "parameter 'x' has invalid type. It should be either 'int', 'bool', or 'string'."
GZIP = {"Content-Encoding": "gzip"}
NOT_IDENTITY = "Unsupported content-encoding, only 'identity' is supported."


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "message"),
    [
        ("/v2/models/nope/generate", {"i": 1}, None, 404, "Request for unknown model: 'nope' is not found"),
        ("/v2/models/echo/versions/2/generate_stream", {}, None, 404, UNKNOWN_VERSION),
        ("/v2/models/echo/generate", {"i": "x"}, None, 500, NOT_INT),
        ("/v2/models/echo/generate_stream", {"i": [1, 2]}, None, 400, BAD_SHAPE),
        ("/v2/models/echo/generate", {"x": [1]}, None, 400, BAD_PARAMETER),
        ("/v2/models/echo/generate", [1], None, 500, "attempt to get members for non-object"),
        ("/v2/models/echo/generate", {"i": 1}, GZIP, 400, NOT_IDENTITY),
        ("/v2/models/tokens/generate", {}, None, 400, None),
    ],
)
def test_generate_errors_before_inference_match_triton(
    server: ServerProcess, path: str, body: Any, headers: dict[str, str] | None, status: int, message: str | None
) -> None:
    got_status, got_headers, got_body = post(server, path, body, headers)
    assert got_status == status
    assert got_headers["Content-Type"] == "application/json"
    assert "Content-Length" in got_headers
    if message is not None:
        assert json.loads(got_body) == {"error": message}


def test_generate_bad_json_and_wrong_method(server: ServerProcess) -> None:
    status, _, body = post(server, "/v2/models/echo/generate", b"{bad")
    assert status == 500
    assert json.loads(body)["error"].startswith("failed to parse the request JSON buffer: ")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request("GET", "/v2/models/echo/generate_stream")
        response = connection.getresponse()
        assert (response.status, response.getheader("Content-Type"), response.read()) == (
            405,
            "application/json",
            b'{"error":"Method Not Allowed"}',
        )
    finally:
        connection.close()


def test_generate_stream_client_leaving_cancels_the_model(server: ServerProcess, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    stream = RawStream(server)
    try:
        stream.send("/v2/models/tokens/generate_stream", {"N": 1, "until_cancelled": str(marker)})
        stream.head()
        assert events(stream.chunk())[0]["TEXT"] == "tok0"
    finally:
        stream.close()
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "cancelled"
    # The server goes on serving.
    status, _, body = post(server, "/v2/models/tokens/generate", {"N": 1})
    assert status == 200
    assert json.loads(body)["TEXT"] == "tok0"
