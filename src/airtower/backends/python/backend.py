"""PythonBackend: runs Triton python_backend models (``TritonPythonModel`` in ``model.py``) in-process.

``model.py`` of each version is imported once per load as a uniquely named module, so models (and
versions) that all call their file ``model.py`` never clash. Each instance creates its own
``TritonPythonModel`` on the instance thread and calls ``initialize``, every ``execute`` and
``finalize`` there; an ``async def execute`` runs on a private event loop owned by the instance.
Requests reach the model as ``pb_utils`` objects wrapping the same numpy arrays (no copies).

Differences from upstream's stub process: module-level state is shared by the instances of one
version, and sibling modules of ``model.py`` are imported with the version and model directories
first on ``sys.path`` (upstream appends both to the stub's path for its lifetime; we also append
them while the model is loaded, for imports made later inside methods).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib.util
import inspect
import itertools
import json
import logging
import re
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
from tritonclient.grpc import model_config_pb2

from airtower.backends.base import DeferredAnswer, InstanceSpec, InternalInfer, InternalStream, ModelContext
from airtower.backends.python import triton_python_backend_utils as pb_utils
from airtower.backends.registry import IMPORT_LOCK
from airtower.core.model_config import ModelConfig, config_from_json, config_to_json, is_decoupled
from airtower.core.request import InferenceRequest, RequestedOutput
from airtower.core.response import InferenceResponse
from airtower.core.tensor import Tensor
from airtower.errors import (
    ERROR_CLASS_BY_CODE,
    BackendExecutionError,
    ErrorCode,
    InternalError,
    ModelConfigError,
    TritonError,
)
from airtower.types import NUMPY_DTYPE_BY_WIRE, config_to_wire

# User code does ``import triton_python_backend_utils as pb_utils``: that must be this module.
sys.modules["triton_python_backend_utils"] = pb_utils

logger = logging.getLogger(__name__)

DEFAULT_MODEL_FILENAME = "model.py"

#: InstanceSpec.kind → ``args["model_instance_kind"]``.
_KIND_NAMES: dict[str, str] = {"KIND_CPU": "CPU", "KIND_GPU": "GPU", "KIND_MODEL": "MODEL"}

#: Wire datatype ↔ TRITONSERVER_DataType value (what ``pb_utils.Tensor.triton_dtype()`` returns).
_TRITON_TYPE_BY_WIRE: dict[str, int] = {
    "BOOL": 1, "UINT8": 2, "UINT16": 3, "UINT32": 4, "UINT64": 5, "INT8": 6, "INT16": 7, "INT32": 8,
    "INT64": 9, "FP16": 10, "FP32": 11, "FP64": 12, "BYTES": 13, "BF16": 14,
}  # fmt: skip
_WIRE_BY_TRITON_TYPE: dict[int, str] = {code: wire for wire, code in _TRITON_TYPE_BY_WIRE.items()}

# Importing a model mutates interpreter-wide state (sys.path, sys.modules): one at a time. sys.path is
# replaced by a new list, never shifted in place: an import running on another thread (a model's
# execute, a lazy import in a library) iterates the old list, and removing entries ahead of its
# position would make it skip directories (seen as "No module named 'hmac'" during a model load).
_IMPORT_LOCK = threading.Lock()
_module_ids = itertools.count(1)
_path_users: Counter[str] = Counter()


class PythonBackend:
    """The ``python`` backend (Triton python_backend compatible), in-process."""

    name = "python"
    # python_backend's GPU build prefers KIND_GPU where there is a GPU: the server's default (KIND_AUTO).
    preferred_instance_kind: int | None = None

    def auto_complete_config(self, config: ModelConfig, ctx: ModelContext) -> None:
        """Run ``TritonPythonModel.auto_complete_config`` (when defined) on ``config``, in place."""
        path = _model_file(config, ctx)
        if not path.is_file():
            return  # load reports the missing file
        with IMPORT_LOCK:
            module = _import_model(ctx, path)
        try:
            hook = getattr(_model_class(module, ctx, path), "auto_complete_config", None)
            if hook is not None:
                _run_auto_complete(hook, config, ctx)
        finally:
            _forget_model(module, ctx)

    def load(self, config: ModelConfig, ctx: ModelContext) -> PythonModel:
        """Import ``<version>/model.py`` and find ``TritonPythonModel``.

        Raises:
            InternalError: the file is missing, fails to import or defines no ``TritonPythonModel``.
        """
        path = _model_file(config, ctx)
        if not path.is_file():
            raise InternalError(f"Python model file not found in '{path}'")
        if ctx.control is not None:
            pb_utils._model_control = ctx.control
        if ctx.infer is not None:
            stream = functools.partial(_start_bls_stream, ctx.infer_stream) if ctx.infer_stream is not None else None
            pb_utils._set_bls_handler(functools.partial(_start_bls, ctx.infer), stream)
        module = _import_model(ctx, path)
        try:
            model_class = _model_class(module, ctx, path)
        except TritonError:
            _forget_model(module, ctx)
            raise
        return PythonModel(config, ctx, path, module, model_class)


class PythonModel:
    """One loaded version: its module, ``TritonPythonModel`` class and the initialize() args."""

    #: Its instance threads may hold the server's event loop between executions (shared_loop).
    shares_event_loop = True

    def __init__(
        self, config: ModelConfig, ctx: ModelContext, path: Path, module: ModuleType, model_class: type[Any]
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.path = path
        self.module = module
        self.model_class = model_class
        self.config_json = json.dumps(config_to_json(config), separators=(",", ":"))
        self.output_names: frozenset[str] = frozenset(o.name for o in config.output)
        #: output name → (numpy dtype of its config datatype, wire datatype)
        self.output_types: dict[str, tuple[np.dtype[Any], str]] = {}
        for output in config.output:
            wire = config_to_wire(model_config_pb2.DataType.Name(output.data_type))
            if wire in NUMPY_DTYPE_BY_WIRE:
                self.output_types[output.name] = (NUMPY_DTYPE_BY_WIRE[wire], wire)
        self._closed = False

    def create_instance(self, spec: InstanceSpec) -> PythonInstance:
        """A new ``TritonPythonModel`` with ``initialize(args)`` done, on the calling (instance) thread."""
        return PythonInstance(self, spec)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _forget_model(self.module, self.ctx)

    def initialize_args(self, spec: InstanceSpec) -> dict[str, str]:
        """``initialize(args)``: Triton's keys, every value a str."""
        return {
            "model_config": self.config_json,
            "model_instance_kind": _KIND_NAMES.get(spec.kind, spec.kind.removeprefix("KIND_")),
            "model_instance_name": spec.name,
            "model_instance_device_id": str(spec.device_id),
            "model_repository": str(self.ctx.model_dir),
            "model_version": str(self.ctx.version),
            "model_name": self.ctx.name,
        }


