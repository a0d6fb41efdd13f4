"""The generate extension: JSON → request mapping, response JSON, reply rules and the chunked
writing of the HTTP connection, with the answers of the reference Triton 2.51."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from airtower.core.request import InferenceRequest, ResponseSink
from airtower.core.response import InferenceResponse
from airtower.core.shared_memory import SystemSharedMemory
from airtower.core.tensor import Tensor
from airtower.errors import (
    ErrorCode,
    InternalError,
    InvalidArgumentError,
    ModelNotFoundError,
    TritonError,
    UnavailableError,
)
from airtower.frontends.http.app import HttpConnection, HttpFrontend
from airtower.frontends.http.generate import (
    EXACTLY_ONE_RESPONSE_MESSAGE,
    GenerateReply,
    InputLayout,
    decode_generate_request,
    encode_generate_response,
    fit_shape,
    input_layouts,
)

INPUTS = {
    "text_input": InputLayout("BYTES", (1,)),
    "f": InputLayout("FP32", (-1,)),
    "i": InputLayout("INT32", (1,)),
    "b": InputLayout("BOOL", (1,)),
    "m": InputLayout("INT64", (2, -1)),
    "u": InputLayout("UINT8", (-1,)),
    "h": InputLayout("FP16", (1,)),
    "s": InputLayout("BYTES", (-1, -1)),
    "batched": InputLayout("FP32", (-1, -1)),
}
SHAPE_MISMATCH = "Unable to parse 'data': Shape does not match true shape of 'data' field"


def decode(document: object) -> InferenceRequest:
    return decode_generate_request("echo", "", document, INPUTS)


def error_of(document: object) -> TritonError:
    with pytest.raises(TritonError) as info:
        decode(document)
    return info.value


def response(*outputs: Tensor, **parameters: Any) -> InferenceResponse:
    return InferenceResponse("echo", "1", "", list(outputs), parameters)


# --------------------------------------------------------------------------- requests


def test_generate_request_maps_inputs_by_name_and_the_rest_to_parameters() -> None:
    request = decode({"text_input": "hello", "i": 3, "max_tokens": 5, "stop": "x", "flag": True, "temperature": 0.5})
    assert request.model_name == "echo"
    assert list(request.inputs) == ["text_input", "i"]
    text = request.inputs["text_input"]
    assert (text.datatype, text.shape, text.data.tolist()) == ("BYTES", (1,), [b"hello"])
    number = request.inputs["i"]
    assert (number.datatype, number.shape, number.data.tolist()) == ("INT32", (1,), [3])
    assert number.data.dtype.name == "int32"
    assert request.parameters == {"max_tokens": 5, "stop": "x", "flag": True, "temperature": 0.5}


def test_generate_request_fits_values_to_the_metadata_shape() -> None:
    request = decode({"f": [1.5, 2, 3], "m": [1, 2, 3, 4], "batched": [1, 2], "s": ["a", "b"], "u": []})
    shapes = {name: tensor.shape for name, tensor in request.inputs.items()}
    assert shapes == {"f": (3,), "m": (2, 2), "batched": (1, 2), "s": (1, 2), "u": (0,)}
    assert request.inputs["f"].data.tolist() == [1.5, 2.0, 3.0]
    assert request.inputs["m"].data.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    ("dims", "count", "shape"),
    [((1,), 1, (1,)), ((-1,), 0, (0,)), ((-1, 1), 1, (1, 1)), ((-1, -1), 3, (1, 3)), ((2, -1), 4, (2, 2)), ((), 1, ())],
)
def test_generate_fit_shape_gives_the_innermost_variable_dim_the_rest(
    dims: tuple[int, ...], count: int, shape: tuple[int, ...]
) -> None:
    assert fit_shape("x", dims, count) == shape


@pytest.mark.parametrize("value", [[1, 2, 3], []])
def test_generate_request_refuses_values_that_do_not_fill_the_shape(value: list[int]) -> None:
    name = "m" if len(value) == 3 else "i"
    error = error_of({name: value})
    assert isinstance(error, InvalidArgumentError)
    assert error.message == f"The schema can not convert input '{name}' to tensor with proper shape"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"i": "x"}, "Unable to parse 'data': attempt to access JSON non-signed-integer as signed-integer"),
        ({"i": 1.5}, "Unable to parse 'data': attempt to access JSON non-signed-integer as signed-integer"),
        ({"i": 2**63}, "Unable to parse 'data': attempt to access JSON non-signed-integer as signed-integer"),
        ({"i": None}, "Unable to parse 'data': attempt to access JSON non-signed-integer as signed-integer"),
        ({"u": [-1]}, "Unable to parse 'data': attempt to access JSON non-unsigned-integer as unsigned-integer"),
        ({"b": 1}, "Unable to parse 'data': attempt to access JSON non-boolean as boolean"),
        ({"f": [1, "x"]}, "Unable to parse 'data': attempt to access JSON non-number as double"),
        ({"f": True}, "Unable to parse 'data': attempt to access JSON non-number as double"),
        ({"text_input": 5}, "Unable to parse JSON bytes array: attempt to access JSON non-string as string"),
        ({"m": [[1, 2], [3, 4]]}, SHAPE_MISMATCH),
        ({"f": [1, [2, "x"]]}, SHAPE_MISMATCH),
        ({"f": [[], []]}, SHAPE_MISMATCH),
        ({"i": 3, "id": 5}, "Unable to parse 'id': attempt to access JSON non-string as string"),
        ([1, 2], "attempt to get members for non-object"),
        (
            {"parameters": 5},
            "Expected JSON object for keyword: 'parameters': attempt to access JSON non-object as object",
        ),
    ],
)
def test_generate_request_json_type_errors_are_internal_like_triton(document: object, message: str) -> None:
    error = error_of(document)
    assert isinstance(error, InternalError)
    assert error.message == message


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"h": 1.0}, "receiving FP16 data via JSON is not supported. Please use the binary data format for input h"),
        ({"nested": {"a": 1}}, "parameter 'nested' has invalid type. It should be either 'int', 'bool', or 'string'."),
        ({"x": None}, "parameter 'x' has invalid type. It should be either 'int', 'bool', or 'string'."),
        (
            {"parameters": {"x": [1]}},
            "Converting keyword: 'parameters': parameter 'x' has invalid type. It should be either 'int', 'bool', or "
            "'string'.",
        ),
        ({"parameters": {"i": 4}, "i": 5}, "[request id: <id_unknown>] input 'i' already exists in request"),
        (
            {"i": 5, "parameters": {"i": 4}, "id": "r1"},
            "Converting keyword: 'parameters': [request id: r1] input 'i' already exists in request",
        ),
        (
            {"s": [["a", "b"]]},
            "[request id: <id_unknown>] unexpected number of string elements 2 for inference input 's' for model "
            "'echo', expecting 1",
        ),
    ],
)
def test_generate_request_semantic_errors_are_invalid_arguments(document: object, message: str) -> None:
    error = error_of(document)
    assert error.code is ErrorCode.INVALID_ARG
    assert error.message == message


def test_generate_request_nested_parameters_map_like_the_top_level() -> None:
    request = decode({"i": 3, "parameters": {"a": 1, "f": [2.5], "triton_x": "y", "parameters": 1}})
    assert request.inputs["f"].data.tolist() == [2.5]
    assert request.parameters == {"a": 1, "triton_x": "y", "parameters": 1}


def test_generate_request_parameters_named_like_input_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="Keyword 'parameters' for nested schema also given as input"):
        decode_generate_request("m", "", {"parameters": {}}, {"parameters": InputLayout("INT32", (1,))})


def test_generate_request_id_sets_the_request_id_and_stays_a_parameter() -> None:
    request = decode({"i": 3, "id": "req1"})
    assert request.id == "req1"
    assert request.parameters == {"id": "req1"}


def test_generate_request_reserved_names_are_plain_parameters_and_big_numbers_doubles() -> None:
    request = decode({"sequence_id": 5, "priority": -1, "timeout": 2, "x": 2**63, "y": -(2**63)})
    assert request.parameters == {"sequence_id": 5, "priority": -1, "timeout": 2, "x": float(2**63), "y": -(2**63)}
    assert (request.priority, request.correlation_id, request.timeout_us) == (0, 0, 0)


def test_generate_request_integers_wrap_to_the_element_type_as_triton_casts() -> None:
    request = decode({"u": [1, 2, 300], "i": 2**40})
    assert request.inputs["u"].data.tolist() == [1, 2, 44]
    assert request.inputs["i"].data.tolist() == [0]


def test_generate_request_nested_strings_count_by_leaves() -> None:
    tensor = decode({"s": [["a"], ["b"]]}).inputs["s"]
    assert (tensor.shape, tensor.data.tolist()) == ((1, 2), [[b"a", b"b"]])


def test_generate_input_layouts_come_from_model_metadata() -> None:
    metadata = {
        "name": "echo",
        "versions": ["1"],
        "platform": "python",
        "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [-1, 1]}],
        "outputs": [],
    }
    assert input_layouts(metadata) == {"text_input": InputLayout("BYTES", (-1, 1))}


# --------------------------------------------------------------------------- responses


def test_generate_response_unwraps_single_elements_and_sorts_keys_like_triton() -> None:
    answer = response(
        Tensor.from_numpy("OUT_text_input", "BYTES", np.array([b"hello"], dtype=np.object_)),
        Tensor.from_numpy("OUT_i", "INT32", np.array([3], np.int32)),
        Tensor.from_numpy("OUT_f", "FP32", np.array([[1.5, 2.0, 0.1]], np.float32)),
        Tensor.from_numpy("OUT_b", "BOOL", np.array([True])),
        Tensor.from_numpy("empty", "FP32", np.zeros((0,), np.float32)),
    )
    answer.id = "req1"
    assert encode_generate_response(answer) == (
        b'{"OUT_b":true,"OUT_f":[1.5,2.0,0.10000000149011612],"OUT_i":3,"OUT_text_input":"hello","empty":[],'
        b'"id":"req1","model_name":"echo","model_version":"1"}'
    )


def test_generate_response_parameters_are_keys_and_reserved_names_win() -> None:
    answer = response(
        Tensor.from_numpy("OUT", "INT32", np.array([1, 2], np.int32)),
        Tensor.from_numpy("model_name", "INT32", np.array([7], np.int32)),
        pf=0.25,
        OUT="clash",
    )
    assert encode_generate_response(answer) == b'{"OUT":"clash","model_name":"echo","model_version":"1","pf":0.25}'


def test_generate_response_refuses_fp16_outputs() -> None:
    answer = response(Tensor.from_numpy("h", "FP16", np.array([1], np.float16)))
    with pytest.raises(InvalidArgumentError, match="sending FP16 data via JSON is not supported"):
        encode_generate_response(answer)


# --------------------------------------------------------------------------- reply rules


def one(value: int) -> InferenceResponse:
    return response(Tensor.from_numpy("OUT", "INT32", np.array([value], np.int32)))


def test_generate_reply_stream_sends_each_response_as_an_event() -> None:
    reply = GenerateReply(streaming=True)
    assert reply.on_response(one(0), False) == (
        200,
        [b'data: {"OUT":0,"model_name":"echo","model_version":"1"}\n\n'],
        False,
    )
    assert reply.on_response(InternalError("bad token"), False) == (200, [b'data: {"error":"bad token"}\n\n'], False)
    assert reply.on_response(None, True) == (200, [], True)
    assert reply.ended


def test_generate_reply_status_is_400_when_the_first_response_fails_whatever_its_code() -> None:
    for error in (UnavailableError("down"), ModelNotFoundError("gone"), InternalError("boom")):
        reply = GenerateReply(streaming=False)
        message = error.message.encode()
        assert reply.on_response(error, True) == (400, [b'{"error":"' + message + b'"}'], True)


def test_generate_reply_stream_with_no_response_is_an_empty_200() -> None:
    assert GenerateReply(streaming=True).on_response(None, True) == (200, [], True)


@pytest.mark.parametrize("count", [0, 2, 3])
def test_generate_reply_wants_exactly_one_response(count: int) -> None:
    reply = GenerateReply(streaming=False)
    for index in range(count):
        assert reply.on_response(one(index), False) == (200, [], False)
    status, chunks, end = reply.on_response(None, True)
    assert (status, end) == (200, True)
    assert chunks == [b'{"error":"' + EXACTLY_ONE_RESPONSE_MESSAGE.encode() + b'"}']


def test_generate_reply_single_response_of_a_decoupled_model_is_the_body() -> None:
    reply = GenerateReply(streaming=False)
    assert reply.on_response(one(0), False) == (200, [], False)
    assert reply.on_response(None, True) == (200, [b'{"OUT":0,"model_name":"echo","model_version":"1"}'], True)
    assert reply.on_response(one(1), True) == (200, [], True)  # after the end: ignored


def test_generate_reply_encoding_error_is_an_error_response() -> None:
    reply = GenerateReply(streaming=True)
    status, chunks, _ = reply.on_response(response(Tensor.from_numpy("h", "FP16", np.array([1], np.float16))), True)
    assert status == 400
    assert chunks == [
        b'data: {"error":"sending FP16 data via JSON is not supported. Please use the binary data format for '
        b'output"}\n\n'
    ]


# --------------------------------------------------------------------------- the connection


class FakeServer:
    """Just what the generate endpoints call; the test drives the responses."""

    def __init__(self) -> None:
        self.tracing = False  # no request is traced
        self.shared_memory = SystemSharedMemory()
        self.sinks: list[ResponseSink] = []
        self.futures: list[asyncio.Future[InferenceResponse]] = []
        self.requests: list[InferenceRequest] = []

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        if name != "echo":
            raise ModelNotFoundError(f"Request for unknown model: '{name}' is not found")
        return {"inputs": [{"name": "i", "datatype": "INT32", "shape": [1]}]}

    def infer_stream(self, request: InferenceRequest, on_response: ResponseSink) -> asyncio.Future[InferenceResponse]:
        future: asyncio.Future[InferenceResponse] = asyncio.get_running_loop().create_future()
        self.requests.append(request)
        self.sinks.append(on_response)
        self.futures.append(future)
        return future


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, parts: list[bytes]) -> None:
        for part in parts:
            self.written += part

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def take(self) -> bytes:
        data = bytes(self.written)
        self.written.clear()
        return data


def connect(server: FakeServer) -> tuple[HttpConnection, FakeTransport]:
    frontend = HttpFrontend(server, host="127.0.0.1", port=0, max_input_size=1 << 20)  # type: ignore[arg-type]
    connection = HttpConnection(frontend)
    transport = FakeTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s" % (path.encode(), len(body), extra, body)


async def test_http_generate_stream_writes_chunked_events_as_they_come() -> None:
    server = FakeServer()
    connection, transport = connect(server)
    connection.data_received(post("/v2/models/echo/generate_stream", b'{"i": 1}'))
    assert server.requests[0].inputs["i"].data.tolist() == [1]
    assert transport.take() == b""  # the head waits for the first response
    server.sinks[0](one(0), False)
    event = b'data: {"OUT":0,"model_name":"echo","model_version":"1"}\n\n'
    assert transport.take() == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(event)
        + event
        + b"\r\n"
    )
    server.sinks[0](InternalError("bad token"), False)
    assert transport.take() == b'1d\r\ndata: {"error":"bad token"}\n\n\r\n'
    server.sinks[0](None, True)
    assert transport.take() == b"0\r\n\r\n"
    assert not transport.closed


async def test_http_generate_keeps_the_connection_and_answers_the_next_request() -> None:
    server = FakeServer()
    connection, transport = connect(server)
    connection.data_received(
        post("/v2/models/echo/generate", b'{"i": 1}') + post("/v2/models/echo/generate", b'{"i": 2}')
    )
    assert len(server.sinks) == 1  # the second waits for the first to finish
    server.sinks[0](one(1), True)
    body = b'{"OUT":1,"model_name":"echo","model_version":"1"}'
    assert transport.take() == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(body)
        + body
        + b"\r\n0\r\n\r\n"
    )
    assert len(server.sinks) == 2
    server.sinks[1](InternalError("boom"), True)
    assert transport.take() == (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'10\r\n{"error":"boom"}\r\n0\r\n\r\n'
    )


async def test_http_generate_errors_before_inference_are_plain_responses() -> None:
    server = FakeServer()
    connection, transport = connect(server)
    connection.data_received(post("/v2/models/nope/generate", b'{"i": 1}'))
    assert transport.take() == (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 58\r\n\r\n"
        b'{"error":"Request for unknown model: \'nope\' is not found"}'
    )
    connection.data_received(post("/v2/models/echo/generate_stream", b'{"i": "x"}'))
    assert transport.take().startswith(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n")
    connection.data_received(post("/v2/models/echo/generate", b'{"i": 1}', b"Content-Encoding: gzip\r\n"))
    assert transport.take().endswith(b'{"error":"Unsupported content-encoding, only \'identity\' is supported."}')
    request = b"GET /v2/models/echo/generate HTTP/1.1\r\nHost: x\r\n\r\n"
    connection.data_received(request)
    assert transport.take() == (
        b"HTTP/1.1 405 Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n"
        b'{"error":"Method Not Allowed"}'
    )
    assert server.sinks == []


async def test_http_generate_closes_after_the_stream_when_asked() -> None:
    server = FakeServer()
    connection, transport = connect(server)
    connection.data_received(post("/v2/models/echo/versions/1/generate_stream", b'{"i": 1}', b"Connection: close\r\n"))
    assert server.requests[0].model_version == "1"
    server.sinks[0](None, True)
    assert transport.take() == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n0\r\n\r\n"
    )
    assert transport.closed


async def test_http_generate_disconnect_cancels_the_inference() -> None:
    server = FakeServer()
    connection, transport = connect(server)
    connection.data_received(post("/v2/models/echo/generate_stream", b'{"i": 1}'))
    server.sinks[0](one(0), False)
    transport.take()
    connection.connection_lost(None)
    assert server.futures[0].cancelled()
    server.sinks[0](one(1), False)  # a late response is dropped
    assert transport.take() == b""


async def test_http_generate_request_dropped_without_response_ends_with_its_error() -> None:
    server = FakeServer()
    connection, transport = connect(server)
    connection.data_received(post("/v2/models/echo/generate_stream", b'{"i": 1}'))
    server.futures[0].set_exception(UnavailableError("Request timeout expired"))
    await asyncio.sleep(0)  # the done-callback runs on the loop
    event = b'data: {"error":"Request timeout expired"}\n\n'
    assert transport.take() == (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(event) + event + b"\r\n0\r\n\r\n"
    )
