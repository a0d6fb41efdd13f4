"""ONNX Runtime backend: one ``InferenceSession`` per instance, Triton's onnxruntime_backend semantics.

Behaviour follows triton-inference-server/onnxruntime_backend (src/onnxruntime.cc): the same
config parameters (``intra_op_thread_count``, ``execution_mode``, ``enable_mem_arena``...), the same
``optimization.graph.level`` mapping, the same auto-complete rules and load-time checks, with
Triton's error wording. ORT exceptions are translated by :func:`map_backend_errors` where they enter.

Imports onnxruntime at module top: ``backends/registry.py`` imports this module lazily, so a
missing onnxruntime is reported there, naming the pip extra.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
from tritonclient.grpc import model_config_pb2

from airtower.backends.base import InstanceSpec, ModelContext
from airtower.core.batch_input import BatchInputSpec, concatenate_ragged, scatter_with_input_shape
from airtower.core.model_config import ModelConfig, parse_default_max_batch_size
from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse
from airtower.core.tensor import Tensor
from airtower.errors import (
    InternalError,
    InvalidArgumentError,
    ModelConfigError,
    TritonError,
    UnavailableError,
    UnsupportedError,
)
from airtower.types import config_to_wire

logger = logging.getLogger(__name__)

DEFAULT_MODEL_FILENAME = "model.onnx"

#: ORT type strings → config datatypes (onnxruntime_utils.cc ConvertFromOnnxDataType).
CONFIG_TYPE_BY_ORT_TYPE: dict[str, str] = {
    "tensor(bool)": "TYPE_BOOL",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(uint16)": "TYPE_UINT16",
    "tensor(uint32)": "TYPE_UINT32",
    "tensor(uint64)": "TYPE_UINT64",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(float16)": "TYPE_FP16",
    "tensor(float)": "TYPE_FP32",
    "tensor(double)": "TYPE_FP64",
    "tensor(string)": "TYPE_STRING",
    "tensor(bfloat16)": "TYPE_BF16",
}

#: ``optimization { graph { level } }`` → ORT level; anything else keeps ORT_ENABLE_ALL.
GRAPH_LEVEL_BY_CONFIG: dict[int, ort.GraphOptimizationLevel] = {
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}

#: ORT Python exception types → airtower errors; INVALID_ARGUMENT is the client's fault.
_ERROR_BY_ORT_EXCEPTION: tuple[tuple[type[Exception], type[TritonError]], ...] = (
    (ort_state.InvalidArgument, InvalidArgumentError),
    (ort_state.NotImplemented, UnsupportedError),
    (ort_state.InvalidProtobuf, InvalidArgumentError),
    (ort_state.InvalidGraph, InvalidArgumentError),
)

_ONNX_BFLOAT16 = 16  # onnx.TensorProto.BFLOAT16, without importing onnx
_CUDA_PROVIDER = "CUDAExecutionProvider"
_CPU_PROVIDER = "CPUExecutionProvider"
#: Model parameters forwarded to the CUDA execution provider (onnxruntime_backend's deprecated keys).
_CUDA_PARAMETERS = ("cudnn_conv_algo_search", "gpu_mem_limit", "arena_extend_strategy", "do_copy_in_default_stream")
_ARENA_EXTEND_STRATEGY = {"0": "kNextPowerOfTwo", "1": "kSameAsRequested"}
_CUDNN_CONV_ALGO_SEARCH = {"0": "EXHAUSTIVE", "1": "HEURISTIC", "2": "DEFAULT"}
_EXECUTION_PROVIDER_BY_ACCELERATOR = {
    "cuda": _CUDA_PROVIDER,
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


@contextmanager
def map_backend_errors(model_name: str) -> Iterator[None]:
    """Translate exceptions raised by onnxruntime into airtower errors naming ``model_name``.

    ``TritonError`` passes through; ORT's INVALID_ARGUMENT (and the binding's ``ValueError`` /
    ``TypeError`` for a bad feed) become ``InvalidArgumentError``; anything else ``InternalError``.
    """
    try:
        yield
    except TritonError:
        raise
    except Exception as exc:
        message = f"onnxruntime error for model '{model_name}': {exc}"
        for ort_type, error_type in _ERROR_BY_ORT_EXCEPTION:
            if isinstance(exc, ort_type):
                raise error_type(message) from exc
        if isinstance(exc, ValueError | TypeError):
            raise InvalidArgumentError(message) from exc
        raise InternalError(message) from exc


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One input or output as the ONNX model declares it; ``dims`` uses -1 for symbolic dims."""

    name: str
    data_type: str  # "TYPE_FP32"...
    dims: tuple[int, ...]