class PythonInstance:
    """One ``TritonPythonModel`` object; every call happens on the instance thread."""

    def __init__(self, model: PythonModel, spec: InstanceSpec) -> None:
        #: When the last ``execute`` had its inputs ready for the model, and when the model's own
        #: code returned (steady clock, ns): the statistics' compute input / infer / output phases.
        self.inputs_ready_ns = 0
        self.outputs_start_ns = 0
        self._model = model
        self._spec = spec
        self._name = model.ctx.name
        self._version = str(model.ctx.version)
        self._version_number = model.ctx.version
        self._decoupled = is_decoupled(model.config)
        # Triton runs a model on its stub's main thread, where ``asyncio.get_event_loop()`` gives the
        # thread's own loop (models keep it in ``initialize`` to run coroutines later): this thread gets
        # one too, which an ``async def execute`` then runs on.
        self._loop: asyncio.AbstractEventLoop | None = asyncio.new_event_loop()
        self._thread_loop = not _loop_running()  # (a test may create an instance inside its own loop)
        if self._thread_loop:
            asyncio.set_event_loop(self._loop)
        try:
            self._user = model.model_class()
            initialize = getattr(self._user, "initialize", None)
            if initialize is not None:
                self._await(initialize(model.initialize_args(spec)))
        except (Exception, SystemExit) as exc:
            self._close_loop()
            raise _load_error(exc) from exc
        execute = getattr(self._user, "execute", None)
        if execute is None:  # as Triton: the model loads, and each execution fails
            execute = functools.partial(self._no_execute, model.path)
        self._execute = execute

    def execute(
        self, requests: Sequence[InferenceRequest]
    ) -> list[InferenceResponse | TritonError | DeferredAnswer | None]:
        """Run the model's ``execute`` on ``requests``; see ``backends.base.BackendInstance``."""
        pb_requests = [self._to_pb_request(request) for request in requests]
        self.inputs_ready_ns = time.monotonic_ns()
        try:
            result = self._execute(pb_requests)
            if type(result) is not list and inspect.isawaitable(result):
                result = self._await(result)
        except (Exception, SystemExit) as exc:
            logger.error("python model '%s' instance '%s': execute raised", self._name, self._spec.name, exc_info=True)
            raise self._execute_error(exc) from exc
        self.outputs_start_ns = time.monotonic_ns()
        if self._decoupled:
            # Responses travel through each request's sender; what execute returns must be None.
            if result is not None:
                raise self._failure(
                    f"Python model '{self._spec.name}' is using the decoupled mode and the execute function "
                    "must return None."
                )
            return [None] * len(requests)
        for pb_request in pb_requests:
            if pb_request._sender is not None:  # the model answered (some) requests with their senders
                return self._answered_by_senders(requests, pb_requests, result)
        if not isinstance(result, list | tuple):
            raise self._failure(f"Expected a list in the execute return, found type '{type(result)}'.")
        if len(result) != len(requests):
            raise self._failure(
                "Number of InferenceResponse objects do not match the number of InferenceRequest objects. "
                f"InferenceRequest(s) size is:{len(requests)}, and InferenceResponse(s) size is:{len(result)}\n"
            )
        return [self._from_pb_response(request, answer) for request, answer in zip(requests, result, strict=True)]

    def close(self) -> None:
        """Call ``finalize()`` (when defined) and close the private event loop."""
        try:
            finalize = getattr(self._user, "finalize", None)
            if finalize is not None:
                self._await(finalize())
        except (Exception, SystemExit) as exc:
            error = _load_error(exc)
            raise type(error)(
                f"python model '{self._name}' instance '{self._spec.name}' finalize: {error.message}"
            ) from exc
        finally:
            self._close_loop()

    # -- conversions (the hot path) --------------------------------------------------------

    def _to_pb_request(self, request: InferenceRequest) -> pb_utils.InferenceRequest:
        inputs = [_wrap(t.name, t.data, _TRITON_TYPE_BY_WIRE[t.datatype]) for t in request.inputs.values()]
        wanted = {o.name for o in request.outputs} if request.outputs else set(self._model.output_names)
        return pb_utils.InferenceRequest._for_execute(
            request.id,
            request.correlation_id,
            inputs,
            wanted,
            self._name,
            self._version_number,
            request.flags,
            request.timeout_us,
            request.parameters,
            request.is_cancelled,
            self._sender_for(request) if self._decoupled else None,
            pb_utils.InferenceTrace(request.trace_w3c, request.trace_id) if request.trace_id else None,
        )

    def _answered_by_senders(
        self, requests: Sequence[InferenceRequest], pb_requests: list[pb_utils.InferenceRequest], result: Any
    ) -> list[InferenceResponse | TritonError | DeferredAnswer | None]:
        """A non-decoupled model's answers when it used response senders: each request's response once
        its final flag was sent, else the one ``execute`` returned for it (when it returned a list of
        one per request), else a ``DeferredAnswer`` that the sender's final flag delivers later."""
        returned = result if isinstance(result, list | tuple) and len(result) == len(requests) else None
        answers: list[InferenceResponse | TritonError | DeferredAnswer | None] = []
        for index, (request, pb_request) in enumerate(zip(requests, pb_requests, strict=True)):
            sender = pb_request._sender
            assert sender is None or isinstance(sender, pb_utils._SenderOfOne)  # a non-decoupled model's
            if returned is not None:
                answer = sender._detach() if sender is not None else None
                if answer is None:
                    answer = returned[index]
            elif sender is not None:
                deferred = DeferredAnswer()
                answer = sender._detach(functools.partial(self._answer_later, request, deferred))
                if answer is None:
                    answers.append(deferred)
                    continue
            else:
                answers.append(
                    self._failure("the execute function returned no response and none was sent for a request")
                )
                continue
            try:
                answers.append(self._from_pb_response(request, answer))
            except TritonError as exc:
                answers.append(exc)
        return answers

    def _answer_later(self, request: InferenceRequest, deferred: DeferredAnswer, answer: Any) -> None:
        """On the sending thread: the response a final flag completed after ``execute`` returned."""
        try:
            deferred.deliver(self._from_pb_response(request, answer))
        except TritonError as exc:
            deferred.deliver(exc)

    def _sender_for(self, request: InferenceRequest) -> pb_utils.InferenceResponseSender:
        sink = request.response_sink
        if sink is None:
            raise InternalError(f"python model '{self._name}': decoupled request without a response sink")

        def send(answer: pb_utils.InferenceResponse | None, final: bool) -> None:
            sink(None if answer is None else self._from_pb_response(request, answer), final)

        return pb_utils.InferenceResponseSender(send, request.is_cancelled)

    def _from_pb_response(self, request: InferenceRequest, answer: Any) -> InferenceResponse | TritonError:
        if not isinstance(answer, pb_utils.InferenceResponse):
            raise self._failure(
                "Expected an 'InferenceResponse' object in the execute function return list, "
                f"found type '{type(answer)}'."
            )
        error = answer._error
        if error is not None:
            return _from_pb_error(error)
        outputs = [self._to_core_tensor(tensor) for tensor in answer._output_tensors]
        if not request.outputs:  # all outputs requested means those of the config, as in Triton
            names = self._model.output_names
            outputs = [tensor for tensor in outputs if tensor.name in names]
        parameters = answer._parameters
        return InferenceResponse(self._name, self._version, request.id, outputs, dict(parameters) if parameters else {})

    def _to_core_tensor(self, tensor: Any) -> Tensor:
        if not isinstance(tensor, pb_utils.Tensor):
            raise self._failure(
                f"Expected a 'Tensor' object in the output tensors, found type '{type(tensor).__name__}'."
            )
        expected = self._model.output_types.get(tensor._name)
        # Like Triton, an array whose dtype differs from the config is sent with its own datatype.
        if expected is not None and tensor._array.dtype == expected[0]:
            wire = expected[1]
        else:
            wire = _WIRE_BY_TRITON_TYPE[tensor._triton_type]
        array = _handed_over(tensor, wire)
        return Tensor(tensor._name, wire, array.shape, array)

    # -- errors and the event loop ---------------------------------------------------------

    def _failure(self, message: str) -> BackendExecutionError:
        return BackendExecutionError(
            f"Failed to process the request(s) for model '{self._spec.name}', message: {message}"
        )

    def _no_execute(self, path: Path, requests: Sequence[pb_utils.InferenceRequest]) -> None:
        raise self._failure(f"Python model {path} does not implement `execute` method.")

    def _execute_error(self, exc: BaseException) -> TritonError:
        if isinstance(exc, pb_utils.TritonError) and exc.code() != pb_utils.TritonError.INTERNAL:
            return _from_pb_error(exc)
        if isinstance(exc, TritonError):
            return exc
        return self._failure(python_error_text(exc))

    def _await(self, value: Any) -> Any:
        if not inspect.isawaitable(value):
            return value
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(value)

    def _close_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                if self._thread_loop:
                    asyncio.set_event_loop(None)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# -- module loading ------------------------------------------------------------------------


