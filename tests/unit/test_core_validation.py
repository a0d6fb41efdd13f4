from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

from airtower.core.request import InferenceRequest, RequestedOutput
from airtower.core.tensor import Tensor
from airtower.core.validation import RequestValidator
from airtower.errors import InvalidArgumentError


def make_validator(max_batch_size: int = 0) -> RequestValidator:
    config = text_format.Parse(
        f"""
        name: "add_sub" max_batch_size: {max_batch_size}
        input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] }},
                {{ name: "INPUT1" data_type: TYPE_FP32 dims: [ -1 ] }},
                {{ name: "OPT" data_type: TYPE_INT32 dims: [ 1 ] optional: true }} ]
        output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] }} ]
        """,
        ModelConfig(),
    )
    return RequestValidator(config)


def make_request(*shapes: tuple[int, ...], datatype: str = "FP32", **kwargs: object) -> InferenceRequest:
    inputs = {
        f"INPUT{i}": Tensor(f"INPUT{i}", datatype, shape, np.zeros(shape, np.float32)) for i, shape in enumerate(shapes)
    }
    return InferenceRequest("add_sub", inputs=inputs, **kwargs)  # type: ignore[arg-type]


def test_validator_accepts_matching_request_and_returns_batch_one() -> None:
    assert make_validator().validate(make_request((16,), (5,))) == 1


def test_validator_returns_batch_size_when_model_batches() -> None:
    assert make_validator(8).validate(make_request((3, 16), (3, 2))) == 3


def test_validator_names_missing_input_like_triton() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        make_validator().validate(make_request((16,)))
    assert info.value.message == (
        # With an optional input, Triton 2.51 words the count as a range.
        "[request id: <id_unknown>] expected number of inputs between 2 and 3 but got 1 inputs for model 'add_sub'. "
        "Got input(s) "
        "['INPUT0'], but missing required input(s) ['INPUT1']. Please provide all required input(s)."
    )


def test_validator_rejects_unknown_input() -> None:
    # As Triton 2.51: as many inputs as the model may take, one unknown, is named; too many is the count.
    request = make_request((16,), (1,), (1,))
    with pytest.raises(InvalidArgumentError, match=r"^unexpected inference input 'INPUT2' for model 'add_sub'$"):
        make_validator().validate(request)
    request = make_request((16,), (1,), (1,), (1,))
    with pytest.raises(InvalidArgumentError, match="expected number of inputs between 2 and 3 but got 4 inputs"):
        make_validator().validate(request)


def test_validator_rejects_wrong_datatype_with_request_id() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        make_validator().validate(make_request((16,), (1,), datatype="FP64", id="r7"))
    assert info.value.message == (
        "[request id: r7] inference input 'INPUT0' data-type is 'FP64', but model 'add_sub' expects 'FP32'"
    )


def test_validator_rejects_wrong_shape() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        make_validator().validate(make_request((2, 8), (1,)))
    assert "unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [16], got [2,8]." in info.value.message


def test_validator_rejects_batch_above_max_batch_size() -> None:
    with pytest.raises(InvalidArgumentError, match="batch-size must be <= 8 for 'add_sub'"):
        make_validator(8).validate(make_request((9, 16), (9, 1)))


def test_validator_rejects_mismatched_batch_sizes() -> None:
    with pytest.raises(InvalidArgumentError, match="input 'INPUT1' batch size does not match other inputs"):
        make_validator(8).validate(make_request((2, 16), (3, 1)))


def test_validator_rejects_unknown_requested_output() -> None:
    request = make_request((16,), (1,), outputs=[RequestedOutput("NOPE")])
    with pytest.raises(InvalidArgumentError, match="unexpected inference output 'NOPE' for model 'add_sub'"):
        make_validator().validate(request)


def test_validator_checks_each_layout_once_and_still_rejects_other_layouts() -> None:
    validator = make_validator(8)
    good = make_request((3, 16), (3, 2), layout=("good",))
    assert validator.validate(good) == 3
    # A request replayed from the same header has the same layout: its verdict is remembered.
    assert validator.validate(make_request((3, 16), (3, 2), layout=("good",))) == 3
    assert validator._verdicts == {("good",): 3}
    with pytest.raises(InvalidArgumentError, match="batch-size must be <= 8"):
        validator.validate(make_request((9, 16), (9, 2), layout=("too big",)))
    assert ("too big",) not in validator._verdicts  # failures are not remembered


def test_validator_forgets_layouts_when_full() -> None:
    validator = make_validator()
    for index in range(RequestValidator.MAX_VERDICTS + 1):
        validator.validate(make_request((16,), (5,), layout=(index,)))
    assert len(validator._verdicts) == 1