def read_model_signature(path: Path, model_name: str) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """The model's (inputs, outputs), read through a throw-away CPU session.

    Raises:
        UnsupportedError: a tensor has a type Triton cannot describe (sequence, map, complex...).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    with map_backend_errors(model_name):
        session = ort.InferenceSession(str(path), sess_options=options, providers=[_CPU_PROVIDER])
        inputs = [_tensor_info(arg, model_name) for arg in session.get_inputs()]
        outputs = [_tensor_info(arg, model_name) for arg in session.get_outputs()]
    return inputs, outputs


def _tensor_info(arg: Any, model_name: str) -> TensorInfo:
    data_type = CONFIG_TYPE_BY_ORT_TYPE.get(arg.type)
    if data_type is None:
        raise UnsupportedError(f"unsupported type {arg.type} of tensor '{arg.name}' for model '{model_name}'")
    dims = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorInfo(arg.name, data_type, dims)


def _model_path(config: ModelConfig, ctx: ModelContext) -> Path:
    path = ctx.version_dir / (config.default_model_filename or DEFAULT_MODEL_FILENAME)
    if not path.exists():
        raise UnavailableError(f"unable to find '{path}' for model '{ctx.name}'")
    return path


def _format_dims(dims: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


# --------------------------------------------------------------------------------------------
# Auto-complete (onnxruntime.cc ModelState::AutoCompleteConfig / AutoCompleteMaxBatch / IO)


def _is_complete(ios: Sequence[Any]) -> bool:
    return len(ios) > 0 and all(io.data_type != 0 and len(io.dims) > 0 for io in ios)


def _auto_complete_max_batch(
    config: ModelConfig, ctx: ModelContext, inputs: list[TensorInfo], outputs: list[TensorInfo]
) -> None:
    # Batching needs every input and output to have a variable first dimension.
    can_batch = all(len(t.dims) > 0 and t.dims[0] == -1 for t in (*inputs, *outputs))
    if not can_batch:
        if config.max_batch_size != 0:
            raise ModelConfigError(
                f"autofill failed for model '{ctx.name}': model does not support batching while "
                "non-zero max_batch_size is specified"
            )
        return
    if config.max_batch_size == 0:
        config.max_batch_size = parse_default_max_batch_size(ctx.backend_config)
        logger.warning(
            "autofilled max_batch_size to %d for model '%s' since batching is supported but no "
            "max_batch_size is specified in model configuration",
            config.max_batch_size,
            ctx.name,
        )
    # onnxruntime_backend turns on the dynamic batcher when it can batch and no scheduler is set.
    if config.max_batch_size > 1 and config.WhichOneof("scheduling_choice") is None:
        config.dynamic_batching.SetInParent()


def _fill_ios(config: ModelConfig, ctx: ModelContext, key: str, infos: list[TensorInfo]) -> None:
    ios = getattr(config, key)
    batching = config.max_batch_size > 0
    if len(ios) == 0:
        # Batch-input targets are fed by the server, never by clients: they stay out of config.input.
        generated = _server_fed_inputs(config) if key == "input" else set()
        for info in infos:
            if info.name in generated:
                continue
            io = ios.add(name=info.name, data_type=info.data_type)
            dims = info.dims[1:] if batching else info.dims
            if dims:
                io.dims.extend(dims)
            else:
                # A scalar (per batch item) is described as [1], reshaped to [] for batching models.
                io.dims.append(1)
                if batching:
                    io.reshape.SetInParent()
        return
    by_name = {info.name: info for info in infos}
    for io in ios:
        found = by_name.get(io.name)
        if found is not None:  # unknown names are reported at load, with the model's tensor names
            _fill_io(io, found, ctx, key, batching)


def _fill_io(io: Any, info: TensorInfo, ctx: ModelContext, key: str, batching: bool) -> None:
    if io.data_type == 0:
        io.data_type = model_config_pb2.DataType.Value(info.data_type)
    elif model_config_pb2.DataType.Name(io.data_type) != info.data_type:
        raise ModelConfigError(
            f"unable to load model '{ctx.name}', configuration expects datatype "
            f"{model_config_pb2.DataType.Name(io.data_type)} for {key} '{io.name}', model provides {info.data_type}"
        )
    if len(io.dims) == 0:
        dims = info.dims[1:] if batching and info.dims else info.dims
        io.dims.extend(dims or (1,))


# --------------------------------------------------------------------------------------------
# Session settings (onnxruntime.cc ModelState constructor and LoadModel)


def _parse_int_parameter(config: ModelConfig, key: str, default: int) -> int:
    if key not in config.parameters:
        return default
    value = config.parameters[key].string_value
    try:
        return int(value)
    except ValueError as exc:
        raise ModelConfigError(
            f"failed to convert '{key}' value '{value}' to integer for model '{config.name}'"
        ) from exc


def _parse_bool_parameter(config: ModelConfig, key: str) -> bool | None:
    if key not in config.parameters:
        return None
    value = config.parameters[key].string_value.strip().lower()
    if value in ("1", "true", "on", "yes"):
        return True
    if value in ("0", "false", "off", "no"):
        return False
    raise ModelConfigError(f"failed to convert '{key}' value '{value}' to boolean for model '{config.name}'")


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What a model's config says about its sessions; parsed once at load so bad values fail the load."""

    graph_level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    parallel_execution: bool = False
    enable_mem_arena: bool | None = None
    enable_mem_pattern: bool | None = None
    config_entries: dict[str, str] = field(default_factory=dict)
    run_config_entries: dict[str, str] = field(default_factory=dict)
    cuda_options: dict[str, str] = field(default_factory=dict)
    gpu_accelerators: tuple[tuple[str, dict[str, str]], ...] = ()
    cpu_accelerators: tuple[tuple[str, dict[str, str]], ...] = ()
    custom_op_libraries: tuple[str, ...] = ()
    share_session: bool = False

    @classmethod
    def from_config(cls, config: ModelConfig) -> SessionSettings:
        execution_mode = _parse_int_parameter(config, "execution_mode", 0)
        if execution_mode not in (0, 1):
            raise ModelConfigError(
                "Invalid configuration value provided. Expected values for execution_mode are 0 or 1 "
                f"but got {execution_mode} ."
            )
        config_entries = {}
        key = "session.use_device_allocator_for_initializers"
        if key in config.parameters:
            config_entries[key] = config.parameters[key].string_value
        run_entries = {}
        key = "memory.enable_memory_arena_shrinkage"
        if key in config.parameters:
            run_entries[key] = config.parameters[key].string_value
        accelerators = config.optimization.execution_accelerators
        return cls(
            graph_level=GRAPH_LEVEL_BY_CONFIG.get(
                config.optimization.graph.level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            ),
            intra_op_threads=_parse_int_parameter(config, "intra_op_thread_count", 0),
            inter_op_threads=_parse_int_parameter(config, "inter_op_thread_count", 0),
            parallel_execution=execution_mode == 1,
            enable_mem_arena=_parse_bool_parameter(config, "enable_mem_arena"),
            enable_mem_pattern=_parse_bool_parameter(config, "enable_mem_pattern"),
            config_entries=config_entries,
            run_config_entries=run_entries,
            cuda_options=_cuda_options(config),
            gpu_accelerators=tuple((a.name, dict(a.parameters)) for a in accelerators.gpu_execution_accelerator),
            cpu_accelerators=tuple((a.name, dict(a.parameters)) for a in accelerators.cpu_execution_accelerator),
            custom_op_libraries=tuple(config.model_operations.op_library_filename),
            share_session=bool(_parse_bool_parameter(config, "share_session_between_instances")),
        )

    def session_options(self, logid: str) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.logid = logid
        options.graph_optimization_level = self.graph_level
        options.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL if self.parallel_execution else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        if self.intra_op_threads > 0:
            options.intra_op_num_threads = self.intra_op_threads
        if self.inter_op_threads > 0:
            options.inter_op_num_threads = self.inter_op_threads
        if self.enable_mem_arena is not None:
            options.enable_cpu_mem_arena = self.enable_mem_arena
        if self.enable_mem_pattern is not None:
            options.enable_mem_pattern = self.enable_mem_pattern
        for key, value in self.config_entries.items():
            options.add_session_config_entry(key, value)
        for library in self.custom_op_libraries:
            options.register_custom_ops_library(library)
        return options

    def run_options(self) -> ort.RunOptions | None:
        if not self.run_config_entries:
            return None
        options = ort.RunOptions()
        for key, value in self.run_config_entries.items():
            options.add_run_config_entry(key, value)
        return options

    def providers(self, spec: InstanceSpec, model_name: str) -> list[str | tuple[str, dict[str, str]]]:
        """Execution providers for an instance of ``spec.kind``, best first, CPU last.

        Raises:
            UnavailableError: a GPU instance, but this onnxruntime has no CUDA execution provider.
            InvalidArgumentError: an unknown or unavailable execution accelerator is requested.
        """
        available = ort.get_available_providers()
        providers: list[str | tuple[str, dict[str, str]]] = []
        if spec.kind == "KIND_GPU":
            if _CUDA_PROVIDER not in available:
                raise UnavailableError(
                    f"unable to load model '{model_name}': instance '{spec.name}' is KIND_GPU but onnxruntime "
                    f"has no CUDA execution provider (available: {', '.join(available)}); install "
                    "onnxruntime-gpu (`pip install 'airtower[onnxruntime-gpu]'`) on a machine with a CUDA GPU, "
                    "or use instance_group kind KIND_CPU"
                )
            device = {"device_id": str(spec.device_id)}
            cuda_options = {**device, **self.cuda_options}
            for name, parameters in self.gpu_accelerators:
                provider = self._accelerator(name, available, model_name)
                if provider == _CUDA_PROVIDER:
                    cuda_options.update(parameters)
                else:
                    providers.append((provider, {**device, **parameters}))
            providers.append((_CUDA_PROVIDER, cuda_options))
        else:
            for name, parameters in self.cpu_accelerators:
                providers.append((self._accelerator(name, available, model_name), dict(parameters)))
        providers.append(_CPU_PROVIDER)
        return providers

    @staticmethod
    def _accelerator(name: str, available: list[str], model_name: str) -> str:
        provider = _EXECUTION_PROVIDER_BY_ACCELERATOR.get(name)
        if provider is None or provider not in available:
            raise InvalidArgumentError(
                f"unknown Execution Accelerator '{name}' is requested for model '{model_name}' "
                f"(available execution providers: {', '.join(available)})"
            )
        return provider