def _model_file(config: ModelConfig, ctx: ModelContext) -> Path:
    filename = config.default_model_filename or DEFAULT_MODEL_FILENAME
    if not filename.endswith(".py"):
        raise ModelConfigError(f"Model name must end with '.py'. Model name is \"{filename}\".")
    return ctx.version_dir / filename


def _import_model(ctx: ModelContext, path: Path) -> ModuleType:
    """Import ``path`` as a fresh, uniquely named module; sibling modules resolve from its directories."""
    safe_name = re.sub(r"\W", "_", ctx.name)
    module_name = f"{pb_utils._MODEL_MODULE_PREFIX}{safe_name}_{ctx.version}_{next(_module_ids)}"
    search_dirs = [str(ctx.version_dir), str(ctx.model_dir)]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InternalError(f"python model '{ctx.name}' version {ctx.version}: cannot import '{path}'")
    module = importlib.util.module_from_spec(spec)
    with _IMPORT_LOCK:
        before = set(sys.modules)
        sys.modules[module_name] = module
        sys.path = [*search_dirs, *sys.path]
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            sys.modules.pop(module_name, None)
            raise _load_error(exc) from exc
        finally:
            sys.path = sys.path[len(search_dirs) :]  # keeps what the model's own code added
            _evict_siblings(before, ctx.model_dir)
        for directory in search_dirs:
            if _path_users[directory] == 0:
                sys.path.append(directory)  # at the end: an iteration in progress is not disturbed
            _path_users[directory] += 1
    return module


