"""ModelConfig: the generated ``inference.ModelConfig`` protobuf, its text/JSON codecs and typed helpers.

The message class comes from ``tritonclient.grpc.model_config_pb2`` (never hand-written). This
module is pure: it imports protobuf and the generated schema only, no backends and no I/O.

``config_to_json`` reproduces Triton's HTTP configuration JSON exactly (core
``ModelConfigToJson``): protobuf JSON with snake_case names, every field without presence printed
(defaults, empty lists and maps), enums as names, and a fixed list of 64-bit fields turned back
into JSON numbers. Fields left out of that list (``initial_state.dims``, ``graph_spec`` dims,
``secondary_devices.device_id``) stay strings, as in Triton.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeAlias

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import FieldDescriptor
from tritonclient.grpc import model_config_pb2

from airtower.errors import InvalidArgumentError, ModelConfigError

# tritonclient ships no type stubs, so these are ``Any`` to mypy; the aliases document intent.
ModelConfig: TypeAlias = model_config_pb2.ModelConfig
ModelInput: TypeAlias = model_config_pb2.ModelInput
ModelOutput: TypeAlias = model_config_pb2.ModelOutput

#: Triton's default for ``--backend-config=default-max-batch-size`` (core backend_config.cc).
DEFAULT_MAX_BATCH_SIZE = 4

#: Default ``sequence_batching.max_sequence_idle_microseconds`` (core constants.h).
SEQUENCE_IDLE_DEFAULT_MICROSECONDS = 1_000_000


def parse_config_text(text: str, source: str) -> ModelConfig:
    """Parse config.pbtxt text.

    Raises:
        ModelConfigError: the text is not a valid ``inference.ModelConfig``; names ``source``.
    """
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ModelConfigError(f"failed to read text proto from {source}: {exc}") from exc
    return config


def config_from_json(data: Mapping[str, Any] | str) -> ModelConfig:
    """Parse a JSON ModelConfig (repository load ``config`` parameter); unknown fields are errors.

    Raises:
        ModelConfigError: malformed JSON or a field/value the schema does not have.
    """
    config = ModelConfig()
    try:
        if isinstance(data, str):
            json_format.Parse(data, config, ignore_unknown_fields=False)
        else:
            json_format.ParseDict(dict(data), config, ignore_unknown_fields=False)
    except (json_format.ParseError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ModelConfigError(f"failed to parse model configuration JSON: {exc}") from exc
    return config


def config_to_json(config: ModelConfig) -> dict[str, Any]:
    """The configuration as Triton's HTTP ``/v2/models/<m>/config`` returns it."""
    raw: dict[str, Any] = json_format.MessageToDict(
        config, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _fix_int64_fields(raw)
    scheduling = raw.get("ensemble_scheduling")
    if scheduling is not None and str(scheduling.get("max_inflight_requests", 0)) == "0":
        scheduling.pop("max_inflight_requests", None)  # a field of later releases: 2.51 does not print it
    return _in_declaration_order(ModelConfig.DESCRIPTOR, raw)


def _integral(value: Any) -> Any:
    """A float field's value as protobuf's C++ JSON printer (Triton's) writes it: 1.0 as ``1``."""
    if type(value) is list:
        return [_integral(item) for item in value]
    return int(value) if type(value) is float and value.is_integer() else value


def _ints(values: list[Any]) -> list[int]:
    return [int(v) for v in values]


def _fix_int(obj: dict[str, Any], key: str) -> None:
    if key in obj:
        obj[key] = int(obj[key])


def _fix_int_list(obj: dict[str, Any], key: str) -> None:
    if key in obj:
        obj[key] = _ints(obj[key])


def _fix_int64_fields(raw: dict[str, Any]) -> None:
    """The 64-bit fix-ups of core ``ModelConfigToJson``, field for field."""
    for io in raw.get("input", []) + raw.get("output", []):
        _fix_int_list(io, "dims")
        if "reshape" in io:
            _fix_int_list(io["reshape"], "shape")
    specific = raw.get("version_policy", {}).get("specific")
    if specific is not None:
        _fix_int_list(specific, "versions")
    db = raw.get("dynamic_batching")
    if db is not None:
        for key in ("max_queue_delay_microseconds", "priority_levels", "default_priority_level"):
            _fix_int(db, key)
        if "default_queue_policy" in db:
            _fix_int(db["default_queue_policy"], "default_timeout_microseconds")
        for policy in db.get("priority_queue_policy", {}).values():
            _fix_int(policy, "default_timeout_microseconds")
    sb = raw.get("sequence_batching")
    if sb is not None:
        _fix_int(sb, "max_sequence_idle_microseconds")
        for strategy in ("oldest", "direct"):
            if strategy in sb:
                _fix_int(sb[strategy], "max_queue_delay_microseconds")
        # Triton looks for initial_state on sequence_batching (not on each state), so
        # initial_state dims stay strings there; we reproduce that.
        for state in sb.get("state", []):
            _fix_int_list(state, "dims")
    for step in raw.get("ensemble_scheduling", {}).get("step", []):
        _fix_int(step, "model_version")
    for warmup in raw.get("model_warmup", []):
        for warmup_input in warmup.get("inputs", {}).values():
            _fix_int_list(warmup_input, "dims")


_FLOAT_TYPES = frozenset({FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE})
#: Messages whose oneof Triton's JSON printer writes after their other fields (checked on 2.51:
#: an initial state prints "name" before "zero_data"), where declaration order would not.
_ONEOF_LAST = frozenset({"inference.ModelSequenceBatching.InitialState"})


def _in_declaration_order(descriptor: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """Re-key ``obj`` in .proto declaration order, as Triton's C++ JSON printer emits it."""
    ordered: dict[str, Any] = {}
    fields = descriptor.fields
    if descriptor.full_name in _ONEOF_LAST:
        fields = sorted(fields, key=lambda field: field.containing_oneof is not None)
    for field in fields:
        if field.name not in obj:
            continue
        value = obj[field.name]
        if field.cpp_type in _FLOAT_TYPES:
            value = _integral(value)
        message_type = field.message_type
        if message_type is not None:
            if message_type.GetOptions().map_entry:
                value_type = message_type.fields_by_name["value"].message_type
                if value_type is not None:
                    value = {k: _in_declaration_order(value_type, v) for k, v in value.items()}
            elif isinstance(value, list):
                value = [_in_declaration_order(message_type, v) for v in value]
            elif isinstance(value, dict):
                value = _in_declaration_order(message_type, value)
        ordered[field.name] = value
    return ordered


def is_decoupled(config: ModelConfig) -> bool:
    """``model_transaction_policy { decoupled: true }``."""
    return bool(config.model_transaction_policy.decoupled)


def input_config(config: ModelConfig, name: str) -> ModelInput | None:
    """The input called ``name``, or None."""
    for model_input in config.input:
        if model_input.name == name:
            return model_input
    return None


def output_config(config: ModelConfig, name: str) -> ModelOutput | None:
    """The output called ``name``, or None."""
    for model_output in config.output:
        if model_output.name == name:
            return model_output
    return None


def parse_default_max_batch_size(settings: Mapping[str, str]) -> int:
    """``default-max-batch-size`` from a backend's settings (default 4).

    Raises:
        InvalidArgumentError: the value is not a non-negative integer.
    """
    value = settings.get("default-max-batch-size", str(DEFAULT_MAX_BATCH_SIZE))
    try:
        parsed = int(value)
    except ValueError:
        parsed = -1
    if parsed < 0:
        raise InvalidArgumentError(f"failed to convert default-max-batch-size '{value}' to integral number")
    return parsed


def autofill_max_batch_size(config: ModelConfig, default_max_batch_size: int) -> None:
    """What Triton's ONNX Runtime / TensorRT backends do on auto-complete for a model that can batch.

    Only a model whose ``max_batch_size`` is 0 (unset) is changed: it gets
    ``default_max_batch_size`` and, when that is > 1 and no scheduler (dynamic / sequence /
    ensemble) is configured, the dynamic batcher. Backends call this only after deciding the model
    can batch (every input and output has a variable first dimension); the Python backend never
    does (its ``auto_complete_config`` sets both itself).
    """
    if config.max_batch_size != 0:
        return
    config.max_batch_size = max(default_max_batch_size, 0)
    if config.max_batch_size > 1 and config.WhichOneof("scheduling_choice") is None:
        config.dynamic_batching.SetInParent()
