"""Protobuf (``inference.GRPCInferenceService`` messages) ⇄ core types.

Pure functions, no I/O. ``decode_infer_request`` turns a ``ModelInferRequest`` into an
``InferenceRequest``: inputs come from ``raw_input_contents`` (numpy views of the message's
bytes, no copy) or from typed ``contents``, never both. ``encode_infer_response`` builds the
``ModelInferResponse`` once, every output in ``raw_output_contents`` in output order (the only
place tritonclient's ``as_numpy`` reads). Error messages copy Triton 2.51's gRPC frontend.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2

from airtower.core.request import InferenceRequest, RequestedOutput, c_string, first_of_each
from airtower.core.shared_memory import SystemSharedMemory, write_output
from airtower.core.tensor import Tensor, array_to_buffer
from airtower.core.validation import (
    decoded_whole,
    defer_byte_size_mismatch,
    defer_input_error,
    deferred_bytes_elements,
    duplicate_input_error,
    string_count_error,
)
from airtower.errors import InternalError, InvalidArgumentError, NotFoundError
from airtower.frontends.grpc.errors import UNPARSABLE_REQUEST
from airtower.types import (
    ELEMENT_SIZE_BY_WIRE,
    INVALID_DATATYPE,
    NUMPY_DTYPE_BY_WIRE,
    JSONValue,
    ParameterValue,
    config_to_wire,
)

if TYPE_CHECKING:
    from airtower.core.response import InferenceResponse

_SEQUENCE_START = 1
_SEQUENCE_END = 2
#: The only ``triton_`` request parameter a client may set (decoupled models' empty final response).
ALLOWED_TRITON_PARAMETERS: frozenset[str] = frozenset({"triton_enable_empty_final_response"})

#: Typed ``contents`` field that carries each wire datatype (FP16/BF16 only travel raw).
CONTENTS_FIELD_BY_WIRE: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
#: The datatype Triton names for each typed contents field in its mismatch message.
_WIRE_BY_CONTENTS_FIELD: dict[str, str] = {
    "bool_contents": "BOOL",
    "int_contents": "INT32",
    "int64_contents": "INT64",
    "uint_contents": "UINT32",
    "uint64_contents": "UINT64",
    "fp32_contents": "FP32",
    "fp64_contents": "FP64",
    "bytes_contents": "BYTES",
}


def _request_prefix(request_id: str) -> str:
    return f"[request id: {request_id or '<id_unknown>'}] "


# --------------------------------------------------------------------------- parameters


def parameter_value(parameter: Any) -> ParameterValue | None:
    """The Python value of an ``InferParameter`` (None when no choice is set)."""
    choice = parameter.WhichOneof("parameter_choice")
    if choice is None:
        return None
    value: ParameterValue = getattr(parameter, choice)
    return value


def set_parameter(parameter: Any, value: ParameterValue) -> None:
    """Fill an ``InferParameter`` from a Python value (bool, int, float or str)."""
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        if value > 2**63 - 1:
            parameter.uint64_param = value
        else:
            parameter.int64_param = value
    elif isinstance(value, float):
        parameter.double_param = value
    else:
        parameter.string_param = str(value)


def _decode_request_parameters(request: InferenceRequest, parameters: Any) -> None:
    """Reserved parameters into ``request``'s fields, the rest into ``request.parameters`` (Triton's rules)."""
    custom = request.parameters
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if key == "sequence_id":
            if choice == "int64_param":
                request.correlation_id = parameter.int64_param
            elif choice == "string_param":
                request.correlation_id = c_string(parameter.string_param)
            else:
                raise _parameter_type(key, "int64_param or string_param")
        elif key in ("sequence_start", "sequence_end"):
            if choice != "bool_param":
                raise _parameter_type(key, "bool_param")
            if parameter.bool_param:
                request.flags |= _SEQUENCE_START if key == "sequence_start" else _SEQUENCE_END
        elif key == "priority":
            if choice == "int64_param":
                if parameter.int64_param < 0:
                    raise InvalidArgumentError("invalid value for 'priority', expected value >= 0.")
                request.priority = parameter.int64_param
            elif choice == "uint64_param":
                request.priority = parameter.uint64_param
            else:
                raise _parameter_type(key, "int64_param or uint64_param")
        elif key == "timeout":
            if choice != "int64_param":
                raise _parameter_type(key, "int64_param")
            request.timeout_us = max(parameter.int64_param, 0)
        elif key in ("binary_data_output", "headers"):
            continue  # HTTP-only reserved keys: never reach a backend
        elif key.startswith("triton_"):
            if key not in ALLOWED_TRITON_PARAMETERS:
                raise InvalidArgumentError(
                    "parameter keys starting with 'triton_' are reserved for Triton usage. Only the following keys "
                    "starting with 'triton_' are allowed: " + ", ".join(sorted(ALLOWED_TRITON_PARAMETERS))
                )
            if choice != "bool_param":
                raise _parameter_type(key, "bool_param")
            request.enable_empty_final_response = parameter.bool_param
        elif choice in ("int64_param", "bool_param", "string_param", "double_param"):
            custom[key] = getattr(parameter, choice)
        else:
            raise _parameter_type(key, "int64_param, bool_param, or string_param")


def _parameter_type(key: str, expected: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"invalid value type for '{key}' parameter, expected {expected}.")


def _shared_memory_placement(
    name: str, parameters: Any, shared_memory: SystemSharedMemory | None
) -> tuple[str, int, int] | None:
    """(region, offset, byte size) of a tensor whose parameters name a shared-memory region, else None.

    Raises:
        InvalidArgumentError: no byte size, or a region that is not registered (Triton's messages).
    """
    if "shared_memory_region" not in parameters:
        return None
    region = str(parameter_value(parameters["shared_memory_region"]))
    if "shared_memory_byte_size" not in parameters:
        raise InvalidArgumentError(
            f"'shared_memory_byte_size' must be specified along with 'shared_memory_region' parameter for tensor "
            f"'{name}'"
        )
    if shared_memory is None or not shared_memory.has(region):
        raise NotFoundError(f"Unable to find shared memory region: '{region}'")
    byte_size = parameter_value(parameters["shared_memory_byte_size"])
    offset = parameter_value(parameters["shared_memory_offset"]) if "shared_memory_offset" in parameters else 0
    if type(byte_size) is not int or type(offset) is not int or byte_size < 0 or offset < 0:
        raise InvalidArgumentError(f"invalid shared memory offset or byte size for tensor '{name}'")
    return region, offset, byte_size


# --------------------------------------------------------------------------- requests


def decode_infer_request(
    message: Any,
    config: model_config_pb2.ModelConfig | None = None,
    shared_memory: SystemSharedMemory | None = None,
) -> InferenceRequest:
    """Decode a ``ModelInferRequest``.

    Args:
        message: the protobuf request.
        config: the model's configuration, used only to word the error for an unknown input datatype.
        shared_memory: the registered regions, for inputs and outputs naming one (inputs read from
            a region take no ``raw_input_contents`` entry).

    Raises:
        InvalidArgumentError: mixed raw/typed contents, missing data, sizes, datatypes, reserved parameters.
    """
    model_name = message.model_name
    request = InferenceRequest(model_name, message.model_version, c_string(message.id))
    if message.parameters:
        _decode_request_parameters(request, message.parameters)
    raw = message.raw_input_contents
    raw_count = len(raw)
    inputs = request.inputs
    index = 0  # the next raw_input_contents entry
    names = [c_string(tensor.name) for tensor in message.inputs]
    if len(set(names)) < len(names):  # Triton adds every input before it reads any one's data
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise duplicate_input_error(request, name)
            seen.add(name)
    for name, tensor in zip(names, message.inputs, strict=True):
        datatype = tensor.datatype
        shape = tuple(tensor.shape)
        placement = _shared_memory_placement(name, tensor.parameters, shared_memory) if tensor.parameters else None
        if datatype not in NUMPY_DTYPE_BY_WIRE:
            if config is None:
                raise _invalid_datatype(request, name, datatype, config)
            # Triton's core refuses it in its datatype check, after the checks that come first.
            datatype = INVALID_DATATYPE
        if placement is not None:
            assert shared_memory is not None
            data = shared_memory.read(*placement)
            array = _array_from_raw(request, name, datatype, shape, data)
        elif raw_count:
            if tensor.HasField("contents"):
                raise InvalidArgumentError(
                    f"contents field must not be specified when using raw_input_contents for '{name}' for model "
                    f"'{model_name}'"
                )
            if index >= raw_count:
                raise _no_data(name, model_name)
            array = _array_from_raw(request, name, datatype, shape, raw[index])
            index += 1
        elif tensor.HasField("contents"):
            array = _array_from_contents(request, name, datatype, shape, tensor.contents)
        else:
            raise _no_data(name, model_name)
        inputs[name] = Tensor(name, datatype, shape, array)
    for output in message.outputs:
        requested = RequestedOutput(c_string(output.name))
        if output.parameters:
            placement = _shared_memory_placement(output.name, output.parameters, shared_memory)
            if placement is not None:  # where the output goes is checked now, as Triton does
                assert shared_memory is not None
                shared_memory.check(*placement)
            for key, parameter in output.parameters.items():
                value = parameter_value(parameter)
                if key == "classification":  # 2.51's words (it refuses 0 too, over gRPC only)
                    if parameter.WhichOneof("parameter_choice") != "int64_param":
                        raise InvalidArgumentError(
                            "invalid value type for 'classification' parameter, expected int64_param"
                        )
                    if parameter.int64_param <= 0:
                        raise InvalidArgumentError("invalid value for 'classification' parameter, expected >= 0")
                    requested.class_count = parameter.int64_param % 2**32  # Triton keeps a uint32 count
                elif value is not None:
                    requested.parameters[key] = value
        request.outputs.append(requested)
    request.outputs = first_of_each(request.outputs, settings_only=True)
    return request


_RAW_INPUT_CONTENTS = 7  # ModelInferRequest field numbers
_ID = 3
_LENGTH_DELIMITED = 2


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """A protobuf varint at ``offset``: (value, offset after it)."""
    value = shift = 0
    while True:
        if offset >= len(data):
            raise ValueError("truncated varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7


def split_infer_request(data: bytes) -> tuple[bytes, bytes, list[bytes]]:
    """A serialized ``ModelInferRequest`` as (every field but ``id`` and ``raw_input_contents``,
    ``id``, the ``raw_input_contents``): what is the same for a client's every request of a shape,
    and what is not.

    Raises:
        ValueError: the bytes are not a well-formed message at the top level.
    """
    kept: list[bytes] = []
    raw: list[bytes] = []
    request_id = b""
    offset, size, segment = 0, len(data), 0
    while offset < size:
        start = offset
        tag, offset = _read_varint(data, offset)
        wire_type = tag & 7
        if wire_type == _LENGTH_DELIMITED:
            length, offset = _read_varint(data, offset)
            end = offset + length
            if end > size:
                raise ValueError("truncated field")
            field_number = tag >> 3
            if field_number in (_RAW_INPUT_CONTENTS, _ID):
                if field_number == _ID:
                    request_id = data[offset:end]
                else:
                    raw.append(data[offset:end])
                kept.append(data[segment:start])
                segment = end
            offset = end
        elif wire_type == 0:
            offset = _read_varint(data, offset)[1]
        elif wire_type == 1:
            offset += 8
        elif wire_type == 5:
            offset += 4
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    if offset != size:
        raise ValueError("truncated field")
    kept.append(data[segment:])
    return b"".join(kept), request_id, raw


class _RequestTemplate:
    """What a ``ModelInferRequest`` decoded to, when every input came from ``raw_input_contents``."""

    __slots__ = ("inputs", "layout", "model_name", "model_version", "outputs", "request")

    def __init__(self, request: InferenceRequest) -> None:
        self.model_name = request.model_name
        self.model_version = request.model_version
        self.request = request  # parameters, priority, timeout, correlation id, flags
        self.inputs = tuple((t.name, t.datatype, t.shape) for t in request.inputs.values())
        self.outputs = tuple(request.outputs)
        self.layout: tuple[object, ...] = (self.inputs, tuple(o.name for o in request.outputs))


class InferRequestDecoder:
    """``decode_infer_request`` from the wire bytes, with a cache of decoded requests.

    perf_analyzer and tritonclient send the same message for every request of a shape except for
    the tensors' bytes (and the id). ``split_infer_request`` takes those out; the rest is the key of
    what it decoded to, so a later request only turns its ``raw_input_contents`` into arrays (with
    the same size checks and messages). Anything else (typed contents, shared memory, a malformed
    message) takes the full path.
    """

    def __init__(self, shared_memory: SystemSharedMemory | None = None, capacity: int = 256) -> None:
        self._shared_memory = shared_memory
        self._capacity = capacity
        self._templates: dict[bytes, _RequestTemplate] = {}

    def decode(self, data: bytes) -> InferenceRequest:
        """As :func:`decode_infer_request` of the parsed message (its errors included).

        Raises:
            TritonError: as ``decode_infer_request``; InvalidArgumentError for bytes that do not parse.
        """
        try:
            key, request_id, raw = split_infer_request(data)
        except ValueError:
            return decode_infer_request(parse_infer_request(data), None, self._shared_memory)
        template = self._templates.get(key)
        if template is not None and len(raw) == len(template.inputs):
            try:
                return _replay(template, c_string(request_id.decode()), raw)
            except UnicodeDecodeError:
                pass  # the full path words the error
        request = decode_infer_request(parse_infer_request(data), None, self._shared_memory)
        if raw and len(raw) == len(request.inputs) and b"shared_memory_region" not in key and decoded_whole(request):
            if len(self._templates) >= self._capacity:
                self._templates.clear()
            self._templates[key] = _RequestTemplate(request)
        return request


def parse_infer_request(data: bytes) -> Any:
    """The ``ModelInferRequest`` of ``data``.

    Raises:
        InternalError: the bytes are not one (grpc++'s "Unable to parse request").
    """
    try:
        return service_pb2.ModelInferRequest.FromString(data)
    except Exception as exc:
        raise InternalError(UNPARSABLE_REQUEST) from exc


def _replay(template: _RequestTemplate, request_id: str, raw: list[bytes]) -> InferenceRequest:
    first = template.request
    request = InferenceRequest(
        template.model_name,
        template.model_version,
        request_id,
        {},
        list(template.outputs),
        dict(first.parameters),
        first.priority,
        first.timeout_us,
        first.correlation_id,
        first.flags,
        layout=template.layout,
    )
    inputs = request.inputs
    for index, (name, datatype, shape) in enumerate(template.inputs):
        inputs[name] = Tensor(name, datatype, shape, _array_from_raw(request, name, datatype, shape, raw[index]))
    return request


def _no_data(name: str, model_name: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"unable to find data for input tensor '{name}' for model '{model_name}' in request.")


def _invalid_datatype(
    request: InferenceRequest, name: str, datatype: str, config: model_config_pb2.ModelConfig | None
) -> InvalidArgumentError:
    if config is not None:
        for model_input in config.input:
            if model_input.name == name:
                expected = config_to_wire(model_config_pb2.DataType.Name(model_input.data_type))
                return InvalidArgumentError(
                    f"{_request_prefix(request.id)}inference input '{name}' data-type is '<invalid>', but model "
                    f"'{request.model_name}' expects '{expected}'"
                )
    return InvalidArgumentError(f"invalid datatype '{datatype}' for input '{name}'")


def _array_from_raw(
    request: InferenceRequest, name: str, datatype: str, shape: tuple[int, ...], buffer: bytes
) -> npt.NDArray[Any]:
    """A view of ``buffer`` (no copy) for fixed-size types; BYTES elements are split out."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return deferred_bytes_elements(request, name, buffer, shape)
    if datatype == INVALID_DATATYPE or (shape and min(shape) < 0):
        # An unknown datatype, or a negative dimension: the validator refuses it, in Triton's order.
        return np.frombuffer(buffer, np.uint8)
    expected = count * ELEMENT_SIZE_BY_WIRE[datatype]
    if len(buffer) != expected:
        return defer_byte_size_mismatch(request, name, expected, len(buffer))
    return np.frombuffer(buffer, NUMPY_DTYPE_BY_WIRE[datatype]).reshape(shape)


def _array_from_contents(
    request: InferenceRequest, name: str, datatype: str, shape: tuple[int, ...], contents: Any
) -> npt.NDArray[Any]:
    """Typed contents: exactly the field of ``datatype`` (Triton rejects any other)."""
    expected_field = CONTENTS_FIELD_BY_WIRE.get(datatype)
    for descriptor, _ in contents.ListFields():
        if descriptor.name != expected_field:  # an unknown datatype ('<invalid>') has no field
            raise InvalidArgumentError(
                f"unexpected explicit tensor data for input tensor '{name}' for model '{request.model_name}' of type "
                f"'{_WIRE_BY_CONTENTS_FIELD[descriptor.name]}', expected datatype '{datatype}'"
            )
    if datatype == INVALID_DATATYPE:
        return np.empty(0, np.uint8)
    count = math.prod(shape)
    if shape and min(shape) < 0:  # left to the validator; a BYTES count is checked against the product
        if datatype == "BYTES":
            defer_input_error(request, name, string_count_error(request, name, count, len(contents.bytes_contents)))
        return np.empty(0, np.object_ if datatype == "BYTES" else np.uint8)
    if expected_field is None:  # FP16 / BF16 with empty contents
        if count:
            return defer_byte_size_mismatch(request, name, count * ELEMENT_SIZE_BY_WIRE[datatype], 0)
        return np.empty(shape, NUMPY_DTYPE_BY_WIRE[datatype])
    values = getattr(contents, expected_field)
    if datatype == "BYTES":
        if len(values) != count:
            raise string_count_error(request, name, count, len(values))
        array = np.empty(count, dtype=np.object_)
        array[:] = list(values)
        return array.reshape(shape)
    if len(values) != count:
        size = ELEMENT_SIZE_BY_WIRE[datatype]
        return defer_byte_size_mismatch(request, name, count * size, len(values) * size)
    with np.errstate(over="ignore"):
        return np.array(values, dtype=NUMPY_DTYPE_BY_WIRE[datatype]).reshape(shape)


# --------------------------------------------------------------------------- responses


def encode_infer_response(
    response: InferenceResponse,
    request: InferenceRequest,
    final_response: bool | None = None,
    shared_memory: SystemSharedMemory | None = None,
) -> Any:
    """A ``ModelInferResponse`` with every output in ``raw_output_contents``, in output order.

    ``final_response`` (ModelStreamInfer only) adds ``triton_final_response`` with that value, as
    Triton does on every stream response. An output the request placed in shared memory is written
    there; its ``raw_output_contents`` entry is empty.
    """
    placements = {o.name: o.parameters for o in request.outputs if "shared_memory_region" in o.parameters}
    message = service_pb2.ModelInferResponse(
        model_name=response.model_name,
        model_version=str(response.model_version),
        id=response.id or request.id,
    )
    outputs = message.outputs
    raw = message.raw_output_contents
    for tensor in response.outputs:
        output = outputs.add()
        output.name = tensor.name
        output.datatype = tensor.datatype
        output.shape.extend(tensor.shape)
        buffer = array_to_buffer(tensor.datatype, tensor.data)
        placement = placements.get(tensor.name)
        if placement is not None:
            write_output(shared_memory, tensor.name, buffer, placement)
            raw.append(b"")  # as Triton: an empty entry keeps the others at their output's index
            continue
        raw.append(buffer if isinstance(buffer, bytes) else buffer.tobytes())
    if response.parameters:
        for key, value in response.parameters.items():
            set_parameter(message.parameters[key], value)
    if final_response is not None:
        message.parameters["triton_final_response"].bool_param = final_response
    return message


def empty_final_response(request: InferenceRequest, model_version: str, request_id: str | None = None) -> Any:
    """The ``ModelStreamInferResponse`` that ends a decoupled request whose model sent its final
    flag without a response, when the client set ``triton_enable_empty_final_response``;
    ``request_id``: the id as the client sent it, which 2.51 repeats whole (``request.id`` by default)."""
    message = service_pb2.ModelStreamInferResponse()
    response = message.infer_response
    response.model_name = request.model_name
    response.model_version = model_version
    response.id = request.id if request_id is None else request_id
    response.parameters["triton_final_response"].bool_param = True
    return message


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


#: Wire tags of ``ModelInferResponse.id`` (field 3) and ``raw_output_contents`` (field 6), length-delimited.
_ID_TAG = b"\x1a"
_RAW_OUTPUT_TAG = b"\x32"
#: Wire tag of ``ModelStreamInferResponse.infer_response`` (field 2), length-delimited.
_STREAM_RESPONSE_TAG = b"\x12"


def _final_parameter(final: bool) -> bytes:
    """The ``parameters`` map entry ``triton_final_response`` (field 4) of a stream's response."""
    message = service_pb2.ModelInferResponse()
    message.parameters["triton_final_response"].bool_param = final
    data: bytes = message.SerializeToString()
    return data


#: Appended to a response's bytes, by its ``triton_final_response`` value.
_FINAL_PARAMETER = {True: _final_parameter(True), False: _final_parameter(False)}


def _needs_message(response: InferenceResponse, request: InferenceRequest) -> bool:
    """Whether the response takes the message path: parameters, or outputs placed in shared memory."""
    return bool(response.parameters) or any("shared_memory_region" in o.parameters for o in request.outputs)


class InferResponseEncoder:
    """``ModelInferResponse`` wire bytes for the unary ModelInfer, without building a message per response.

    Everything but the id and the output bytes is the same for every response of a model version with the
    same outputs, so those fields are serialized once (``model_name``, ``model_version``, ``outputs``) and
    cached by that signature; each response appends its ``id`` and one ``raw_output_contents`` entry per
    output. Protobuf parsers accept fields in any order, so the bytes parse to exactly what
    ``encode_infer_response`` builds. Responses with parameters take the message path.
    """

    #: Distinct output signatures kept (shapes vary with the batch size); the cache restarts past it.
    MAX_CACHED = 1024

    def __init__(self, shared_memory: SystemSharedMemory | None = None) -> None:
        self._prefixes: dict[tuple[object, ...], bytes] = {}
        self._shared_memory = shared_memory

    def encode(self, response: InferenceResponse, request: InferenceRequest) -> bytes:
        if _needs_message(response, request):
            message = encode_infer_response(response, request, shared_memory=self._shared_memory)
            data: bytes = message.SerializeToString()
            return data
        return b"".join(self._parts(response, request))

    def encode_stream(self, response: InferenceResponse, request: InferenceRequest, final: bool) -> bytes:
        """``ModelStreamInferResponse`` wire bytes: the response as ``encode_infer_response(response, request,
        final)`` builds it, as the stream message's ``infer_response`` (without building either message)."""
        parts: list[bytes | memoryview]
        if _needs_message(response, request):
            parts = [encode_infer_response(response, request, final, self._shared_memory).SerializeToString()]
        else:
            parts = self._parts(response, request)
            parts.append(_FINAL_PARAMETER[final])
        size = sum(len(part) for part in parts)  # the raw outputs are byte buffers: len() is their size
        return b"".join((_STREAM_RESPONSE_TAG, _varint(size), *parts))

    def _parts(self, response: InferenceResponse, request: InferenceRequest) -> list[bytes | memoryview]:
        """The message's bytes in pieces: the cached prefix, the id, each output's raw contents."""
        outputs = response.outputs
        key = (response.model_name, response.model_version, *[(t.name, t.datatype, t.shape) for t in outputs])
        prefix = self._prefixes.get(key)
        if prefix is None:
            message = service_pb2.ModelInferResponse(
                model_name=response.model_name, model_version=str(response.model_version)
            )
            for tensor in outputs:
                message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            if len(self._prefixes) >= self.MAX_CACHED:
                self._prefixes.clear()
            prefix = self._prefixes[key] = message.SerializeToString()
        parts: list[bytes | memoryview] = [prefix]
        request_id = response.id or request.id
        if request_id:
            encoded_id = request_id.encode()
            parts += (_ID_TAG, _varint(len(encoded_id)), encoded_id)
        for tensor in outputs:
            buffer = array_to_buffer(tensor.datatype, tensor.data)
            parts += (_RAW_OUTPUT_TAG, _varint(len(buffer)), buffer)
        return parts


def stream_error_response(message: str, request_id: str, model_name: str = "") -> Any:
    """A ``ModelStreamInferResponse`` carrying an error; the stream stays open (Triton's default)."""
    response = service_pb2.ModelStreamInferResponse(error_message=message)
    response.infer_response.id = request_id
    if model_name:
        response.infer_response.model_name = model_name
        response.infer_response.parameters["triton_final_response"].bool_param = True
    return response


# --------------------------------------------------------------------------- metadata, statistics, index


def encode_model_metadata(metadata: dict[str, JSONValue]) -> Any:
    """The KServe v2 model metadata (as ``InferenceServer.model_metadata`` returns it) as a protobuf."""
    message = service_pb2.ModelMetadataResponse(
        name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"]
    )
    for field in ("inputs", "outputs"):
        tensors = getattr(message, field)
        for tensor in metadata[field]:
            tensors.add(name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"])
    return message


def encode_model_statistics(statistics: dict[str, JSONValue]) -> Any:
    """The statistics extension's JSON (field names are the protobuf's) as a ``ModelStatisticsResponse``."""
    return json_format.ParseDict(statistics, service_pb2.ModelStatisticsResponse(), ignore_unknown_fields=True)


def encode_repository_index(rows: list[dict[str, JSONValue]]) -> Any:
    message = service_pb2.RepositoryIndexResponse()
    for row in rows:
        message.models.add(
            name=row.get("name", ""), version=row.get("version", ""), state=row.get("state", ""),
            reason=row.get("reason", ""),
        )  # fmt: skip
    return message
