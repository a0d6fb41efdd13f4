"""InferenceServer: the one object the frontends call.

Frontends (HTTP, later gRPC) decode the wire into ``core`` types, call a method here, and
encode the result; they never reach into models, schedulers or backends. Every method raises
``airtower.errors.TritonError`` subclasses, which each frontend maps through its own table.

Shutdown order, written once in :meth:`InferenceServer.stop`: the frontends stop accepting
(their owner does that first) → in-flight requests drain, bounded by ``--exit-timeout-secs`` →
models are unloaded (instances finalized on their own threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from airtower.core.request import InferenceRequest, RequestTraceContext, ResponseSink
from airtower.core.response import InferenceResponse
from airtower.core.shared_memory import SystemSharedMemory
from airtower.errors import (
    DECOUPLED_UNSUPPORTED,
    InvalidArgumentError,
    ModelNotFoundError,
    NotFoundError,
    ServerNotReadyError,
    TritonError,
    UnavailableError,
    UnsupportedError,
)
from airtower.models.manager import ModelManager, version_number
from airtower.observability import log_settings
from airtower.options import ServerOptions
from airtower.types import JSONValue, config_to_wire

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

    from airtower.models.ensemble import EnsembleModel
    from airtower.models.model import Model

logger = logging.getLogger(__name__)

#: The Triton release whose protocol airtower speaks, reported as the server version.
TRITON_VERSION = "2.51.0"

#: Protocol extensions airtower implements (reported in server metadata).
EXTENSIONS: tuple[str, ...] = (
    "classification",
    "sequence",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "model_configuration",
    "system_shared_memory",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "trace",
    "logging",
)


class InferenceServer:
    """Health, metadata, configuration, inference, statistics and the repository index."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.models = ModelManager(options)
        self._live = False
        self._accepting = False
        self._in_flight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._log_settings = options.log_settings
        #: Regions clients registered through the system shared memory extension.
        self.shared_memory = SystemSharedMemory()
        #: poll mode: the task that rescans the repositories; owned here, cancelled by ``stop``.
        self._poller: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the models of every repository.

        Raises:
            UnavailableError: a model failed to load and ``exit_on_error`` is set.
        """
        self._live = True
        await self.models.load_all()
        failed = self.models.failed()
        if failed and self.options.exit_on_error:
            names = ", ".join(sorted(failed))
            raise UnavailableError(f"failed to load all models: {names}")
        self._accepting = True
        if self.options.model_control_mode == "poll" and self.options.repository_poll_secs > 0:
            self._poller = asyncio.create_task(self._poll(), name="repository-poll")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.options.repository_poll_secs)
            try:
                changes = await self.models.poll()
            except Exception:
                logger.exception("polling the model repositories failed")
                continue
            if changes:
                logger.info("repository poll: %s", changes)

    async def stop(self) -> None:
        """Refuse new requests, wait for in-flight ones (bounded), then unload every model."""
        self._accepting = False
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self._in_flight:
            self._drained.clear()  # set by the last request to finish (``_request_done``)
            logger.info("waiting for %d in-flight inference requests", self._in_flight)
            # Queued requests run now rather than wait for batches that can no longer fill.
            for model in self.models.models():
                if model.scheduler is not None:
                    model.scheduler.flush()
            try:
                await asyncio.wait_for(self._drained.wait(), self.options.exit_timeout_secs)
            except TimeoutError:
                logger.warning("timeout: %d requests still in flight; unloading anyway", self._in_flight)
        await self.models.aclose()
        self.models.tracer.close()
        self.shared_memory.unregister()
        self._live = False

    # -- health and metadata (KServe v2 core) -------------------------------------------------

    def is_live(self) -> bool:
        return self._live

    def is_ready(self) -> bool:
        if not (self._live and self._accepting):
            return False
        return self.models.all_ready() if self.options.strict_readiness else True

    def server_metadata(self) -> dict[str, JSONValue]:
        return {"name": self.options.server_id, "version": TRITON_VERSION, "extensions": list(EXTENSIONS)}

    def is_model_ready(self, name: str, version: str = "") -> bool:
        """Whether the version (the policy's latest ready one if "") serves requests.

        Raises:
            InvalidArgumentError: a version string Triton cannot read (``version_number``).
        """
        if version:
            version_number(version)
        try:
            self.models.get(name, version)
        except (ModelNotFoundError, UnavailableError):
            return False
        return True

    def model_metadata(self, name: str, version: str = "") -> dict[str, JSONValue]:
        """KServe v2 model metadata of a READY version."""
        model = self.models.get(name, version)
        config = model.config
        batch: list[int] = [-1] if config.max_batch_size > 0 else []
        versions = [version] if version else [str(v) for v in self.models.entry(name).ready_versions()]

        def describe(tensors: JSONValue) -> list[dict[str, JSONValue]]:
            return [{"name": t.name, "datatype": _wire(t.data_type), "shape": batch + list(t.dims)} for t in tensors]

        return {
            "name": name,
            "versions": versions,
            "platform": config.platform or config.backend,
            "inputs": describe(config.input),
            "outputs": describe(config.output),
        }

    def model_config(self, name: str, version: str = "") -> ModelConfig:
        return self.models.get(name, version).config

    # -- inference ------------------------------------------------------------------------

    def infer(self, request: InferenceRequest, caller: str = "inference") -> asyncio.Future[InferenceResponse]:
        """Start one request on the model version it names; await the returned future.

        Checks that fail at once raise here; the model's own failure is the future's exception.
        Cancelling the future (client gone) drops the request if it has not started executing.
        ``caller`` names the endpoint in the error for a decoupled model, which can only stream.
        The request's ``on_complete`` hook, when the caller sets one, is called once the future
        is settled: in the same loop iteration when the model answers or fails it.

        Raises:
            ModelNotFoundError: unknown model or version.
            ModelNotReadyError: the version is not READY.
            InvalidArgumentError: the request does not match the model's config.
            UnsupportedError: the model is decoupled (use ``infer_stream``).
            ServerNotReadyError: the server is exiting.
        """
        if not self._accepting:
            raise ServerNotReadyError("Server is exiting" if self._live else "Server is not ready")
        return self._track(
            self._single_response_model(request.model_name, request.model_version, caller).submit(request)
        )

    def _single_response_model(self, name: str, version: str, caller: str) -> Model | EnsembleModel:
        model = self.models.get(name, version)
        if model.decoupled:
            raise UnsupportedError(f"{caller} {DECOUPLED_UNSUPPORTED}")
        return model

    def infer_target_config(self, name: str, version: str = "", caller: str | None = None) -> ModelConfig:
        """The config of the version a request names, for a frontend that could not decode the request:
        raises first what ``infer`` would (unknown or unready model, and for a ``caller`` that takes one
        response, a decoupled one), as Triton reports those before a malformed request."""
        if caller is None:
            return self.models.get(name, version).config
        return self._single_response_model(name, version, caller).config

    def infer_stream(self, request: InferenceRequest, on_response: ResponseSink) -> asyncio.Future[InferenceResponse]:
        """Start one request whose responses go to ``on_response(response, final)`` on the loop:
        a decoupled model's zero or more responses (``None`` with ``final`` for a bare final flag),
        or any other model's one response or error, final. The future resolves after the last.

        Raises:
            The errors of ``infer``, except for decoupled models.
        """
        if not self._accepting:
            raise ServerNotReadyError("Server is exiting" if self._live else "Server is not ready")
        return self._track(self.models.stream(request, on_response))

    def _track(self, future: asyncio.Future[InferenceResponse]) -> asyncio.Future[InferenceResponse]:
        self._in_flight += 1
        future.add_done_callback(self._request_done)
        return future

    def _request_done(self, _: asyncio.Future[InferenceResponse]) -> None:
        # Counted per request on the hot path; the event matters only once ``stop`` waits on it.
        self._in_flight -= 1
        if not self._in_flight and not self._accepting:
            self._drained.set()

    # -- trace extension --------------------------------------------------------------------

    def trace_settings(
        self, model: str = "", changes: Mapping[str, str | Sequence[str] | None] | None = None
    ) -> dict[str, JSONValue]:
        """The trace settings, global (``model`` "") or of one model, after applying ``changes``.

        ``changes`` are ``observability.trace.extension_changes``' (a list of level names, strings
        for the others, None to clear).

        Raises:
            InvalidArgumentError: a model that is not ready (Triton's "Request for unknown model :
                <m>"), a setting that does not parse or settings that cannot trace.
            UnsupportedError: a ``trace_file`` change.
        """
        if model and not self.is_model_ready(model):
            raise InvalidArgumentError(f"Request for unknown model : {model}")
        tracer = self.models.tracer
        settings = tracer.update(model, changes) if changes else tracer.settings_for(model)
        return settings.to_json()

    @property
    def tracing(self) -> bool:
        """Whether a request may be traced now: frontends then attach a ``RequestTraceContext``."""
        return self.models.tracer.active

    def trace_finished(self, context: RequestTraceContext, sent: tuple[int, int, int] | None) -> None:
        """A frontend is done with a request it received while tracing was on: ``sent`` holds the
        times (steady clock, ns) its response was complete, started and finished sending, or None
        when it was not sent (the client went away). Completes the request's trace if it has one."""
        if context.trace_id:
            self.models.tracer.finish(context, sent)

    # -- logging extension ------------------------------------------------------------------

    def log_settings(self) -> dict[str, JSONValue]:
        """The logging extension's settings (``GET /v2/logging``)."""
        return self._log_settings.to_json()

    def update_log_settings(
        self, changes: Mapping[str, bool | int | str], refused: TritonError | None = None
    ) -> dict[str, JSONValue]:
        """Apply ``changes`` to the live log settings and return them all (``POST /v2/logging``).
        ``refused`` is the error a frontend found at the setting after ``changes`` (in Triton's
        order): as in Triton, the settings before a bad one are applied, then its error answers.

        Raises:
            TritonError: ``refused``, or Triton's errors for a bad value or a ``log_file`` change.
        """
        settings, error = self._log_settings.updated(changes)
        self._log_settings = settings
        log_settings.apply(settings)
        problem = error if error is not None else refused
        if problem is not None:
            raise problem
        return settings.to_json()

    # -- shared-memory extensions -------------------------------------------------------------

    def shared_memory_status(self, kind: str, name: str = "") -> list[dict[str, JSONValue]]:
        """The registered regions of ``kind`` ("system" or "cuda"; none for CUDA, which airtower
        does not support), or region ``name``.

        Raises:
            NotFoundError: a named region that is not registered (Triton's message).
        """
        if kind == "system":
            return list(self.shared_memory.status(name))
        if name:
            raise NotFoundError(f"Unable to find cuda shared memory region: '{name}'")
        return []

    def shared_memory_unregister(self, kind: str, name: str = "") -> None:
        """Unregister region ``name`` of ``kind`` or all; as in Triton, unknown names succeed."""
        if kind == "system":
            self.shared_memory.unregister(name)

    def shared_memory_register(self, kind: str, name: str, key: str = "", offset: int = 0, byte_size: int = 0) -> None:
        """Register system shared-memory region ``name`` (``byte_size`` bytes at ``offset`` of the
        POSIX shared-memory object ``key``).

        Raises:
            AlreadyExistsError: the name is taken.
            InternalError: the object cannot be opened or is too small.
            UnsupportedError: CUDA shared memory (HTTP 501, gRPC UNIMPLEMENTED).
        """
        if kind != "system":
            raise UnsupportedError(
                f"CUDA shared memory is not supported by airtower: cannot register region '{name}'; "
                "use system shared memory or send tensors in the request"
            )
        self.shared_memory.register(name, key, offset, byte_size)

    # -- statistics and repository extensions ---------------------------------------------

    def model_statistics(self, name: str = "", version: str = "") -> dict[str, JSONValue]:
        """The statistics extension's JSON: every ready version, or the one named.

        Raises:
            InvalidArgumentError: the model or version is not available (Triton's INVALID_ARG).
        """
        if name:
            if version:
                version_number(version)  # as Triton, a version it cannot read is refused first
            try:
                entry = self.models.entry(name)
            except ModelNotFoundError:
                raise InvalidArgumentError(f"requested model '{name}' is not available") from None
            if version:
                try:
                    models = [self.models.get(name, version)]
                except (ModelNotFoundError, UnavailableError):
                    raise InvalidArgumentError(f"requested model version is not available for model '{name}'") from None
            else:
                models = [entry.versions[v] for v in entry.ready_versions()]
                if not models:  # failed or unloaded: Triton has nothing to report on
                    raise InvalidArgumentError(f"requested model '{name}' is not available")
        else:
            models = self.models.models()
        return {"model_stats": [model.stats.to_json() for model in models]}

    def repository_index(self, ready: bool = False) -> list[dict[str, JSONValue]]:
        return self.models.index(ready)

    async def load_model(self, name: str, config: str | None, files: dict[str, bytes], repository: str = "") -> None:
        """Repository extension: (re)load ``name`` (explicit model control mode only).

        Raises:
            UnsupportedError: a ``repository`` named (Triton does not support it).
            UnavailableError: the control mode is not ``explicit`` (Triton's message).
            InternalError: the model is not in a repository, or its configuration failed to load.
            InvalidArgumentError: a version failed to load (Triton's "load failed for model ...").
        """
        _no_repository_name(repository)
        self._require_explicit()
        await self.models.load(name, config, files)

    async def unload_model(self, name: str, unload_dependents: bool, repository: str = "") -> None:
        """Repository extension: unload ``name`` (explicit model control mode only)."""
        _no_repository_name(repository)
        self._require_explicit()
        await self.models.unload(name, unload_dependents)

    def _require_explicit(self) -> None:
        if self.options.model_control_mode != "explicit":
            raise UnavailableError("explicit model load / unload is not allowed if polling is enabled")


#: Triton's answer to a repository extension request that names a repository.
REPOSITORY_NAME_UNSUPPORTED = "'repository_name' specification is not supported"


def _no_repository_name(repository: str) -> None:
    if repository:
        raise UnsupportedError(REPOSITORY_NAME_UNSUPPORTED)


def _wire(data_type: int) -> str:
    from airtower.core.validation import model_config_enum_name

    return config_to_wire(model_config_enum_name(data_type))
