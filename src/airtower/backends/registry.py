"""Backend names → import strings, imported lazily so a missing framework is a clear error."""

from __future__ import annotations

import importlib
import logging
import threading

from airtower.backends.base import Backend
from airtower.errors import InvalidArgumentError, UnavailableError

logger = logging.getLogger(__name__)

#: backend name → "module:Class". Frameworks are imported only when a model needs them.
BACKENDS: dict[str, str] = {
    "onnxruntime": "airtower.backends.onnxruntime:OnnxRuntimeBackend",
    "python": "airtower.backends.python.backend:PythonBackend",
}

#: The pip extra that brings each backend's framework.
EXTRA_BY_BACKEND: dict[str, str] = {"onnxruntime": "onnxruntime"}

#: Legacy ``platform`` names ↔ backend names (Triton's model_config_utils).
BACKEND_BY_PLATFORM: dict[str, str] = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "torch_aoti": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow_graphdef": "tensorflow",
    "tensorrt_plan": "tensorrt",
    "openvino": "openvino",
}
PLATFORM_BY_BACKEND: dict[str, str] = {
    "onnxruntime": "onnxruntime_onnx",
    "pytorch": "pytorch_libtorch",
    "tensorflow": "tensorflow_savedmodel",
    "tensorrt": "tensorrt_plan",
}

_loaded: dict[str, Backend] = {}
#: Models load concurrently (configs are auto-completed and Python models imported on worker
#: threads while the loop loads others): two threads importing overlapping modules at once can see
#: one partially initialized. Every import of a backend or of a model's code holds this lock.
IMPORT_LOCK = threading.RLock()


def get_backend(name: str) -> Backend:
    """The backend called ``name``, imported on first use.

    Raises:
        InvalidArgumentError: no backend has that name.
        UnavailableError: the backend's framework is not installed (names the pip extra).
    """
    backend = _loaded.get(name)
    if backend is not None:
        return backend
    with IMPORT_LOCK:
        return _load_backend(name)


def _load_backend(name: str) -> Backend:
    if name in _loaded:
        return _loaded[name]
    target = BACKENDS.get(name)
    if target is None:
        raise InvalidArgumentError(
            f"unable to find backend library for backend '{name}', try specifying runtime on the model "
            f"configuration. (airtower provides: {', '.join(sorted(BACKENDS))})"
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        logger.debug("importing backend '%s' failed", name, exc_info=True)
        extra = EXTRA_BY_BACKEND.get(name, name)
        raise UnavailableError(
            f"backend '{name}' needs a package that is not installed ({exc.name}): "
            f"install it with `pip install 'airtower[{extra}]'`"
        ) from exc
    backend: Backend = getattr(module, attr)()
    _loaded[name] = backend
    return backend