def _evict_siblings(before: set[str], model_dir: Path) -> None:
    """Drop modules just imported from ``model_dir`` from ``sys.modules`` so another model's same-named
    sibling (``utils.py`` next to two ``model.py``) is imported afresh; the model keeps its references."""
    prefix = str(model_dir) + "/"
    for name in set(sys.modules) - before:
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if module_file.startswith(prefix) and not name.startswith(pb_utils._MODEL_MODULE_PREFIX):
            del sys.modules[name]


def _forget_model(module: ModuleType, ctx: ModelContext) -> None:
    with _IMPORT_LOCK:
        sys.modules.pop(module.__name__, None)
        for directory in (str(ctx.version_dir), str(ctx.model_dir)):
            _path_users[directory] -= 1
            if _path_users[directory] <= 0:
                del _path_users[directory]
                if directory in sys.path:
                    sys.path = _without(sys.path, directory)


def _without(entries: list[str], directory: str) -> list[str]:
    """A copy of ``entries`` less the first occurrence of ``directory``."""
    index = entries.index(directory)
    return [*entries[:index], *entries[index + 1 :]]


def _model_class(module: ModuleType, ctx: ModelContext, path: Path) -> type[Any]:
    model_class = getattr(module, "TritonPythonModel", None)
    if not isinstance(model_class, type):
        raise InternalError(f"AttributeError: module '{ctx.version}.{path.stem}' has no attribute 'TritonPythonModel'")
    return model_class