def _cuda_options(config: ModelConfig) -> dict[str, str]:
    options: dict[str, str] = {}
    for key in _CUDA_PARAMETERS:
        if key not in config.parameters:
            continue
        value = config.parameters[key].string_value
        table = {"arena_extend_strategy": _ARENA_EXTEND_STRATEGY, "cudnn_conv_algo_search": _CUDNN_CONV_ALGO_SEARCH}
        if key in table:
            if value not in table[key]:
                raise ModelConfigError(f"unsupported {key} value '{value}' is requested for model '{config.name}'")
            value = table[key][value]
        options[key] = value
    return options


# --------------------------------------------------------------------------------------------
# Load-time checks (onnxruntime.cc ModelInstanceState::ValidateInputs / ValidateOutputs)


def _compare_dims(
    model_name: str, name: str, model_dims: Sequence[int], dims: Sequence[int], mbs: int, exact: bool
) -> None:
    full = [-1, *dims] if mbs > 0 else list(dims)
    if mbs > 0 and (len(model_dims) == 0 or model_dims[0] != -1):
        raise ModelConfigError(
            f"model '{model_name}', tensor '{name}': for the model to support batching the shape should have at "
            f"least 1 dimension and the first dimension must be -1; but shape expected by the model is "
            f"{_format_dims(model_dims)}"
        )
    if len(full) != len(model_dims):
        batch_note = (
            "an initial batch dimension because max_batch_size > 0 followed by the explicit tensor shape, "
            f"making complete shape {_format_dims(full)}"
            if mbs > 0
            else f"shape {_format_dims(full)}"
        )
        raise ModelConfigError(
            f"model '{model_name}', tensor '{name}': the model expects {len(model_dims)} dimensions (shape "
            f"{_format_dims(model_dims)}) but the model configuration specifies {len(full)} dimensions ({batch_note})"
        )
    for model_dim, dim in zip(model_dims, full, strict=True):
        if model_dim == -1 or (not exact and dim == -1):
            continue
        if model_dim != dim:
            raise ModelConfigError(
                f"model '{model_name}', tensor '{name}': the model expects dims {_format_dims(model_dims)} but the "
                f"model configuration specifies dims {_format_dims(full)}"
            )


