"""config.pbtxt → complete, normalised, validated ModelConfig, following Triton core.

The steps mirror core ``model_config_utils.cc`` and ``backend_model.cc``:

``repository_model_config`` (Triton's repository poll; an error: the model is never created):

1. read ``configs/<config_name>.pbtxt`` or ``config.pbtxt`` (none at all only with auto-complete);
2. name defaults to the directory name and must equal it;
3. ``AutoCompleteBackendFields``: platform ↔ backend and ``default_model_filename`` (this runs even
   with auto-complete disabled, as in Triton);
4. ``NormalizeModelConfig`` then ``ValidateModelConfig`` (Triton's repository-poll checks).

``complete_model_config`` (Triton's model creation; an error fails each version of the model):

5. the backend's ``auto_complete_config`` (when enabled), then normalisation again;
6. ``NormalizeInstanceGroup`` / ``ValidateInstanceGroup`` and ``ValidateModelIOConfig``.

Errors are ``ModelConfigError`` with Triton's wording; the model (or each version) becomes
UNAVAILABLE with it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as pb

from airtower.backends.base import ModelContext
from airtower.backends.registry import BACKEND_BY_PLATFORM, PLATFORM_BY_BACKEND, get_backend
from airtower.core.cuda import DEFAULT_MIN_COMPUTE_CAPABILITY
from airtower.core.model_config import (
    SEQUENCE_IDLE_DEFAULT_MICROSECONDS,
    ModelConfig,
    parse_config_text,
    parse_default_max_batch_size,
)
from airtower.errors import ModelConfigError, TritonError
from airtower.repository.layout import ModelLocation, available_versions

logger = logging.getLogger(__name__)

ENSEMBLE_PLATFORM = "ensemble"
TENSORRT_PLATFORM = "tensorrt_plan"

#: Model file (or directory) name each backend loads from a version directory (core constants.h).
DEFAULT_MODEL_FILENAME_BY_BACKEND: dict[str, str] = {
    "onnxruntime": "model.onnx",
    "python": "model.py",
    "pytorch": "model.pt",
    "tensorrt": "model.plan",
    "tensorflow": "model.savedmodel",
    "openvino": "model.xml",
    "dali": "model.dali",
}
#: Platforms whose model file differs from their backend's default.
DEFAULT_MODEL_FILENAME_BY_PLATFORM: dict[str, str] = {
    "tensorflow_graphdef": "model.graphdef",
    "torch_aoti": "model.pt2",
}

#: Files that identify a backend in a version directory, in Triton's order of preference:
#: (file name, required kind: "file" | "dir" | "any", backend, platform it implies or "").
_MODEL_FILE_RULES: tuple[tuple[str, str, str, str], ...] = (
    ("model.savedmodel", "dir", "tensorflow", "tensorflow_savedmodel"),
    ("model.graphdef", "file", "tensorflow", "tensorflow_graphdef"),
    ("model.plan", "file", "tensorrt", "tensorrt_plan"),
    ("model.onnx", "any", "onnxruntime", "onnxruntime_onnx"),
    ("model.xml", "any", "openvino", ""),
    ("model.pt", "file", "pytorch", "pytorch_libtorch"),
    ("model.pt2", "file", "pytorch", "torch_aoti"),
    ("model.py", "any", "python", ""),
)

#: Backends whose KIND_CPU instance groups default to two instances (core SetDefaultInstanceCount).
_TWO_CPU_INSTANCE_BACKENDS = frozenset({"tensorflow", "onnxruntime"})

BackendConfig = Callable[[str], dict[str, str]]


def load_model_config(
    location: ModelLocation,
    *,
    config_name: str = "",
    auto_complete: bool = True,
    backend_config: BackendConfig = lambda backend: {},
    gpus: Collection[int] = (),
    min_compute_capability: float = DEFAULT_MIN_COMPUTE_CAPABILITY,
) -> ModelConfig:
    """The complete configuration of the model at ``location``, as Triton would serve it: steps
    1-4 (``repository_model_config``) then 5-6 (``complete_model_config``).

    Args:
        location: the model directory.
        config_name: ``--model-config-name``; ``configs/<name>.pbtxt`` wins when it exists.
        auto_complete: ``not --disable-auto-complete-config``; lets the backend fill the config.
        backend_config: ``--backend-config`` settings by backend name ("" = global ones).
        gpus: ids of the GPUs the server may use (``core.cuda.supported_gpus``); KIND_AUTO groups
            become KIND_GPU when there is one.
        min_compute_capability: ``--min-supported-compute-capability``, quoted in GPU id errors.

    Raises:
        ModelConfigError: the configuration is missing, malformed or invalid.
        TritonError: from the backend's ``auto_complete_config`` (or an unknown backend).
    """
    config = repository_model_config(location, config_name=config_name, auto_complete=auto_complete)
    complete_model_config(
        config,
        location,
        auto_complete=auto_complete,
        backend_config=backend_config,
        gpus=gpus,
        min_compute_capability=min_compute_capability,
    )
    return config


def repository_model_config(
    location: ModelLocation, *, config_name: str = "", auto_complete: bool = True
) -> ModelConfig:
    """Steps 1-4: the configuration as Triton reads it when it polls the repository. An error here
    means Triton never creates the model ("failed to poll from model repository").

    Raises:
        ModelConfigError: the configuration is missing, malformed or invalid.
    """
    config = read_model_config(location, config_name=config_name, auto_complete=auto_complete)
    if not config.name:
        config.name = location.name
    if config.name != location.name:
        raise ModelConfigError(
            f"unexpected directory name '{location.name}' for model '{config.name}', "
            "directory name must equal model name"
        )
    versions = available_versions(location.model_dir)
    latest = versions[-1] if versions else 0
    resolve_backend(config, location.model_dir / str(latest) if versions else None)
    normalize_model_config(config)
    validate_model_config(config)
    return config


def complete_model_config(
    config: ModelConfig,
    location: ModelLocation,
    *,
    auto_complete: bool = True,
    backend_config: BackendConfig = lambda backend: {},
    gpus: Collection[int] = (),
    min_compute_capability: float = DEFAULT_MIN_COMPUTE_CAPABILITY,
) -> None:
    """Steps 5-6, in place: what Triton does when it creates the model from the repository's
    configuration (the backend's auto-complete, instance groups, inputs and outputs). An error here
    fails each version of the model, with the error as its reason.

    Raises:
        ModelConfigError: the completed configuration is invalid.
        TritonError: from the backend's ``auto_complete_config`` (or an unknown backend).
    """
    if auto_complete and config.backend:
        versions = available_versions(location.model_dir)
        settings = backend_settings(config.backend, backend_config)
        ctx = ModelContext(
            location.name, location.model_dir, location.repository, settings, version=versions[-1] if versions else 0
        )
        get_backend(config.backend).auto_complete_config(config, ctx)
        normalize_model_config(config)
    preferred = None
    if config.backend:
        with contextlib.suppress(TritonError):  # a backend airtower lacks: loading the model says so
            preferred = get_backend(config.backend).preferred_instance_kind
    normalize_instance_groups(config, gpus, preferred)
    validate_instance_groups(config, gpus, min_compute_capability)
    validate_io(config)


def read_model_config(location: ModelLocation, *, config_name: str = "", auto_complete: bool = True) -> ModelConfig:
    """The configuration file as written (empty when there is none and auto-complete is on)."""
    path = location.model_dir / "config.pbtxt"
    if config_name:
        custom = location.model_dir / "configs" / f"{config_name}.pbtxt"
        if custom.is_file():
            path = custom
    if not path.is_file():
        if auto_complete:
            return ModelConfig()
        raise ModelConfigError(f"failed to open text file for read {path}: No such file or directory")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"failed to open text file for read {path}: {exc}") from exc
    return parse_config_text(text, str(path))


def backend_settings(backend: str, backend_config: BackendConfig) -> dict[str, str]:
    """The global ``--backend-config`` settings overlaid with ``backend``'s own.

    ``default-max-batch-size`` is always present (Triton's default 4) and validated here.
    """
    settings = {"default-max-batch-size": "4", **backend_config(""), **backend_config(backend)}
    parse_default_max_batch_size(settings)
    return settings


def model_file_path(location: ModelLocation, config: ModelConfig, version: int) -> Path:
    """``<model_dir>/<version>/<default_model_filename or the backend's default file name>``."""
    filename = config.default_model_filename or _default_filename(config.backend, config.platform)
    return location.model_dir / str(version) / filename


def _default_filename(backend: str, platform: str) -> str:
    return DEFAULT_MODEL_FILENAME_BY_PLATFORM.get(platform) or DEFAULT_MODEL_FILENAME_BY_BACKEND.get(backend, "")


def _has_model_file(version_dir: Path, filename: str, kind: str) -> bool:
    path = version_dir / filename
    if kind == "file":
        return path.is_file()
    if kind == "dir":
        return path.is_dir()
    return path.exists()


def resolve_backend(config: ModelConfig, version_dir: Path | None) -> None:
    """Fill ``backend``, ``platform`` and ``default_model_filename`` (core AutoCompleteBackendFields).

    ``version_dir`` is the version directory whose files identify the backend when the config
    names neither backend, platform nor model file (Triton looks at the first one; we look at the
    latest). Ensembles are left alone.

    Raises:
        ModelConfigError: nothing identifies the backend and the model name is not ``<x>.<backend>``.
    """
    if config.platform == ENSEMBLE_PLATFORM:
        return
    if not config.backend:
        inferred_platform = ""
        if config.platform:
            config.backend = BACKEND_BY_PLATFORM.get(config.platform, "")
        elif config.default_model_filename:
            for filename, _, backend, platform in _MODEL_FILE_RULES:
                if filename == config.default_model_filename:
                    config.backend, inferred_platform = backend, platform
                    break
        elif version_dir is not None:
            for filename, kind, backend, platform in _MODEL_FILE_RULES:
                if _has_model_file(version_dir, filename, kind):
                    config.backend, inferred_platform = backend, platform
                    break
        if not config.platform and inferred_platform:
            config.platform = inferred_platform
    if not config.backend:
        if not config.platform and not config.default_model_filename:
            _resolve_custom_backend(config)
        return
    if not config.platform:
        config.platform = PLATFORM_BY_BACKEND.get(config.backend, "")
    if not config.default_model_filename:
        config.default_model_filename = _default_filename(config.backend, config.platform)


def _resolve_custom_backend(config: ModelConfig) -> None:
    """A model called ``<x>.<backend>`` runs on ``<backend>`` from file ``model.<backend>``."""
    _, dot, backend = config.name.partition(".")
    if not dot:
        raise ModelConfigError(
            f"Invalid model name: Could not determine backend for model '{config.name}' with no backend in "
            "model configuration. Expected model name of the form 'model.<backend_name>'."
        )
    config.backend = backend
    config.default_model_filename = f"model.{backend}"


def normalize_model_config(config: ModelConfig) -> None:
    """Server defaults visible in the config endpoint (core NormalizeModelConfig); idempotent."""
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    if config.HasField("dynamic_batching"):
        batching = config.dynamic_batching
        if not batching.preferred_batch_size and config.max_batch_size > 0:
            batching.preferred_batch_size.append(config.max_batch_size)
    if config.HasField("sequence_batching"):
        sequence = config.sequence_batching
        if sequence.max_sequence_idle_microseconds == 0:
            sequence.max_sequence_idle_microseconds = SEQUENCE_IDLE_DEFAULT_MICROSECONDS
        if sequence.HasField("oldest") and not sequence.oldest.preferred_batch_size and config.max_batch_size > 0:
            sequence.oldest.preferred_batch_size.append(config.max_batch_size)
    if not config.HasField("ensemble_scheduling"):
        optimization = config.optimization
        if not optimization.HasField("input_pinned_memory"):
            optimization.input_pinned_memory.enable = True
        if not optimization.HasField("output_pinned_memory"):
            optimization.output_pinned_memory.enable = True


def normalize_instance_groups(
    config: ModelConfig, gpus: Collection[int] = (), preferred_kind: int | None = None
) -> None:
    """Default instance groups, names, kinds, counts and GPUs (core NormalizeInstanceGroup).

    Without groups the model gets one named ``<model>``, of the backend's ``preferred_kind`` (a
    preferred KIND_GPU only where there is a GPU); unnamed groups become ``<model>_<index>``.
    KIND_AUTO becomes KIND_GPU when every listed GPU exists (and there is one), else KIND_CPU.
    """
    if config.HasField("ensemble_scheduling"):
        return
    if not config.instance_group:
        group = config.instance_group.add(name=config.name)
        if preferred_kind is not None and (preferred_kind != pb.ModelInstanceGroup.KIND_GPU or gpus):
            group.kind = preferred_kind
    for index, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{index}"
        if group.kind == pb.ModelInstanceGroup.KIND_AUTO:
            usable = bool(gpus) and all(gpu in gpus for gpu in group.gpus)
            group.kind = pb.ModelInstanceGroup.KIND_GPU if usable else pb.ModelInstanceGroup.KIND_CPU
        if group.count < 1:
            two = group.kind == pb.ModelInstanceGroup.KIND_CPU and config.backend in _TWO_CPU_INSTANCE_BACKENDS
            group.count = 2 if two else 1
        if group.kind == pb.ModelInstanceGroup.KIND_GPU and not group.gpus:
            group.gpus.extend(sorted(gpus))


def validate_instance_groups(
    config: ModelConfig, gpus: Collection[int] = (), min_compute_capability: float = DEFAULT_MIN_COMPUTE_CAPABILITY
) -> None:
    """core ValidateInstanceGroup."""
    if config.HasField("ensemble_scheduling"):
        return
    if not config.instance_group:
        raise ModelConfigError(f"must specify one or more 'instance group's for {config.name}")
    for group in config.instance_group:
        prefix = f"instance group {group.name} of model {config.name}"
        if group.kind == pb.ModelInstanceGroup.KIND_MODEL:
            if group.gpus:
                raise ModelConfigError(f"{prefix} has kind KIND_MODEL but specifies one or more GPUs")
        elif group.kind == pb.ModelInstanceGroup.KIND_GPU:
            _validate_gpus(prefix, group.gpus, gpus, min_compute_capability)
        elif group.kind == pb.ModelInstanceGroup.KIND_CPU:
            if group.gpus:
                raise ModelConfigError(f"{prefix} has kind KIND_CPU but specifies one or more GPUs")
        else:
            raise ModelConfigError(f"{prefix} has unexpected kind KIND_AUTO")
        if group.profile and config.platform != TENSORRT_PLATFORM:
            raise ModelConfigError(
                f"{prefix} and platform {config.platform}specifies profile field which is only supported for "
                "TensorRT models"
            )


def _validate_gpus(prefix: str, listed: Iterable[int], gpus: Collection[int], min_compute_capability: float) -> None:
    listed = list(listed)
    if not listed:
        if not gpus:
            raise ModelConfigError(f"{prefix} has kind KIND_GPU but no GPUs are available")
        raise ModelConfigError(f"{prefix} has kind KIND_GPU but specifies no GPUs")
    for gpu in listed:
        if gpu not in gpus:
            supported = ", ".join(str(g) for g in sorted(gpus))
            raise ModelConfigError(
                f"{prefix} specifies invalid or unsupported gpu id {gpu}. GPUs with at least the minimum required "
                f"CUDA compute compatibility of {min_compute_capability:.6f} are: {supported}"
            )


def validate_model_config(config: ModelConfig) -> None:
    """The checks Triton makes when it reads a model's config (core ValidateModelConfig)."""
    name = config.name
    if not name:
        raise ModelConfigError("model configuration must specify 'name'")
    if not config.backend:
        if config.platform != ENSEMBLE_PLATFORM:
            raise ModelConfigError(f"unexpected platform type '{config.platform}' for {name}")
    elif config.platform == ENSEMBLE_PLATFORM:
        raise ModelConfigError(
            f"Ensemble model '{name}' must have platform type '{config.platform}' and empty backend type"
        )
    if config.backend in PLATFORM_BY_BACKEND and BACKEND_BY_PLATFORM.get(config.platform) != config.backend:
        raise ModelConfigError(f"unexpected 'platform' and 'backend' pair, got:{config.platform}, {config.backend}")
    if config.max_batch_size < 0:
        raise ModelConfigError(f"'max_batch_size' must be non-negative value for {name}")
    if not config.HasField("version_policy"):
        raise ModelConfigError(f"must specify 'version policy' for {name}")
    if config.HasField("dynamic_batching"):
        _validate_dynamic_batching(config)
    if config.HasField("sequence_batching"):
        _validate_sequence_batching(config)
    if config.HasField("ensemble_scheduling"):
        _validate_ensemble(config)
    elif config.platform == ENSEMBLE_PLATFORM:
        raise ModelConfigError(
            f"ensemble scheduling must be set for ensemble {name} whose platform is {ENSEMBLE_PLATFORM}"
        )
    if config.model_transaction_policy.decoupled and config.response_cache.enable:
        raise ModelConfigError(
            f"Response Cache does not currently support model {name} with 'decoupled' transaction policy. "
            "Please disable the response cache."
        )
    _validate_model_metrics(config)


def _validate_dynamic_batching(config: ModelConfig) -> None:
    name, batching = config.name, config.dynamic_batching
    for size in batching.preferred_batch_size:
        if size <= 0:
            raise ModelConfigError(f"dynamic batching preferred size must be positive for {name}")
        if size > config.max_batch_size:
            raise ModelConfigError(f"dynamic batching preferred size must be <= max batch size for {name}")
    levels = batching.priority_levels
    if levels != 0:
        if not 1 <= batching.default_priority_level <= levels:
            raise ModelConfigError(f"default priority level must be in range [1, {levels}] for {name}")
        for level in batching.priority_queue_policy:
            if not 1 <= level <= levels:
                raise ModelConfigError(
                    f"priority queue policy must have priority level in range [1, {levels}] for {name}"
                )
    if batching.preserve_ordering:
        if levels > 1:
            raise ModelConfigError(f"Only one priority level is allowed when 'preserve_ordering' is true for {name}")
        policies = [batching.default_queue_policy, *batching.priority_queue_policy.values()]
        for policy in policies:
            if policy.default_timeout_microseconds != 0 and policy.timeout_action == pb.ModelQueuePolicy.DELAY:
                raise ModelConfigError(
                    f"Queue policy can not have DELAY as timeout action when 'preserve_ordering' is true for {name}"
                )


_BOOLEAN_CONTROLS = ("CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_END", "CONTROL_SEQUENCE_READY")
_CORRID_TYPES = frozenset({pb.TYPE_UINT64, pb.TYPE_INT64, pb.TYPE_UINT32, pb.TYPE_INT32, pb.TYPE_STRING})


def _validate_sequence_batching(config: ModelConfig) -> None:
    name, sequence = config.name, config.sequence_batching
    if config.response_cache.enable:
        raise ModelConfigError(
            f"Response Cache does not currently support model {name} with sequence batching scheduler. "
            "Please disable the response cache."
        )
    seen: set[str] = set()
    for control_input in sequence.control_input:
        if not control_input.name:
            raise ModelConfigError(f"sequence batching control tensor must have a name for {name}")
        if control_input.name in seen:
            raise ModelConfigError(
                f"sequence batching control tensor '{control_input.name}' is specified for multiple control kinds "
                f"for {name}"
            )
        seen.add(control_input.name)
    for kind_name in (*_BOOLEAN_CONTROLS, "CONTROL_SEQUENCE_CORRID"):
        _validate_control_kind(config, kind_name)
    if sequence.HasField("oldest"):
        for size in sequence.oldest.preferred_batch_size:
            if size <= 0:
                raise ModelConfigError(f"sequence batching preferred batch size must be positive for {name}")
            if size > config.max_batch_size:
                raise ModelConfigError(f"sequence batching preferred batch size must be <= max batch size for {name}")
    if sequence.HasField("direct") and not 0.0 <= sequence.direct.minimum_slot_utilization <= 1.0:
        raise ModelConfigError(f"sequence batching minimum slot utilization must be in range (0.0, 1.0] for {name}")


def _validate_control_kind(config: ModelConfig, kind_name: str) -> None:
    name = config.name
    kind = pb.ModelSequenceBatching.Control.Kind.Value(kind_name)
    controls = [c for ci in config.sequence_batching.control_input for c in ci.control if c.kind == kind]
    if len(controls) > 1:
        raise ModelConfigError(f"sequence batching specifies multiple {kind_name} tensors for {name}")
    if not controls:
        return
    control = controls[0]
    given = [
        (field, len(values))
        for field, values in (
            ("int32_false_true", control.int32_false_true),
            ("fp32_false_true", control.fp32_false_true),
            ("bool_false_true", control.bool_false_true),
        )
        if values
    ]
    if kind_name == "CONTROL_SEQUENCE_CORRID":
        if given:
            raise ModelConfigError(
                "sequence batching must not specify either 'int32_false_true', 'fp32_false_true' or "
                f"'bool_false_true' for {kind_name} for {name}"
            )
        if control.data_type not in _CORRID_TYPES:
            raise ModelConfigError(
                f"unexpected data type for control {kind_name} for {name}. Allowed data types are TYPE_UINT64, "
                "TYPE_INT64, TYPE_UINT32, TYPE_INT32 and TYPE_STRING"
            )
        return
    if not given:
        raise ModelConfigError(
            "sequence batching must specify either 'int32_false_true', 'fp32_false_true' or 'bool_false_true' "
            f"for {kind_name} for {name}"
        )
    if len(given) > 1:
        raise ModelConfigError(
            "sequence batching specifies more than one from 'int32_false_true', 'fp32_false_true' and "
            f"'bool_false_true' for {kind_name} for {name}"
        )
    field, count = given[0]
    if count != 2:
        raise ModelConfigError(
            f"sequence batching control '{field}' must have exactly 2 entries for {kind_name} for {name}"
        )


def _validate_ensemble(config: ModelConfig) -> None:
    """The structural part of core ValidateEnsembleSchedulingConfig (the data-flow graph check is
    left to the ensemble scheduler, which builds that graph anyway)."""
    name = config.name
    if config.platform != ENSEMBLE_PLATFORM:
        raise ModelConfigError(
            f"ensemble scheduling cannot be set for model '{name}' whose platform is not {ENSEMBLE_PLATFORM}"
        )
    if config.instance_group:
        raise ModelConfigError(f"instance group should not be specified for ensemble '{name}'")
    if config.HasField("optimization"):
        raise ModelConfigError(f"optimization should not be specified for ensemble '{name}'")
    if config.model_warmup:
        raise ModelConfigError(f"model_warmup can not be specified for ensemble '{name}'")
    steps = config.ensemble_scheduling.step
    if not steps:
        raise ModelConfigError(f"must specify 'step' for ensemble '{name}'")
    for index, step in enumerate(steps):
        for field in ("model_name", "input_map", "output_map"):
            if not getattr(step, field):
                raise ModelConfigError(f"must specify '{field}' in step {index} of ensemble '{name}'")


def _validate_model_metrics(config: ModelConfig) -> None:
    for control in config.model_metrics.metric_control:
        if not control.HasField("metric_identifier"):
            raise ModelConfigError("metric control must specify 'metric_identifier'")
        if not control.metric_identifier.family:
            raise ModelConfigError("metric identifier must specify non-empty 'family'")
        if not control.HasField("histogram_options"):
            raise ModelConfigError("metric control must specify 'histogram_options'")
        if not control.histogram_options.buckets:
            raise ModelConfigError("histogram options must specify non-empty 'buckets'")


def validate_io(config: ModelConfig) -> None:
    """core ValidateModelIOConfig: every input/output, then batch inputs/outputs."""
    for model_input in config.input:
        _validate_io_shape(config, model_input, "model input ")
        if model_input.format in (pb.ModelInput.FORMAT_NHWC, pb.ModelInput.FORMAT_NCHW) and len(model_input.dims) != 3:
            raise ModelConfigError(f"model input NHWC/NCHW require 3 dims for {config.name}")
        _validate_trt_only_io(config, model_input, "input")
    for model_output in config.output:
        _validate_io_shape(config, model_output, "model output ")
        _validate_trt_only_io(config, model_output, "output")
    _validate_batch_io(config)


def _validate_trt_only_io(config: ModelConfig, io: pb.ModelInput | pb.ModelOutput, direction: str) -> None:
    if config.platform == TENSORRT_PLATFORM:
        if io.is_non_linear_format_io and len(io.dims) != 3:
            raise ModelConfigError(f"Non-linear IO format {direction} requires 3 dims for {config.name}")
        return
    if io.is_shape_tensor:
        raise ModelConfigError(f"shape tensors are only supported for TensorRT platform for {config.name}")
    if io.is_non_linear_format_io:
        raise ModelConfigError(f"Non-linear IO format is only supported for the TensorRT platform for {config.name}")


def _validate_io_shape(config: ModelConfig, io: pb.ModelInput | pb.ModelOutput, prefix: str) -> None:
    suffix = f" for {config.name}"
    if not io.name:
        raise ModelConfigError(f"{prefix}must specify 'name'{suffix}")
    where = f"{prefix}'{io.name}' "
    if io.data_type == pb.TYPE_INVALID:
        raise ModelConfigError(f"{where}must specify 'data_type'{suffix}")
    if not io.dims:
        raise ModelConfigError(f"{where}must specify 'dims'{suffix}")
    has_reshape = io.HasField("reshape")
    if has_reshape and not io.reshape.shape and config.max_batch_size == 0:
        raise ModelConfigError(
            f"{where}cannot have empty reshape for non-batching model as scalar tensors are not supported{suffix}"
        )
    if any(dim < 1 and dim != -1 for dim in io.dims):
        raise ModelConfigError(
            f"{where}dimension must be integer >= 1, or -1 to indicate a variable-size dimension{suffix}"
        )
    if has_reshape:
        _validate_reshape(list(io.dims), list(io.reshape.shape), where, suffix)


def _validate_reshape(dims: list[int], shape: list[int], where: str, suffix: str) -> None:
    if any(dim < 1 and dim != -1 for dim in shape):
        raise ModelConfigError(
            f"{where}reshape dimensions must be integer >= 1, or -1 to indicate a variable-size dimension{suffix}"
        )
    dims_size, shape_size = _element_count(dims), _element_count(shape)
    # An empty reshape (scalar per batch item) matches dims with exactly one element.
    if dims_size != shape_size and (shape_size != 0 or dims_size != 1):
        raise ModelConfigError(f"{where}has different size for dims and reshape{suffix}")
    if dims_size == -1 and _chunk_counts(dims) != _chunk_counts(shape):
        if len(_chunk_counts(dims)) != len(_chunk_counts(shape)):
            raise ModelConfigError(
                f"{where}has different number of variable-size dimensions for dims and reshape{suffix}"
            )
        raise ModelConfigError(f"{where}has different size for dims and reshape{suffix}")


def _element_count(dims: list[int]) -> int:
    """Triton's GetElementCount: -1 when any dimension is variable, 0 for an empty shape."""
    if not dims:
        return 0
    count = 1
    for dim in dims:
        if dim == -1:
            return -1
        count *= dim
    return count


def _chunk_counts(dims: list[int]) -> list[int]:
    """Element counts of the runs between variable-size dimensions ([2, 4, -1, 6] → [8, 6])."""
    counts, current = [], 1
    for dim in dims:
        if dim == -1:
            counts.append(current)
            current = 1
        else:
            current *= dim
    counts.append(current)
    return counts


def _validate_batch_io(config: ModelConfig) -> None:
    suffix = f" for {config.name}"
    inputs = {model_input.name for model_input in config.input}
    outputs = {model_output.name for model_output in config.output}
    for batch_input in config.batch_input:
        kind = pb.BatchInput.Kind.Name(batch_input.kind)
        if len(batch_input.source_input) != 1:
            raise ModelConfigError(
                f"batch input kind '{kind}' expects 1 source input, got {len(batch_input.source_input)}{suffix}"
            )
        if batch_input.data_type not in (pb.TYPE_INT32, pb.TYPE_FP32):
            raise ModelConfigError(f"batch input data type must be TYPE_INT32 or TYPE_FP32{suffix}")
        _check_sources(batch_input.source_input, inputs, suffix)
    for batch_output in config.batch_output:
        kind = pb.BatchOutput.Kind.Name(batch_output.kind)
        if len(batch_output.source_input) != 1:
            raise ModelConfigError(
                f"batch output kind '{kind}' expects 1 source input, got {len(batch_output.source_input)}{suffix}"
            )
        _check_sources(batch_output.source_input, inputs, suffix)
        targets: set[str] = set()
        for target in batch_output.target_name:
            if target not in outputs:
                raise ModelConfigError(f"unknown target output name '{target}'{suffix}")
            if target in targets:
                raise ModelConfigError(f"target output name '{target}' can only be specified once{suffix}")
            targets.add(target)


def _check_sources(sources: Iterable[str], inputs: set[str], suffix: str) -> None:
    for source in sources:
        if source not in inputs:
            raise ModelConfigError(f"unknown source input name '{source}'{suffix}")
