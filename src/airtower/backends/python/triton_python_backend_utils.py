"""``triton_python_backend_utils`` (``pb_utils``): the API Python models import, name for name.

Mirrors upstream python_backend's ``src/resources/triton_python_backend_utils.py`` plus the
classes its stub binds from C++ (``pb_stub.cc``: Tensor, InferenceRequest, InferenceResponse,
TritonError, Logger, ...). Models run in-process, so tensors wrap the request's numpy arrays
without copies. User code imports it as ``import triton_python_backend_utils as pb_utils``: the
Python backend installs this module under that name in ``sys.modules``.

Everything here is public, frozen API (``__all__``); imports nothing from airtower but
``core.tensor`` for the BYTES codec.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import enum
import json
import logging
import os
import queue
import re
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from airtower.core.tensor import deserialize_bytes_tensor as _deserialize_bytes
from airtower.observability import custom_metrics as _custom_metrics

__all__ = [
    "TRITONSERVER_MEMORY_CPU",
    "TRITONSERVER_MEMORY_GPU",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_END",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_START",
    "TRITONSERVER_REQUEST_RELEASE_ALL",
    "TRITONSERVER_REQUEST_RELEASE_RESCHEDULE",
    "TRITONSERVER_RESPONSE_COMPLETE_FINAL",
    "TRITON_STRING_TO_NUMPY",
    "InferenceRequest",
    "InferenceResponse",
    "InferenceResponseSender",
    "InferenceTrace",
    "LogLevel",
    "Logger",
    "MemoryType",
    "Metric",
    "MetricFamily",
    "ModelConfig",
    "PreferredMemory",
    "ResponseIterator",
    "Tensor",
    "TritonError",
    "TritonModelException",
    "deserialize_bytes_tensor",
    "get_input_config_by_name",
    "get_input_tensor_by_name",
    "get_model_dir",
    "get_output_config_by_name",
    "get_output_tensor_by_name",
    "is_model_ready",
    "load_model",
    "numpy_to_triton_type",
    "serialize_byte_tensor",
    "triton_string_to_numpy",
    "triton_to_numpy_type",
    "unload_model",
    "using_decoupled_model_transaction_policy",
]

TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2

_logger = logging.getLogger("airtower.python_model")

# -- datatypes ------------------------------------------------------------------------------

TRITON_STRING_TO_NUMPY: dict[str, Any] = {
    "TYPE_BOOL": bool,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}

#: TRITONSERVER_DataType values (tritonserver.h): INVALID=0 ... BYTES=13, BF16=14.
_TRITON_TYPE_BF16 = 14
_NUMPY_BY_TRITON_TYPE: dict[int, type[Any]] = {
    1: np.bool_,
    2: np.uint8,
    3: np.uint16,
    4: np.uint32,
    5: np.uint64,
    6: np.int8,
    7: np.int16,
    8: np.int32,
    9: np.int64,
    10: np.float16,
    11: np.float32,
    12: np.float64,
    13: np.object_,
}
_TRITON_TYPE_BY_DTYPE: dict[np.dtype[Any], int] = {np.dtype(t): code for code, t in _NUMPY_BY_TRITON_TYPE.items()}
_TYPE_BYTES = 13


def triton_to_numpy_type(data_type: int) -> type[Any] | None:
    """TRITONSERVER_DataType value → numpy scalar type (None when unknown)."""
    return _NUMPY_BY_TRITON_TYPE.get(int(data_type))


def numpy_to_triton_type(data_type: Any) -> int | None:
    """numpy type or dtype → TRITONSERVER_DataType value (None when unsupported)."""
    try:
        dtype = np.dtype(data_type)
    except TypeError:
        return None
    if dtype.kind in ("S", "O"):
        return _TYPE_BYTES
    return _TRITON_TYPE_BY_DTYPE.get(dtype)


def triton_string_to_numpy(triton_type_string: str) -> Any:
    """``"TYPE_FP32"`` → ``np.float32`` (KeyError when unknown, as upstream)."""
    return TRITON_STRING_TO_NUMPY[triton_type_string]


def _triton_type_of(dtype: np.dtype[Any]) -> int:
    code = _TRITON_TYPE_BY_DTYPE.get(dtype)
    if code is not None:
        return code
    if dtype.kind in ("O", "S", "U"):
        return _TYPE_BYTES
    code = _TRITON_TYPE_BY_DTYPE.get(dtype.newbyteorder("="))  # big-endian arrays
    if code is not None:
        return code
    raise TritonError(f"NumPy dtype is not supported: {dtype}", TritonError.INVALID_ARG)


# -- BYTES codec ----------------------------------------------------------------------------


def serialize_byte_tensor(input_tensor: npt.NDArray[Any]) -> bytes | None:
    """Each element (C order) as a 4-byte little-endian length then its bytes.

    ``str`` (and other non-bytes objects) are UTF-8 encoded via ``str()``. Returns ``b""`` for an
    empty tensor (upstream returns ``()``) and None for a non-object, non-bytes dtype.
    """
    if input_tensor.size == 0:
        return b""
    if input_tensor.dtype != np.object_ and input_tensor.dtype.type != np.bytes_:
        return None
    parts: list[bytes] = []
    for item in input_tensor.ravel(order="C").tolist():
        value = item if type(item) is bytes else str(item).encode("utf-8")
        parts.append(len(value).to_bytes(4, "little"))
        parts.append(value)
    return b"".join(parts)


def deserialize_bytes_tensor(encoded_tensor: bytes | bytearray | memoryview | npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Inverse of :func:`serialize_byte_tensor`: a 1-D object array of ``bytes``."""
    buffer = encoded_tensor.tobytes() if isinstance(encoded_tensor, np.ndarray) else encoded_tensor
    return _deserialize_bytes(memoryview(buffer).cast("B"))


