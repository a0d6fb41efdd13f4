from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

from airtower.errors import InternalError
from airtower.models.warmup import warmup_failure, warmup_samples

INPUTS = """
name: "m"
max_batch_size: 4
input [ { name: "A" data_type: TYPE_FP32 dims: [ 3 ] }, { name: "S" data_type: TYPE_STRING dims: [ 2 ] },
        { name: "I" data_type: TYPE_INT8 dims: [ 5 ] } ]
"""


def entry(name: str, batch_size: int, data: str, count: int = 0, key: str = "A") -> str:
    """A model_warmup entry with one FP32 [3] input ``key`` whose data is ``data``."""
    value = f"data_type: TYPE_FP32 dims: [ 3 ] {data}"
    return (
        f'{{ name: "{name}" batch_size: {batch_size} count: {count} inputs {{ key: "{key}" value: {{ {value} }} }} }}'
    )


def config(warmup: str, max_batch_size: int = 4) -> ModelConfig:
    text = INPUTS.replace("max_batch_size: 4", f"max_batch_size: {max_batch_size}") + f"model_warmup [ {warmup} ]"
    return text_format.Parse(text, ModelConfig())


def test_zero_data_gives_batch_size_requests_of_batch_one(tmp_path: Path) -> None:
    warmup = entry("z", 3, "zero_data: true", count=2)
    [sample] = warmup_samples(config(warmup), tmp_path)
    assert (sample.name, sample.batch_size, sample.count) == ("z", 3, 2)
    for request in sample.requests:
        tensor = request.inputs["A"]
        assert (tensor.datatype, tensor.shape) == ("FP32", (1, 3))
        np.testing.assert_array_equal(tensor.data, np.zeros((1, 3), np.float32))


def test_count_zero_runs_once_and_batch_size_zero_is_skipped(tmp_path: Path) -> None:
    warmup = entry("once", 1, "zero_data: true") + "," + entry("never", 0, "zero_data: true")
    samples = warmup_samples(config(warmup), tmp_path)
    assert [(s.name, s.count) for s in samples] == [("once", 1)]


def test_random_data_is_seeded_and_strings_are_empty(tmp_path: Path) -> None:
    warmup = (
        '{ name: "r" batch_size: 1 inputs [ { key: "A" value: { data_type: TYPE_FP32 dims: [ 3 ] random_data: true } },'
        ' { key: "S" value: { data_type: TYPE_STRING dims: [ 2 ] random_data: true } },'
        ' { key: "I" value: { data_type: TYPE_INT8 dims: [ 5 ] random_data: true } } ] }'
    )
    first = warmup_samples(config(warmup), tmp_path)[0].requests[0]
    again = warmup_samples(config(warmup), tmp_path)[0].requests[0]
    np.testing.assert_array_equal(first.inputs["A"].data, again.inputs["A"].data)
    assert first.inputs["A"].data.any()
    assert first.inputs["S"].data.tolist() == [[b"", b""]]
    assert first.inputs["I"].data.dtype == np.int8


def test_input_data_file_is_read_raw_from_the_warmup_folder(tmp_path: Path) -> None:
    (tmp_path / "warmup").mkdir()
    (tmp_path / "warmup" / "a.bin").write_bytes(np.array([1, 2, 3], np.float32).tobytes())
    warmup = entry("f", 1, 'input_data_file: "a.bin"')
    [sample] = warmup_samples(config(warmup), tmp_path)
    np.testing.assert_array_equal(sample.requests[0].inputs["A"].data, [[1, 2, 3]])


def test_a_missing_data_file_is_triton_s_error(tmp_path: Path) -> None:
    warmup = entry("f", 1, 'input_data_file: "x.bin"')
    with pytest.raises(InternalError) as error:
        warmup_samples(config(warmup), tmp_path)
    assert (
        error.value.message == f"failed to open text file for read {tmp_path}/warmup/x.bin: No such file or directory"
    )


def test_a_data_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    (tmp_path / "warmup").mkdir()
    (tmp_path / "warmup" / "a.bin").write_bytes(b"\0" * 8)
    warmup = entry("f", 1, 'input_data_file: "a.bin"')
    with pytest.raises(InternalError, match="unexpected total byte size 8, expecting 12"):
        warmup_samples(config(warmup), tmp_path)


def test_models_without_batching_get_the_dims_as_the_shape(tmp_path: Path) -> None:
    warmup = (
        '{ name: "z" batch_size: 1 inputs { key: "A" value: { data_type: TYPE_FP32 dims: [ 3 ] zero_data: true } } }'
    )
    [sample] = warmup_samples(config(warmup, max_batch_size=0), tmp_path)
    assert sample.requests[0].inputs["A"].shape == (3,)


def test_unknown_inputs_are_left_out(tmp_path: Path) -> None:
    warmup = (
        '{ name: "z" batch_size: 1 inputs { key: "NOPE" value: { data_type: TYPE_FP32 dims: [ 3 ] zero_data: true } } }'
    )
    [sample] = warmup_samples(config(warmup), tmp_path)
    assert sample.requests[0].inputs == {}


def test_failure_lists_every_error_like_triton(tmp_path: Path) -> None:
    warmup = (
        '{ name: "z" batch_size: 2 inputs { key: "A" value: { data_type: TYPE_FP32 dims: [ 3 ] zero_data: true } } }'
    )
    [sample] = warmup_samples(config(warmup), tmp_path)
    assert warmup_failure(sample, ["a", "b"]) == "failed to run warmup sample 'z': a; b; "
