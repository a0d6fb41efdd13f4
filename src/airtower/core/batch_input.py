"""Ragged batching: batch inputs, ragged concatenation and batch outputs, as Triton computes them.

A ``batch_input`` is a model input that the server (not the client) generates once a batch is
formed, from the shapes of a *source* input in every request of the batch (model_config.proto
``BatchInput.Kind``; backend ``BackendInputCollector::BatchInputShape`` / ``ProcessBatchInput``).
An ``allow_ragged_batch`` input is fed as the one-dimensional concatenation of every request's
elements. A ``batch_output`` of kind ``BATCH_SCATTER_WITH_INPUT_SHAPE`` is split back per request
by the shapes of its source input (``BackendOutputResponder::ProcessBatchOutput``).

Pure numpy functions of the requests' shapes and arrays: no backend, no config protobuf. Source
shapes are the full request shapes, batch dimension first when the model batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from airtower.errors import InternalError, InvalidArgumentError

Shape = Sequence[int]

BATCH_ELEMENT_COUNT: Final = "BATCH_ELEMENT_COUNT"
BATCH_ACCUMULATED_ELEMENT_COUNT: Final = "BATCH_ACCUMULATED_ELEMENT_COUNT"
BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO: Final = "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO"
BATCH_MAX_ELEMENT_COUNT_AS_SHAPE: Final = "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE"
BATCH_ITEM_SHAPE: Final = "BATCH_ITEM_SHAPE"
BATCH_ITEM_SHAPE_FLATTEN: Final = "BATCH_ITEM_SHAPE_FLATTEN"

#: Every ``BatchInput.Kind`` name, in the order of the enum.
BATCH_INPUT_KINDS: Final = (
    BATCH_ELEMENT_COUNT,
    BATCH_ACCUMULATED_ELEMENT_COUNT,
    BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO,
    BATCH_MAX_ELEMENT_COUNT_AS_SHAPE,
    BATCH_ITEM_SHAPE,
    BATCH_ITEM_SHAPE_FLATTEN,
)

#: The two datatypes a batch input may have (model_config.proto ``BatchInput.data_type``).
NUMPY_DTYPE_BY_BATCH_INPUT_TYPE: Final[dict[str, type[np.int32] | type[np.float32]]] = {
    "TYPE_INT32": np.int32,
    "TYPE_FP32": np.float32,
}


@dataclass(frozen=True, slots=True)
class BatchInputSpec:
    """One ``batch_input`` entry of a model config, with enum values as their names.

    Attributes:
        kind: a name from :data:`BATCH_INPUT_KINDS`.
        target_names: the model inputs fed with the generated tensor (usually one).
        data_type: ``"TYPE_INT32"`` or ``"TYPE_FP32"``.
        source_input: the request input whose shapes the tensor describes.
    """

    kind: str
    target_names: tuple[str, ...]
    data_type: str
    source_input: str

    def to_array(self, shapes: Sequence[Shape]) -> npt.NDArray[np.generic]:
        """The tensor fed to every target for a batch whose source inputs have ``shapes``."""
        return batch_input_array(self.kind, shapes, self.data_type)


def element_counts(shapes: Sequence[Shape]) -> list[int]:
    """Element count of each shape (batch dimension included): ``[[1, 3], [2, 2]]`` → ``[3, 4]``."""
    return [math.prod(shape) for shape in shapes]


def batch_input_array(kind: str, shapes: Sequence[Shape], data_type: str = "TYPE_INT32") -> npt.NDArray[np.generic]:
    """The batch input of ``kind`` for a batch whose requests' source inputs have ``shapes``.

    For source shapes ``[1, 3]``, ``[2, 2]`` (a batch of 3 items in 2 requests):

    * ``BATCH_ELEMENT_COUNT``: ``[3, 4]``, one element count per request.
    * ``BATCH_ACCUMULATED_ELEMENT_COUNT``: ``[3, 7]``, where each request's elements end.
    * ``BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO``: ``[0, 3, 7]``, where each one starts, then the end.
    * ``BATCH_MAX_ELEMENT_COUNT_AS_SHAPE``: shape ``[4]``; only the shape means something (Triton
      leaves the data uninitialised; here it is zeros).
    * ``BATCH_ITEM_SHAPE``: ``[[3], [2], [2]]``, the shape without the batch dimension of every
      batch item (a request of batch size ``b`` contributes ``b`` rows).
    * ``BATCH_ITEM_SHAPE_FLATTEN``: ``[3, 2, 2]``, the same values in one dimension.

    The item-shape kinds take the first dimension as the batch dimension, as Triton does (ragged
    batching is for models with ``max_batch_size > 0``).

    Raises:
        InvalidArgumentError: an unknown kind or datatype, no request, or item-shape kinds over
            shapes without a batch dimension or of different ranks.
    """
    dtype = NUMPY_DTYPE_BY_BATCH_INPUT_TYPE.get(data_type)
    if dtype is None:
        raise InvalidArgumentError(f"batch input data type must be TYPE_INT32 or TYPE_FP32, got {data_type}")
    if not shapes:
        raise InvalidArgumentError(f"batch input kind '{kind}' needs at least one request")
    if kind == BATCH_ELEMENT_COUNT:
        return np.asarray(element_counts(shapes), dtype=dtype)
    if kind == BATCH_ACCUMULATED_ELEMENT_COUNT:
        return np.cumsum(element_counts(shapes)).astype(dtype)
    if kind == BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO:
        return np.cumsum([0, *element_counts(shapes)]).astype(dtype)
    if kind == BATCH_MAX_ELEMENT_COUNT_AS_SHAPE:
        return np.zeros(max(element_counts(shapes)), dtype=dtype)
    if kind == BATCH_ITEM_SHAPE:
        return _item_shapes(shapes, dtype)
    if kind == BATCH_ITEM_SHAPE_FLATTEN:
        return _item_shapes(shapes, dtype).reshape(-1)
    raise InvalidArgumentError(f"unsupported batch input kind '{kind}'")


def _item_shapes(shapes: Sequence[Shape], dtype: type[np.int32] | type[np.float32]) -> npt.NDArray[np.generic]:
    ranks = {len(shape) for shape in shapes}
    if 0 in ranks:
        raise InvalidArgumentError("batch input of the item shape kinds needs source inputs with a batch dimension")
    if len(ranks) != 1:
        raise InvalidArgumentError(
            "batch input of the item shape kinds needs source inputs of one rank, got shapes "
            + ", ".join(_format_shape(shape) for shape in shapes)
        )
    rows = [np.tile(np.asarray(shape[1:], dtype=dtype), (shape[0], 1)) for shape in shapes]
    return np.concatenate(rows, axis=0)


def concatenate_ragged(arrays: Sequence[npt.NDArray[np.generic]]) -> npt.NDArray[np.generic]:
    """Every request's elements in row-major order, one after another, as one 1-D tensor.

    This is what Triton's backends feed for an ``allow_ragged_batch`` input: requests of shapes
    ``[1, 3]``, ``[1, 4]``, ``[1, 5]`` give one tensor of shape ``[12]``.

    Raises:
        InvalidArgumentError: no arrays, or arrays of different dtypes.
    """
    if not arrays:
        raise InvalidArgumentError("a ragged input needs at least one request")
    dtypes = {array.dtype for array in arrays}
    if len(dtypes) != 1:
        raise InvalidArgumentError(
            "ragged input tensors have different datatypes: " + ", ".join(str(d) for d in sorted(dtypes, key=str))
        )
    if len(arrays) == 1:
        return arrays[0].reshape(-1)
    return np.concatenate([array.reshape(-1) for array in arrays])


def scatter_shapes(output_dims: Shape, source_shapes: Sequence[Shape], batching: bool) -> list[tuple[int, ...]]:
    """Each request's output shape for ``BATCH_SCATTER_WITH_INPUT_SHAPE``.

    The output's config dims, behind a ``-1`` batch dimension when the model batches, with every
    ``-1`` replaced by the source input's dimension at the same position (Triton's "naive
    assumption that the dynamic dimension in output is mapped to the same dimension in the input").

    Raises:
        InternalError: a ``-1`` at a position the source input does not have.
    """
    template = [-1, *output_dims] if batching else list(output_dims)
    result = []
    for source in source_shapes:
        shape = []
        for index, dim in enumerate(template):
            if dim != -1:
                shape.append(int(dim))
            elif index < len(source):
                shape.append(int(source[index]))
            else:
                raise InternalError(
                    f"batch output shape {_format_shape(template)} has a variable dimension {index} that the "
                    f"source input of shape {_format_shape(source)} does not have"
                )
        result.append(tuple(shape))
    return result


def scatter_with_input_shape(
    output: npt.NDArray[np.generic], output_dims: Shape, source_shapes: Sequence[Shape], batching: bool = True
) -> list[npt.NDArray[np.generic]]:
    """Split a batch output back per request, ``BATCH_SCATTER_WITH_INPUT_SHAPE``.

    Request *i* receives the next ``prod(shape_i)`` elements of ``output`` (in row-major order),
    shaped ``shape_i`` from :func:`scatter_shapes`. The pieces are views of ``output`` when it is
    contiguous.

    Raises:
        InternalError: ``output`` holds fewer elements than the requests' shapes need.
    """
    shapes = scatter_shapes(output_dims, source_shapes, batching)
    flat = output.reshape(-1)
    needed = sum(math.prod(shape) for shape in shapes)
    if needed > flat.size:
        raise InternalError(
            f"batch output of shape {_format_shape(output.shape)} holds {flat.size} elements, but the requests' "
            f"shapes {', '.join(_format_shape(s) for s in shapes)} need {needed}"
        )
    pieces = []
    offset = 0
    for shape in shapes:
        count = math.prod(shape)
        pieces.append(flat[offset : offset + count].reshape(shape))
        offset += count
    return pieces


def _format_shape(shape: Shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"