# -- errors ---------------------------------------------------------------------------------


class _ErrorCode(enum.IntEnum):
    """TRITONSERVER_Error_Code values."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __str__(self) -> str:  # as Triton's (pybind11) enum prints
        return f"__ErrorCode.{self.name}"


class TritonModelException(Exception):
    """Raised by a model (initialize/execute/finalize) to report a failure; what a failing
    ``pb_utils`` call raises on Triton."""


class TritonError(TritonModelException):
    """An error a model returns in an ``InferenceResponse`` (fails that request alone).

    Unlike upstream (a plain pybind class) it can also be raised. It is a ``TritonModelException``,
    so ``except pb_utils.TritonModelException`` catches the errors ``pb_utils`` calls raise here,
    as it catches every failing call's error on Triton.
    """

    UNKNOWN = _ErrorCode.UNKNOWN
    INTERNAL = _ErrorCode.INTERNAL
    NOT_FOUND = _ErrorCode.NOT_FOUND
    INVALID_ARG = _ErrorCode.INVALID_ARG
    UNAVAILABLE = _ErrorCode.UNAVAILABLE
    UNSUPPORTED = _ErrorCode.UNSUPPORTED
    ALREADY_EXISTS = _ErrorCode.ALREADY_EXISTS
    CANCELLED = _ErrorCode.CANCELLED

    def __init__(self, message: str, code: int = _ErrorCode.INTERNAL) -> None:
        super().__init__(message)
        self._message = str(message)
        self._code = _ErrorCode(code)

    def code(self) -> _ErrorCode:
        return self._code

    def message(self) -> str:
        return self._message

    def __repr__(self) -> str:
        return f"TritonError({self._message!r}, {self._code.name})"


def _unsupported(what: str) -> TritonError:
    return TritonError(f"{what} is not supported yet by airtower's python backend", TritonError.UNSUPPORTED)


# -- memory / trace -------------------------------------------------------------------------


class MemoryType(enum.IntEnum):
    TRITONSERVER_MEMORY_GPU = 0
    TRITONSERVER_MEMORY_CPU = 1


TRITONSERVER_MEMORY_GPU = MemoryType.TRITONSERVER_MEMORY_GPU
TRITONSERVER_MEMORY_CPU = MemoryType.TRITONSERVER_MEMORY_CPU


class PreferredMemory:
    """Where BLS outputs should be placed (accepted; airtower keeps tensors on the CPU)."""

    __slots__ = ("preferred_device_id", "preferred_memory_type")

    def __init__(self, preferred_memory_type: int, preferred_device_id: int = 0) -> None:
        self.preferred_memory_type = MemoryType(preferred_memory_type)
        self.preferred_device_id = int(preferred_device_id)

    def __repr__(self) -> str:
        return f"PreferredMemory({self.preferred_memory_type.name}, {self.preferred_device_id})"


class InferenceTrace:
    """The trace of a request; ``get_context()`` is None unless it is traced in OpenTelemetry mode.

    Passing it as ``InferenceRequest(..., trace=request.trace())`` makes a BLS request a child of
    the request's trace (Triton's rule: BLS requests are traced only when asked so)."""

    __slots__ = ("_context", "_trace_id")

    def __init__(self, context: str | None = None, trace_id: int = 0) -> None:
        self._context = context
        self._trace_id = trace_id

    def get_context(self, key: str = "") -> str | None:
        return self._context


_NO_TRACE = InferenceTrace()

# -- tensors --------------------------------------------------------------------------------


#: DLPack device types (dlpack.h DLDeviceType) numpy reads directly; others live on an accelerator.
_DLPACK_HOST_DEVICES = frozenset({1, 3, 13})  # kDLCPU, kDLCUDAHost, kDLCUDAManaged
_DLPACK_CPU = 1
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _DLPackCapsule:
    """Adapts a bare DLPack capsule to the ``__dlpack__`` protocol ``np.from_dlpack`` needs."""

    def __init__(self, capsule: Any) -> None:
        self._capsule = capsule

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        # An unused capsule holds a DLManagedTensor, which starts with its DLTensor:
        # {void* data; DLDevice {int32 device_type; int32 device_id}; ...}.
        try:
            tensor = _capsule_pointer(self._capsule, b"dltensor")
        except (ValueError, TypeError):
            return (_DLPACK_CPU, 0)  # a used or versioned capsule: numpy explains what is wrong with it
        device = (ctypes.c_int32 * 2).from_address(tensor + ctypes.sizeof(ctypes.c_void_p))
        return (device[0], device[1])


def _through_framework(name: str, source: Any, device: tuple[int, int]) -> Tensor:
    """A DLPack tensor numpy cannot import, through the framework that must have made it (torch,
    else cupy): one in accelerator memory (a GPU model's output), copied to host memory, where
    responses are built; or a bfloat16 one, which numpy has no type for."""
    tensor = source._capsule if isinstance(source, _DLPackCapsule) else source
    torch = sys.modules.get("torch")
    if torch is not None:
        host = torch.from_dlpack(tensor).cpu()
        if host.dtype == torch.bfloat16:  # numpy has no bfloat16: BF16 tensors hold the bits as uint16
            return Tensor._wrap(name, host.view(torch.int16).numpy().view(np.uint16), _TRITON_TYPE_BF16)
        return Tensor(name, host.numpy())
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        return Tensor(name, cupy.from_dlpack(tensor).get())
    raise TritonError(
        f"unable to import DLPack tensor '{name}' from device type {device[0]} (device {device[1]}): "
        "copying it to host memory needs torch or cupy, and neither is imported",
        TritonError.INVALID_ARG,
    )


class Tensor:
    """A named tensor; in-process it wraps a numpy array (no copy). The server copies the model's
    arrays when the model hands them over (returns or sends a response, executes a BLS request), so
    a model may reuse its buffers as it can on Triton; a tensor the server gave the model and the
    model passes on untouched is not copied."""

    __slots__ = ("_array", "_name", "_server", "_triton_type")

    def __init__(self, name: str, numpy_array: npt.ArrayLike) -> None:
        array = numpy_array if isinstance(numpy_array, np.ndarray) else np.asarray(numpy_array)
        self._name = str(name)
        self._array: npt.NDArray[Any] = array
        #: True while the array is the server's (a request's input, a BLS answer's output): shared,
        #: never changed; ``as_numpy`` then gives the model a copy of its own.
        self._server = False
        code = _TRITON_TYPE_BY_DTYPE.get(array.dtype)  # the common case without a call
        self._triton_type = code if code is not None else _triton_type_of(array.dtype)

    @classmethod
    def _wrap(cls, name: str, array: npt.NDArray[Any], triton_type: int) -> Tensor:
        tensor = cls.__new__(cls)
        tensor._name = name
        tensor._array = array
        tensor._server = False
        tensor._triton_type = triton_type
        return tensor

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> npt.NDArray[Any]:
        """The tensor's data. For a tensor the server made (a request's input, a BLS answer's
        output), whose array views the request's bytes or is read by other models too, the first
        call makes the model a writable copy of its own, as Triton's copy into the stub's shared
        memory is; later calls (and DLPack) return that copy."""
        if self._server:
            self._array = self._array.copy()
            self._server = False
        return self._array

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def triton_dtype(self) -> int:
        """The TRITONSERVER_DataType value (BYTES = 13)."""
        return self._triton_type

    def is_cpu(self) -> bool:
        return True

    def to_dlpack(self) -> Any:
        """A DLPack capsule viewing the memory ``as_numpy`` returns (not available for BYTES tensors)."""
        return self.__dlpack__()

    def __dlpack__(self, stream: Any = None, **kwargs: Any) -> Any:
        if self._array.dtype == np.object_:
            raise TritonError("DLPack does not support BYTES tensors", TritonError.INVALID_ARG)
        return self.as_numpy().__dlpack__(stream=stream, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)  # kDLCPU, device 0

    @staticmethod
    def from_dlpack(name: str, tensor: Any) -> Tensor:
        """A tensor from a DLPack capsule or any object with ``__dlpack__``. Host memory is shared;
        a GPU tensor (torch or cupy) is copied to host memory, where responses are built."""
        source = tensor if hasattr(tensor, "__dlpack__") else _DLPackCapsule(tensor)
        try:
            device = source.__dlpack_device__() if hasattr(source, "__dlpack_device__") else (_DLPACK_CPU, 0)
            device = (int(device[0]), int(device[1]))
            if device[0] not in _DLPACK_HOST_DEVICES:
                return _through_framework(name, source, device)
            try:
                array = np.from_dlpack(source)
            except BufferError:  # e.g. torch's bfloat16 (numpy keeps an unused capsule unused)
                if "torch" not in sys.modules:
                    raise
                return _through_framework(name, source, device)
        except (TypeError, ValueError, BufferError, RuntimeError) as exc:
            raise TritonError(f"unable to import DLPack tensor '{name}': {exc}", TritonError.INVALID_ARG) from exc
        return Tensor(name, array)

    def __repr__(self) -> str:
        return f"Tensor({self._name!r}, shape={list(self._array.shape)}, dtype={self._array.dtype})"


# -- requests and responses -----------------------------------------------------------------


def _is_final(response: InferenceResponse | None, flags: int) -> bool:
    """Whether a ``send`` ends the request; refuses the flags and the empty send Triton refuses."""
    if flags not in (0, TRITONSERVER_RESPONSE_COMPLETE_FINAL):
        raise TritonModelException("Unable to send response. Unsupported flag provided.")
    if response is None and flags == 0:
        raise TritonModelException("Inference Response object must be provided when the response flags is set to zero.")
    return flags == TRITONSERVER_RESPONSE_COMPLETE_FINAL


_SENDER_CLOSED = "Unable to send response. Response sender has been closed."


class InferenceResponseSender:
    """Sends the responses of one request of a decoupled model, from any thread, at any time
    (also after ``execute`` returned), until one is sent with ``TRITONSERVER_RESPONSE_COMPLETE_FINAL``.
    Misuse raises ``TritonModelException`` with Triton's messages."""

    __slots__ = ("_closed", "_is_cancelled", "_lock", "_send")

    def __init__(
        self, send: Callable[[InferenceResponse | None, bool], None], is_cancelled: Callable[[], bool] | None = None
    ) -> None:
        self._send = send
        self._is_cancelled = is_cancelled
        self._closed = False
        self._lock = threading.Lock()

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        final = _is_final(response, flags)
        with self._lock:
            if self._closed:
                raise TritonModelException(_SENDER_CLOSED)
            self._closed = final
        self._send(response, final)

    def is_cancelled(self) -> bool:
        return self._is_cancelled() if self._is_cancelled is not None else False


