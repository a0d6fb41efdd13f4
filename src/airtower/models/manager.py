"""ModelManager: owns every model's lifecycle — loading at start-up, look-up, unloading.

Model control mode ``none`` (Triton's default): every model of every repository is loaded at
start-up; a model whose config or files are broken is UNAVAILABLE with a reason and does not
take the others down. Ensembles load after the models they compose (nested ensembles after
theirs); one whose composing models are missing is UNAVAILABLE with Triton's reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airtower import shared_loop
from airtower.backends.base import ModelContext
from airtower.backends.registry import get_backend
from airtower.core.cuda import supported_gpus
from airtower.core.model_config import config_from_json
from airtower.core.request import InferenceRequest, ResponseSink
from airtower.core.response import InferenceResponse
from airtower.errors import (
    InternalError,
    InvalidArgumentError,
    ModelConfigError,
    ModelNotFoundError,
    ModelNotReadyError,
    TritonError,
    UnavailableError,
    UnsupportedError,
)
from airtower.models.ensemble import EnsembleModel, EnsemblePlan
from airtower.models.model import Model, ModelState
from airtower.models.response_cache import CacheConfig, ResponseCache
from airtower.observability.trace import Tracer, parse_trace_config
from airtower.options import ServerOptions
from airtower.repository.cloud import CloudRepository
from airtower.repository.config_loader import ENSEMBLE_PLATFORM, complete_model_config, repository_model_config
from airtower.repository.layout import ModelLocation, available_versions, scan_repositories, select_versions
from airtower.repository.poll import Fingerprint, RepositoryChanges, compare, fingerprint
from airtower.scheduling.rate_limiter import RateLimiter
from airtower.types import JSONValue

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

logger = logging.getLogger(__name__)

_READY = ModelState.READY


@dataclass(slots=True)
class ModelEntry:
    """Everything known about one model name: its config, loaded versions, failures."""

    name: str
    location: ModelLocation | None = None
    config: ModelConfig | None = None
    versions: dict[int, Model | EnsembleModel] = field(default_factory=dict)
    #: version → reason it is unavailable; key 0 when the model failed before any version.
    failures: dict[int, str] = field(default_factory=dict)
    #: The highest READY version, which serves requests naming no version (kept by the manager).
    latest: Model | EnsembleModel | None = None
    #: A copy of the model directory with the ``config`` / ``file:`` overrides of a load request.
    workdir: tempfile.TemporaryDirectory[str] | None = None

    def ready_versions(self) -> list[int]:
        return sorted(v for v, m in self.versions.items() if m.state is ModelState.READY)

    def refresh_latest(self) -> None:
        ready = self.ready_versions()
        self.latest = self.versions[ready[-1]] if ready else None


class ModelManager:
    """Loads, finds and unloads models."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self._entries: dict[str, ModelEntry] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        #: s3:// repositories, each with its local copy (refreshed at start-up, polls and loads).
        self._cloud = [CloudRepository(path) for path in options.cloud_repositories]
        #: poll mode: each model's files at the last scan.
        self._fingerprints: dict[str, Fingerprint] | None = None
        #: Ensembles whose config was read, waiting for their composing models: (entry, versions).
        self._ensembles: list[tuple[ModelEntry, list[int]]] = []
        #: ``--trace-config`` and the trace extension: which requests are traced, and their records.
        self.tracer = Tracer(parse_trace_config(list(options.trace_config)))
        #: ``--cache-config local,size=N``: shared by the models whose config enables it.
        cache_config = CacheConfig.parse(list(options.cache_config))
        self.response_cache = ResponseCache(cache_config.size) if cache_config is not None else None
        #: The GPUs instance groups may use (none on a machine without a CUDA driver).
        self.gpus = supported_gpus(options.min_supported_compute_capability)
        if self.gpus:
            logger.info("GPUs used for model instances: %s", ", ".join(str(gpu) for gpu in self.gpus))
        #: Shared by every model's instances when ``--rate-limit=execution_count``.
        self.rate_limiter = (
            RateLimiter(options.rate_limit_resources) if options.rate_limit == "execution_count" else None
        )

    def infer_threadsafe(self, request: InferenceRequest) -> concurrent.futures.Future[InferenceResponse]:
        """Run ``request`` from another thread (Python models' BLS): no network hop, the model's
        own scheduler applies. The returned future fails with the ``TritonError`` of a failed
        request, or of a refused one worded as Triton's Python backend words it ("Model <m> - Error
        when running inference: ..."); cancelling it cancels the request."""
        loop = self._loop
        assert loop is not None, "models are served once the manager has loaded them"
        result: concurrent.futures.Future[InferenceResponse] = concurrent.futures.Future()

        def start() -> None:
            if not result.set_running_or_notify_cancel():
                return
            try:
                model = self._bls_target(request)
                if model.decoupled:
                    raise UnsupportedError(
                        f"Model {request.model_name} is using the decoupled. The current BLS request call doesn't "
                        "support models using the decoupled transaction policy. Please use 'decoupled=True' "
                        "argument to the 'exec' or 'async_exec' calls for decoupled models.'"
                    )
                future = model.submit(request)
            except TritonError as exc:
                result.set_exception(_refused(request, exc))
                return
            future.add_done_callback(functools.partial(_copy_outcome, result))
            result.add_done_callback(lambda _: loop.call_soon_threadsafe(future.cancel))

        shared_loop.release_if_holder(loop)  # a model thread holding the loop is about to wait for it
        loop.call_soon_threadsafe(start)
        return result

    def stream(self, request: InferenceRequest, on_response: ResponseSink) -> asyncio.Future[InferenceResponse]:
        """On the loop: start ``request``; every response goes to ``on_response(response, final)``
        (a decoupled model's zero or more, ``None`` with ``final`` for a bare final flag; any other
        model's one response or error, final). The future resolves after the last.

        Raises:
            The look-up and validation errors of ``get`` and ``submit``.
        """
        model = self.get(request.model_name, request.model_version)
        if model.decoupled:
            return model.submit(request, on_response)
        future = model.submit(request)

        def answer(done: asyncio.Future[InferenceResponse]) -> None:
            if done.cancelled():
                return
            error = done.exception()
            if error is None:
                on_response(done.result(), True)
            else:
                on_response(error if isinstance(error, TritonError) else InternalError(str(error)), True)

        future.add_done_callback(answer)
        return future

    def stream_threadsafe(self, request: InferenceRequest, on_response: ResponseSink) -> Callable[[], None]:
        """``stream`` from another thread (BLS with ``decoupled=True``): ``on_response`` is called on
        the event loop; an error at the start comes as a final error response. Returns a function
        that cancels the request."""
        loop = self._loop
        assert loop is not None, "models are served once the manager has loaded them"
        started: list[asyncio.Future[InferenceResponse]] = []

        def start() -> None:
            try:
                self._bls_target(request)
                started.append(self.stream(request, on_response))
            except TritonError as exc:
                on_response(_refused(request, exc), True)

        def cancel() -> None:
            loop.call_soon_threadsafe(lambda: [future.cancel() for future in started])

        shared_loop.release_if_holder(loop)
        loop.call_soon_threadsafe(start)
        return cancel

    def _bls_target(self, request: InferenceRequest) -> Model | EnsembleModel:
        """The model a BLS request names, with Triton's Python backend's words when it is not ready."""
        try:
            return self.get(request.model_name, request.model_version)
        except (ModelNotFoundError, ModelNotReadyError):
            raise InternalError(
                f"Failed for execute the inference request. Model '{request.model_name}' is not ready."
            ) from None

    async def load_all(self) -> None:
        """Load the models to serve at start-up: all of them (control modes ``none`` and
        ``poll``), or those named by ``--load-model`` (``explicit``; ``*`` for all)."""
        self._loop = asyncio.get_running_loop()
        for cloud in self._cloud:
            await asyncio.to_thread(cloud.sync)
        locations, duplicates = scan_repositories(self._repositories())
        for name, reason in duplicates.items():
            self._entries[name] = ModelEntry(name, failures={0: reason})
        if self.options.model_control_mode == "explicit" and "*" not in self.options.load_models:
            for name, location in locations.items():
                self._entries.setdefault(name, ModelEntry(name, location))  # listed by the index, not loaded
            wanted = [name for name in self.options.load_models if name in locations]
            for name in self.options.load_models:
                if name not in locations:
                    logger.error("failed to load '%s': model not found in any model repository", name)
                    self._entries[name] = ModelEntry(name, failures={0: "model not found in any model repository"})
            locations = {name: locations[name] for name in wanted}
        if self.options.model_control_mode == "poll":
            self._fingerprints = {name: fingerprint(location.model_dir) for name, location in locations.items()}
        limit = asyncio.Semaphore(self.options.model_load_thread_count)

        async def load_one(location: ModelLocation) -> None:
            async with limit:
                await self._load_model(location)

        async with asyncio.TaskGroup() as group:
            for location in locations.values():
                group.create_task(load_one(location))
        await self._load_ensembles()

    # -- model control (explicit and poll modes) --------------------------------------------

    async def load(self, name: str, config_json: str | None = None, files: dict[str, bytes] | None = None) -> None:
        """(Re)load ``name`` from the repositories (``POST /v2/repository/models/<name>/load``).

        A reload swaps in the new versions once they are READY; the old ones finish their
        queued requests, then unload. A failed load leaves what served before serving.
        ``config_json`` replaces the model's config; ``files`` (``file:<version>/<name>`` →
        content) are put over a copy of its directory.

        Raises:
            InternalError: no such model, or its configuration failed to load (Triton's message;
                details are logged).
            InvalidArgumentError: its versions failed to load ("load failed for model '<m>':
                version <v> is at UNAVAILABLE state: <reason>;" for each, as Triton).
        """
        for cloud in self._cloud:
            await asyncio.to_thread(cloud.sync)
        locations, _ = await asyncio.to_thread(scan_repositories, self._repositories())
        found = locations.get(name)
        if found is None:
            logger.error("failed to poll model '%s': model not found in any model repository", name)
            raise InternalError(f"failed to load '{name}', failed to poll from model repository")
        location: ModelLocation = found
        workdir: tempfile.TemporaryDirectory[str] | None = None
        if config_json is not None or files:
            try:
                workdir, location = await asyncio.to_thread(_overridden, location, config_json, files or {})
            except TritonError as exc:
                logger.error("failed to load '%s': %s", name, exc.message)
                raise InternalError(f"failed to load '{name}', failed to poll from model repository") from exc
        old = self._entries.get(name)
        entry = await self._load_model(location, install=False)
        entry.workdir = workdir
        if entry.config is not None and entry.config.platform == ENSEMBLE_PLATFORM:
            self._ensembles.clear()
            await self._load_ensemble(entry, select_versions(entry.config, available_versions(location.model_dir)))
        if not entry.ready_versions():
            for model in entry.versions.values():
                await model.aclose()
            if workdir is not None:
                workdir.cleanup()
            if old is None or not old.ready_versions():
                self._entries[name] = entry  # the index shows why
            if 0 in entry.failures or not entry.failures:  # the config (details logged), as Triton words it
                raise InternalError(f"failed to load '{name}', failed to poll from model repository")
            states = "".join(f"version {v} is at UNAVAILABLE state: {r};\n" for v, r in sorted(entry.failures.items()))
            raise InvalidArgumentError(f"load failed for model '{name}': {states}")
        self._entries[name] = entry
        if self._fingerprints is not None and workdir is None:
            self._fingerprints[name] = await asyncio.to_thread(fingerprint, location.model_dir)
        if old is not None:
            await self._retire(old)

    async def unload(self, name: str, unload_dependents: bool = False) -> None:
        """Unload every version of ``name`` (queued requests still run); with
        ``unload_dependents``, also the ensembles that use it. An unknown name is no error."""
        entry = self._entries.get(name)
        if entry is not None and (entry.versions or entry.latest is not None):
            self._entries[name] = ModelEntry(
                name, entry.location, entry.config, failures=dict.fromkeys(entry.versions, "unloaded")
            )
            await self._retire(entry)
        if unload_dependents:
            for other in list(self._entries.values()):
                if other.config is not None and other.config.platform == ENSEMBLE_PLATFORM and name in _deps(other):
                    await self.unload(other.name, unload_dependents=True)

    async def poll(self) -> RepositoryChanges:
        """``--model-control-mode=poll``: load new and changed models, unload removed ones."""
        assert self._fingerprints is not None
        for cloud in self._cloud:
            await asyncio.to_thread(cloud.sync)
        locations, _ = await asyncio.to_thread(scan_repositories, self._repositories())
        current = {
            name: await asyncio.to_thread(fingerprint, location.model_dir) for name, location in locations.items()
        }
        changes = compare(self._fingerprints, current)
        for name in changes.removed:
            self._fingerprints.pop(name, None)
            await self.unload(name)
            self._entries.pop(name, None)
        for name in (*changes.added, *changes.modified):
            self._fingerprints[name] = current[name]
            try:
                await self.load(name)
            except TritonError as exc:
                logger.error("poll: %s", exc.message)
        return changes

    async def _retire(self, entry: ModelEntry) -> None:
        """Stop serving ``entry``'s versions: each finishes what is queued, then unloads."""
        entry.latest = None
        for model in entry.versions.values():
            model.state = ModelState.UNLOADING
        for model in list(entry.versions.values()):
            await model.aclose()
        if entry.workdir is not None:
            entry.workdir.cleanup()

    async def _load_ensembles(self) -> None:
        """Load the waiting ensembles, each once every model it composes is settled."""
        waiting = self._ensembles
        while waiting:
            settled = [
                (entry, versions)
                for entry, versions in waiting
                if not any(other is not entry and dep == other.name for dep in _deps(entry) for other, _ in waiting)
            ]
            if not settled:  # ensembles that compose each other
                settled = list(waiting)
            for item in settled:
                waiting.remove(item)
                await self._load_ensemble(*item)

    async def _load_ensemble(self, entry: ModelEntry, versions: list[int]) -> None:
        assert entry.config is not None
        assert entry.location is not None
        config = entry.config
        missing = [name for name in _deps(entry) if not self._is_available(name)]
        if missing:
            missing_text = ", ".join(missing)
            self._fail_model(
                entry, f"ensemble {entry.name} contains models that are not available or ambiguous: {missing_text}"
            )
            return
        for version in versions:
            context = ModelContext(entry.name, entry.location.model_dir, entry.location.repository, {}, version)
            try:
                model = EnsembleModel(config, version, context, self.get, self.tracer)
                entry.versions[version] = model
                started = time.monotonic_ns()
                await model.load()
                model.stats.load_duration_ns = time.monotonic_ns() - started
            except TritonError as exc:  # Triton checks the steps' models when it polls: no model at all
                entry.versions.pop(version, None)
                self._fail_model(entry, exc.message)
            else:
                logger.info("successfully loaded '%s' version %d", entry.name, version)
        entry.refresh_latest()

    def _is_available(self, name: str) -> bool:
        entry = self._entries.get(name)
        return entry is not None and bool(entry.ready_versions())

    async def _load_model(self, location: ModelLocation, install: bool = True) -> ModelEntry:
        """Load every version of the model at ``location`` into a new entry (registered at once
        unless ``install`` is false, for a reload). Failures are recorded in the entry."""
        entry = ModelEntry(location.name, location)
        if install:
            self._entries[location.name] = entry
        options = self.options
        try:  # what Triton reads when it polls the repository: an error and there is no model
            config = await asyncio.to_thread(
                repository_model_config,
                location,
                config_name=options.model_config_name,
                auto_complete=options.auto_complete_config,
            )
            entry.config = config
            versions = select_versions(config, available_versions(location.model_dir))
        except TritonError as exc:
            self._fail_model(entry, exc.message)
            return entry
        complete = functools.partial(
            complete_model_config,
            config,
            location,
            auto_complete=options.auto_complete_config,
            backend_config=options.backend_settings,
            gpus=self.gpus,
            min_compute_capability=options.min_supported_compute_capability,
        )
        if config.platform == ENSEMBLE_PLATFORM:
            try:  # Triton checks an ensemble's graph when it polls: an error and there is no model
                await asyncio.to_thread(complete)
                EnsemblePlan.from_config(config)
            except TritonError as exc:
                self._fail_model(entry, exc.message)
                return entry
            self._ensembles.append((entry, versions))
            return entry
        try:  # what Triton does when it creates the model: an error fails each version
            await asyncio.to_thread(complete)
            backend = get_backend(config.backend)
        except TritonError as exc:
            for version in versions:
                self._fail_version(entry, version, exc)
            return entry
        for version in versions:
            context = ModelContext(
                location.name,
                location.model_dir,
                location.repository,
                options.backend_settings(config.backend),
                version,
                self.infer_threadsafe,
                self.stream_threadsafe,
                _ThreadsafeControl(self),
            )
            model = Model(config, version, context, self.rate_limiter, self.response_cache, self.tracer)
            entry.versions[version] = model
            started = time.monotonic_ns()
            try:
                await model.load(backend)
                model.stats.load_duration_ns = time.monotonic_ns() - started
            except TritonError as exc:
                self._fail_version(entry, version, exc)
            except Exception as exc:
                logger.exception("loading model '%s' version %d failed", location.name, version)
                self._fail_version(entry, version, InternalError(f"{type(exc).__name__}: {exc}"))
            else:
                logger.info("successfully loaded '%s' version %d", location.name, version)
        entry.refresh_latest()
        return entry

    def _fail_model(self, entry: ModelEntry, reason: str) -> None:
        """Mark the whole model UNAVAILABLE (what Triton finds when it polls: it has no such model)."""
        logger.error("failed to load model '%s': %s", entry.name, reason)
        entry.failures[0] = reason

    def _fail_version(self, entry: ModelEntry, version: int, error: TritonError) -> None:
        """Mark ``version`` UNAVAILABLE; its reason is the error as Triton writes a status."""
        reason = error.status_text()
        logger.error("failed to load '%s' version %d: %s", entry.name, version, reason)
        entry.versions.pop(version, None)
        entry.failures[version] = reason

    async def aclose(self) -> None:
        """Unload every model: finalize instances, release backend models, remove cloud copies."""
        for entry in self._entries.values():
            entry.latest = None
            for model in entry.versions.values():
                await model.aclose()
            entry.versions.clear()
        for cloud in self._cloud:
            cloud.close()

    def _repositories(self) -> list[Path]:
        """Local repositories, then the local copies of cloud ones."""
        return [*self.options.model_repositories, *(cloud.local for cloud in self._cloud)]

    # -- look-ups -------------------------------------------------------------------------

    def get(self, name: str, version: str = "") -> Model | EnsembleModel:
        """The READY model version serving requests for ``name`` / ``version``.

        ``version`` "" picks the highest READY version.

        Raises:
            ModelNotFoundError: no such model or version, or no READY version of it.
            ModelNotReadyError: the version named exists but is not READY.
            InvalidArgumentError: ``version`` is not a version number (``version_number``).
        """
        number = version_number(version) if version else 0
        entry = self._entries.get(name)
        if entry is None or not (entry.versions or any(entry.failures)):
            # Unknown, never loaded, or its configuration failed: Triton has no such model.
            raise ModelNotFoundError(f"Request for unknown model: '{name}' is not found")
        if not version:
            latest = entry.latest
            if latest is None or latest.state is not _READY:
                raise ModelNotFoundError(f"Request for unknown model: '{name}' has no available versions")
            return latest
        model = entry.versions.get(number)
        if model is None:
            if number in entry.failures and number:
                raise ModelNotReadyError(f"Request for unknown model: '{name}' version {number} is not at ready state")
            raise ModelNotFoundError(f"Request for unknown model: '{name}' version {number} is not found")
        if model.state is not ModelState.READY:
            raise ModelNotReadyError(f"Request for unknown model: '{name}' version {number} is not at ready state")
        return model

    def entry(self, name: str) -> ModelEntry:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFoundError(f"Request for unknown model: '{name}' is not found")
        return entry

    def models(self) -> list[Model | EnsembleModel]:
        """Every loaded version, by name then version."""
        return [
            entry.versions[v] for name in sorted(self._entries) for entry in [self._entries[name]]
            for v in sorted(entry.versions)
        ]  # fmt: skip

    def failed(self) -> dict[str, dict[int, str]]:
        """Models with versions (or configs) that failed to load: name → version → reason."""
        return {name: dict(e.failures) for name, e in self._entries.items() if e.failures}

    def all_ready(self) -> bool:
        """Strict readiness, as Triton decides it: every model that was loaded has a READY version
        and no load failed. Models never loaded or unloaded (explicit mode) do not count."""
        for entry in self._entries.values():
            if any(reason != "unloaded" for reason in entry.failures.values()):
                return False
            if entry.versions and not entry.ready_versions():
                return False
        return True

    def index(self, ready_only: bool = False) -> list[dict[str, JSONValue]]:
        """The repository index: one row per model version, as Triton's HTTP API shows it."""
        rows: list[dict[str, JSONValue]] = []
        for name in sorted(self._entries):
            entry = self._entries[name]
            versions = sorted(set(entry.versions) | set(entry.failures))
            if not versions and not ready_only:
                rows.append({"name": name})  # found in a repository, never loaded (explicit mode)
            for version in versions:
                model = entry.versions.get(version)
                state = model.state.value if model is not None else ModelState.UNAVAILABLE.value
                if ready_only and state != ModelState.READY.value:
                    continue
                row: dict[str, JSONValue] = {"name": name}
                if version:
                    row["version"] = str(version)
                row["state"] = state
                reason = entry.failures.get(version, "") if model is None else model.reason
                if reason:
                    row["reason"] = reason
                rows.append(row)
        return rows


