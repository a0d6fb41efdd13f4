"""The backend contract: Backend → BackendModel → BackendInstance.

Lifecycle, as driven by ``airtower.models``:

1. ``Backend.auto_complete_config(config, ctx)`` (unless auto-complete is disabled) fills in
   what the model file knows (inputs, outputs, max_batch_size). It mutates ``config``.
2. ``Backend.load(ctx)`` → ``BackendModel`` reads the model once per version.
3. ``BackendModel.create_instance(spec)`` → ``BackendInstance``, called **on the instance's own
   thread** (the thread that will later run every ``execute`` of that instance).
4. ``BackendInstance.execute(requests)`` runs one batch on the instance thread; it may block.
5. ``BackendInstance.close()`` (finalize) on the instance thread, then ``BackendModel.close()``.

Errors: every method raises ``airtower.errors.TritonError`` subclasses. ``execute`` raising
fails every request in the batch; a ``TritonError`` *returned* in the list fails only the
request at that position.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from airtower.core.request import InferenceRequest, ResponseSink
from airtower.core.response import InferenceResponse
from airtower.errors import TritonError

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig


#: Starts ``request`` on the model it names and returns a thread-safe future of its response
#: (a ``TritonError`` when it fails). Callable from any thread except the event loop's own.
InternalInfer = Callable[[InferenceRequest], "concurrent.futures.Future[InferenceResponse]"]


#: Starts ``request`` and calls ``on_response(response | TritonError | None, final)`` on the
#: server's event loop for each of its responses; returns a function that cancels it.
InternalStream = Callable[[InferenceRequest, ResponseSink], Callable[[], None]]


class ModelControl(Protocol):
    """Model management for backends, callable from any thread but the event loop's; blocks."""

    def load(self, name: str, config: str | None, files: dict[str, bytes]) -> None:
        """(Re)load ``name``; raises ``TritonError`` when it fails or the control mode forbids it."""
        ...

    def unload(self, name: str, unload_dependents: bool) -> None:
        """Unload ``name``; raises ``TritonError`` when the control mode forbids it."""
        ...

    def is_ready(self, name: str, version: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class ModelContext:
    """Where a model lives and how the server was told to run it.

    Attributes:
        name: the model name (its directory name).
        model_dir: ``<repository>/<model>``.
        repository: the model repository holding ``model_dir``.
        backend_config: ``--backend-config=<backend>,k=v`` settings for this model's backend
            (merged with the global ones such as ``default-max-batch-size``).
        version: the version being loaded (0 during auto-complete, which precedes versions).
    """

    name: str
    model_dir: Path
    repository: Path
    backend_config: dict[str, str] = field(default_factory=dict)
    version: int = 0
    #: Runs a request on another model of this server, from any thread (Python models' BLS).
    infer: InternalInfer | None = None
    #: The same for every response of a (decoupled) model: see ``InternalStream``.
    infer_stream: InternalStream | None = None
    #: Loads, unloads and checks models from any thread (Python models' ``pb_utils.load_model``...).
    control: ModelControl | None = None

    @property
    def version_dir(self) -> Path:
        return self.model_dir / str(self.version)


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """One instance of an instance group: ``<group name>_<index>``, kind, device and its group's name
    (Triton's Python backend names the group, not the instance, in execution errors)."""

    name: str
    kind: str  # "KIND_CPU" | "KIND_GPU" | "KIND_MODEL"
    device_id: int = 0
    group: str = ""


class DeferredAnswer:
    """A request's answer that a backend gives after ``execute`` returned (a non-decoupled Python
    model that sends its response with the request's response sender later, from any thread).

    The backend ``deliver``s it once; the model's ``when_ready`` callback gets it (at once when it
    came first). Both may run on any thread, in either order.
    """

    __slots__ = ("_answer", "_callback", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answer: InferenceResponse | TritonError | None = None
        self._callback: Callable[[InferenceResponse | TritonError], None] | None = None

    def deliver(self, answer: InferenceResponse | TritonError) -> None:
        with self._lock:
            callback = self._callback
            if callback is None:
                self._answer = answer
                return
        callback(answer)

    def when_ready(self, callback: Callable[[InferenceResponse | TritonError], None]) -> None:
        with self._lock:
            answer = self._answer
            if answer is None:
                self._callback = callback
                return
        callback(answer)


class BackendInstance(Protocol):
    """One execution context; at most one ``execute`` runs at a time, on its own thread.

    An instance may also keep ``inputs_ready_ns`` and ``outputs_start_ns`` (steady clock, ns):
    when its last ``execute`` had the inputs ready for the model and when the model returned. The
    statistics then split compute input / infer / output there (the Python backend does; without
    them all of ``execute`` counts as compute infer).
    """

    def execute(
        self, requests: Sequence[InferenceRequest]
    ) -> list[InferenceResponse | TritonError | DeferredAnswer | None]:
        """Run ``requests`` as one batch.

        Args:
            requests: validated requests; ``request.outputs`` names the outputs wanted
                (empty means all of them).

        Returns:
            One entry per request, in order: its response, or the error that fails it alone.
            A response's outputs may include outputs that were not asked for; the caller
            keeps the ones requested. ``None`` for a request of a decoupled model, whose
            responses go (now or later, from any thread) to ``request.response_sink``. A
            ``DeferredAnswer`` for a request answered after ``execute`` returned.

        Raises:
            TritonError: the whole execution failed; every request fails with it.
        """
        ...

    def close(self) -> None:
        """Finalize the instance (Python models' ``finalize()``)."""
        ...


class BackendModel(Protocol):
    """A loaded model version, shared by its instances."""

    def create_instance(self, spec: InstanceSpec) -> BackendInstance:
        """Create one instance; called on the thread that will execute it.

        Raises:
            TritonError: the instance could not be created; the model fails to load.
        """
        ...

    def close(self) -> None:
        """Release what ``Backend.load`` acquired."""
        ...


class Backend(Protocol):
    """A kind of model (onnxruntime, python, ...)."""

    #: The backend name used in config.pbtxt (``backend: "onnxruntime"``).
    name: str

    #: The instance kind (``ModelInstanceGroup.KIND_*``) a model gets when its configuration names
    #: no instance group, or None to let the server choose (GPU when there is one), as a Triton
    #: backend's preferred instance group (``TRITONBACKEND_BackendAttributeAddPreferredInstanceGroup``).
    preferred_instance_kind: int | None

    def auto_complete_config(self, config: ModelConfig, ctx: ModelContext) -> None:
        """Complete ``config`` in place from the model file (inputs, outputs, max_batch_size).

        Called with ``ctx.version`` set to the version whose file is read (the latest one).
        Must not override anything the user wrote, and must raise ``ModelConfigError`` when
        what the user wrote contradicts the model file.
        """
        ...

    def load(self, config: ModelConfig, ctx: ModelContext) -> BackendModel:
        """Load version ``ctx.version`` with its complete, normalised ``config``.

        Raises:
            TritonError: the model cannot be loaded; the reason is shown in the index.
        """
        ...
