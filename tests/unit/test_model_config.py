"""Unit tests for airtower.core.model_config: text/JSON codecs, Triton's config JSON shape, helpers."""

from __future__ import annotations

import json

import pytest

from airtower.core.model_config import (
    ModelConfig,
    autofill_max_batch_size,
    config_from_json,
    config_to_json,
    input_config,
    is_decoupled,
    output_config,
    parse_config_text,
    parse_default_max_batch_size,
)
from airtower.errors import InvalidArgumentError, ModelConfigError
from tests.reference_configs import REFERENCE_ADD_SUB_JSON

_IO = """
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""

#: add_sub (python) as normalised by the server, i.e. what the loader produces.
_ADD_SUB_NORMALISED = f"""
name: "add_sub" backend: "python" max_batch_size: 8 {_IO}
version_policy {{ latest {{ num_versions: 1 }} }}
optimization {{ input_pinned_memory {{ enable: true }} output_pinned_memory {{ enable: true }} }}
dynamic_batching {{ preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 100 }}
instance_group [ {{ name: "add_sub_0" kind: KIND_CPU count: 2 }} ]
default_model_filename: "model.py"
"""


#: The reference server's sequence_batching block for an oldest-strategy model with implicit state.
#: Note initial_state dims stay strings: Triton's int64 fix-up misses them.
REFERENCE_SEQUENCE_BATCHING_JSON = {
    "oldest": {
        "max_candidate_sequences": 2,
        "preferred_batch_size": [2],
        "max_queue_delay_microseconds": 0,
        "preserve_ordering": False,
    },
    "max_sequence_idle_microseconds": 1000000,
    "control_input": [],
    "state": [
        {
            "input_name": "S_IN",
            "output_name": "S_OUT",
            "data_type": "TYPE_INT32",
            "dims": [1],
            "initial_state": [{"data_type": "TYPE_INT32", "dims": ["1"], "name": "init", "zero_data": True}],
            "use_same_buffer_for_input_output": False,
            "use_growable_memory": False,
        }
    ],
    "iterative_sequence": False,
}


def test_config_to_json_matches_reference_triton_for_python_model() -> None:
    config = parse_config_text(_ADD_SUB_NORMALISED, "config.pbtxt")
    got = config_to_json(config)
    assert got == REFERENCE_ADD_SUB_JSON
    assert list(got) == list(REFERENCE_ADD_SUB_JSON)  # declaration order, as Triton prints it


def test_config_to_json_matches_reference_sequence_batching_int64_fixups() -> None:
    config = parse_config_text(
        'name: "seq" max_batch_size: 2 sequence_batching { oldest { max_candidate_sequences: 2 '
        "preferred_batch_size: [ 2 ] } max_sequence_idle_microseconds: 1000000 state [ { input_name: "
        '"S_IN" output_name: "S_OUT" data_type: TYPE_INT32 dims: [ 1 ] initial_state { data_type: TYPE_INT32 '
        'dims: [ 1 ] zero_data: true name: "init" } } ] }',
        "seq",
    )
    assert config_to_json(config)["sequence_batching"] == REFERENCE_SEQUENCE_BATCHING_JSON
    # Key order too (clients see the bytes): Triton writes an initial state's oneof after its name.
    initial_state = config_to_json(config)["sequence_batching"]["state"][0]["initial_state"][0]
    assert list(initial_state) == ["data_type", "dims", "name", "zero_data"]


def test_config_to_json_writes_float_fields_as_triton_does() -> None:
    # Triton 2.51's config endpoint: "fp32_false_true":[0,1] and "minimum_slot_utilization":0.5.
    config = parse_config_text(
        'name: "m" backend: "python" sequence_batching { direct { minimum_slot_utilization: 0.5 } '
        'control_input [{ name: "S" control [{ kind: CONTROL_SEQUENCE_START fp32_false_true: [0, 1] }] }] }',
        "m",
    )
    text = json.dumps(config_to_json(config), separators=(",", ":"))
    assert '"fp32_false_true":[0,1]' in text
    assert '"minimum_slot_utilization":0.5' in text


def test_config_to_json_converts_listed_int64_fields_to_numbers() -> None:
    config = parse_config_text(
        """
        name: "m" platform: "ensemble"
        input [ { name: "A" data_type: TYPE_FP32 dims: [ -1, 2 ] reshape { shape: [ 2, -1 ] } } ]
        version_policy { specific { versions: [ 3, 1 ] } }
        dynamic_batching {
          priority_levels: 2 default_priority_level: 1 max_queue_delay_microseconds: 7
          default_queue_policy { default_timeout_microseconds: 11 }
          priority_queue_policy { key: 2 value { default_timeout_microseconds: 13 } }
        }
        model_warmup [ { name: "w" batch_size: 1 inputs { key: "A" value { data_type: TYPE_FP32 dims: [ 5 ] } } } ]
        """,
        "m",
    )
    got = config_to_json(config)
    assert got["input"][0]["dims"] == [-1, 2]
    assert got["input"][0]["reshape"] == {"shape": [2, -1]}
    assert got["version_policy"] == {"specific": {"versions": [3, 1]}}
    batching = got["dynamic_batching"]
    assert (batching["priority_levels"], batching["default_priority_level"]) == (2, 1)
    assert batching["max_queue_delay_microseconds"] == 7
    assert batching["default_queue_policy"]["default_timeout_microseconds"] == 11
    assert batching["priority_queue_policy"] == {
        "2": {"timeout_action": "REJECT", "default_timeout_microseconds": 13, "allow_timeout_override": False,
              "max_queue_size": 0}
    }  # fmt: skip
    ensemble = parse_config_text('ensemble_scheduling { step [ { model_name: "x" model_version: 4 } ] }', "e")
    assert config_to_json(ensemble)["ensemble_scheduling"]["step"][0]["model_version"] == 4
    assert got["model_warmup"][0]["inputs"]["A"]["dims"] == [5]


def test_config_json_round_trips_through_config_from_json() -> None:
    config = parse_config_text(_ADD_SUB_NORMALISED, "config.pbtxt")
    assert config_from_json(config_to_json(config)) == config
    assert config_from_json(json.dumps(config_to_json(config))) == config


@pytest.mark.parametrize(
    "data",
    ['{"name": "m", "no_such_field": 1}', "{not json", {"max_batch_size": "many"}, {"input": [{"data_type": "X"}]}],
)
def test_config_from_json_raises_model_config_error_when_invalid(data: str | dict[str, object]) -> None:
    with pytest.raises(ModelConfigError):
        config_from_json(data)


def test_parse_config_text_raises_naming_the_file_when_broken() -> None:
    with pytest.raises(ModelConfigError, match=r"failed to read text proto from /r/m/config.pbtxt: .*zzz"):
        parse_config_text("max_batch_size: 2 zzz", "/r/m/config.pbtxt")


def test_io_helpers_find_tensors_by_name() -> None:
    config = parse_config_text(_ADD_SUB_NORMALISED, "c")
    found_input = input_config(config, "INPUT1")
    found_output = output_config(config, "OUTPUT0")
    assert found_input is not None
    assert found_input.name == "INPUT1"
    assert found_output is not None
    assert found_output.name == "OUTPUT0"
    assert input_config(config, "OUTPUT0") is None
    assert output_config(config, "nope") is None


def test_is_decoupled_reads_transaction_policy() -> None:
    assert not is_decoupled(ModelConfig())
    assert is_decoupled(parse_config_text("model_transaction_policy { decoupled: true }", "c"))


def test_parse_default_max_batch_size_defaults_to_four_and_rejects_bad_values() -> None:
    assert parse_default_max_batch_size({}) == 4
    assert parse_default_max_batch_size({"default-max-batch-size": "0"}) == 0
    for bad in ("-1", "", "x"):
        with pytest.raises(InvalidArgumentError, match="default-max-batch-size"):
            parse_default_max_batch_size({"default-max-batch-size": bad})


def test_autofill_max_batch_size_sets_default_and_enables_dynamic_batching() -> None:
    config = ModelConfig()
    autofill_max_batch_size(config, 4)
    assert config.max_batch_size == 4
    assert config.HasField("dynamic_batching")


def test_autofill_max_batch_size_keeps_user_values_and_schedulers() -> None:
    explicit = ModelConfig(max_batch_size=8)
    autofill_max_batch_size(explicit, 4)
    assert explicit.max_batch_size == 8
    assert not explicit.HasField("dynamic_batching")
    sequence = parse_config_text("sequence_batching { }", "c")
    autofill_max_batch_size(sequence, 4)
    assert sequence.max_batch_size == 4
    assert not sequence.HasField("dynamic_batching")
    one = ModelConfig()
    autofill_max_batch_size(one, 1)
    assert one.max_batch_size == 1
    assert not one.HasField("dynamic_batching")