class _SenderOfOne(InferenceResponseSender):
    """The sender of a request given to a non-decoupled model (Triton's python backend allows it
    since 24.x): it sends the request's one response, with the final flag or followed by it, and
    ``execute`` returns None. The response is taken when ``execute`` returns (``_detach``), or when
    the final flag comes after that, from any thread."""

    __slots__ = ("_detached", "_late", "_response")

    def __init__(self, is_cancelled: Callable[[], bool] | None) -> None:
        # No ``_send``: it keeps its one response (``send`` is its own).
        self._is_cancelled = is_cancelled
        self._closed = False
        self._lock = threading.Lock()
        self._detached = False
        self._response: InferenceResponse | None = None
        self._late: Callable[[InferenceResponse], None] | None = None  # takes it after execute returned

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        final = _is_final(response, flags)
        with self._lock:
            if response is not None and self._response is not None:
                raise TritonModelException(
                    "Unable to send response. Non-decoupled model cannot send more than one response."
                )
            if final and response is None and self._response is None:
                raise TritonModelException(
                    "Unable to send response. Non-decoupled model cannot send complete final before sending a response."
                )
            if self._closed or (self._detached and self._late is None):
                raise TritonModelException(_SENDER_CLOSED)
            self._closed = final
            if response is not None:
                self._response = response
            late = self._late if final else None
            answer = self._response
        if late is not None and answer is not None:  # (a final flag always follows the response)
            late(answer)  # the request's answer, after execute returned

    def _detach(self, late: Callable[[InferenceResponse], None] | None = None) -> InferenceResponse | None:
        """When ``execute`` returned: the response, once its final flag was sent (None otherwise).
        Then ``late`` (when given) takes the response the final flag completes later; without it,
        later sends are refused."""
        with self._lock:
            self._detached = True
            if self._closed:
                return self._response
            self._late = late
            return None