def _run_auto_complete(hook: Any, config: ModelConfig, ctx: ModelContext) -> None:
    wrapper = pb_utils.ModelConfig(config_to_json(config))
    try:
        result = hook(wrapper)
    except (Exception, SystemExit) as exc:
        raise _load_error(exc) from exc
    if not isinstance(result, pb_utils.ModelConfig):
        raise InternalError(
            f"auto_complete_config function in model '{ctx.name}' must return a valid pb.ModelConfig object."
        )
    completed = config_from_json(result.as_dict())
    config.CopyFrom(completed)


# -- errors ----------------------------------------------------------------------------------


def _start_bls(
    infer: InternalInfer, request: pb_utils.InferenceRequest
) -> concurrent.futures.Future[pb_utils.InferenceResponse]:
    """Start a model's BLS ``request`` in the server; its future answers a ``pb_utils`` response
    (an error too travels in the response, as in Triton)."""
    answer: concurrent.futures.Future[pb_utils.InferenceResponse] = concurrent.futures.Future()
    try:
        started = infer(_from_pb_request(request))
    except TritonError as exc:
        answer.set_result(pb_utils.InferenceResponse(error=_to_pb_error(exc)))
        return answer

    def done(future: concurrent.futures.Future[InferenceResponse]) -> None:
        if answer.done():
            return
        if future.cancelled():
            answer.set_result(pb_utils.InferenceResponse(error=pb_utils.TritonError("request cancelled", 7)))
            return
        error = future.exception()
        if error is not None:
            pb_error = _to_pb_error(error if isinstance(error, TritonError) else InternalError(str(error)))
            answer.set_result(pb_utils.InferenceResponse(error=pb_error))
            return
        answer.set_result(_to_pb_response(future.result()))

    started.add_done_callback(done)
    answer.add_done_callback(lambda _: started.cancel())
    return answer