def _validate_ios(config: ModelConfig, model_name: str, key: str, infos: list[TensorInfo]) -> None:
    by_name = {info.name: info for info in infos}
    mbs = config.max_batch_size
    # The batch output shape doesn't necessarily match the model (onnxruntime.cc ValidateOutputs).
    unchecked = _batch_output_targets(config) if key == "output" else set()
    for io in getattr(config, key):
        info = by_name.get(io.name)
        if info is None:
            raise ModelConfigError(
                f"unable to load model '{model_name}': unexpected inference {key} '{io.name}', allowed {key}s are: "
                + ", ".join(sorted(by_name))
            )
        data_type = model_config_pb2.DataType.Name(io.data_type)
        if data_type != info.data_type:
            raise ModelConfigError(
                f"unable to load model '{model_name}', configuration expects datatype {data_type} for {key} "
                f"'{io.name}', model provides {info.data_type}"
            )
        dims = list(io.reshape.shape) if io.HasField("reshape") else list(io.dims)
        if key == "input" and io.allow_ragged_batch:
            _validate_ragged_input(model_name, io, info)
        elif io.name in unchecked:
            continue
        elif len(info.dims) > 0:
            _compare_dims(model_name, io.name, info.dims, dims, mbs, exact=key == "output")
        elif any(d != 1 for d in dims):
            raise ModelConfigError(
                f"unable to load model '{model_name}', scalar tensor '{io.name}', should only provide 1 in the model "
                f"configuration when the model doesn't support batching. Model configuration provided: "
                f"{_format_dims(dims)}."
            )
    if key == "input":
        _validate_batch_inputs(config, model_name, by_name)
        declared = {io.name for io in config.input} | _server_fed_inputs(config)
        missing = sorted(set(by_name) - declared)
        if missing:
            raise ModelConfigError(
                f"unable to load model '{model_name}', configuration expects {len(declared)} inputs, model provides "
                f"{len(by_name)} (not in the configuration: {', '.join(missing)})"
            )


def _validate_ragged_input(model_name: str, io: Any, info: TensorInfo) -> None:
    # A ragged input is fed as the concatenation of every request's elements: the model takes [-1].
    # (Triton's messages, double space included: onnxruntime.cc ValidateInputs.)
    if io.optional:
        raise ModelConfigError(
            f"unable to load model '{model_name}', configuration expects model provides input with shape [-1] "
            f"for ragged input '{io.name}', which is not supported for optional input"
        )
    if info.dims != (-1,):
        raise ModelConfigError(
            f"unable to load model '{model_name}', configuration expects model provides input with shape [-1]  "
            f"for ragged input '{io.name}', model provides {_format_dims(info.dims)}"
        )