class ResponseIterator:
    """The responses of a BLS call made with ``decoupled=True``, as they arrive; the last one
    (possibly without outputs) ends the iteration. Also an async iterator for ``async_exec``."""

    def __init__(self, cancel: Callable[[], None] | None = None) -> None:
        self._queue: queue.SimpleQueue[InferenceResponse | None] = queue.SimpleQueue()
        self._cancel = cancel
        self._done = False

    def _put(self, response: InferenceResponse | None) -> None:
        """From the server: one response, or ``None`` after the last."""
        self._queue.put(response)

    def __iter__(self) -> Iterator[InferenceResponse]:
        return self

    def __next__(self) -> InferenceResponse:
        if self._done:
            raise StopIteration
        response = self._queue.get()
        if response is None:
            self._done = True
            raise StopIteration
        return response

    def __aiter__(self) -> ResponseIterator:
        return self

    async def __anext__(self) -> InferenceResponse:
        if self._done:
            raise StopAsyncIteration
        try:
            response = self._queue.get_nowait()
        except queue.Empty:
            response = await asyncio.to_thread(self._queue.get)
        if response is None:
            self._done = True
            raise StopAsyncIteration
        return response

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel()


def _bls_parameters(parameters: Any) -> str:
    """A BLS request's parameters as the JSON text ``parameters()`` returns: a dict of str keys and
    bool, int or str values, checked and written as Triton's python backend does (``json.dumps``).
    A JSON object text is also taken as it is."""
    if parameters is None:
        return "{}"
    if isinstance(parameters, str):
        return parameters
    if not isinstance(parameters, dict):
        raise TritonModelException(f"Expect parameters to be a dict, got {type(parameters)}")
    for key, value in parameters.items():
        if not isinstance(key, str):
            raise TritonModelException(f"Expect parameters keys to have type str, found type {type(key)}")
        if not isinstance(value, bool | int | str):
            raise TritonModelException(f"Expect parameters values to have type bool/int/str, found type {type(value)}")
    return json.dumps(parameters)