def _start_bls_stream(infer_stream: InternalStream, request: pb_utils.InferenceRequest) -> pb_utils.ResponseIterator:
    """Start a BLS ``request`` with ``decoupled=True``: its iterator yields each response as a
    ``pb_utils`` response (errors included) and stops after the final one."""
    iterator = pb_utils.ResponseIterator()
    core_request = _from_pb_request(request)

    def on_response(response: InferenceResponse | TritonError | None, final: bool) -> None:
        if isinstance(response, TritonError):
            iterator._put(pb_utils.InferenceResponse(error=_to_pb_error(response)))
        elif response is not None:
            iterator._put(_to_pb_response(response))
        elif final:
            iterator._put(pb_utils.InferenceResponse())  # Triton's empty last response
        if final:
            iterator._put(None)

    iterator._cancel = infer_stream(core_request, on_response)
    return iterator


_PB_TENSOR = pb_utils.Tensor


def _wrap(name: str, array: npt.NDArray[Any], triton_type: int) -> pb_utils.Tensor:
    """A tensor as a model sees it (no copy): ``pb_utils.Tensor._wrap``, written here so that it
    runs compiled (pb_utils itself stays plain Python, user-facing). Marked as the server's, so that
    ``as_numpy`` gives the model a copy of its own to change: the same array may be the request's
    bytes, another model's input, an ensemble's tensor or a cached response."""
    tensor: pb_utils.Tensor = _PB_TENSOR.__new__(_PB_TENSOR)
    tensor._name = name
    tensor._array = array
    tensor._server = True
    tensor._triton_type = triton_type
    return tensor


def _from_pb_request(request: pb_utils.InferenceRequest) -> InferenceRequest:
    """A BLS request as the server's own request (its arrays copied as ``_handed_over`` says)."""
    inputs: dict[str, Tensor] = {}
    for tensor in request.inputs():
        wire = _WIRE_BY_TRITON_TYPE[tensor.triton_dtype()]
        array = _handed_over(tensor, wire)
        inputs[tensor.name()] = Tensor(tensor.name(), wire, tuple(int(d) for d in array.shape), array)
    parameters = json.loads(request.parameters())
    version = request._model_version
    return InferenceRequest(
        request._model_name,
        str(version) if version > 0 else "",
        request.request_id(),
        inputs,
        [RequestedOutput(name) for name in request._output_order or sorted(request.requested_output_names())],
        parameters,
        timeout_us=request.timeout(),
        correlation_id=request.correlation_id(),
        flags=request.flags(),
        trace_parent=request.trace()._trace_id,
    )


