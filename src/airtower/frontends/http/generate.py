"""Triton's generate extension: JSON ⇄ core types for ``/generate`` and ``/generate_stream``.

Pure functions and one small state machine, no I/O. A generate request is a flat JSON object:
each top-level key naming a model input becomes that input (a scalar or a 1-D array, fitted to
the input's shape from the model metadata), every other key becomes a request parameter, and the
``parameters`` object is mapped the same way. A response is one JSON object with the response's
``id``, ``model_name``, ``model_version``, parameters and outputs as keys (single-element
outputs unwrapped), keys sorted as Triton's ``std::map`` writes them. ``GenerateReply`` holds
Triton's reply rules: the status comes from the first response, ``/generate`` wants exactly one
response, ``/generate_stream`` sends each as a server-sent event (``data: {json}\\n\\n``).

Wording, codes and order of checks copy Triton 2.51's ``HandleGenerate`` / ``GenerateRequestClass``
(``http_server.cc``), checked against the reference server.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from airtower.core.request import InferenceRequest, c_string
from airtower.core.tensor import Tensor
from airtower.errors import InternalError, InvalidArgumentError, TritonError
from airtower.frontends.http.codec import (
    BYTES_NOT_STRING,
    JSON_NOT_OBJECT,
    JSON_NOT_STRING,
    NOT_IN_JSON,
    SIGNED,
    UNSIGNED,
    encode_json_text,
)
from airtower.frontends.http.errors import encode_error_body
from airtower.frontends.http.rapidjson_double import double_text, float_array_json
from airtower.types import NUMPY_DTYPE_BY_WIRE, JSONValue, ParameterValue

if TYPE_CHECKING:
    from airtower.core.response import InferenceResponse

#: The reserved key whose object is mapped like the top level (Triton's nested mapping schema).
PARAMETERS_KEY = "parameters"
#: What ``/generate`` answers (in a 200 body) when a model sends zero or several responses.
EXACTLY_ONE_RESPONSE_MESSAGE = (
    "generate expects model to produce exactly 1 response, use generate stream for model that "
    "generates various number of responses"
)
SSE_PREFIX = b"data: "
SSE_SUFFIX = b"\n\n"

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1
_SHAPE_MISMATCH = "Unable to parse 'data': Shape does not match true shape of 'data' field"
_FLOATS = frozenset({"FP32", "FP64"})


@dataclass(frozen=True, slots=True)
class InputLayout:
    """What a generate request needs of one model input: its wire datatype and metadata shape
    (with the batch dimension, ``-1`` where variable)."""

    datatype: str
    shape: tuple[int, ...]


def input_layouts(metadata: Mapping[str, JSONValue]) -> dict[str, InputLayout]:
    """``{input name: InputLayout}`` from a model's KServe v2 metadata (``InferenceServer.model_metadata``)."""
    return {
        str(item["name"]): InputLayout(str(item["datatype"]), tuple(int(d) for d in item["shape"]))
        for item in metadata["inputs"]
    }


# --------------------------------------------------------------------------- requests


def decode_generate_request(
    model_name: str, model_version: str, document: object, inputs: Mapping[str, InputLayout]
) -> InferenceRequest:
    """The ``InferenceRequest`` of a parsed generate body, mapped as Triton maps it.

    A string ``id`` also sets the request id; it stays a parameter as well (Triton's quirk).
    The reserved request parameters (``priority``, ``sequence_id``...) are plain parameters here:
    Triton's generate endpoint passes them to the model and schedules nothing by them.

    Raises:
        InternalError: the body is not an object, ``id`` is not a string, ``parameters`` is not an
            object, or a value does not fit its input's JSON type ("Unable to parse ...").
        InvalidArgumentError: a parameter of another type than int, float, bool or string; a value
            that can't be fitted to its input's shape; FP16/BF16 inputs; an input given twice; a
            BYTES input whose nested elements don't fill its shape.
    """
    request = InferenceRequest(model_name, model_version)
    if type(document) is not dict:
        raise InternalError("attempt to get members for non-object")
    if "id" in document:
        request_id = document["id"]
        if type(request_id) is not str:
            raise InternalError(f"Unable to parse 'id': {JSON_NOT_STRING}")
        request.id = c_string(request_id)
    # Triton's core counts a BYTES input's elements only once the request is complete.
    miscounted: list[tuple[str, int, int]] = []
    for key, value in document.items():
        if key != PARAMETERS_KEY:
            _map_key(request, key, value, inputs, miscounted)
            continue
        if key in inputs:
            raise InvalidArgumentError(f"Keyword '{key}' for nested schema also given as input tensor name")
        if type(value) is not dict:
            raise InternalError(f"Expected JSON object for keyword: '{key}': {JSON_NOT_OBJECT}")
        try:
            for nested_key, nested_value in value.items():
                _map_key(request, nested_key, nested_value, inputs, miscounted)
        except TritonError as exc:
            raise TritonError.from_code(exc.code, f"Converting keyword: '{key}': {exc.message}") from exc
    if miscounted:
        name, count, expected = miscounted[0]
        raise InvalidArgumentError(
            f"{_request_prefix(request.id)}unexpected number of string elements {count} for inference input "
            f"'{name}' for model '{model_name}', expecting {expected}"
        )
    return request


