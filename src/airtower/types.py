"""Vocabulary shared by every layer: datatype names and their numpy equivalents.

Imports nothing from airtower. Wire names ("FP32", "BYTES") are what the KServe v2
protocol carries; config names ("TYPE_FP32", "TYPE_STRING") are what config.pbtxt carries.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import numpy as np

JSONValue: TypeAlias = Any
ParameterValue: TypeAlias = bool | int | float | str
ControlMode = Literal["none", "poll", "explicit"]

#: Every datatype of the KServe v2 protocol, by wire name.
WIRE_DATATYPES: tuple[str, ...] = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES", "BF16",
)  # fmt: skip

#: The datatype a decoder gives an input whose datatype string Triton does not know, as Triton's core
#: names it (``TYPE_INVALID``); the validator refuses it in its datatype check.
INVALID_DATATYPE = "<invalid>"

#: numpy dtype used to hold each wire datatype in memory. BYTES elements are Python
#: ``bytes`` in an object array; BF16 is held as its raw 16-bit patterns (numpy has no bfloat16).
NUMPY_DTYPE_BY_WIRE: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
    "BF16": np.dtype(np.uint16),
}

#: Size in bytes of one element, for fixed-size datatypes.
ELEMENT_SIZE_BY_WIRE: dict[str, int] = {
    name: dtype.itemsize for name, dtype in NUMPY_DTYPE_BY_WIRE.items() if name != "BYTES"
}

_WIRE_BY_NUMPY_KIND: dict[np.dtype[Any], str] = {
    dtype: name for name, dtype in NUMPY_DTYPE_BY_WIRE.items() if name not in ("BF16", "BYTES")
}


def config_to_wire(config_type: str) -> str:
    """``"TYPE_FP32"`` → ``"FP32"``; ``"TYPE_STRING"`` → ``"BYTES"``."""
    name = config_type.removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def wire_to_config(wire: str) -> str:
    """``"FP32"`` → ``"TYPE_FP32"``; ``"BYTES"`` → ``"TYPE_STRING"``."""
    return "TYPE_STRING" if wire == "BYTES" else f"TYPE_{wire}"


def wire_from_numpy(dtype: np.dtype[Any]) -> str | None:
    """The wire datatype that holds ``dtype``, or None when there is none."""
    if dtype.kind in ("O", "S", "U"):
        return "BYTES"
    return _WIRE_BY_NUMPY_KIND.get(dtype)