def _validate_batch_inputs(config: ModelConfig, model_name: str, by_name: dict[str, TensorInfo]) -> None:
    for batch_input in config.batch_input:
        data_type = model_config_pb2.DataType.Name(batch_input.data_type)
        for target in batch_input.target_name:
            info = by_name.get(target)
            if info is None:
                raise ModelConfigError(
                    f"unable to load model '{model_name}': batch input '{target}' is not an input of the model, "
                    "allowed inputs are: " + ", ".join(sorted(by_name))
                )
            if info.data_type != data_type:
                raise ModelConfigError(
                    f"unable to load model '{model_name}', configuration expects datatype {data_type} for batch "
                    f"input '{target}', model provides {info.data_type}"
                )


def _batch_input_targets(config: ModelConfig) -> set[str]:
    return {target for batch_input in config.batch_input for target in batch_input.target_name}


def _server_fed_inputs(config: ModelConfig) -> set[str]:
    """Model inputs the server feeds, never clients: batch inputs, sequence controls and states."""
    sequence = config.sequence_batching
    return (
        _batch_input_targets(config)
        | {control.name for control in sequence.control_input}
        | {state.input_name for state in sequence.state}
    )


def _batch_output_targets(config: ModelConfig) -> set[str]:
    return {target for batch_output in config.batch_output for target in batch_output.target_name}


# --------------------------------------------------------------------------------------------
# Tensor conversions between airtower (numpy; BYTES = object array of bytes; BF16 = uint16 bits) and ORT


def _decode_strings(array: npt.NDArray[Any], name: str, model_name: str) -> npt.NDArray[np.object_]:
    # ORT's Python binding takes str elements (it would str() a bytes object) and encodes them as UTF-8.
    out = np.empty(array.shape, dtype=np.object_)
    flat = out.reshape(-1)
    try:
        for i, item in enumerate(array.reshape(-1)):
            flat[i] = item.decode("utf-8") if isinstance(item, bytes | bytearray | np.bytes_) else str(item)
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(
            f"input '{name}' for model '{model_name}' holds a BYTES element that is not valid UTF-8; "
            "onnxruntime string tensors must be UTF-8"
        ) from exc
    return out


def _encode_strings(array: npt.NDArray[Any]) -> npt.NDArray[np.object_]:
    out = np.empty(array.shape, dtype=np.object_)
    flat = out.reshape(-1)
    for i, item in enumerate(array.reshape(-1)):
        flat[i] = item.encode("utf-8") if isinstance(item, str) else bytes(item)
    return out


def _bf16_array(value: Any) -> npt.NDArray[np.uint16]:
    """Copy a bfloat16 OrtValue (CPU) into a uint16 array of its bit patterns."""
    shape = tuple(value.shape())
    count = math.prod(shape)
    if count == 0:
        return np.empty(shape, dtype=np.uint16)
    buffer = (ctypes.c_uint16 * count).from_address(value.data_ptr())
    return np.frombuffer(buffer, dtype=np.uint16).copy().reshape(shape)


@dataclass(frozen=True, slots=True)
class _OutputSpec:
    wire_type: str
    dims: tuple[int, ...] | None  # config dims to reshape to (reshape or scalar outputs), else None


# --------------------------------------------------------------------------------------------
# Backend, model, instance


class OnnxRuntimeBackend:
    """The ``onnxruntime`` backend (platform ``onnxruntime_onnx``)."""

    name = "onnxruntime"

    @property
    def preferred_instance_kind(self) -> int:
        """KIND_GPU where this onnxruntime has the CUDA provider, else KIND_CPU: onnxruntime_backend
        prefers the kind it was built for, so a CPU build serves on the CPU on a GPU machine too."""
        if _CUDA_PROVIDER in ort.get_available_providers():
            return int(model_config_pb2.ModelInstanceGroup.KIND_GPU)
        return int(model_config_pb2.ModelInstanceGroup.KIND_CPU)

    def auto_complete_config(self, config: ModelConfig, ctx: ModelContext) -> None:
        """Fill inputs, outputs and max_batch_size from the ONNX file, as onnxruntime_backend does.

        When every input and output is already fully described, the model file is not read
        (onnxruntime_backend skips auto-complete then); mismatches are reported at load.
        """
        has_inputs = len(config.input) + len(config.batch_input) > 0
        has_outputs = len(config.output) > 0
        if _is_complete(config.input) and _is_complete(config.output):
            return
        inputs, outputs = read_model_signature(_model_path(config, ctx), ctx.name)
        if not (has_inputs and has_outputs):
            _auto_complete_max_batch(config, ctx, inputs, outputs)
        _fill_ios(config, ctx, "input", inputs)
        _fill_ios(config, ctx, "output", outputs)

    def load(self, config: ModelConfig, ctx: ModelContext) -> OnnxRuntimeModel:
        path = _model_path(config, ctx)
        return OnnxRuntimeModel(config, ctx, path, SessionSettings.from_config(config))