class InferenceRequest:
    """A request given to ``execute`` or, with the constructor, a BLS request."""

    __slots__ = (
        "_correlation_id",
        "_flags",
        "_given_to_execute",
        "_inputs",
        "_is_cancelled",
        "_model_name",
        "_model_version",
        "_output_order",
        "_parameters",
        "_preferred_memory",
        "_release_flags",
        "_request_id",
        "_requested_output_names",
        "_sender",
        "_timeout",
        "_trace",
    )

    def __init__(
        self,
        request_id: str = "",
        correlation_id: int | str = 0,
        inputs: Sequence[Tensor] | None = None,
        requested_output_names: Sequence[str] | None = None,
        model_name: str | None = None,
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: PreferredMemory | None = None,
        trace: InferenceTrace | None = None,
        parameters: dict[str, Any] | str | None = None,
    ) -> None:
        if inputs is None or requested_output_names is None or model_name is None:
            raise TypeError("InferenceRequest() needs 'inputs', 'requested_output_names' and 'model_name'")
        if not isinstance(correlation_id, int | str):
            raise TypeError("Correlation ID must be integer or string")
        self._request_id = str(request_id)
        self._correlation_id = correlation_id
        self._inputs = list(inputs)
        names = list(requested_output_names)
        self._requested_output_names: Any = set(names)  # a set, as Triton's
        self._output_order: list[str] | None = list(dict.fromkeys(names))  # the order the BLS request asks them in
        self._model_name = str(model_name)
        self._model_version = int(model_version)
        self._flags = int(flags)
        self._timeout = int(timeout)
        self._preferred_memory: PreferredMemory | None = preferred_memory or PreferredMemory(TRITONSERVER_MEMORY_CPU)
        self._trace = trace or _NO_TRACE
        self._parameters: Any = _bls_parameters(parameters)
        self._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL
        self._is_cancelled: Callable[[], bool] | None = None
        self._sender: InferenceResponseSender | None = None
        self._given_to_execute = False  # a BLS request

    @classmethod
    def _for_execute(
        cls,
        request_id: str,
        correlation_id: int | str,
        inputs: list[Tensor],
        requested_output_names: set[str],
        model_name: str,
        model_version: int,
        flags: int,
        timeout: int,
        parameters: dict[str, Any],
        is_cancelled: Callable[[], bool] | None = None,
        sender: InferenceResponseSender | None = None,
        trace: InferenceTrace | None = None,
    ) -> InferenceRequest:
        """The fast constructor the backend uses for requests handed to ``execute``."""
        request = cls.__new__(cls)
        request._request_id = request_id
        request._correlation_id = correlation_id
        request._inputs = inputs
        request._requested_output_names = requested_output_names
        request._output_order = None
        request._model_name = model_name
        request._model_version = model_version
        request._flags = flags
        request._timeout = timeout
        request._preferred_memory = None
        request._trace = trace or _NO_TRACE
        request._parameters = parameters
        request._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL
        request._is_cancelled = is_cancelled
        request._sender = sender
        request._given_to_execute = True
        return request

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def request_id(self) -> str:
        return self._request_id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def set_flags(self, flags: int) -> None:
        self._flags = int(flags)

    def timeout(self) -> int:
        """The request timeout in microseconds (0 = none)."""
        return self._timeout

    def parameters(self) -> str:
        """The request parameters as a JSON object string."""
        if isinstance(self._parameters, str):
            return self._parameters
        return json.dumps(self._parameters, separators=(",", ":"), ensure_ascii=False)  # UTF-8, as Triton writes it

    def trace(self) -> InferenceTrace:
        return self._trace

    def requested_output_names(self) -> Any:
        """The outputs the client asked for (every configured output when it named none)."""
        return self._requested_output_names

    def is_cancelled(self) -> bool:
        return self._is_cancelled() if self._is_cancelled is not None else False

    def get_response_sender(self) -> InferenceResponseSender:
        """The sender of this request's responses (for a non-decoupled model, its one response)."""
        if self._sender is None and self._given_to_execute:
            self._sender = _SenderOfOne(self._is_cancelled)
        if self._sender is None:
            raise TritonError(
                "get_response_sender() can only be used by models using the decoupled transaction policy",
                TritonError.UNSUPPORTED,
            )
        return self._sender

    def set_release_flags(self, flags: int) -> None:
        if flags != TRITONSERVER_REQUEST_RELEASE_ALL:
            raise _unsupported("request rescheduling (TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)")
        self._release_flags = flags

    def exec(self, decoupled: bool = False) -> Any:
        """Run this request on ``model_name`` in this server (BLS) and wait for its response, or
        with ``decoupled=True`` return a ``ResponseIterator`` over its responses.

        Errors come back in the response (``has_error()``), as in Triton; so does an expired
        ``timeout`` (microseconds).
        """
        if decoupled:
            return self._start_bls_stream()
        future = self._start_bls(decoupled)
        try:
            return future.result(timeout=self._timeout / 1e6 if self._timeout else None)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return InferenceResponse(error=TritonError("Request timeout expired", TritonError.UNAVAILABLE))

    async def async_exec(self, decoupled: bool = False) -> Any:
        """``exec`` for ``async def execute``: awaits the response without blocking the model's loop
        (with ``decoupled=True``, a ``ResponseIterator`` to use with ``async for``)."""
        if decoupled:
            return self._start_bls_stream()
        future = asyncio.wrap_future(self._start_bls(decoupled))
        if not self._timeout:
            return await future
        try:
            return await asyncio.wait_for(future, self._timeout / 1e6)
        except TimeoutError:
            return InferenceResponse(error=TritonError("Request timeout expired", TritonError.UNAVAILABLE))

    def _start_bls_stream(self) -> ResponseIterator:
        if _bls_stream_handler is None:
            raise TritonError("BLS requests can only be made while the server runs the model", TritonError.UNAVAILABLE)
        return _bls_stream_handler(self)

    def _start_bls(self, decoupled: bool) -> concurrent.futures.Future[InferenceResponse]:
        if _bls_handler is None:
            raise TritonError("BLS requests can only be made while the server runs the model", TritonError.UNAVAILABLE)
        return _bls_handler(self)


