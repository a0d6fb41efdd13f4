"""The HTTP codec: JSON and binary tensors ⇄ core requests and responses, with Triton's messages."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2

from airtower.core.request import InferenceRequest, RequestedOutput
from airtower.core.response import InferenceResponse
from airtower.core.shared_memory import SystemSharedMemory
from airtower.core.tensor import Tensor, serialize_bytes_tensor
from airtower.errors import InternalError, InvalidArgumentError, TritonError
from airtower.frontends.http.codec import (
    decode_infer_request,
    decode_raw_request,
    encode_infer_response,
    parse_json_body,
)
from airtower.types import NUMPY_DTYPE_BY_WIRE

EMPTY = memoryview(b"")
NUMERIC = ["UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP32", "FP64"]


def _decode(document: dict[str, Any], binary: bytes = b"") -> tuple[InferenceRequest, bool]:
    return decode_infer_request("m", "", json.dumps(document).encode(), memoryview(binary))


def _one_input(datatype: str, shape: list[int], **fields: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": shape, "datatype": datatype, **fields}]}


def _error(document: dict[str, Any], binary: bytes = b"") -> TritonError:
    """The error decoding raises, or else the byte-size error it leaves for the validator (which
    raises it in Triton's order, after the request's other checks)."""
    try:
        request, _ = _decode(document, binary)
    except TritonError as error:
        return error
    assert request.input_errors is not None, "decoded without an error"
    (deferred,) = request.input_errors.values()
    return deferred


def _sample(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([b"a", b"", "é".encode(), b"\x00\xff", b"xyz", b"q"], dtype=np.object_).reshape(2, 3)
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    return np.arange(6).astype(NUMPY_DTYPE_BY_WIRE[datatype]).reshape(2, 3)


def _response(*tensors: Tensor) -> InferenceResponse:
    return InferenceResponse("m", "1", outputs=list(tensors))


# ------------------------------------------------------------------------------ JSON inputs


@pytest.mark.parametrize("datatype", [*NUMERIC, "BOOL"])
def test_http_codec_decode_json_data_for_every_json_datatype(datatype: str) -> None:
    data = _sample(datatype)
    request, _ = _decode(_one_input(datatype, [2, 3], data=data.reshape(-1).tolist()))
    tensor = request.inputs["x"]
    assert (tensor.datatype, tensor.shape, tensor.data.dtype) == (datatype, (2, 3), NUMPY_DTYPE_BY_WIRE[datatype])
    assert np.array_equal(tensor.data, data)


def test_http_codec_decode_json_bytes_as_utf8() -> None:
    request, _ = _decode(_one_input("BYTES", [2], data=["ab", "cé"]))
    assert request.inputs["x"].data.tolist() == [b"ab", "cé".encode()]


def test_http_codec_decode_nested_data_is_flattened_row_major() -> None:
    request, _ = _decode(_one_input("INT32", [2, 2], data=[[1, 2], [3, [4]]]))
    assert request.inputs["x"].data.tolist() == [[1, 2], [3, 4]]


def test_http_codec_decode_truncates_like_triton() -> None:
    request, _ = _decode(_one_input("INT32", [1], data=[4000000000]))
    assert request.inputs["x"].data.tolist() == [-294967296]


@pytest.mark.parametrize(
    ("datatype", "data", "detail"),
    [
        ("FP32", [1, "a"], "attempt to access JSON non-number as double"),
        ("FP32", [1, True], "attempt to access JSON non-number as double"),
        ("BOOL", [1, 0], "attempt to access JSON non-boolean as boolean"),
        ("INT32", [1, 4.5], "attempt to access JSON non-signed-integer as signed-integer"),
        ("UINT8", [1, -1], "attempt to access JSON non-unsigned-integer as unsigned-integer"),
        ("INT64", [1, 2**70], "attempt to access JSON non-signed-integer as signed-integer"),
        ("FP32", [1, 2, 3], "Shape does not match true shape of 'data' field"),
        ("FP32", [1], "Shape does not match true shape of 'data' field"),
        ("FP32", ["a"], "attempt to access JSON non-number as double"),  # element types before the count
        ("FP32", 1, "attempt to access JSON non-array as array"),
        ("FP32", None, "attempt to access JSON non-array as array"),
    ],
)
def test_http_codec_decode_rejects_bad_json_data_as_triton_does(datatype: str, data: Any, detail: str) -> None:
    error = _error(_one_input(datatype, [2], data=data))
    assert isinstance(error, InternalError)
    assert error.message == f"Unable to parse 'data': {detail}"


# Each message below is what Triton 2.51 answers (checked against the reference server).
@pytest.mark.parametrize(
    ("shape", "data", "error", "message"),
    [
        ([2], ["a", 1], InternalError, "Unable to parse JSON bytes array: attempt to access JSON non-string as string"),
        ([3], [1], InternalError, "Unable to parse JSON bytes array: attempt to access JSON non-string as string"),
        ([3], ["a"], InvalidArgumentError,
         "[request id: r] expected 3 string elements for inference input 'x' for model 'm', got 1"),
        ([2], ["a", "b", "c", "d", "e"], InvalidArgumentError,
         "[request id: r] unexpected number of string elements 3 for inference input 'x' for model 'm', expecting 2"),
    ],
)  # fmt: skip
def test_http_codec_decode_checks_json_bytes_as_triton_does(
    shape: list[int], data: list[Any], error: type[Exception], message: str
) -> None:
    raised = _error({"id": "r", **_one_input("BYTES", shape, data=data)})
    assert (type(raised), raised.message) == (error, message)


def test_http_codec_decode_reads_nan_and_infinity_as_triton_does() -> None:
    # Python's json.dumps (and so tritonclient in JSON mode) writes NaN / Infinity / -Infinity.
    body = b'{"inputs":[{"name":"x","shape":[6],"datatype":"FP32","data":[NaN,Infinity,-Infinity,Inf,-Inf,-NaN]}]}'
    request, _ = decode_infer_request("m", "", body, memoryview(b""))
    data = request.inputs["x"].data
    assert np.isnan(data[[0, 5]]).all()
    assert data[1:5].tolist() == [np.inf, -np.inf, np.inf, -np.inf]


def test_http_codec_decode_rejects_a_repeated_input() -> None:
    document = {"id": "r", "inputs": [*_one_input("FP32", [1], data=[1])["inputs"]] * 2 + [{"name": "bad"}]}
    error = _error(document)  # reported before the next input is read, as Triton does
    assert (type(error), error.message) == (InvalidArgumentError, "[request id: r] input 'x' already exists in request")


@pytest.mark.parametrize(
    ("item", "error", "message"),
    [
        # Where the data is comes first, then name, datatype and shape, then the datatype's validity.
        ({"shape": [1]}, InvalidArgumentError, "Input must set only one of the following fields: 'data', "
         "'binary_data_size' in 'parameters', 'shared_memory_region' in 'parameters'. But no field is set"),
        (5, InvalidArgumentError, "Input must set only one of the following fields: 'data', "
         "'binary_data_size' in 'parameters', 'shared_memory_region' in 'parameters'. But no field is set"),
        ({"name": "x", "datatype": "FP99", "data": [1]}, InternalError,
         "Unable to parse 'shape': attempt to access non-existing object member 'shape'"),
        ({"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": "x"}}, InternalError,
         "Unable to parse 'binary_data_size': attempt to access JSON non-unsigned-integer as unsigned-integer"),
    ],
)  # fmt: skip
def test_http_codec_decode_checks_an_input_in_triton_order(item: Any, error: type[Exception], message: str) -> None:
    raised = _error({"inputs": [item]})
    assert (type(raised), raised.message) == (error, message)


def test_http_codec_decode_ignores_parameters_that_are_not_objects_on_tensors() -> None:
    document = _one_input("FP32", [1], data=[1], parameters=5)
    document["outputs"] = [{"name": "y", "parameters": 5}]
    request, _ = _decode(document)
    assert request.inputs["x"].data.tolist() == [1.0]
    assert request.outputs[0].name == "y"


def test_http_codec_decode_reports_request_parameters_that_are_not_an_object() -> None:
    error = _error({"inputs": [], "parameters": 5})
    assert (type(error), error.message) == (
        InternalError,
        "failed to get request params.: attempt to get members for non-object",
    )


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_http_codec_decode_rejects_half_floats_in_json(datatype: str) -> None:
    error = _error(_one_input(datatype, [1], data=[1]))
    assert isinstance(error, InvalidArgumentError)
    assert error.message == (
        f"receiving {datatype} data via JSON is not supported. Please use the binary data format for input x"
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "Unable to parse 'inputs': attempt to access non-existing object member 'inputs'"),
        ({"inputs": {}}, "Unable to parse 'inputs': attempt to access JSON non-array as array"),
        ({"id": 5, "inputs": []}, "Unable to parse 'id': attempt to access JSON non-string as string"),
        (
            {"inputs": [{"shape": [1], "data": [1]}]},
            "Unable to parse 'name': attempt to access non-existing object member 'name'",
        ),
        (
            {"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]},
            "Unable to parse 'shape': attempt to access non-existing object member 'shape'",
        ),
        (
            _one_input("FP32", [1, -4], data=[1]),
            "Unable to parse 'shape': attempt to access JSON non-unsigned-integer as unsigned-integer",
        ),
        (
            {"inputs": [], "outputs": {}},
            "Unable to parse 'outputs': attempt to access JSON non-array as array",
        ),
        (
            {"inputs": [], "outputs": [{"name": "y", "parameters": {"classification": True}}]},
            "Unable to set 'classification': attempt to access JSON non-unsigned-integer as unsigned-integer",
        ),
        (
            {"inputs": [], "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]},
            "Unable to parse 'binary_data': attempt to access JSON non-boolean as boolean",
        ),
    ],
)
def test_http_codec_decode_rejects_malformed_structure(document: dict[str, Any], message: str) -> None:
    error = _error(document)
    assert (type(error), error.message) == (InternalError, message)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_one_input("FP33", [1], data=[1]), "invalid datatype for input x"),
        (
            _one_input("FP32", [1]),
            "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', "
            "'shared_memory_region' in 'parameters'. But no field is set",
        ),
        (
            _one_input("FP32", [1], data=[1], parameters={"binary_data_size": 4}),
            "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', "
            "'shared_memory_region' in 'parameters'. But set 'data' 'binary_data_size'",
        ),
        (
            {"inputs": [], "parameters": {"x": [1]}},
            "parameter 'x' has invalid type. It should be either 'int', 'bool', or 'string'.",
        ),
        (
            {"inputs": [], "parameters": {"triton_enable_empty_final_response": True}},
            "parameter keys starting with 'triton_' are reserved for Triton usage and should not be specified.",
        ),
    ],
)
def test_http_codec_decode_rejects_invalid_arguments(document: dict[str, Any], message: str) -> None:
    error = _error(document)
    assert (type(error), error.message) == (InvalidArgumentError, message)


def test_http_codec_parse_json_body_reports_position() -> None:
    with pytest.raises(InternalError, match=r"^failed to parse the request JSON buffer: .* at 11$"):
        parse_json_body(b'{"inputs": ]')


# ------------------------------------------------------------------------------ parameters and outputs


def test_http_codec_decode_reserved_parameters() -> None:
    document = {
        "id": "r",
        "inputs": [],
        "parameters": {
            "sequence_id": 7,
            "sequence_start": True,
            "sequence_end": False,
            "priority": 2,
            "timeout": 100,
            "binary_data_output": True,
            "custom": "v",
            "n": 1.5,
        },
    }
    request, binary_data_output = _decode(document)
    assert binary_data_output is True
    assert (request.id, request.correlation_id, request.flags) == ("r", 7, 1)
    assert (request.priority, request.timeout_us) == (2, 100)
    assert request.parameters == {"custom": "v", "n": 1.5}


def test_http_codec_decode_string_sequence_id_and_end_flag() -> None:
    request, _ = _decode({"inputs": [], "parameters": {"sequence_id": "abc", "sequence_end": True}})
    assert (request.correlation_id, request.flags) == ("abc", 2)


@pytest.mark.parametrize(
    ("key", "value", "detail"),
    [
        ("sequence_id", -3, "attempt to access JSON non-string as string"),
        ("priority", -1, "attempt to access JSON non-unsigned-integer as unsigned-integer"),
        ("timeout", "x", "attempt to access JSON non-unsigned-integer as unsigned-integer"),
        ("sequence_start", 1, "attempt to access JSON non-boolean as boolean"),
        ("binary_data_output", 1, "attempt to access JSON non-boolean as boolean"),
    ],
)
def test_http_codec_decode_rejects_bad_reserved_parameters(key: str, value: Any, detail: str) -> None:
    error = _error({"inputs": [], "parameters": {key: value}})
    assert (type(error), error.message) == (InternalError, f"Unable to parse '{key}': {detail}")


def test_http_codec_decode_requested_outputs_with_classification_and_binary_flag() -> None:
    document = {
        "inputs": [],
        "outputs": [
            {"name": "a", "parameters": {"classification": 3, "binary_data": True, "other": "x"}},
            {"name": "b"},
        ],
    }
    request, _ = _decode(document)
    assert request.outputs == [
        RequestedOutput("a", 3, {"binary_data": True, "other": "x"}),
        RequestedOutput("b"),
    ]


def test_http_codec_decode_shared_memory_parameters_as_triton(tmp_path: Path) -> None:
    (tmp_path / "region").write_bytes(bytes(64))
    memory = SystemSharedMemory(root=str(tmp_path))
    memory.register("r", "/region", 0, 64)

    def decode(document: dict[str, Any]) -> None:
        decode_infer_request("m", "", json.dumps(document).encode(), EMPTY, memory)

    both = {"name": "o", "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 4, "binary_data": True}}
    with pytest.raises(InvalidArgumentError, match=r"^Output can't set both 'shared_memory_region' and 'binary_data'$"):
        decode({"inputs": [], "outputs": [both]})
    # No byte size: 0 bytes, which Triton refuses at offset 0 (its words).
    unsized = {"name": "i", "shape": [1], "datatype": "FP32", "parameters": {"shared_memory_region": "r"}}
    with pytest.raises(InvalidArgumentError, match=r"^Invalid offset \+ byte size for shared memory region: 'r'$"):
        decode({"inputs": [unsized]})


# ------------------------------------------------------------------------------ binary inputs


@pytest.mark.parametrize("datatype", [*NUMERIC, "BOOL", "FP16", "BF16", "BYTES"])
def test_http_codec_decode_binary_round_trip_for_every_datatype(datatype: str) -> None:
    data = _sample(datatype)
    if datatype in ("FP16", "BF16"):
        data = np.arange(6, dtype=np.uint16 if datatype == "BF16" else np.float16).reshape(2, 3)
    raw = serialize_bytes_tensor(data) if datatype == "BYTES" else data.tobytes()
    request, _ = _decode(_one_input(datatype, [2, 3], parameters={"binary_data_size": len(raw)}), raw)
    assert request.inputs["x"].data.tolist() == data.tolist()
    header, buffers = encode_infer_response(_response(request.inputs["x"]), request, binary_data_output=True)
    assert json.loads(header)["outputs"][0]["parameters"] == {"binary_data_size": len(raw)}
    assert b"".join(bytes(buffer) for buffer in buffers) == raw


def test_http_codec_decode_binary_is_a_view_of_the_body() -> None:
    body = bytearray(struct.pack("<2f", 1, 2))
    request, _ = _decode(_one_input("FP32", [2], parameters={"binary_data_size": 8}), bytes(body))
    array = request.inputs["x"].data
    assert not array.flags.owndata
    assert array.tolist() == [1.0, 2.0]


def test_http_codec_decode_two_binary_inputs_in_order() -> None:
    document = {
        "inputs": [
            {"name": "a", "shape": [1], "datatype": "INT32", "parameters": {"binary_data_size": 4}},
            {"name": "b", "shape": [1], "datatype": "INT32", "data": [9]},
            {"name": "c", "shape": [2], "datatype": "INT16", "parameters": {"binary_data_size": 4}},
        ]
    }
    request, _ = _decode(document, struct.pack("<i2h", 5, 6, 7))
    assert {name: t.data.tolist() for name, t in request.inputs.items()} == {"a": [5], "b": [9], "c": [6, 7]}


@pytest.mark.parametrize(
    ("declared", "payload", "message"),
    [
        (16, b"\x00" * 12, "unexpected size for input 'x', expecting 4 additional bytes for model 'm'"),
        (12, b"\x00" * 14, "unexpected additional input data for model 'm'"),
        (8, b"\x00" * 8, "[request id: <id_unknown>] input byte size mismatch for input 'x' for model 'm'. "
         "Expected 12, got 8"),
    ],
)  # fmt: skip
def test_http_codec_decode_binary_size_mismatch(declared: int, payload: bytes, message: str) -> None:
    error = _error(_one_input("FP32", [3], parameters={"binary_data_size": declared}), payload)
    assert (type(error), error.message) == (InvalidArgumentError, message)


@pytest.mark.parametrize(
    ("shape", "payload", "message"),
    [
        ([3], struct.pack("<I", 1) + b"a" + struct.pack("<I", 0),
         "[request id: r] expected 3 string elements for inference input 'x' for model 'm', got 2"),
        ([1], struct.pack("<I", 2) + b"a",
         "incomplete string data for inference input 'x', expecting string of length 2 but only 1 bytes available"),
        ([1], b"\x01\x00",
         "[request id: r] incomplete string length indicator for inference input 'x' for model 'm', expecting 4 "
         "bytes but only 2 bytes available. Please make sure the string length indicator is in one buffer."),
    ],
)  # fmt: skip
def test_http_codec_decode_malformed_binary_bytes(shape: list[int], payload: bytes, message: str) -> None:
    document = {"id": "r", **_one_input("BYTES", shape, parameters={"binary_data_size": len(payload)})}
    error = _error(document, payload)
    assert error.message == message


# ------------------------------------------------------------------------------ raw binary requests


def _config(data_type: str, dims: list[int], max_batch_size: int = 0, inputs: int = 1) -> Any:
    config = model_config_pb2.ModelConfig(name="m", max_batch_size=max_batch_size)
    for index in range(inputs):
        config.input.add(name=f"in{index}", data_type=model_config_pb2.DataType.Value(data_type), dims=dims)
    return config


def test_http_codec_decode_raw_deduces_variable_dimension() -> None:
    request = decode_raw_request("m", "2", struct.pack("<3f", 1, 2, 3), _config("TYPE_FP32", [-1]))
    tensor = request.inputs["in0"]
    assert (request.model_version, tensor.datatype, tensor.shape, tensor.data.tolist()) == (
        "2",
        "FP32",
        (3,),
        [1.0, 2.0, 3.0],
    )


def test_http_codec_decode_raw_adds_batch_dimension() -> None:
    request = decode_raw_request("m", "", bytes(16), _config("TYPE_INT32", [4], max_batch_size=8))
    assert request.inputs["in0"].shape == (1, 4)


def test_http_codec_decode_raw_bytes_takes_the_whole_body_as_one_element() -> None:
    request = decode_raw_request("m", "", b"hello", _config("TYPE_STRING", [1]))
    assert request.inputs["in0"].data.tolist() == [b"hello"]


@pytest.mark.parametrize(
    ("config", "body", "message"),
    [
        (_config("TYPE_FP32", [-1]), bytes(11),
         "input byte size mismatch for input 'raw_input' for model 'm'. Expected 8, got 11"),
        (_config("TYPE_FP32", [4]), bytes(32),
         "input byte size mismatch for input 'raw_input' for model 'm'. Expected 16, got 32"),
        (_config("TYPE_FP32", [4], inputs=2), b"",
         "Raw request must only have 1 input (found 1) to be deduced but got 2 inputs in 'm' model configuration"),
        (_config("TYPE_STRING", [2]), b"ab",
         "For BYTE datatype raw input 'in0', the model must have input shape [1]"),
        (_config("TYPE_INT32", [-1, -1]), b"",
         "The shape of the raw input 'in0' can not be deduced because there are more than one "
         "variable-sized dimension"),
    ],
)  # fmt: skip
def test_http_codec_decode_raw_errors(config: Any, body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        decode_raw_request("m", "", body, config)
    assert info.value.message == "[request id: <id_unknown>] " + message


# ------------------------------------------------------------------------------ responses


@pytest.mark.parametrize("datatype", [*NUMERIC, "BOOL", "BYTES"])
def test_http_codec_encode_json_output_for_every_datatype(datatype: str) -> None:
    data = _sample(datatype)
    request = InferenceRequest("m", id="abc")
    header, buffers = encode_infer_response(_response(Tensor.from_numpy("y", datatype, data)), request, False)
    document = json.loads(header)
    assert buffers == []
    assert document["id"] == "abc"
    expected: list[Any] = (
        [b.decode("utf-8", "replace") for b in data.reshape(-1)] if datatype == "BYTES" else data.reshape(-1).tolist()
    )
    assert document["outputs"] == [
        {
            "name": "y",
            "datatype": datatype,
            "shape": [2, 3],
            "data": expected,
        }
    ]


def test_http_codec_encode_matches_triton_bytes() -> None:
    tensor = Tensor.from_numpy("OUTPUT0", "FP32", np.array([1, 2, 3], np.float32))
    header, _ = encode_infer_response(InferenceResponse("m", "1", outputs=[tensor]), InferenceRequest("m"), False)
    assert header == (
        b'{"model_name":"m","model_version":"1","outputs":'
        b'[{"name":"OUTPUT0","datatype":"FP32","shape":[3],"data":[1.0,2.0,3.0]}]}'
    )


def test_http_codec_encode_per_output_binary_flag_overrides_request_default() -> None:
    request = InferenceRequest(
        "m", outputs=[RequestedOutput("a", parameters={"binary_data": False}), RequestedOutput("b")]
    )
    response = InferenceResponse(
        "m",
        "3",
        outputs=[
            Tensor.from_numpy("a", "INT32", np.array([1], np.int32)),
            Tensor.from_numpy("b", "INT32", np.array([2], np.int32)),
        ],
        parameters={"p": 1, "q": "s"},
    )
    header, buffers = encode_infer_response(response, request, binary_data_output=True)
    document = json.loads(header)
    assert document["model_version"] == "3"
    assert document["parameters"] == {"p": 1, "q": "s"}
    assert document["outputs"][0]["data"] == [1]
    assert document["outputs"][1]["parameters"] == {"binary_data_size": 4}
    assert [bytes(b) for b in buffers] == [struct.pack("<i", 2)]


@pytest.mark.parametrize("shape", [(0,), (2, 0), (0, 3, 1)])
def test_http_codec_encode_empty_binary_output_adds_no_buffer(shape: tuple[int, ...]) -> None:
    tensor = Tensor.from_numpy("y", "FP32", np.zeros(shape, np.float32))
    header, buffers = encode_infer_response(_response(tensor), InferenceRequest("m"), binary_data_output=True)
    assert buffers == []
    output = json.loads(header)["outputs"][0]
    assert output["parameters"] == {"binary_data_size": 0}
    assert output["shape"] == list(shape)


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_http_codec_encode_rejects_half_floats_as_json(datatype: str) -> None:
    tensor = Tensor.from_numpy("y", datatype, np.zeros(1, NUMPY_DTYPE_BY_WIRE[datatype]))
    with pytest.raises(InvalidArgumentError) as info:
        encode_infer_response(_response(tensor), InferenceRequest("m"), binary_data_output=False)
    assert info.value.message == (
        f"sending {datatype} data via JSON is not supported. Please use the binary data format for output"
    )


def test_http_codec_encode_classification_output_is_bytes() -> None:
    labels = np.array([b"3.000000:2", b"2.000000:1"], dtype=np.object_)
    request = InferenceRequest("m", outputs=[RequestedOutput("y", class_count=2)])
    header, _ = encode_infer_response(_response(Tensor.from_numpy("y", "BYTES", labels)), request, False)
    assert json.loads(header)["outputs"][0] == {
        "name": "y",
        "datatype": "BYTES",
        "shape": [2],
        "data": ["3.000000:2", "2.000000:1"],
    }
