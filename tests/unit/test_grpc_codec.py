"""The gRPC codec: protobuf ⇄ core types, without a server."""

from __future__ import annotations

import grpc  # type: ignore[import-untyped]
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse
from airtower.core.tensor import Tensor
from airtower.errors import ErrorCode, InternalError, InvalidArgumentError, TritonError
from airtower.frontends.grpc.codec import (
    InferRequestDecoder,
    InferResponseEncoder,
    decode_infer_request,
    encode_infer_response,
    encode_model_metadata,
    encode_model_statistics,
    encode_repository_index,
    split_infer_request,
    stream_error_response,
)
from airtower.frontends.grpc.errors import GRPC_STATUS_BY_CODE, status_of

Request = service_pb2.ModelInferRequest
Input = Request.InferInputTensor
Contents = service_pb2.InferTensorContents
P = service_pb2.InferParameter


def typed(datatype: str, shape: list[int], **contents: list[int] | list[bytes]) -> service_pb2.ModelInferRequest:
    return Request(
        model_name="m", inputs=[Input(name="A", datatype=datatype, shape=shape, contents=Contents(**contents))]
    )


def raw_request(*inputs: tuple[str, str, list[int], bytes]) -> service_pb2.ModelInferRequest:
    return Request(
        model_name="m",
        id="r1",
        inputs=[Input(name=name, datatype=datatype, shape=shape) for name, datatype, shape, _ in inputs],
        raw_input_contents=[data for *_, data in inputs],
    )


def test_grpc_decode_raw_inputs_are_views_of_the_message() -> None:
    message = raw_request(("A", "FP32", [2, 2], np.arange(4, dtype=np.float32).tobytes()), ("B", "BOOL", [1], b"\x01"))
    request = decode_infer_request(message)
    assert (request.model_name, request.id) == ("m", "r1")
    assert list(request.inputs) == ["A", "B"]
    a = request.inputs["A"].data
    assert a.shape == (2, 2)
    assert a.tolist() == [[0, 1], [2, 3]]
    assert not a.flags.owndata  # np.frombuffer on the message's bytes
    assert request.inputs["B"].data.tolist() == [True]


def test_grpc_decode_bytes_and_fp16_raw() -> None:
    message = raw_request(
        ("S", "BYTES", [2], b"\x01\x00\x00\x00a\x00\x00\x00\x00"),
        ("H", "FP16", [2], np.array([1.5, -2], np.float16).tobytes()),
        ("G", "BF16", [1], b"\x80\x3f"),
    )
    request = decode_infer_request(message)
    assert request.inputs["S"].data.tolist() == [b"a", b""]
    assert request.inputs["H"].data.tolist() == [1.5, -2.0]
    assert request.inputs["G"].data.tolist() == [0x3F80]


def test_grpc_decode_typed_contents() -> None:
    message = Request(
        model_name="m",
        inputs=[
            Input(name="I", datatype="INT16", shape=[3], contents=Contents(int_contents=[1, -2, 3])),
            Input(name="U", datatype="UINT64", shape=[1], contents=Contents(uint64_contents=[2**64 - 1])),
            Input(name="S", datatype="BYTES", shape=[1, 1], contents=Contents(bytes_contents=[b"x"])),
        ],
    )
    request = decode_infer_request(message)
    assert request.inputs["I"].data.dtype == np.int16
    assert request.inputs["I"].data.tolist() == [1, -2, 3]
    assert request.inputs["U"].data.tolist() == [2**64 - 1]
    assert request.inputs["S"].data.tolist() == [[b"x"]]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (Request(model_name="m", raw_input_contents=[b"\0" * 4],
                 inputs=[Input(name="A", datatype="INT32", shape=[1], contents=Contents(int_contents=[1]))]),
         "contents field must not be specified when using raw_input_contents for 'A' for model 'm'"),
        (Request(model_name="m", inputs=[Input(name="A", datatype="INT32", shape=[1])]),
         "unable to find data for input tensor 'A' for model 'm' in request."),
        (typed("FP32", [1], int_contents=[1]),
         "unexpected explicit tensor data for input tensor 'A' for model 'm' of type 'INT32', "
         "expected datatype 'FP32'"),
        (typed("FP32", [2], fp32_contents=[1]),
         "[request id: <id_unknown>] input byte size mismatch for input 'A' for model 'm'. Expected 8, got 4"),
        (raw_request(("A", "INT32", [2], b"\0" * 4)),
         "[request id: r1] input byte size mismatch for input 'A' for model 'm'. Expected 8, got 4"),
        (raw_request(("A", "BYTES", [2], b"\x05\0\0\0ab")),
         "[request id: r1] expected 2 string elements for inference input 'A' for model 'm', got 1"),
        # The messages below are Triton 2.51's for the same messages (checked against the reference).
        (raw_request(("A", "BYTES", [2], b"\x01\0\0\0a\x05\0\0\0ab")),
         "incomplete string data for inference input 'A', expecting string of length 5 but only 2 bytes available"),
        (raw_request(("A", "BYTES", [2], b"\x01\0\0\0a\x05\0")),
         "[request id: r1] incomplete string length indicator for inference input 'A' for model 'm', expecting 4 "
         "bytes but only 2 bytes available. Please make sure the string length indicator is in one buffer."),
        (raw_request(("A", "BYTES", [1], b"\x01\0\0\0a" * 3)),
         "[request id: r1] unexpected number of string elements 2 for inference input 'A' for model 'm', "
         "expecting 1"),
        (typed("BYTES", [2], bytes_contents=[b"a"] * 5),
         "[request id: <id_unknown>] unexpected number of string elements 3 for inference input 'A' for model "
         "'m', expecting 2"),
        (raw_request(("A", "INT32", [1], b"\0" * 4), ("A", "INT32", [1], b"\0" * 4), ("B", "INT32", [1], b"")),
         "[request id: r1] input 'A' already exists in request"),
    ],
    ids=["mixed", "no-data", "wrong-contents-type", "typed-count", "raw-size", "bad-bytes", "cut-last-bytes",
         "cut-length", "more-bytes", "more-contents", "repeated-input"],
)  # fmt: skip
def test_grpc_decode_rejects_bad_inputs_with_triton_messages(message: object, error: str) -> None:
    assert _decode_error(message) == error