_PARAMETER_TYPES = (bool, int, float, str)


#: Set by the backend: starts a BLS request in the server, answers a future of its response.
_bls_handler: Callable[[InferenceRequest], concurrent.futures.Future[InferenceResponse]] | None = None


#: Set by the backend: starts a BLS request with ``decoupled=True``, answers its iterator.
_bls_stream_handler: Callable[[InferenceRequest], ResponseIterator] | None = None


def _set_bls_handler(
    handler: Callable[[InferenceRequest], concurrent.futures.Future[InferenceResponse]],
    stream_handler: Callable[[InferenceRequest], ResponseIterator] | None = None,
) -> None:
    global _bls_handler, _bls_stream_handler
    _bls_handler = handler
    _bls_stream_handler = stream_handler


class InferenceResponse:
    """The response to one request: output tensors, or an error; plus optional parameters."""

    __slots__ = ("_error", "_output_tensors", "_parameters")

    def __init__(
        self,
        output_tensors: Sequence[Tensor] = (),
        error: TritonError | None = None,
        parameters: dict[str, bool | int | float | str] | str | None = None,
    ) -> None:
        self._output_tensors = output_tensors if type(output_tensors) is list else list(output_tensors)
        self._error = error
        values: dict[str, Any] | None = json.loads(parameters) if isinstance(parameters, str) else parameters
        if values:
            for key, value in values.items():
                if not isinstance(key, str):
                    raise TypeError(f"Expect parameters keys to have type str, found type {type(key).__name__}")
                if not isinstance(value, _PARAMETER_TYPES):
                    raise TypeError(
                        f"Expect parameters values to have type bool/int/float/str, found type {type(value).__name__}"
                    )
        self._parameters = values

    def output_tensors(self) -> list[Tensor]:
        return self._output_tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        """The response parameters as a JSON object string."""
        return json.dumps(self._parameters or {}, separators=(",", ":"))


def get_input_tensor_by_name(inference_request: InferenceRequest, name: str) -> Tensor | None:
    """The input called ``name`` of ``inference_request``, or None."""
    # Models call this for every input of every request: read our own classes' fields directly
    # (no method call per tensor); anything else goes through the public methods.
    inputs = inference_request._inputs if type(inference_request) is InferenceRequest else inference_request.inputs()
    for tensor in inputs:
        if (tensor._name if type(tensor) is Tensor else tensor.name()) == name:
            return tensor
    return None


def get_output_tensor_by_name(inference_response: InferenceResponse, name: str) -> Tensor | None:
    """The output called ``name`` of ``inference_response``, or None."""
    for tensor in inference_response.output_tensors():
        if tensor.name() == name:
            return tensor
    return None


# -- model configuration --------------------------------------------------------------------


def get_input_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The ``input`` entry called ``name`` of a model configuration dict, or None."""
    for properties in model_config.get("input", ()):
        if properties["name"] == name:
            return properties  # type: ignore[no-any-return]
    return None


def get_output_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The ``output`` entry called ``name`` of a model configuration dict, or None."""
    for properties in model_config.get("output", ()):
        if properties["name"] == name:
            return properties  # type: ignore[no-any-return]
    return None


def using_decoupled_model_transaction_policy(model_config: dict[str, Any]) -> bool:
    """Whether ``model_transaction_policy { decoupled: true }`` is set."""
    if "model_transaction_policy" in model_config:
        return bool(model_config["model_transaction_policy"].get("decoupled", False))
    return False