def _map_key(
    request: InferenceRequest,
    key: str,
    value: object,
    inputs: Mapping[str, InputLayout],
    miscounted: list[tuple[str, int, int]],
) -> None:
    layout = inputs.get(key)
    if layout is None:
        request.parameters[key] = _parameter(key, value)
        return
    tensor, count = _tensor_from_json(key, layout, value)
    if key in request.inputs:
        raise InvalidArgumentError(f"{_request_prefix(request.id)}input '{key}' already exists in request")
    if count != tensor.data.size:
        miscounted.append((key, count, tensor.data.size))
    request.inputs[key] = tensor


def _request_prefix(request_id: str) -> str:
    return f"[request id: {request_id or '<id_unknown>'}] "


def _parameter(name: str, value: object) -> ParameterValue:
    """A request parameter: bool, string, int64, or double (any other JSON number)."""
    if type(value) is bool or type(value) is str or type(value) is float:
        return value
    if type(value) is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else float(value)
    raise InvalidArgumentError(f"parameter '{name}' has invalid type. It should be either 'int', 'bool', or 'string'.")


def _flatten(value: object, out: list[object]) -> None:
    if type(value) is list:
        for item in value:
            _flatten(item, out)
    else:
        out.append(value)


def fit_shape(name: str, dims: tuple[int, ...], count: int) -> tuple[int, ...]:
    """Triton's two passes: fixed dims must divide ``count``; the innermost ``-1`` takes what is
    left and the other ``-1`` become 1.

    Raises:
        InvalidArgumentError: ``count`` elements can't fill ``dims``.
    """
    shape = list(dims)
    remaining = count
    for index in range(len(shape) - 1, -1, -1):
        dim = shape[index]
        if dim != -1:
            if dim == 0 or remaining % dim:
                raise InvalidArgumentError(f"The schema can not convert input '{name}' to tensor with proper shape")
            remaining //= dim
    for index in range(len(shape) - 1, -1, -1):
        if shape[index] == -1:
            shape[index] = remaining
            remaining = 1
    if remaining != 1:
        raise InvalidArgumentError(f"The schema can not convert input '{name}' to tensor with proper shape")
    return tuple(shape)


def _tensor_from_json(name: str, layout: InputLayout, value: object) -> tuple[Tensor, int]:
    """The input tensor of one JSON value and the element count it was given.

    The count differs from the tensor's size only for BYTES (nested arrays), which Triton
    reports later, once every key is converted.
    """
    datatype = layout.datatype
    count = len(value) if type(value) is list else 1
    leaves: list[object] = []
    _flatten(value, leaves)
    if datatype == "BYTES":
        encoded: list[bytes] = []
        for leaf in leaves:
            if type(leaf) is not str:
                raise InternalError(BYTES_NOT_STRING)
            encoded.append(leaf.encode())
        shape = fit_shape(name, layout.shape, count)
        if len(encoded) != math.prod(shape):
            # Reported by the caller once every key is mapped; the tensor only carries the shape.
            return Tensor(name, datatype, shape, np.empty(shape, dtype=np.object_)), len(encoded)
        array = np.empty(len(encoded), dtype=np.object_)
        array[:] = encoded
        return Tensor(name, datatype, shape, array.reshape(shape)), len(encoded)
    shape = fit_shape(name, layout.shape, count)
    if datatype in NOT_IN_JSON:
        raise InvalidArgumentError(
            f"receiving {datatype} data via JSON is not supported. Please use the binary data format for input {name}"
        )
    if datatype not in NUMPY_DTYPE_BY_WIRE:
        raise InvalidArgumentError(f"invalid datatype for input {name}")
    expected = math.prod(shape)
    accepts, detail = _LEAF_RULES[datatype]
    for index, leaf in enumerate(leaves):
        if index >= expected:
            raise InternalError(_SHAPE_MISMATCH)
        if not accepts(leaf):
            raise InternalError(f"Unable to parse 'data': {detail}")
    if len(leaves) != expected:
        raise InternalError(_SHAPE_MISMATCH)
    return Tensor(name, datatype, shape, _array(datatype, leaves).reshape(shape)), expected


def _is_bool(value: object) -> bool:
    return type(value) is bool


def _is_int64(value: object) -> bool:
    return type(value) is int and _INT64_MIN <= value <= _INT64_MAX


def _is_uint64(value: object) -> bool:
    return type(value) is int and 0 <= value <= _UINT64_MAX


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