def _decode_error(message: object) -> str:
    """The error decoding raises, or else the byte-size error it leaves for the validator (which
    raises it in Triton's order, after the request's other checks)."""
    try:
        request = decode_infer_request(message)
    except InvalidArgumentError as raised:
        return raised.message
    assert request.input_errors is not None, "decoded without an error"
    (error,) = request.input_errors.values()
    return error.message


def test_split_infer_request_takes_out_the_id_and_the_tensor_bytes() -> None:
    first = raw_request(("A", "INT32", [2], b"\1\0\0\0\2\0\0\0"), ("B", "FP32", [1], b"\0\0\x80?"))
    second = Request.FromString(first.SerializeToString())
    second.id = "another id"
    second.raw_input_contents[0] = b"\x07\0\0\0\x08\0\0\0"
    key, request_id, raw = split_infer_request(first.SerializeToString())
    assert (request_id, raw) == (b"r1", [b"\1\0\0\0\2\0\0\0", b"\0\0\x80?"])
    assert split_infer_request(second.SerializeToString())[0] == key
    rest = Request.FromString(key)  # what is left is the message without those fields
    assert (rest.id, list(rest.raw_input_contents), [t.name for t in rest.inputs]) == ("", [], ["A", "B"])
    second.parameters["priority"].CopyFrom(P(int64_param=1))
    assert split_infer_request(second.SerializeToString())[0] != key
    for broken in (first.SerializeToString()[:-3], b"\x0a\xff", b"\x0f"):
        with pytest.raises(ValueError, match=r"truncated|wire type"):
            split_infer_request(broken)


def test_infer_request_decoder_replays_a_cached_request_with_new_tensors() -> None:
    decoder = InferRequestDecoder()
    message = raw_request(("A", "INT32", [2], np.array([1, 2], np.int32).tobytes()))
    message.outputs.add(name="OUT")
    message.parameters["priority"].CopyFrom(P(int64_param=3))
    first = decoder.decode(message.SerializeToString())
    assert first.layout is None  # decoded in full, then cached
    message.id = "r2"
    message.raw_input_contents[0] = np.array([5, 6], np.int32).tobytes()
    second = decoder.decode(message.SerializeToString())
    assert second.layout is not None
    assert (second.id, second.priority, [o.name for o in second.outputs]) == ("r2", 3, ["OUT"])
    assert second.inputs["A"].data.tolist() == [5, 6]
    assert first.inputs["A"].data.tolist() == [1, 2]
    message.raw_input_contents[0] = b"\0" * 4  # a wrong size on the cached path: the full path's message
    third = decoder.decode(message.SerializeToString())
    assert third.input_errors is not None
    assert third.input_errors["A"].message.startswith("[request id: r2] input byte size mismatch for input 'A'")