class ModelConfig:
    """The model configuration handed to ``auto_complete_config``.

    Only ``max_batch_size``, the scheduler, inputs, outputs and the transaction policy can be
    changed. Messages match upstream's word for word.
    """

    def __init__(self, model_config: str | dict[str, Any]) -> None:
        self._model_config: dict[str, Any] = json.loads(model_config) if isinstance(model_config, str) else model_config
        self._model_config.setdefault("input", [])
        self._model_config.setdefault("output", [])
        self._model_config.setdefault("max_batch_size", 0)
        self._model_config.setdefault("name", "")

    @property
    def _name(self) -> str:
        return str(self._model_config["name"])

    def as_dict(self) -> dict[str, Any]:
        return self._model_config

    def set_max_batch_size(self, max_batch_size: int) -> None:
        current = int(self._model_config["max_batch_size"])
        if current > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size {current}, but in auto-complete-config function "
                f"for model '{self._name}' specified max_batch_size {max_batch_size}"
            )
        self._model_config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        for scheduler in ("sequence_batching", "ensemble_scheduling"):
            if scheduler in self._model_config:
                raise ValueError(
                    f"Configuration specified scheduling_choice as '{scheduler}', but auto-complete-config "
                    f"function for model '{self._name}' tries to set scheduling_choice as 'dynamic_batching'"
                )
        self._model_config.setdefault("dynamic_batching", {})

    def add_input(self, input: dict[str, Any]) -> None:
        self._check_tensor("input", input, ("name", "data_type", "dims", "optional"))
        for current in self._model_config["input"]:
            if current["name"] == input["name"]:
                self._merge_tensor("input", current, input)
                return
        self._model_config["input"].append(input)

    def add_output(self, output: dict[str, Any]) -> None:
        self._check_tensor("output", output, ("name", "data_type", "dims"))
        for current in self._model_config["output"]:
            if current["name"] == output["name"]:
                self._merge_tensor("output", current, output)
                return
        self._model_config["output"].append(output)

    def set_model_transaction_policy(self, transaction_policy_dict: dict[str, Any]) -> None:
        for key in transaction_policy_dict:
            if key != "decoupled":
                raise ValueError(
                    f"model transaction property in auto-complete-config function for model '{self._name}' "
                    "contains property other than 'decoupled'."
                )
        policy = self._model_config.setdefault("model_transaction_policy", {})
        if "decoupled" in transaction_policy_dict:
            wanted = transaction_policy_dict["decoupled"]
            if "decoupled" in policy and policy["decoupled"] != wanted:
                raise ValueError(
                    f"trying to change decoupled property in auto-complete-config for model '{self._name}', "
                    f"which is already set to '{policy['decoupled']}'."
                )
            policy["decoupled"] = wanted

    def _check_tensor(self, kind: str, tensor: dict[str, Any], valid: tuple[str, ...]) -> None:
        for key in tensor:
            if key not in valid:
                names = ", ".join(f"'{v}'" for v in valid[:-1]) + f" and '{valid[-1]}'"
                raise ValueError(
                    f"{kind} '{tensor.get('name', '')}' in auto-complete-config function for model "
                    f"'{self._name}' contains property other than {names}."
                )
        if "name" not in tensor:
            raise ValueError(
                f"{kind} in auto-complete-config function for model '{self._name}' is missing 'name' property."
            )
        for key in ("data_type", "dims"):
            if key not in tensor:
                raise ValueError(
                    f"{kind} '{tensor['name']}' in auto-complete-config function for model '{self._name}' "
                    f"is missing '{key}' property."
                )

    def _merge_tensor(self, kind: str, current: dict[str, Any], new: dict[str, Any]) -> None:
        name = new["name"]
        current_type = current.get("data_type", "TYPE_INVALID")
        if current_type != "TYPE_INVALID" and current_type != new["data_type"]:
            raise ValueError(
                f"unable to load model '{self._name}', configuration expects datatype {current_type} "
                f"for {kind} '{name}', model provides {new['data_type']}"
            )
        current_dims = [int(d) for d in current.get("dims", [])]
        new_dims = [int(d) for d in new["dims"]]
        if current_dims and current_dims != new_dims:
            raise ValueError(
                f"model '{self._name}', tensor '{name}': the model expects dims {list(new['dims'])} "
                f"but the model configuration specifies dims {current_dims}"
            )
        if kind == "input" and "optional" in current and "optional" in new and current["optional"] != new["optional"]:
            raise ValueError(
                f"model '{self._name}', tensor '{name}': the model expects optional {new['optional']} "
                f"but the model configuration specifies optional {current['optional']}"
            )
        current["data_type"] = new["data_type"]
        current["dims"] = new["dims"]
        if "optional" in new:
            current["optional"] = new["optional"]


# -- logging --------------------------------------------------------------------------------