#: C's ``strtol`` digits: leading whitespace, a sign, decimal digits (what follows is ignored).
_STOL = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def version_number(text: str) -> int:
    """A requested version string read as Triton reads it (``std::stol``: "1x" and " 1" are 1).

    Raises:
        InvalidArgumentError: no number, one beyond 64 bits, or a negative one (Triton's words).
    """
    if len(text) < 19 and text.isascii() and text.isdigit():  # the usual case, on a request's path
        return int(text)
    match = _STOL.match(text)
    number = int(match.group(1)) if match is not None else None
    if number is None or not -(2**63) <= number < 2**63:
        raise InvalidArgumentError(
            f"failed to get model version from specified version string '{text}' (details: stol), "
            "version should be an integral value > 0"
        )
    if number < 0:
        raise InvalidArgumentError(
            f"invalid model version specified '{text}' , version should be an integral value > 0"
        )
    return number


def _deps(entry: ModelEntry) -> list[str]:
    """The models an ensemble's steps name."""
    assert entry.config is not None
    return sorted({step.model_name for step in entry.config.ensemble_scheduling.step})


def _refused(request: InferenceRequest, error: TritonError) -> InternalError:
    """A BLS request refused before it ran, as Triton's Python backend reports it (always INTERNAL)."""
    return InternalError(f"Model {request.model_name} - Error when running inference: {error.message}")