class OnnxRuntimeModel:
    """One loaded version: the parsed settings; sessions belong to instances (or are shared)."""

    def __init__(self, config: ModelConfig, ctx: ModelContext, path: Path, settings: SessionSettings) -> None:
        self.config = config
        self.ctx = ctx
        self.path = path
        self.settings = settings
        self._shared: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def create_instance(self, spec: InstanceSpec) -> OnnxRuntimeInstance:
        session = self._session(spec)
        with map_backend_errors(self.ctx.name):
            inputs = [_tensor_info(arg, self.ctx.name) for arg in session.get_inputs()]
            outputs = [_tensor_info(arg, self.ctx.name) for arg in session.get_outputs()]
        _validate_ios(self.config, self.ctx.name, "input", inputs)
        _validate_ios(self.config, self.ctx.name, "output", outputs)
        logger.info("created onnxruntime session for instance %s of model '%s'", spec.name, self.ctx.name)
        return OnnxRuntimeInstance(self, session, inputs, outputs)

    def _session(self, spec: InstanceSpec) -> Any:
        if not self.settings.share_session:
            return self._new_session(spec)
        key = (spec.kind, spec.device_id)
        with self._lock:
            if key not in self._shared:
                self._shared[key] = self._new_session(spec)
            return self._shared[key]

    def _new_session(self, spec: InstanceSpec) -> Any:
        providers = self.settings.providers(spec, self.ctx.name)
        with map_backend_errors(self.ctx.name):
            options = self.settings.session_options(f"{self.ctx.name}:{spec.name}")
            return ort.InferenceSession(str(self.path), sess_options=options, providers=providers)

    def close(self) -> None:
        with self._lock:
            self._shared.clear()