class LogLevel(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


_LOGGING_LEVEL: dict[int, int] = {
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
    LogLevel.VERBOSE: logging.DEBUG,
}


class Logger:
    """Model logging into the server log (logger ``airtower.python_model``)."""

    LogLevel = LogLevel
    INFO = LogLevel.INFO
    WARNING = LogLevel.WARNING
    ERROR = LogLevel.ERROR
    VERBOSE = LogLevel.VERBOSE

    @staticmethod
    def log(message: str, level: int = LogLevel.INFO) -> None:
        _logger.log(_LOGGING_LEVEL.get(int(level), logging.INFO), "%s", message, stacklevel=2)

    @staticmethod
    def log_info(message: str) -> None:
        _logger.info("%s", message, stacklevel=2)

    @staticmethod
    def log_warn(message: str) -> None:
        _logger.warning("%s", message, stacklevel=2)

    @staticmethod
    def log_error(message: str) -> None:
        _logger.error("%s", message, stacklevel=2)

    @staticmethod
    def log_verbose(message: str) -> None:
        _logger.debug("%s", message, stacklevel=2)


# -- custom metrics (exported on the metrics port: observability.custom_metrics) -----------


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KIND_NAMES = (
    "TRITONSERVER_METRIC_KIND_COUNTER",
    "TRITONSERVER_METRIC_KIND_GAUGE",
    "TRITONSERVER_METRIC_KIND_HISTOGRAM",
)


def _metric_error(action: str, reason: str) -> TritonModelException:
    """A metric call's error in Triton's words: ``<action>: Failed to process the request for model
    '<instance>', message: <reason>`` (the instance is the calling thread's, when it is one:
    ``models/instance.py`` names its threads ``instance-<instance name>``)."""
    thread = threading.current_thread().name
    if thread.startswith("instance-"):
        return TritonModelException(
            f"{action}: Failed to process the request for model '{thread[9:]}', message: {reason}"
        )
    return TritonModelException(f"{action}: {reason}")


class Metric:
    """One labelled series of a :class:`MetricFamily`."""

    def __init__(self, family: MetricFamily, labels: dict[str, str], buckets: list[float] | None) -> None:
        self._family = family
        self._labels = dict(labels)
        self._series = family._family.add(self._labels, buckets)

    def _unsupported(self, action: str, operation: str) -> TritonModelException:
        return _metric_error(action, f"{_KIND_NAMES[self._family.kind]} does not support {operation}")

    def increment(self, value: float) -> None:
        if self._family.kind == MetricFamily.HISTOGRAM:
            raise self._unsupported("Failed to increment metric value", "Increment")
        if self._family.kind == MetricFamily.COUNTER and value < 0:
            raise _metric_error(
                "Failed to increment metric value",
                "TRITONSERVER_METRIC_KIND_COUNTER can only be incremented monotonically by non-negative values.",
            )
        self._series.increment(value)

    def set(self, value: float) -> None:
        if self._family.kind != MetricFamily.GAUGE:
            raise self._unsupported("Failed to set metric value", "Set")
        self._series.set(value)

    def observe(self, value: float) -> None:
        if self._family.kind != MetricFamily.HISTOGRAM:
            raise self._unsupported("Failed to observe metric value", "Observe")
        self._series.observe(value)

    def value(self) -> float:
        if self._family.kind == MetricFamily.HISTOGRAM:
            raise self._unsupported("Failed to get metric value", "Value")
        return self._series.value

    def __del__(self) -> None:
        series = getattr(self, "_series", None)
        if series is not None:
            series.family.remove(series)


_MetricSeries = Metric


class MetricFamily:
    """A custom metric family (COUNTER, GAUGE or HISTOGRAM), exported on the metrics port."""

    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2

    def __init__(self, name: str, description: str, kind: int) -> None:
        if kind not in (self.COUNTER, self.GAUGE, self.HISTOGRAM):
            raise TritonError(f"unknown metric kind {kind}", TritonError.INVALID_ARG)
        if not isinstance(name, str) or _METRIC_NAME.fullmatch(name) is None:
            raise _metric_error("Error when creating MetricFamily", "Invalid metric name")
        self.name = name
        self.description = description
        self.kind = kind
        try:
            self._family = _custom_metrics.REGISTRY.family(name, description, _custom_metrics.KINDS[kind])
        except ValueError as exc:
            raise _metric_error(
                "Error when creating MetricFamily", "Family name already exists with different type"
            ) from exc

    def Metric(self, labels: dict[str, str] | None = None, buckets: list[float] | None = None) -> _MetricSeries:
        if labels is not None and not isinstance(labels, dict):
            raise TritonModelException("Failed to create metric. Labels must be a dictionary.")
        if self.kind == self.HISTOGRAM and buckets is None:
            raise TritonModelException("Failed to create metric. Missing required buckets.")
        if self.kind != self.HISTOGRAM and buckets is not None:
            raise TritonModelException("Failed to create metric. Unexpected buckets found.")
        return Metric(self, labels or {}, buckets)


# -- model control from a model -------------------------------------------------------------


#: Set by the backend: the server's model control (``backends.base.ModelControl``).
_model_control: Any = None


def _control() -> Any:
    if _model_control is None:
        raise TritonError("model management is only available while the server runs the model", TritonError.UNAVAILABLE)
    return _model_control


def load_model(model_name: str, config: str = "", files: dict[str, bytes] | None = None) -> None:
    """(Re)load ``model_name`` in this server (explicit model control mode); ``config`` is a JSON
    config to use instead of its own, ``files`` (``file:<version>/<name>`` → bytes) override files.

    Raises:
        TritonError: the load failed or the control mode is not explicit.
    """
    _call_control(lambda control: control.load(model_name, config or None, dict(files or {})))


def unload_model(model_name: str, unload_dependents: bool = False) -> None:
    """Unload ``model_name`` from this server (explicit model control mode)."""
    _call_control(lambda control: control.unload(model_name, unload_dependents))


#: The start of every Python model module's name (the backend imports ``model.py`` under a fresh one).
_MODEL_MODULE_PREFIX = "_airtower_python_model_"


def get_model_dir() -> str:
    """The directory of the calling model's file (``<repository>/<model>/<version>``).

    Triton's stub serves one model, so it answers for that model; in-process, the caller is the
    model module nearest on the calling thread's stack (its ``initialize``, ``execute``, a thread
    it started, code it runs at import).
    """
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        module_globals = frame.f_globals
        name = module_globals.get("__name__")
        path = module_globals.get("__file__")
        if isinstance(name, str) and name.startswith(_MODEL_MODULE_PREFIX) and isinstance(path, str):
            return os.path.dirname(path)
        frame = frame.f_back
    raise TritonError("get_model_dir() answers only for the code of a Python model", TritonError.UNAVAILABLE)


def is_model_ready(model_name: str, model_version: str = "") -> bool:
    """Whether ``model_name`` (``model_version``, "" for the latest) is READY in this server."""
    return bool(_control().is_ready(model_name, str(model_version)))


def _call_control(call: Callable[[Any], None]) -> None:
    try:
        call(_control())
    except TritonError:
        raise
    except Exception as exc:
        code = getattr(getattr(exc, "code", None), "value", "INTERNAL")
        raise TritonError(str(getattr(exc, "message", exc)), getattr(TritonError, code, TritonError.INTERNAL)) from exc
