"""Request-against-config checks, with Triton's messages.

A ``RequestValidator`` is built once per model version from its config, so that the
per-request work is a few dictionary look-ups.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import numpy as np
import numpy.typing as npt

from airtower.core.request import InferenceRequest
from airtower.core.unordered_map import iteration_order
from airtower.errors import InvalidArgumentError
from airtower.types import ELEMENT_SIZE_BY_WIRE, INVALID_DATATYPE, config_to_wire

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

_LENGTH = struct.Struct("<I")  # a BYTES element's length prefix


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """What the config says of one input or output."""

    name: str
    datatype: str  # wire name
    dims: tuple[int, ...]  # without the batch dimension
    optional: bool = False


def _format_shape(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _prefix(request: InferenceRequest) -> str:
    return f"[request id: {request.id or '<id_unknown>'}] "


def _length_indicator_error(request: InferenceRequest, name: str, available: int) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{_prefix(request)}incomplete string length indicator for inference input '{name}' for model "
        f"'{request.model_name}', expecting 4 bytes but only {available} bytes available. Please make sure the "
        "string length indicator is in one buffer."
    )


def bytes_input_elements(
    request: InferenceRequest, name: str, buffer: bytes | memoryview, expected: int
) -> npt.NDArray[np.object_]:
    """The ``expected`` elements of BYTES input ``name``'s serialized ``buffer`` (each a 4-byte
    little-endian length, then that many bytes), checked in Triton's order and words (measured
    against Triton 2.51): element by element, then for bytes left over.

    Raises:
        InvalidArgumentError: a length or an element runs past the buffer, or it holds fewer or
            more than ``expected`` elements.
    """
    view = memoryview(buffer)
    items: list[bytes] = []
    offset, end = 0, len(view)
    while len(items) < expected:
        if offset >= end:
            raise string_count_error(request, name, expected, len(items))
        if end - offset < 4:
            raise _length_indicator_error(request, name, end - offset)
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if end - offset < length:
            # Triton's core counts a cut-off element and finds no data for the next one; a cut-off
            # last element passes it and fails in the backend, with this message.
            if len(items) + 1 < expected:
                raise string_count_error(request, name, expected, len(items) + 1)
            raise InvalidArgumentError(
                f"incomplete string data for inference input '{name}', expecting string of length {length} "
                f"but only {end - offset} bytes available"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if offset < end:  # Triton reads the rest as more elements: a length first
        if end - offset < 4:
            raise _length_indicator_error(request, name, end - offset)
        raise string_count_error(request, name, expected, expected + 1)
    array = np.empty(expected, dtype=np.object_)
    array[:] = items
    return array


def string_count_error(request: InferenceRequest, name: str, expected: int, got: int) -> InvalidArgumentError:
    """Triton's error for a BYTES input of ``got`` elements where its shape holds ``expected``
    (past the expected count Triton stops, so it reports the first count above it: ``expected + 1``, or 1
    when a negative dimension makes ``expected`` negative)."""
    if got < expected:
        return InvalidArgumentError(
            f"{_prefix(request)}expected {expected} string elements for inference input '{name}' for model "
            f"'{request.model_name}', got {got}"
        )
    return InvalidArgumentError(
        f"{_prefix(request)}unexpected number of string elements {max(expected + 1, 1)} for inference input '{name}' "
        f"for model '{request.model_name}', expecting {expected}"
    )


def duplicate_input_error(request: InferenceRequest, name: str) -> InvalidArgumentError:
    """Triton's error for a request naming input ``name`` twice."""
    return InvalidArgumentError(f"{_prefix(request)}input '{name}' already exists in request")


def _matches(dims: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    if dims == shape:
        return True
    if len(dims) != len(shape):
        return False
    return all(d == -1 or d == s for d, s in zip(dims, shape, strict=True))


#: What Triton adds to a shape error of a model with a batch dimension.
IMPLICIT_BATCH_NOTE = (
    "NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be prepended to "
    "each input shape. If you want to specify the full shape including the batch dim in your input dims config, "
    "try setting max_batch_size to zero. See the model configuration docs for more info on max_batch_size."
)


def defer_input_error(request: InferenceRequest, name: str, error: InvalidArgumentError) -> None:
    """Note ``error`` in input ``name``'s data on ``request``: the validator raises it where Triton's core
    meets it, at that input's byte-size step (after names, counts, batch sizes, datatypes and shapes)."""
    if request.input_errors is None:
        request.input_errors = {}
    request.input_errors[name] = error


def _element_count(buffer: bytes | memoryview) -> int:
    """How many whole length-prefixed BYTES elements ``buffer`` holds from its start."""
    view = memoryview(buffer)
    count, offset, end = 0, 0, len(view)
    while end - offset >= 4:
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4 + length
        if offset > end:
            break
        count += 1
    return count


def deferred_bytes_elements(
    request: InferenceRequest, name: str, buffer: bytes | memoryview, shape: tuple[int, ...]
) -> npt.NDArray[Any]:
    """``bytes_input_elements`` shaped as ``shape``; an error in the buffer is noted on ``request`` for
    the validator (Triton's core finds it at its byte-size step, after the datatype and shape checks)
    and an empty array stands in."""
    if shape and min(shape) < 0:  # Triton counts the elements against the (negative) product
        defer_input_error(request, name, string_count_error(request, name, math.prod(shape), _element_count(buffer)))
        return np.empty(0, np.object_)
    try:
        return bytes_input_elements(request, name, buffer, math.prod(shape)).reshape(shape)
    except InvalidArgumentError as error:
        defer_input_error(request, name, error)
        return np.empty(0, np.object_)


def _byte_size_error(request: InferenceRequest, name: str, expected: int, got: int) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{_prefix(request)}input byte size mismatch for input '{name}' for model '{request.model_name}'. "
        f"Expected {expected}, got {got}"
    )