def _to_pb_response(response: InferenceResponse) -> pb_utils.InferenceResponse:
    """A server response as BLS callers see it (tensors are not copied; ``_wrap`` marks them the server's)."""
    outputs = [_wrap(tensor.name, tensor.data, _TRITON_TYPE_BY_WIRE[tensor.datatype]) for tensor in response.outputs]
    return pb_utils.InferenceResponse(outputs, parameters=dict(response.parameters) or None)


def _to_pb_error(error: TritonError) -> pb_utils.TritonError:
    """A BLS request's error as Triton's Python backend hands it to the model: the message, and
    always the code INTERNAL (Triton keeps no other)."""
    return pb_utils.TritonError(error.message)


def _from_pb_error(error: Any) -> TritonError:
    """A ``pb_utils.TritonError`` (or anything a model put in ``error=``) → the airtower error."""
    if isinstance(error, pb_utils.TritonError):
        return ERROR_CLASS_BY_CODE[ErrorCode[error.code().name]](error.message())
    if isinstance(error, TritonError):
        return error
    return InternalError(str(error))


def _load_error(exc: BaseException) -> TritonError:
    """An exception from user code while loading → the error shown as the version's load failure
    (Triton's reason: the Python error as ``python_error_text`` words it)."""
    if isinstance(exc, pb_utils.TritonError):
        return _from_pb_error(exc)
    if isinstance(exc, TritonError):
        return exc
    return InternalError(python_error_text(exc))


#: Where airtower's own code is: its frames are left out of a model's traceback, but for
#: ``triton_python_backend_utils``, whose frames Triton shows too (its module is Python there).
_PACKAGE_DIR = str(Path(__file__).resolve().parents[2]) + "/"
_PB_UTILS_FILE = str(Path(pb_utils.__file__).resolve())


def _is_airtower_frame(filename: str) -> bool:
    if filename == _PB_UTILS_FILE:
        return False
    return filename.startswith((_PACKAGE_DIR, "airtower/"))  # the second: modules compiled with mypyc


def python_error_text(exc: BaseException) -> str:
    """A Python exception as Triton's Python backend words it (pybind11's): ``Type: message``,
    and when the model's own code raised it, ``\n\nAt:\n`` and the frames, innermost first, one
    ``  <file>(<line>): <function>`` per line. airtower's frames are left out, as Triton's stub
    has none."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if not _is_airtower_frame(frame.filename)]
    text = f"{type(exc).__name__}: {exc}"
    if any(not frame.filename.startswith("<") for frame in frames):
        text += "\n\nAt:\n" + "".join(f"  {f.filename}({f.lineno}): {f.name}\n" for f in reversed(frames))
    return text


def _handed_over(tensor: pb_utils.Tensor, wire: str) -> npt.NDArray[Any]:
    """The array of a tensor a model hands the server (a response's output, a BLS request's input),
    as the server keeps it: a copy, since the model may change its array afterwards (Triton copies
    it out of the stub then), unless it is the server's own tensor passed on untouched. BYTES as
    ``bytes`` objects; a conversion already makes the copy."""
    array = tensor._array
    if wire == "BYTES":
        converted = _to_bytes_array(array)
        return converted if converted is not array or tensor._server else converted.copy()
    return array if tensor._server else array.copy()


def _to_bytes_array(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """BYTES outputs as object arrays of ``bytes`` (str is UTF-8 encoded, other objects via ``str()``)."""
    if array.dtype == np.object_ and all(type(item) is bytes for item in array.flat):
        return array
    items = [item if type(item) is bytes else _encode(item) for item in array.ravel().tolist()]
    return np.fromiter(items, dtype=np.object_, count=len(items)).reshape(array.shape)


def _encode(item: Any) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    return str(item).encode("utf-8")