def test_infer_request_decoder_full_path_for_typed_contents_and_bad_bytes() -> None:
    decoder = InferRequestDecoder()
    data = typed("INT32", [2], int_contents=[1, 2]).SerializeToString()
    for _ in range(2):
        request = decoder.decode(data)
        assert (request.layout, request.inputs["A"].data.tolist()) == (None, [1, 2])
    with pytest.raises(InternalError, match=r"^Unable to parse request$"):
        decoder.decode(b"\x0a\x05ab")


def _with_parameters(**values: service_pb2.InferParameter) -> service_pb2.ModelInferRequest:
    message = raw_request(("A", "INT32", [1], b"\0" * 4))
    for key, value in values.items():
        message.parameters[key].CopyFrom(value)
    return message


def test_grpc_decode_reserved_and_custom_parameters() -> None:
    request = decode_infer_request(
        _with_parameters(
            sequence_id=P(string_param="s"), sequence_start=P(bool_param=True), sequence_end=P(bool_param=True),
            priority=P(uint64_param=2), timeout=P(int64_param=50), custom=P(double_param=0.5), n=P(int64_param=-3),
            triton_enable_empty_final_response=P(bool_param=True),
        )
    )  # fmt: skip
    assert (request.correlation_id, request.flags, request.priority, request.timeout_us) == ("s", 3, 2, 50)
    assert request.parameters == {"custom": 0.5, "n": -3}


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("triton_x", P(bool_param=True), "parameter keys starting with 'triton_' are reserved"),
        ("priority", P(int64_param=-1), "invalid value for 'priority', expected value >= 0."),
        ("sequence_id", service_pb2.InferParameter(bool_param=True),
         "invalid value type for 'sequence_id' parameter, expected int64_param or string_param."),
        ("timeout", service_pb2.InferParameter(string_param="x"),
         "invalid value type for 'timeout' parameter, expected int64_param."),
        ("u", service_pb2.InferParameter(uint64_param=1),
         "invalid value type for 'u' parameter, expected int64_param, bool_param, or string_param."),
    ],
)  # fmt: skip
def test_grpc_decode_rejects_bad_parameters(key: str, value: service_pb2.InferParameter, error: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        decode_infer_request(_with_parameters(**{key: value}))
    assert raised.value.message.startswith(error)


def test_grpc_decode_requested_outputs_and_classification() -> None:
    message = raw_request(("A", "INT32", [1], b"\0" * 4))
    output = message.outputs.add(name="OUT")
    output.parameters["classification"].int64_param = 3
    request = decode_infer_request(message)
    assert [(o.name, o.class_count) for o in request.outputs] == [("OUT", 3)]


def test_grpc_encode_response_raw_outputs_in_order_and_parameters() -> None:
    response = InferenceResponse(
        "m", "1", outputs=[
            Tensor.from_numpy("S", "BYTES", np.array([b"ab", "c"], dtype=np.object_)),
            Tensor.from_numpy("F", "FP32", np.arange(3, dtype=np.float32)[::-1]),
            Tensor.from_numpy("B", "BOOL", np.array([True, False])),
        ],
        parameters={"flag": True, "n": 7, "x": 0.25, "s": "v"},
    )  # fmt: skip
    message = encode_infer_response(response, InferenceRequest("m", id="r9"), final_response=True)
    assert (message.model_name, message.model_version, message.id) == ("m", "1", "r9")
    assert [(o.name, o.datatype, list(o.shape)) for o in message.outputs] == [
        ("S", "BYTES", [2]), ("F", "FP32", [3]), ("B", "BOOL", [2]),
    ]  # fmt: skip
    assert message.raw_output_contents[0] == b"\x02\0\0\0ab\x01\0\0\0c"
    assert np.frombuffer(message.raw_output_contents[1], np.float32).tolist() == [2, 1, 0]
    assert message.raw_output_contents[2] == b"\x01\x00"
    parameters = message.parameters
    assert parameters["flag"].bool_param is True
    assert parameters["n"].int64_param == 7
    assert parameters["x"].double_param == 0.25
    assert parameters["s"].string_param == "v"
    assert parameters["triton_final_response"].bool_param is True


def test_grpc_response_encoder_bytes_parse_to_the_message() -> None:
    encoder = InferResponseEncoder()
    request = InferenceRequest("m", id="r1")
    big = np.arange(40, dtype=np.float32)  # 160 bytes: a two-byte length varint
    for response, request_id in [
        (InferenceResponse("m", "1", outputs=[Tensor.from_numpy("F", "FP32", big[::-1])]), ""),
        (InferenceResponse("m", "1", outputs=[Tensor.from_numpy("F", "FP32", big[:3])]), "r2"),
        (InferenceResponse("m", "2", outputs=[Tensor.from_numpy("S", "BYTES", np.array([b"ab"], np.object_))]), ""),
        (InferenceResponse("m", "1", id="é" * 70), "r3"),  # no outputs; a non-ASCII id
        (InferenceResponse("m", "1", outputs=[Tensor.from_numpy("E", "FP32", np.zeros((2, 0), np.float32))]), ""),
        (
            InferenceResponse(
                "m", "1", outputs=[Tensor.from_numpy("B", "BOOL", np.array([True]))], parameters={"n": 7}
            ),
            "",
        ),
    ]:
        request.id = request_id
        data = encoder.encode(response, request)
        assert isinstance(data, bytes)
        assert service_pb2.ModelInferResponse.FromString(data) == encode_infer_response(response, request)


def test_grpc_stream_response_bytes_parse_to_the_message() -> None:
    encoder = InferResponseEncoder()
    big = np.arange(40, dtype=np.float32)  # 160 bytes of output: the stream message's length takes two bytes
    cases = [
        (InferenceResponse("m", "1", outputs=[Tensor.from_numpy("F", "FP32", big[::-1])]), "r1"),
        (InferenceResponse("m", "1", outputs=[Tensor.from_numpy("F", "FP32", big[:3])]), ""),
        (InferenceResponse("m", "2", outputs=[Tensor.from_numpy("S", "BYTES", np.array([b"ab"], np.object_))]), ""),
        (InferenceResponse("m", "1", id="é" * 70), "r3"),  # no outputs
        (
            InferenceResponse(
                "m", "1", outputs=[Tensor.from_numpy("B", "BOOL", np.array([True]))], parameters={"n": 7}
            ),
            "",
        ),
    ]
    for response, request_id in cases:
        for final in (True, False):
            request = InferenceRequest("m", id=request_id)
            data = encoder.encode_stream(response, request, final)
            expected = service_pb2.ModelStreamInferResponse(
                infer_response=encode_infer_response(response, request, final)
            )
            assert service_pb2.ModelStreamInferResponse.FromString(data) == expected


def test_grpc_response_encoder_caches_one_template_per_output_signature() -> None:
    encoder = InferResponseEncoder()
    encoder.MAX_CACHED = 2
    request = InferenceRequest("m")
    for n in (1, 1, 2, 3, 3):
        response = InferenceResponse("m", "1", outputs=[Tensor.from_numpy("F", "FP32", np.zeros(n, np.float32))])
        decoded = service_pb2.ModelInferResponse.FromString(encoder.encode(response, request))
        assert list(decoded.outputs[0].shape) == [n]
        assert len(decoded.raw_output_contents[0]) == 4 * n
    assert len(encoder._prefixes) == 1  # the third signature restarted the cache


def test_grpc_stream_error_response() -> None:
    message = stream_error_response("boom", "r1", "m")
    assert message.error_message == "boom"
    assert (message.infer_response.id, message.infer_response.model_name) == ("r1", "m")
    assert stream_error_response("x", "r2").infer_response.model_name == ""


def test_grpc_encode_metadata_statistics_index() -> None:
    metadata = encode_model_metadata(
        {"name": "m", "versions": ["1"], "platform": "python",
         "inputs": [{"name": "A", "datatype": "FP32", "shape": [-1, 4]}], "outputs": []}
    )  # fmt: skip
    assert list(metadata.inputs[0].shape) == [-1, 4]
    stats = encode_model_statistics(
        {"model_stats": [{"name": "m", "version": "1", "inference_count": 4,
                          "inference_stats": {"success": {"count": 2, "ns": 10}}, "unknown": 1}]}
    )  # fmt: skip
    assert stats.model_stats[0].inference_stats.success.count == 2
    index = encode_repository_index(
        [{"name": "m", "version": "1", "state": "READY"}, {"name": "n", "state": "UNAVAILABLE", "reason": "x"}]
    )
    assert [(m.name, m.version, m.state, m.reason) for m in index.models] == [
        ("m", "1", "READY", ""), ("n", "", "UNAVAILABLE", "x"),
    ]  # fmt: skip


def test_grpc_status_table_covers_every_code() -> None:
    assert set(GRPC_STATUS_BY_CODE) == set(ErrorCode)
    assert status_of(TritonError.from_code(ErrorCode.UNSUPPORTED, "x")) == grpc.StatusCode.UNIMPLEMENTED
    assert status_of(TritonError.from_code(ErrorCode.INVALID_ARG, "x")) == grpc.StatusCode.INVALID_ARGUMENT
