"""JSON ⇄ core types for the KServe v2 HTTP protocol, with Triton's binary tensor extension.

Pure functions, no I/O: ``decode_infer_request`` turns a JSON header (and the binary bytes that
follow it) into an ``InferenceRequest``; ``decode_raw_request`` handles the headerless raw-binary
form (``Inference-Header-Content-Length: 0``); ``encode_infer_response`` renders an
``InferenceResponse`` as a JSON header plus the binary output buffers.

Error messages and codes copy Triton 2.51's HTTP frontend, which reports structural JSON
problems (missing member, wrong JSON type, element count) as INTERNAL ("Unable to parse ...") and
semantic ones as INVALID_ARG. Binary inputs are numpy views of the request body (no copy).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypedDict

import numpy as np
import numpy.typing as npt
from tritonclient.grpc import model_config_pb2

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
from airtower.frontends.http import triton_json
from airtower.frontends.http.rapidjson_double import float_array_json
from airtower.types import (
    ELEMENT_SIZE_BY_WIRE,
    INVALID_DATATYPE,
    NUMPY_DTYPE_BY_WIRE,
    ParameterValue,
    config_to_wire,
)

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

    from airtower.core.response import InferenceResponse


class InputJSON(TypedDict, total=False):
    """One entry of a request's ``inputs``."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, ParameterValue]
    data: list[Any]


class RequestedOutputJSON(TypedDict, total=False):
    """One entry of a request's ``outputs``."""

    name: str
    parameters: dict[str, ParameterValue]


class InferRequestJSON(TypedDict, total=False):
    """The JSON header of ``POST /v2/models/{m}/infer``."""

    id: str
    parameters: dict[str, ParameterValue]
    inputs: list[InputJSON]
    outputs: list[RequestedOutputJSON]