class OnnxRuntimeInstance:
    """One execution context: runs batches through its session on the instance thread."""

    def __init__(
        self, model: OnnxRuntimeModel, session: Any, inputs: list[TensorInfo], outputs: list[TensorInfo]
    ) -> None:
        config = model.config
        self._session: Any = session
        self._name = model.ctx.name
        self._version = str(model.ctx.version)
        self._max_batch_size = int(config.max_batch_size)
        self._run_options = model.settings.run_options()
        self._model_inputs = {info.name: info for info in inputs}
        self._model_outputs = {info.name: info for info in outputs}
        # A ragged input is fed flat (its request shapes concatenated), never reshaped.
        self._ragged = frozenset(io.name for io in config.input if io.allow_ragged_batch)
        self._input_reshape = {
            io.name: tuple(io.reshape.shape)
            for io in config.input
            if io.HasField("reshape") and io.name not in self._ragged
        }
        self._batch_inputs = tuple(
            BatchInputSpec(
                kind=model_config_pb2.BatchInput.Kind.Name(b.kind),
                target_names=tuple(b.target_name),
                data_type=model_config_pb2.DataType.Name(b.data_type),
                source_input=b.source_input[0],
            )
            for b in config.batch_input
        )
        self._batch_outputs = self._batch_output_specs(config)
        self._outputs = self._output_specs(config)
        self._state_outputs = [state.output_name for state in config.sequence_batching.state]
        for name in self._batch_outputs:  # scattered by their source input's shapes, never reshaped
            if name in self._outputs:
                self._outputs[name] = _OutputSpec(self._outputs[name].wire_type, None)
        # Models with ragged inputs, batch inputs or batch outputs take the ragged path for every execution.
        self._is_ragged = bool(self._ragged or self._batch_inputs or self._batch_outputs)
        self._bf16 = any(info.data_type == "TYPE_BF16" for info in (*inputs, *outputs))

    def _output_specs(self, config: ModelConfig) -> dict[str, _OutputSpec]:
        specs: dict[str, _OutputSpec] = {}
        for io in config.output:
            model_dims = self._model_outputs[io.name].dims if io.name in self._model_outputs else ()
            reshape = io.HasField("reshape") or len(model_dims) == 0
            wire = config_to_wire(model_config_pb2.DataType.Name(io.data_type))
            specs[io.name] = _OutputSpec(wire, tuple(io.dims) if reshape else None)
        if not specs:  # a config without outputs: everything the model produces
            for name, info in self._model_outputs.items():
                specs[name] = _OutputSpec(config_to_wire(info.data_type), None)
        # Implicit states are outputs too: the sequence batcher keeps them for the next request.
        for state in config.sequence_batching.state:
            if state.output_name not in specs:
                specs[state.output_name] = _OutputSpec(
                    config_to_wire(model_config_pb2.DataType.Name(state.data_type)), None
                )
        return specs

    @staticmethod
    def _batch_output_specs(config: ModelConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
        """``BATCH_SCATTER_WITH_INPUT_SHAPE`` targets → (source input, config dims of the output)."""
        dims_by_output = {
            io.name: tuple(io.reshape.shape) if io.HasField("reshape") else tuple(io.dims) for io in config.output
        }
        specs: dict[str, tuple[str, tuple[int, ...]]] = {}
        for batch_output in config.batch_output:
            for target in batch_output.target_name:
                specs[target] = (batch_output.source_input[0], dims_by_output.get(target, (-1,)))
        return specs

    def execute(self, requests: Sequence[InferenceRequest]) -> list[InferenceResponse | TritonError]:
        together: Callable[[Sequence[InferenceRequest]], list[InferenceResponse | TritonError]]
        alone: Callable[[InferenceRequest], InferenceResponse | TritonError]
        if self._is_ragged:  # even one request gets its batch inputs
            together = self._execute_ragged_batch
            alone = lambda request: self._execute_ragged_batch([request])[0]  # noqa: E731
        elif len(requests) == 1:
            return [self._execute_one(requests[0])]
        else:
            together, alone = self._execute_batched, self._execute_one
        if self._can_concatenate(requests):
            return together(requests)
        # Requests that cannot be stacked run one by one; each fails alone.
        results: list[InferenceResponse | TritonError] = []
        for request in requests:
            try:
                results.append(alone(request))
            except TritonError as exc:
                results.append(exc)
        return results

    def close(self) -> None:
        self._session = None

    # -- helpers ------------------------------------------------------------------------------

    def _requested(self, request: InferenceRequest) -> list[str]:
        if request.outputs:
            return [output.name for output in request.outputs] + self._state_outputs
        return list(self._outputs)

    def _execute_one(self, request: InferenceRequest) -> InferenceResponse:
        names = self._requested(request)
        batch = self._batch_size(request)
        arrays = self._run({name: tensor.data for name, tensor in request.inputs.items()}, names, batch)
        return self._response(request, names, arrays)

    def _execute_batched(self, requests: Sequence[InferenceRequest]) -> list[InferenceResponse | TritonError]:
        # Runs on the instance thread, which a busy model keeps saturated: per request, only
        # what cannot be shared (its slice of each output and its response) is done here.
        wanted = [self._requested(request) for request in requests]
        same = all(w == wanted[0] for w in wanted)
        names = wanted[0] if same else list(dict.fromkeys(itertools.chain(*wanted)))
        sizes = [self._batch_size(request) for request in requests]
        total = sum(sizes)
        feed = {
            name: np.concatenate([request.inputs[name].data for request in requests], axis=0)
            for name in requests[0].inputs
        }
        arrays = self._run(feed, names, total)
        for name, array in zip(names, arrays, strict=True):
            if array.ndim == 0 or array.shape[0] != total:
                raise InternalError(
                    f"output '{name}' of model '{self._name}' has shape {_format_dims(array.shape)}, "
                    f"which cannot be split into the batch of {total}"
                )
        columns = [(name, self._wire_type(name), array) for name, array in zip(names, arrays, strict=True)]
        results: list[InferenceResponse | TritonError] = []
        start = 0
        for request, size, request_wanted in zip(requests, sizes, wanted, strict=True):
            stop = start + size
            outputs = []
            for name, wire_type, array in columns:
                if same or name in request_wanted:
                    part = array[start:stop]
                    outputs.append(Tensor(name, wire_type, part.shape, part))
            results.append(
                InferenceResponse(model_name=self._name, model_version=self._version, id=request.id, outputs=outputs)
            )
            start = stop
        return results

    def _can_concatenate(self, requests: Sequence[InferenceRequest]) -> bool:
        """Whether ``requests`` can run as one batch: same inputs and datatypes, and the same shape
        but for the batch dimension (ragged inputs may differ)."""
        if self._max_batch_size == 0 and len(requests) > 1:
            return False
        first = requests[0].inputs
        for request in requests[1:]:
            if request.inputs.keys() != first.keys():
                return False
            for name, tensor in request.inputs.items():
                ref = first[name]
                if tensor.datatype != ref.datatype or not tensor.shape:
                    return False
                if tensor.shape[1:] != ref.shape[1:] and name not in self._ragged:
                    return False
        return True

    def _execute_ragged_batch(self, requests: Sequence[InferenceRequest]) -> list[InferenceResponse | TritonError]:
        """Run ``requests`` in one session run: ragged inputs flat, batch inputs generated, outputs split."""
        names = list(dict.fromkeys(name for request in requests for name in self._requested(request)))
        sizes = [self._batch_size(request) for request in requests]
        arrays = self._run(self._ragged_feed(requests), names, sum(sizes))
        per_request = self._split_outputs(requests, names, arrays, sizes)
        results: list[InferenceResponse | TritonError] = []
        for request, parts in zip(requests, per_request, strict=True):
            wanted = self._requested(request)
            kept = [(name, part) for name, part in zip(names, parts, strict=True) if name in wanted]
            results.append(self._response(request, [name for name, _ in kept], [part for _, part in kept]))
        return results

    def _ragged_feed(self, requests: Sequence[InferenceRequest]) -> dict[str, npt.NDArray[Any]]:
        feed: dict[str, npt.NDArray[Any]] = {}
        for name in requests[0].inputs:
            datas = [request.inputs[name].data for request in requests]
            if name in self._ragged:
                feed[name] = concatenate_ragged(datas)
            else:
                feed[name] = datas[0] if len(datas) == 1 else np.concatenate(datas, axis=0)
        for spec in self._batch_inputs:
            array = spec.to_array(self._source_shapes(requests, spec.source_input))
            for target in spec.target_names:
                feed[target] = array
        return feed

    def _source_shapes(self, requests: Sequence[InferenceRequest], source: str) -> list[tuple[int, ...]]:
        shapes = []
        for request in requests:
            tensor = request.inputs.get(source)
            if tensor is None:
                raise InvalidArgumentError(
                    f"[request id: {request.id or '<id_unknown>'}] input '{source}' for model '{self._name}' is "
                    "required: it is the source of a batch input or batch output"
                )
            shapes.append(tuple(int(d) for d in tensor.data.shape))
        return shapes

    def _split_outputs(
        self,
        requests: Sequence[InferenceRequest],
        names: list[str],
        arrays: list[npt.NDArray[Any]],
        sizes: list[int],
    ) -> list[list[npt.NDArray[Any]]]:
        """Per request, its part of every output: by batch dimension, or scattered by input shape."""
        total = sum(sizes)
        offsets = np.cumsum([0, *sizes])
        columns: list[list[npt.NDArray[Any]]] = []
        for name, array in zip(names, arrays, strict=True):
            scatter = self._batch_outputs.get(name)
            if scatter is not None:
                source, dims = scatter
                shapes = self._source_shapes(requests, source)
                columns.append(scatter_with_input_shape(array, dims, shapes, self._max_batch_size > 0))
                continue
            if self._max_batch_size == 0:
                columns.append([array])
                continue
            if array.ndim == 0 or array.shape[0] != total:
                raise InternalError(
                    f"output '{name}' of model '{self._name}' has shape {_format_dims(array.shape)}, "
                    f"which cannot be split into the batch of {total}"
                )
            columns.append([array[int(offsets[i]) : int(offsets[i + 1])] for i in range(len(requests))])
        return [[column[index] for column in columns] for index in range(len(requests))]

    def _batch_size(self, request: InferenceRequest) -> int:
        if self._max_batch_size == 0 or not request.inputs:
            return 1
        shape = next(iter(request.inputs.values())).shape
        return shape[0] if shape else 1

    def _feed_array(self, name: str, array: npt.NDArray[Any], batch: int) -> npt.NDArray[Any]:
        if array.dtype == np.object_:
            array = _decode_strings(array, name, self._name)
        reshape = self._input_reshape.get(name)
        info = self._model_inputs.get(name)
        if reshape is not None:
            array = array.reshape((batch, *reshape) if self._max_batch_size > 0 else reshape)
        elif info is not None and len(info.dims) == 0 and array.ndim != 0:
            array = array.reshape(())  # a scalar model input described as [1] in the config
        return array

    def _run(self, feed: dict[str, npt.NDArray[Any]], names: list[str], batch: int) -> list[npt.NDArray[Any]]:
        inputs = {name: self._feed_array(name, array, batch) for name, array in feed.items()}
        with map_backend_errors(self._name):
            if self._bf16:
                raw = self._run_with_ort_values(inputs, names)
            else:
                raw = self._session.run(names, inputs, self._run_options)
            return [self._to_airtower(name, array, batch) for name, array in zip(names, raw, strict=True)]

    def _run_with_ort_values(self, inputs: dict[str, npt.NDArray[Any]], names: list[str]) -> list[npt.NDArray[Any]]:
        # numpy has no bfloat16: BF16 tensors travel as uint16 bit patterns wrapped in typed OrtValues.
        # OrtValues may borrow the numpy buffers: ``buffers`` keeps them alive until the run ends.
        values, buffers = {}, []
        for name, array in inputs.items():
            info = self._model_inputs.get(name)
            if info is not None and info.data_type == "TYPE_BF16":
                contiguous = np.ascontiguousarray(array, dtype=np.uint16)
                values[name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(contiguous, _ONNX_BFLOAT16)
            else:
                contiguous = np.ascontiguousarray(array)
                values[name] = ort.OrtValue.ortvalue_from_numpy(contiguous)
            buffers.append(contiguous)
        outputs = self._session.run_with_ort_values(names, values, self._run_options)
        del buffers
        return [_bf16_array(value) if value.data_type() == "tensor(bfloat16)" else value.numpy() for value in outputs]

    def _to_airtower(self, name: str, array: npt.NDArray[Any], batch: int) -> npt.NDArray[Any]:
        if array.dtype == np.object_:
            array = _encode_strings(array)
        spec = self._outputs.get(name)
        if spec is not None and spec.dims is not None:
            array = array.reshape((batch, *spec.dims) if self._max_batch_size > 0 else spec.dims)
        return array

    def _wire_type(self, name: str) -> str:
        spec = self._outputs.get(name)
        return spec.wire_type if spec is not None else config_to_wire(self._model_outputs[name].data_type)

    def _response(
        self, request: InferenceRequest, names: list[str], arrays: list[npt.NDArray[Any]]
    ) -> InferenceResponse:
        outputs = [
            Tensor(name, self._wire_type(name), array.shape, array) for name, array in zip(names, arrays, strict=True)
        ]
        return InferenceResponse(model_name=self._name, model_version=self._version, id=request.id, outputs=outputs)