def defer_byte_size_mismatch(request: InferenceRequest, name: str, expected: int, got: int) -> npt.NDArray[np.uint8]:
    """Note on ``request`` that input ``name`` came with ``got`` bytes for ``expected``: the validator
    reports it where Triton's core checks byte sizes, after names, counts, batch sizes, datatypes and
    shapes (so the error Triton meets first is the one raised). Returns an empty stand-in array."""
    defer_input_error(request, name, _byte_size_error(request, name, expected, got))
    return np.empty(0, np.uint8)


def decoded_whole(request: InferenceRequest) -> bool:
    """Whether a decoder read every input of ``request`` as its datatype and size say (no error left
    for the validator, no unknown datatype): only such a request may serve as a replay template."""
    return request.input_errors is None and all(t.datatype != INVALID_DATATYPE for t in request.inputs.values())


class RequestValidator:
    """Checks requests for one model version; every failure is an ``InvalidArgumentError``."""

    #: Distinct request layouts remembered (the cache starts over when full).
    MAX_VERDICTS: ClassVar[int] = 256

    def __init__(self, config: ModelConfig) -> None:
        self.model_name: str = config.name
        self.max_batch_size: int = config.max_batch_size
        self.inputs: dict[str, TensorSpec] = {
            i.name: TensorSpec(i.name, config_to_wire(model_config_enum_name(i.data_type)), tuple(i.dims), i.optional)
            for i in config.input
        }
        self.outputs: dict[str, TensorSpec] = {
            o.name: TensorSpec(o.name, config_to_wire(model_config_enum_name(o.data_type)), tuple(o.dims))
            for o in config.output
        }
        self._required = frozenset(name for name, spec in self.inputs.items() if not spec.optional)
        #: request layout → batch size, for requests that passed (see ``InferenceRequest.layout``).
        self._verdicts: dict[Hashable, int] = {}

    def validate(self, request: InferenceRequest) -> int:
        """Check ``request``; return its batch size (1 for models without batching).

        A request that carries a ``layout`` (its decoder replayed a header it had seen) is checked
        once per distinct layout: the verdict depends on nothing else.
        """
        layout = request.layout if request.input_errors is None else None
        if layout is not None:
            batch_size = self._verdicts.get(layout)
            if batch_size is not None:
                return batch_size
        batch_size = self._check(request)
        if layout is not None:
            if len(self._verdicts) >= self.MAX_VERDICTS:
                self._verdicts.clear()
            self._verdicts[layout] = batch_size
        return batch_size

    def _check(self, request: InferenceRequest) -> int:
        try:
            return self._check_in_order(request, request.inputs, None)
        except InvalidArgumentError:
            # Which error, when several apply, is the one Triton meets first: its checks walk the
            # requested outputs as a sorted set and the inputs in its hash map's order.
            outputs = sorted({o.name for o in request.outputs})
            self._check_in_order(request, iteration_order(request.inputs), outputs)
            raise

    def _check_in_order(self, request: InferenceRequest, names: Iterable[str], outputs: list[str] | None) -> int:
        """Triton's checks (``InferenceRequest::Normalize``), in its order, over the inputs in ``names``'
        order (``outputs``: the requested outputs' names in order, None for the request's own): the
        requested outputs; the input count; each input's name (and with a batch dimension, its
        shape's rank and batch size); the batch size against max_batch_size; then each input's
        datatype, shape and byte size."""
        known_outputs = self.outputs
        for output in [o.name for o in request.outputs] if outputs is None else outputs:
            if output not in known_outputs:
                raise InvalidArgumentError(f"unexpected inference output '{output}' for model '{self.model_name}'")
        inputs = request.inputs
        specs = self.inputs
        if not len(self._required) <= len(inputs) <= len(specs):
            self._raise_input_count(_prefix(request), list(names))
        batch_size = 0
        max_batch = self.max_batch_size
        for name in names:
            if name not in specs:
                raise InvalidArgumentError(f"unexpected inference input '{name}' for model '{self.model_name}'")
            if max_batch > 0:
                shape = inputs[name].shape
                if not shape:
                    raise InvalidArgumentError(
                        f"{_prefix(request)}input '{name}' has no shape but model requires batch dimension for "
                        f"'{self.model_name}'"
                    )
                if not batch_size:  # a batch of 0 leaves it unset; Triton keeps it as a uint32
                    batch_size = shape[0] % 2**32
                elif shape[0] != batch_size:
                    raise InvalidArgumentError(
                        f"{_prefix(request)}input '{name}' batch size does not match other inputs for "
                        f"'{self.model_name}'"
                    )
        if (batch_size - 2**32 if batch_size >= 2**31 else batch_size) > max_batch > 0:  # compared as an int
            raise InvalidArgumentError(
                f"{_prefix(request)}inference request batch-size must be <= {max_batch} for '{self.model_name}'"
            )
        errors = request.input_errors
        for name in names:
            spec = specs[name]
            tensor = inputs[name]
            if tensor.datatype != spec.datatype:
                raise InvalidArgumentError(
                    f"{_prefix(request)}inference input '{name}' data-type is '{tensor.datatype}', but model "
                    f"'{self.model_name}' expects '{spec.datatype}'"
                )
            full = tensor.shape
            shape = full[1:] if max_batch > 0 else full
            low = min(full) if full else 1
            if low < 0 and len(shape) == len(spec.dims) and -1 in shape:
                raise InvalidArgumentError(
                    f"{_prefix(request)}All input dimensions should be specified for input '{name}' for model "
                    f"'{self.model_name}', got {_format_shape(full)}"
                )
            if not _matches(spec.dims, shape):
                expected = ((-1,) if max_batch > 0 else ()) + spec.dims
                raise InvalidArgumentError(
                    f"{_prefix(request)}unexpected shape for input '{name}' for model '{self.model_name}'. "
                    f"Expected {_format_shape(expected)}, got {_format_shape(full)}. "
                    + (IMPLICIT_BATCH_NOTE if max_batch > 0 else "")
                )
            if errors is not None and name in errors:
                raise errors[name]
            if full and (low < 0 or not full[0]):
                if tensor.datatype != "BYTES":
                    self._check_byte_size(request, name, batch_size)
                elif low < 0:  # its elements were left unread
                    raise string_count_error(request, name, math.prod(full), 0)
        if not self._required.issubset(inputs):  # as many inputs as allowed, all known, a required one absent
            self._raise_input_count(_prefix(request), list(names))
        return batch_size or 1

    def _check_byte_size(self, request: InferenceRequest, name: str, batch_size: int) -> None:
        """Triton's byte-size check of an input with a negative dimension or a batch of 0 (the codecs
        hold every other input to its shape, or note a mismatch in ``request.input_errors``): it expects
        the batch size, as its unsigned 32-bit count (1 if unset), times the item's bytes."""
        tensor = request.inputs[name]
        size = ELEMENT_SIZE_BY_WIRE[tensor.datatype]
        if self.max_batch_size > 0:
            item = math.prod(tensor.shape[1:]) * size
            expected = item * (batch_size or 1)  # batch_size: already Triton's uint32
            if not item and min(tensor.shape) >= 0:
                return  # no bytes expected, none given
        else:
            expected = math.prod(tensor.shape) * size
        if expected != tensor.data.nbytes or min(tensor.shape) < 0:
            raise _byte_size_error(request, name, expected, tensor.data.nbytes)

    def _raise_input_count(self, prefix: str, given: list[str]) -> NoReturn:
        required, total = len(self._required), len(self.inputs)
        missing = [name for name in self.inputs if name not in given and not self.inputs[name].optional]
        quoted_given = ",".join(f"'{name}'" for name in given)
        # Triton drops the last character to remove a trailing comma: with none missing, the "[" (sic).
        quoted_missing = "[" + ",".join(f"'{name}'" for name in missing) + "]" if missing else "]"
        expected = f"{required} inputs" if required == total else f"number of inputs between {required} and {total}"
        raise InvalidArgumentError(
            f"{prefix}expected {expected} but got {len(given)} inputs for model "
            f"'{self.model_name}'. Got input(s) [{quoted_given}], but missing required input(s) {quoted_missing}. "
            "Please provide all required input(s)."
        )


def model_config_enum_name(data_type: int) -> str:
    """``TYPE_FP32`` for the DataType enum value of the config protobuf."""
    from tritonclient.grpc.model_config_pb2 import DataType

    name: str = DataType.Name(data_type)
    return name