class OutputJSON(TypedDict, total=False):
    """One entry of a response's ``outputs``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    parameters: dict[str, ParameterValue]
    data: list[Any]


_LENGTH = struct.Struct("<I")
_SEQUENCE_START = 1
_SEQUENCE_END = 2
_JSON_NOT_UINT = "attempt to access JSON non-unsigned-integer as unsigned-integer"
_JSON_NOT_INT = "attempt to access JSON non-signed-integer as signed-integer"
_JSON_NOT_NUMBER = "attempt to access JSON non-number as double"
JSON_NOT_BOOL = "attempt to access JSON non-boolean as boolean"
JSON_NOT_STRING = "attempt to access JSON non-string as string"
BYTES_NOT_STRING = f"Unable to parse JSON bytes array: {JSON_NOT_STRING}"
_JSON_NOT_ARRAY = "attempt to access JSON non-array as array"
JSON_NOT_OBJECT = "attempt to access JSON non-object as object"
UNSIGNED = frozenset({"UINT8", "UINT16", "UINT32", "UINT64"})
SIGNED = frozenset({"INT8", "INT16", "INT32", "INT64"})
NOT_IN_JSON = frozenset({"FP16", "BF16"})
_DATA_FIELDS_MESSAGE = (
    "Input must set only one of the following fields: 'data', 'binary_data_size' in 'parameters', "
    "'shared_memory_region' in 'parameters'. But "
)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=True)
_encode_json = _ENCODER.encode


def encode_json_text(value: object) -> str:
    """``encode_json`` as text."""
    return _encode_json(value)


def encode_json(value: object) -> bytes:
    """Compact UTF-8 JSON, as Triton's rapidjson writer produces it for documents whose numbers
    are integers (floats are written by ``rapidjson_double``: see ``encode_infer_response``)."""
    return _encode_json(value).encode()


def parse_json_body(body: bytes) -> Any:
    """Parse a request body as Triton does (``triton_json``: NaN and Infinity literals accepted),
    with its error wording (INTERNAL, RapidJSON's message and offset)."""
    try:
        return triton_json.loads(body)
    except triton_json.JsonParseError as exc:
        raise InternalError(f"failed to parse the request JSON buffer: {exc}") from exc


def _unable(field: str, detail: str) -> InternalError:
    return InternalError(f"Unable to parse '{field}': {detail}")


def _missing(field: str) -> InternalError:
    return _unable(field, f"attempt to access non-existing object member '{field}'")


def _is_uint(value: object) -> bool:
    return type(value) is int and value >= 0


def _request_prefix(request_id: str) -> str:
    return f"[request id: {request_id or '<id_unknown>'}] "


# --------------------------------------------------------------------------- requests


def decode_infer_request(
    model_name: str,
    model_version: str,
    header: bytes,
    binary: memoryview,
    shared_memory: SystemSharedMemory | None = None,
) -> tuple[InferenceRequest, bool]:
    """Decode a JSON infer request (KServe v2 + binary tensor extension).

    Args:
        model_name: the (URL-decoded) model name from the path.
        model_version: the version from the path, "" when absent.
        header: the JSON part of the body.
        binary: the bytes after the JSON part, consumed by inputs carrying ``binary_data_size``.
        shared_memory: the registered regions, for inputs and outputs naming one.

    Returns:
        The request and the request-level ``binary_data_output`` flag (the default for outputs
        that do not say ``binary_data`` themselves).

    Raises:
        InternalError: malformed JSON structure (Triton reports these as 500).
        InvalidArgumentError: semantic problems (sizes, datatypes, reserved parameters).
    """
    document = parse_json_body(header)
    if type(document) is not dict:
        raise _missing("inputs")
    request = InferenceRequest(model_name=model_name, model_version=model_version)
    request_id = document.get("id", "")
    if type(request_id) is not str:
        raise _unable("id", JSON_NOT_STRING)
    request.id = c_string(request_id)
    binary_data_output = False
    if "parameters" in document:  # null too is refused, as a non-object
        binary_data_output = _decode_request_parameters(request, document["parameters"])
    if "inputs" not in document:
        raise _missing("inputs")
    inputs = document["inputs"]
    if type(inputs) is not list:
        raise _unable("inputs", _JSON_NOT_ARRAY)
    offset = 0
    for item in inputs:
        offset = _decode_input(request, item, binary, offset, shared_memory)
    if offset != len(binary):
        raise InvalidArgumentError(f"unexpected additional input data for model '{model_name}'")
    if "outputs" in document:  # null too is refused, as a non-array
        outputs = document["outputs"]
        if type(outputs) is not list:
            raise _unable("outputs", _JSON_NOT_ARRAY)
        request.outputs = first_of_each([_decode_requested_output(item, shared_memory) for item in outputs])
    return request, binary_data_output


@dataclass(frozen=True, slots=True)
class _HeaderTemplate:
    """What a JSON header decoded to, when every input is binary: replayed on a cache hit."""

    request_id: str
    parameters: dict[str, ParameterValue]
    priority: int
    timeout_us: int
    correlation_id: int | str
    flags: int
    binary_data_output: bool
    inputs: tuple[tuple[str, str, tuple[int, ...], int], ...]  # name, datatype, shape, byte size
    outputs: tuple[RequestedOutput, ...]
    binary_size: int
    #: ``InferenceRequest.layout`` of every request replayed from this header.
    layout: tuple[object, ...]


class InferRequestDecoder:
    """``decode_infer_request`` with a cache of decoded JSON headers.

    Clients such as tritonclient and perf_analyzer send the same JSON header on every request
    of a given shape, with the tensors in the binary part. A header whose inputs are all binary
    is decoded once; later requests with the same header bytes only slice their binary part.
    Anything unusual (JSON data, a size mismatch) takes the full path and its error messages.
    """

    #: Headers longer than this are not cached (large headers carry JSON data anyway).
    MAX_HEADER: ClassVar[int] = 4096

    def __init__(self, capacity: int = 256, shared_memory: SystemSharedMemory | None = None) -> None:
        self._capacity = capacity
        self._shared_memory = shared_memory
        self._templates: dict[tuple[str, str, bytes], _HeaderTemplate] = {}

    def decode(
        self, model_name: str, model_version: str, header: bytes, binary: memoryview
    ) -> tuple[InferenceRequest, bool]:
        """As :func:`decode_infer_request`."""
        key = (model_name, model_version, header)
        template = self._templates.get(key)
        if template is not None and template.binary_size == len(binary):
            return _replay(template, model_name, model_version, binary), template.binary_data_output
        request, binary_data_output = decode_infer_request(
            model_name, model_version, header, binary, self._shared_memory
        )
        # Every input binary: no JSON "data" member anywhere (an input *named* data is simply not
        # cached), and no shared memory. A sequence's START or END request is not cached: its header
        # (with that sequence's id and flag) does not come again, while the requests between repeat.
        if (
            len(header) <= self.MAX_HEADER
            and binary
            and not request.flags
            and b'"data"' not in header
            and b"shared_memory" not in header
            and decoded_whole(request)
        ):
            if len(self._templates) >= self._capacity:
                del self._templates[next(iter(self._templates))]  # the oldest
            self._templates[key] = _HeaderTemplate(
                request.id,
                dict(request.parameters),
                request.priority,
                request.timeout_us,
                request.correlation_id,
                request.flags,
                binary_data_output,
                tuple(_input_layout(t) for t in request.inputs.values()),
                tuple(request.outputs),
                len(binary),
                (
                    tuple((t.name, t.datatype, t.shape) for t in request.inputs.values()),
                    tuple(o.name for o in request.outputs),
                ),
            )
        return request, binary_data_output


def _input_layout(tensor: Tensor) -> tuple[str, str, tuple[int, ...], int]:
    if tensor.datatype == "BYTES":
        return tensor.name, tensor.datatype, tensor.shape, sum(4 + len(item) for item in tensor.data.reshape(-1))
    return tensor.name, tensor.datatype, tensor.shape, tensor.data.nbytes


def _replay(template: _HeaderTemplate, model_name: str, model_version: str, binary: memoryview) -> InferenceRequest:
    request = InferenceRequest(
        model_name,
        model_version,
        template.request_id,
        {},
        list(template.outputs),
        dict(template.parameters),
        template.priority,
        template.timeout_us,
        template.correlation_id,
        template.flags,
        layout=template.layout,
    )
    inputs = request.inputs
    offset = 0
    for name, datatype, shape, size in template.inputs:
        end = offset + size
        array = _array_from_binary(request, name, datatype, shape, binary[offset:end])
        inputs[name] = Tensor(name, datatype, shape, array)
        offset = end
    return request


def _decode_request_parameters(request: InferenceRequest, parameters: object) -> bool:
    """Fill the reserved fields of ``request`` and its custom parameters; returns binary_data_output."""
    if type(parameters) is not dict:
        raise InternalError("failed to get request params.: attempt to get members for non-object")
    binary_data_output = False
    custom = request.parameters
    for key, value in parameters.items():
        if key == "sequence_id":
            if not (_is_uint(value) or type(value) is str):
                raise _unable(key, JSON_NOT_STRING)
            request.correlation_id = c_string(value) if type(value) is str else value
        elif key == "priority":
            if not _is_uint(value):
                raise _unable(key, _JSON_NOT_UINT)
            request.priority = value
        elif key == "timeout":
            if not _is_uint(value):
                raise _unable(key, _JSON_NOT_UINT)
            request.timeout_us = value
        elif key in ("sequence_start", "sequence_end", "binary_data_output"):
            if type(value) is not bool:
                raise _unable(key, JSON_NOT_BOOL)
            if key == "binary_data_output":
                binary_data_output = value
            elif value:
                request.flags |= _SEQUENCE_START if key == "sequence_start" else _SEQUENCE_END
        elif key == "headers":
            continue  # reserved for header forwarding; never reaches a backend
        elif key.startswith("triton_"):
            raise InvalidArgumentError(
                "parameter keys starting with 'triton_' are reserved for Triton usage and should not be specified."
            )
        elif type(value) in (str, int, bool, float):
            custom[key] = value
        else:
            raise InvalidArgumentError(
                f"parameter '{key}' has invalid type. It should be either 'int', 'bool', or 'string'."
            )
    return binary_data_output


def _decode_input(
    request: InferenceRequest,
    item: object,
    binary: memoryview,
    offset: int,
    shared_memory: SystemSharedMemory | None = None,
) -> int:
    """Decode one input into ``request.inputs``; returns the new offset into ``binary``.

    Triton's order: where the data is (exactly one of ``data``, ``binary_data_size``,
    ``shared_memory_region``), then name, datatype, shape, the data itself, and last whether the
    request already has an input of that name. ``parameters`` that is not an object is ignored.
    """
    fields = item if type(item) is dict else {}
    parameters = fields.get("parameters")
    if type(parameters) is not dict:
        parameters = {}
    set_fields = [
        field
        for field, present in (
            ("'data'", "data" in fields),
            ("'binary_data_size'", "binary_data_size" in parameters),
            ("'shared_memory_region'", "shared_memory_region" in parameters),
        )
        if present
    ]
    if len(set_fields) != 1:
        detail = "no field is set" if not set_fields else "set " + " ".join(set_fields)
        raise InvalidArgumentError(_DATA_FIELDS_MESSAGE + detail)
    item, name = _tensor_object(item)
    if "datatype" not in item:
        raise _missing("datatype")
    datatype = item["datatype"]
    if type(datatype) is not str:
        raise _unable("datatype", JSON_NOT_STRING)
    if "shape" not in item:
        raise _missing("shape")
    shape = _decode_shape(item["shape"])
    # Data Triton's frontend takes as bytes, whatever the datatype: its core refuses an unknown one
    # ('<invalid>') in its datatype check. JSON data it cannot read without one.
    known = datatype in NUMPY_DTYPE_BY_WIRE
    if "shared_memory_region" in parameters:
        data = _read_shared_memory(shared_memory, parameters["shared_memory_region"], parameters)
        array = _array_from_binary(request, name, datatype, shape, memoryview(data)) if known else _UNREAD
    elif "binary_data_size" in parameters:
        byte_size = parameters["binary_data_size"]
        if not _is_uint(byte_size):
            raise _unable("binary_data_size", _JSON_NOT_UINT)
        end = offset + byte_size
        if end > len(binary):
            raise InvalidArgumentError(
                f"unexpected size for input '{name}', expecting {end - len(binary)} additional bytes "
                f"for model '{request.model_name}'"
            )
        array = _array_from_binary(request, name, datatype, shape, binary[offset:end]) if known else _UNREAD
        offset = end
    elif not shape or 0 in shape:  # Triton's element count is 0: it reads nothing of 'data'
        array = _no_elements(datatype, shape) if known else _UNREAD
    elif not known:
        raise InvalidArgumentError(f"invalid datatype for input {name}")
    else:
        array = _array_from_json(request, name, datatype, shape, item["data"])
    if name in request.inputs:
        raise duplicate_input_error(request, name)
    request.inputs[name] = Tensor(name, datatype if known else INVALID_DATATYPE, shape, array)
    return offset


#: What stands in for the data of an input whose datatype Triton does not know (never read).
_UNREAD: npt.NDArray[Any] = np.empty(0, np.uint8)


def _shared_memory_span(parameters: dict[str, Any]) -> tuple[int, int]:
    """``shared_memory_offset`` and ``shared_memory_byte_size`` (each 0 when absent, as Triton reads
    them over HTTP) of a tensor's parameters."""
    size = parameters.get("shared_memory_byte_size", 0)
    if not _is_uint(size):
        raise _unable("shared_memory_byte_size", _JSON_NOT_UINT)
    start = parameters.get("shared_memory_offset", 0)
    if not _is_uint(start):
        raise _unable("shared_memory_offset", _JSON_NOT_UINT)
    return start, size


def _read_shared_memory(shared_memory: SystemSharedMemory | None, region: object, parameters: dict[str, Any]) -> bytes:
    if type(region) is not str:
        raise _unable("shared_memory_region", JSON_NOT_STRING)
    if shared_memory is None:
        raise NotFoundError(f"Unable to find shared memory region: '{region}'")
    start, size = _shared_memory_span(parameters)
    return shared_memory.read(region, start, size)


def _decode_shape(shape: object) -> tuple[int, ...]:
    if type(shape) is not list:  # null too
        raise _unable("shape", _JSON_NOT_ARRAY)
    for dim in shape:
        if not _is_uint(dim):
            raise _unable("shape", _JSON_NOT_UINT)
    return tuple(shape)


def _tensor_object(item: object) -> tuple[dict[str, Any], str]:
    """An input or output JSON object and its "name", with TritonJson's errors."""
    if type(item) is not dict:
        raise _missing("name")
    if "name" not in item:
        raise _missing("name")
    name = item["name"]
    if type(name) is not str:  # null too
        raise _unable("name", JSON_NOT_STRING)
    return item, c_string(name)


def _decode_requested_output(item: object, shared_memory: SystemSharedMemory | None = None) -> RequestedOutput:
    item, name = _tensor_object(item)
    output = RequestedOutput(name)
    parameters = item.get("parameters")
    if type(parameters) is not dict:  # absent, or not an object: Triton reads no parameters
        return output
    for key, value in parameters.items():
        if key == "classification":
            if not _is_uint(value):
                raise InternalError(f"Unable to set 'classification': {_JSON_NOT_UINT}")
            output.class_count = value % 2**32  # Triton keeps a uint32 count
        elif key == "binary_data":
            if type(value) is not bool:
                raise _unable("binary_data", JSON_NOT_BOOL)
            output.parameters[key] = value
        elif key == "shared_memory_region":
            if type(value) is not str:
                raise _unable(key, JSON_NOT_STRING)
            if shared_memory is None or not shared_memory.has(value):
                raise NotFoundError(f"Unable to find shared memory region: '{value}'")
            start, size = _shared_memory_span(parameters)
            shared_memory.check(value, start, size)
            output.parameters.update(
                {"shared_memory_region": value, "shared_memory_offset": start, "shared_memory_byte_size": size}
            )
        elif key in ("shared_memory_offset", "shared_memory_byte_size"):
            continue  # read with the region
        elif type(value) in (str, int, bool, float):
            output.parameters[key] = value
    if "shared_memory_region" in output.parameters and output.parameters.get("binary_data"):
        raise InvalidArgumentError("Output can't set both 'shared_memory_region' and 'binary_data'")
    return output


def _flatten(data: list[Any], out: list[Any]) -> None:
    for item in data:
        if type(item) is list:
            _flatten(item, out)
        else:
            out.append(item)


def _array_from_json(
    request: InferenceRequest, name: str, datatype: str, shape: tuple[int, ...], data: Any
) -> npt.NDArray[Any]:
    """Elements of a JSON ``data`` array (flat or nested, row-major) as an array of ``shape``."""
    if datatype in NOT_IN_JSON:
        raise InvalidArgumentError(
            f"receiving {datatype} data via JSON is not supported. Please use the binary data format for input {name}"
        )
    if type(data) is not list:
        raise _unable("data", _JSON_NOT_ARRAY)
    types = set(map(type, data))
    if list in types:
        flat: list[Any] = []
        _flatten(data, flat)
        data = flat
        types = set(map(type, flat))
    count = math.prod(shape)
    if datatype == "BYTES":
        # Triton checks the strings first and their count later, as for binary BYTES (INVALID_ARG).
        if not types <= {str}:
            raise InternalError(BYTES_NOT_STRING)
        if len(data) != count:  # found by Triton's core at its byte-size step: left to the validator
            defer_input_error(request, name, string_count_error(request, name, count, len(data)))
            return np.empty(0, np.object_)
        array = np.empty(len(data), dtype=np.object_)
        array[:] = [value.encode() for value in data]
        return array.reshape(shape)
    # Triton reads the elements in order, refusing the first one of the wrong JSON type or past
    # the shape's count, then checks that there were enough.
    if datatype == "BOOL":
        if not types <= {bool}:
            _refuse_element(data, count, (bool,), JSON_NOT_BOOL)
        _check_count(data, count)
        return np.array(data, dtype=np.bool_).reshape(shape)
    dtype = NUMPY_DTYPE_BY_WIRE[datatype]
    if datatype in SIGNED or datatype in UNSIGNED:
        signed = datatype in SIGNED
        if not types <= {int}:
            _refuse_element(data, count, (int,), _JSON_NOT_INT if signed else _JSON_NOT_UINT)
        _check_count(data, count)
        # Triton reads 64-bit values and truncates them to the element type; so do we.
        try:
            wide = np.array(data, dtype=np.int64 if signed else np.uint64)
        except OverflowError as exc:
            raise _unable("data", _JSON_NOT_INT if signed else _JSON_NOT_UINT) from exc
        return (wide if wide.dtype == dtype else wide.astype(dtype)).reshape(shape)
    if not types <= {float, int}:
        _refuse_element(data, count, (float, int), _JSON_NOT_NUMBER)
    _check_count(data, count)
    with np.errstate(over="ignore"):
        return np.array(data, dtype=dtype).reshape(shape)


_SHAPE_MISMATCH = "Shape does not match true shape of 'data' field"


def _no_elements(datatype: str, shape: tuple[int, ...]) -> npt.NDArray[Any]:
    """The array of a JSON input whose shape has no elements by Triton's count (a 0 dimension, or
    no dimensions at all, which Triton counts as 0 too)."""
    if datatype == "BYTES":
        return np.full(shape, b"", dtype=np.object_)
    return np.zeros(shape, dtype=NUMPY_DTYPE_BY_WIRE[datatype])


def _refuse_element(data: list[Any], count: int, kinds: tuple[type, ...], message: str) -> NoReturn:
    """The error for ``data``, which holds an element of none of ``kinds``: the count's if that
    element lies past ``count`` (Triton stops there first), else the element's type's."""
    bad = next(index for index, value in enumerate(data) if type(value) not in kinds)
    if bad >= count:
        raise _unable("data", _SHAPE_MISMATCH)
    raise _unable("data", message)


def _check_count(data: list[Any], count: int) -> None:
    if len(data) != count:
        raise _unable("data", _SHAPE_MISMATCH)


def _array_from_binary(
    request: InferenceRequest, name: str, datatype: str, shape: tuple[int, ...], buffer: memoryview
) -> npt.NDArray[Any]:
    count = math.prod(shape)
    if datatype == "BYTES":
        return deferred_bytes_elements(request, name, buffer, shape)
    expected = count * ELEMENT_SIZE_BY_WIRE[datatype]
    if len(buffer) != expected:
        return defer_byte_size_mismatch(request, name, expected, len(buffer))
    return np.ndarray(shape, NUMPY_DTYPE_BY_WIRE[datatype], buffer)


def decode_raw_request(
    model_name: str, model_version: str, body: bytes | memoryview, config: ModelConfig
) -> InferenceRequest:
    """Decode a raw binary request (``Inference-Header-Content-Length: 0``, binary extension).

    The whole body is the single input of the model; its shape is deduced from the model
    configuration as Triton does: at most one variable-size dimension, BYTES only for dims [1],
    and a batch dimension of 1 for models with ``max_batch_size`` > 0.
    """
    prefix = _request_prefix("")
    if len(config.input) != 1:
        raise InvalidArgumentError(
            f"{prefix}Raw request must only have 1 input (found 1) to be deduced but got {len(config.input)} inputs "
            f"in '{model_name}' model configuration"
        )
    model_input = config.input[0]
    datatype = config_to_wire(model_config_pb2.DataType.Name(model_input.data_type))
    dims = [int(dim) for dim in model_input.dims]
    view = memoryview(body)
    if datatype == "BYTES":
        if dims != [1]:
            raise InvalidArgumentError(
                f"{prefix}For BYTE datatype raw input '{model_input.name}', the model must have input shape [1]"
            )
        array: npt.NDArray[Any] = np.empty(1, dtype=np.object_)
        array[0] = bytes(view)
        shape: tuple[int, ...] = (1,)
    else:
        if dims.count(-1) > 1:
            raise InvalidArgumentError(
                f"{prefix}The shape of the raw input '{model_input.name}' can not be deduced because there are more "
                "than one variable-sized dimension"
            )
        element_size = ELEMENT_SIZE_BY_WIRE[datatype]
        if -1 in dims:
            fixed = math.prod(dim for dim in dims if dim != -1) * element_size
            dims[dims.index(-1)] = len(view) // fixed if fixed else 0
        expected = math.prod(dims) * element_size
        if expected != len(view):
            raise InvalidArgumentError(
                f"{prefix}input byte size mismatch for input 'raw_input' for model '{model_name}'. "
                f"Expected {expected}, got {len(view)}"
            )
        shape = tuple(dims)
        array = np.frombuffer(view, dtype=NUMPY_DTYPE_BY_WIRE[datatype]).reshape(shape)
    if config.max_batch_size > 0:
        shape = (1, *shape)
        array = array.reshape(shape)
    request = InferenceRequest(model_name=model_name, model_version=model_version)
    request.inputs[model_input.name] = Tensor(model_input.name, datatype, shape, array)
    return request


# --------------------------------------------------------------------------- responses


class InferResponseEncoder:
    """``encode_infer_response`` with a cache of JSON headers for all-binary responses.

    The JSON header of a response whose outputs are all binary depends only on the names,
    datatypes, shapes and sizes of its outputs (and its id and model), so it is rendered once
    per distinct layout.
    """

    def __init__(self, capacity: int = 256, shared_memory: SystemSharedMemory | None = None) -> None:
        self._capacity = capacity
        self._shared_memory = shared_memory
        self._headers: dict[tuple[object, ...], bytes] = {}

    def encode(
        self, response: InferenceResponse, request: InferenceRequest, binary_data_output: bool
    ) -> tuple[bytes, list[bytes | memoryview]]:
        """As :func:`encode_infer_response`."""
        if response.parameters or not _all_outputs_binary(request, binary_data_output):
            return encode_infer_response(response, request, binary_data_output, self._shared_memory)
        buffers: list[bytes | memoryview] = []
        layout: list[object] = [response.id or request.id, response.model_name, response.model_version]
        for tensor in response.outputs:
            if tensor.datatype == "BYTES":
                return encode_infer_response(response, request, binary_data_output)
            buffer = array_to_buffer(tensor.datatype, tensor.data)
            size = len(buffer) if isinstance(buffer, bytes) else buffer.nbytes
            layout += (tensor.name, tensor.datatype, tensor.shape, size)
            if size:
                buffers.append(buffer)
        key = tuple(layout)
        header = self._headers.get(key)
        if header is None:
            header, buffers = encode_infer_response(response, request, binary_data_output)
            if len(self._headers) >= self._capacity:
                self._headers.clear()
            self._headers[key] = header
        return header, buffers


def _all_outputs_binary(request: InferenceRequest, binary_data_output: bool) -> bool:
    if not request.outputs:
        return binary_data_output
    for requested in request.outputs:
        flag = requested.parameters.get("binary_data")
        if not (binary_data_output if flag is None else flag) or "shared_memory_region" in requested.parameters:
            return False
    return True


def encode_infer_response(
    response: InferenceResponse,
    request: InferenceRequest,
    binary_data_output: bool,
    shared_memory: SystemSharedMemory | None = None,
) -> tuple[bytes, list[bytes | memoryview]]:
    """Render ``response`` as (JSON header, binary output buffers in output order).

    An output is binary when its ``RequestedOutput.parameters["binary_data"]`` says so, else
    when the request asked ``binary_data_output``. Empty binary outputs add no buffer, so a
    response whose buffers are all empty is plain JSON (as in Triton).

    Raises:
        InvalidArgumentError: an FP16/BF16 output was asked for as JSON.
    """
    binary_by_name: dict[str, bool] = {}
    in_shared_memory: dict[str, dict[str, ParameterValue]] = {}
    for requested in request.outputs:
        flag = requested.parameters.get("binary_data")
        binary_by_name[requested.name] = binary_data_output if flag is None else bool(flag)
        if "shared_memory_region" in requested.parameters:
            in_shared_memory[requested.name] = requested.parameters
    outputs: list[OutputJSON] = []
    rendered: list[str] = []  # outputs with floating-point JSON data, as text
    buffers: list[bytes | memoryview] = []
    for tensor in response.outputs:
        placement = in_shared_memory.get(tensor.name)
        if placement is not None:  # as Triton: the output's name, datatype and shape only
            write_output(shared_memory, tensor.name, array_to_buffer(tensor.datatype, tensor.data), placement)
            outputs.append({"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape})
        elif binary_by_name.get(tensor.name, binary_data_output):
            buffer = array_to_buffer(tensor.datatype, tensor.data)
            size = len(buffer) if isinstance(buffer, bytes) else buffer.nbytes
            outputs.append(
                {
                    "name": tensor.name,
                    "datatype": tensor.datatype,
                    "shape": tensor.shape,
                    "parameters": {"binary_data_size": size},
                }
            )
            if size:
                buffers.append(buffer)
        else:
            data = _json_data(tensor)
            if tensor.datatype in FLOAT_DATATYPES:  # written as Triton's writer writes doubles
                head = _encode_json({"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape})
                rendered.append(f'{head[:-1]},"data":{float_array_json(data)}}}')
                outputs.append({})  # a placeholder for its position
            else:
                outputs.append({"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape, "data": data})
    document: dict[str, object] = {}
    response_id = response.id or request.id
    if response_id:
        document["id"] = response_id
    document["model_name"] = response.model_name
    document["model_version"] = str(response.model_version)
    if response.parameters:
        document["parameters"] = response.parameters
    if not rendered:
        document["outputs"] = outputs
        return encode_json(document), buffers
    # Outputs with floating-point data are spliced in as rendered; the others encoded in place.
    texts = iter(rendered)
    parts = [_encode_json(output) if output else next(texts) for output in outputs]
    return f'{_encode_json(document)[:-1]},"outputs":[{",".join(parts)}]}}'.encode(), buffers


#: The datatypes whose JSON data Triton writes as doubles (``rapidjson_double``).
FLOAT_DATATYPES = frozenset({"FP32", "FP64"})


def _json_data(tensor: Tensor) -> list[Any]:
    """A tensor's elements as JSON values (flattened, as Triton writes them)."""
    datatype = tensor.datatype
    if datatype in NOT_IN_JSON:
        raise InvalidArgumentError(
            f"sending {datatype} data via JSON is not supported. Please use the binary data format for output"
        )
    flat = tensor.data.reshape(-1)
    if datatype == "BYTES":
        return [_text(item) for item in flat]
    if flat.dtype != NUMPY_DTYPE_BY_WIRE[datatype]:
        flat = flat.astype(NUMPY_DTYPE_BY_WIRE[datatype])
    values: list[Any] = flat.tolist()
    return values


def _text(item: object) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, bytes | bytearray | memoryview | np.bytes_):
        return bytes(item).decode("utf-8", errors="replace")
    return str(item)