def _copy_outcome(
    result: concurrent.futures.Future[InferenceResponse], future: asyncio.Future[InferenceResponse]
) -> None:
    if result.done():
        return
    if future.cancelled():
        result.cancel()
    elif (error := future.exception()) is not None:
        result.set_exception(error)
    else:
        result.set_result(future.result())


def _overridden(
    location: ModelLocation, config_json: str | None, files: dict[str, bytes]
) -> tuple[tempfile.TemporaryDirectory[str], ModelLocation]:
    """A copy of the model directory with the load request's overrides applied.

    Raises:
        ModelConfigError: the config JSON does not parse, or a file name is not ``file:<path>``.
    """
    from google.protobuf import text_format

    workdir = tempfile.TemporaryDirectory(prefix=f"airtower-{location.name}-")
    try:
        model_dir = Path(workdir.name) / location.name
        shutil.copytree(location.model_dir, model_dir)
        if config_json is not None:
            config = config_from_json(config_json)
            (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
        for key, content in files.items():
            relative = Path(key.removeprefix("file:"))
            if not key.startswith("file:") or relative.is_absolute() or ".." in relative.parts:
                raise ModelConfigError(f"unexpected file override '{key}'")
            target = model_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    except BaseException:
        workdir.cleanup()
        raise
    return workdir, ModelLocation(location.name, Path(workdir.name), model_dir)


class _ThreadsafeControl:
    """``ModelControl`` for backends: the manager's model control, from instance threads."""

    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager

    def load(self, name: str, config: str | None, files: dict[str, bytes]) -> None:
        self._explicit_only()
        self._run(self._manager.load(name, config, files))

    def unload(self, name: str, unload_dependents: bool) -> None:
        self._explicit_only()
        self._run(self._manager.unload(name, unload_dependents))

    def is_ready(self, name: str, version: str) -> bool:
        try:
            return self._manager.get(name, version).state is _READY
        except TritonError:
            return False

    def _explicit_only(self) -> None:
        if self._manager.options.model_control_mode != "explicit":
            raise UnavailableError("explicit model load / unload is not allowed if polling is enabled")

    def _run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        loop = self._manager._loop
        assert loop is not None
        asyncio.run_coroutine_threadsafe(coroutine, loop).result()