_LEAF_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "BOOL": (_is_bool, "attempt to access JSON non-boolean as boolean"),
    **dict.fromkeys(SIGNED, (_is_int64, "attempt to access JSON non-signed-integer as signed-integer")),
    **dict.fromkeys(UNSIGNED, (_is_uint64, "attempt to access JSON non-unsigned-integer as unsigned-integer")),
    **dict.fromkeys(_FLOATS, (_is_number, "attempt to access JSON non-number as double")),
}


def _array(datatype: str, leaves: list[Any]) -> npt.NDArray[Any]:
    """Leaves already checked for ``datatype``; integers wrap to the element type as Triton's casts do."""
    dtype = NUMPY_DTYPE_BY_WIRE[datatype]
    if datatype in SIGNED or datatype in UNSIGNED:
        wide = np.array(leaves, dtype=np.int64 if datatype in SIGNED else np.uint64)
        return wide if wide.dtype == dtype else wide.astype(dtype)
    with np.errstate(over="ignore"):
        return np.array(leaves, dtype=dtype)


# --------------------------------------------------------------------------- responses


def encode_generate_response(response: InferenceResponse) -> bytes:
    """One response as Triton's generate JSON: ``id`` (when set), ``model_name``,
    ``model_version``, then each parameter and output by name; the first of equal names wins.

    Raises:
        InvalidArgumentError: an FP16/BF16 output (JSON can't carry them).
    """
    fields: dict[str, object] = {}
    if response.id:
        fields["id"] = response.id
    fields["model_name"] = response.model_name
    fields["model_version"] = str(response.model_version)
    for key, value in response.parameters.items():
        if key not in fields:
            fields[key] = value
    for tensor in response.outputs:
        if tensor.name not in fields:
            fields[tensor.name] = _output_value(tensor)
    members = [f"{encode_json_text(key)}:{_value_text(fields[key])}" for key in sorted(fields)]
    return f"{{{','.join(members)}}}".encode()


def _value_text(value: object) -> str:
    """A field's JSON, doubles written as Triton's writer writes them (``rapidjson_double``)."""
    if isinstance(value, float):
        return double_text(value)
    if isinstance(value, list) and value and isinstance(value[0], float):
        return float_array_json(value)
    return encode_json_text(value)


def _output_value(tensor: Tensor) -> object:
    datatype = tensor.datatype
    if datatype in NOT_IN_JSON:
        raise InvalidArgumentError(
            f"sending {datatype} data via JSON is not supported. Please use the binary data format for output"
        )
    flat = tensor.data.reshape(-1)
    values: list[Any]
    if datatype == "BYTES":
        values = [_text(item) for item in flat]
    else:
        wire = NUMPY_DTYPE_BY_WIRE[datatype]
        values = (flat if flat.dtype == wire else flat.astype(wire)).tolist()
    return values[0] if len(values) == 1 else values


def _text(item: object) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, bytes | bytearray | memoryview | np.bytes_):
        return bytes(item).decode("utf-8", errors="replace")
    return str(item)


def sse_event(body: bytes) -> bytes:
    """A server-sent event carrying ``body``, framed as Triton frames it."""
    return SSE_PREFIX + body + SSE_SUFFIX


class GenerateReply:
    """Triton's reply rules for one generate request, fed with each response as it comes.

    ``on_response`` returns ``(status, chunks to send now, whether the reply ends)``. The first
    response (even a bare final flag) fixes the status: 200, or 400 when it is an error
    (whatever its code: Triton frees the error before reading it, and 2.51 answers 400).
    ``/generate`` (``streaming=False``) sends its single response at the end, or, when the model
    sent zero or several, the "exactly 1 response" error (still with the first one's status);
    ``/generate_stream`` sends every response and error as an event. A bare final flag sends
    nothing.
    """

    __slots__ = ("_pending", "ended", "status", "streaming")

    def __init__(self, streaming: bool) -> None:
        self.streaming = streaming
        self.status = 0
        self.ended = False
        self._pending: list[bytes] = []

    def on_response(self, item: InferenceResponse | TritonError | None, final: bool) -> tuple[int, list[bytes], bool]:
        if self.ended:
            return self.status, [], True
        body: bytes | None = None
        failed = False
        if item is not None:
            body, failed = _render(item)
        if not self.status:
            self.status = 400 if failed else 200
        chunks: list[bytes] = []
        if self.streaming:
            if body is not None:
                chunks.append(sse_event(body))
        else:
            if body is not None:
                self._pending.append(body)
            if final:
                pending = self._pending
                chunks = pending if len(pending) == 1 else [encode_error_body(EXACTLY_ONE_RESPONSE_MESSAGE)]
                self._pending = []
        if final:
            self.ended = True
        return self.status, chunks, final


def _render(item: InferenceResponse | TritonError) -> tuple[bytes, bool]:
    """(JSON body, whether it is an error) of one response."""
    if isinstance(item, TritonError):
        return encode_error_body(item.message), True
    try:
        return encode_generate_response(item), False
    except TritonError as exc:
        return encode_error_body(exc.message), True
