"""Tensor: a named, typed numpy array, and the wire layout of tensor bytes.

Binary layout (KServe v2 binary extension, Triton's raw contents): little-endian,
row-major, no padding; BOOL is one byte; each BYTES element is a 4-byte little-endian
length followed by its bytes; BF16 is held as raw uint16 bit patterns.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from airtower.errors import InvalidArgumentError
from airtower.types import ELEMENT_SIZE_BY_WIRE, NUMPY_DTYPE_BY_WIRE

_LENGTH = struct.Struct("<I")


@dataclass(slots=True, init=False)
class Tensor:
    """One input or output tensor. ``data.shape`` equals ``shape``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: npt.NDArray[Any]

    # Written out (not dataclass-generated) so that mypyc compiles it: a generated __init__ stays
    # interpreted Python, and tensors are made on every request.
    def __init__(self, name: str, datatype: str, shape: tuple[int, ...], data: npt.NDArray[Any]) -> None:
        self.name = name
        self.datatype = datatype
        self.shape = shape
        self.data = data

    @classmethod
    def from_numpy(cls, name: str, datatype: str, data: npt.NDArray[Any]) -> Tensor:
        return cls(name, datatype, tuple(int(d) for d in data.shape), data)


def element_count(shape: tuple[int, ...] | list[int]) -> int:
    return math.prod(shape)


def serialize_bytes_tensor(array: npt.NDArray[Any]) -> bytes:
    """BYTES elements (bytes or str) in row-major order, each with its 4-byte length."""
    parts: list[bytes] = []
    append = parts.append
    for item in array.ravel(order="C"):
        value = item.encode() if isinstance(item, str) else bytes(item)
        append(_LENGTH.pack(len(value)))
        append(value)
    return b"".join(parts)


def deserialize_bytes_tensor(buffer: bytes | memoryview, count: int | None = None) -> npt.NDArray[np.object_]:
    """Inverse of :func:`serialize_bytes_tensor`; raises when the buffer is malformed.

    When ``count`` is given the buffer must hold exactly that many elements.
    """
    view = memoryview(buffer)
    items: list[bytes] = []
    offset, end = 0, len(view)
    while offset < end:
        if offset + 4 > end:
            raise InvalidArgumentError("malformed BYTES tensor data: truncated element length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > end:
            raise InvalidArgumentError("malformed BYTES tensor data: element longer than the buffer")
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if count is not None and len(items) != count:
        raise InvalidArgumentError(f"BYTES tensor data holds {len(items)} elements, expected {count}")
    out = np.empty(len(items), dtype=np.object_)
    out[:] = items
    return out


def array_from_buffer(datatype: str, shape: tuple[int, ...], buffer: bytes | memoryview) -> npt.NDArray[Any]:
    """Decode raw tensor bytes into an array of ``shape``; a size mismatch raises.

    Fixed-size types are decoded without a copy (the array views ``buffer``).
    """
    count = element_count(shape)
    if datatype == "BYTES":
        return deserialize_bytes_tensor(buffer, count).reshape(shape)
    expected = count * ELEMENT_SIZE_BY_WIRE[datatype]
    if len(buffer) != expected:
        raise InvalidArgumentError(f"unexpected total byte size {len(buffer)}, expecting {expected}")
    return np.frombuffer(buffer, dtype=NUMPY_DTYPE_BY_WIRE[datatype]).reshape(shape)


def array_to_buffer(datatype: str, array: npt.NDArray[Any]) -> bytes | memoryview:
    """Raw tensor bytes of ``array`` (no copy when it is already contiguous and little-endian)."""
    if datatype == "BYTES":
        return serialize_bytes_tensor(array)
    dtype = NUMPY_DTYPE_BY_WIRE[datatype]
    if array.dtype != dtype:
        array = array.astype(dtype)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    if array.size == 0:
        return b""  # a memoryview with a 0 in its shape cannot be cast
    return array.data.cast("B")
