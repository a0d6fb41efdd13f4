from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

from airtower.core.request import InferenceRequest, RequestedOutput
from airtower.core.tensor import Tensor
from airtower.core.unordered_map import iteration_order, string_hash
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
        f"INPUT{i}": Tensor(f"INPUT{i}", datatype, shape, np.zeros([max(d, 0) for d in shape], np.float32))
        for i, shape in enumerate(shapes)
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
    assert info.value.message == (  # both are wrong: Triton meets INPUT1 first (core/unordered_map.py)
        "[request id: r7] inference input 'INPUT1' data-type is 'FP64', but model 'add_sub' expects 'FP32'"
    )


def test_validator_rejects_wrong_shape() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        make_validator().validate(make_request((2, 8), (1,)))
    assert "unexpected shape for input 'INPUT0' for model 'add_sub'. Expected [16], got [2,8]." in info.value.message


def test_validator_rejects_batch_above_max_batch_size() -> None:
    with pytest.raises(InvalidArgumentError, match="batch-size must be <= 8 for 'add_sub'"):
        make_validator(8).validate(make_request((9, 16), (9, 1)))


def test_validator_rejects_mismatched_batch_sizes() -> None:
    # Triton takes the batch size from INPUT1, the first input in its hash order, and finds INPUT0 off.
    with pytest.raises(InvalidArgumentError, match="input 'INPUT0' batch size does not match other inputs"):
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


@pytest.mark.parametrize(
    ("shapes", "outputs", "message"),
    [
        # Outputs before inputs, as a sorted set.
        ([(16,), (16,), (16,)], ["ZZ", "AA"], "unexpected inference output 'AA' for model 'add_sub'"),
        # The input count, listing the inputs in Triton's hash order.
        ([(16,), (16,), (16,), (16,)], [], "Got input(s) ['INPUT3','INPUT2','INPUT1','INPUT0']"),
        # With a batch dimension: the batch size comes from the first input in that order, and is
        # checked against max_batch_size after every input's batch size was compared with it.
        ([(1, 16), (17, 1)], [], "input 'INPUT0' batch size does not match other inputs for 'add_sub'"),
        ([(0, 16), (2, 1)], [], "input 'INPUT0' batch size does not match other inputs for 'add_sub'"),
        ([(2, 16), (0, 1)], [], "input byte size mismatch for input 'INPUT1' for model 'add_sub'. Expected 8, got 0"),
        ([(9, 15), (9, 1)], [], "inference request batch-size must be <= 8 for 'add_sub'"),
        ([(2, 15), (2, -1)], [], "All input dimensions should be specified for input 'INPUT1' for model 'add_sub', "
                                 "got [2,-1]"),
    ],
)  # fmt: skip
def test_validator_reports_the_error_triton_meets_first(
    shapes: list[tuple[int, ...]], outputs: list[str], message: str
) -> None:
    request = make_request(*shapes)
    request.outputs = [RequestedOutput(name) for name in outputs]
    with pytest.raises(InvalidArgumentError) as info:
        make_validator(8 if len(shapes[0]) == 2 else 0).validate(request)
    assert message in info.value.message


def test_unordered_map_iteration_order_is_libstdcxx_s() -> None:
    """Orders read off Triton 2.51's input-count errors (the inputs listed as it walks them)."""
    assert iteration_order(["INPUT0", "INPUT1", "EXTRA"]) == ["EXTRA", "INPUT1", "INPUT0"]
    assert iteration_order(["A", "B", "EXTRA"]) == ["B", "EXTRA", "A"]  # A and EXTRA share a bucket
    assert iteration_order(["", "B", "A"]) == ["A", "B", ""]
    assert iteration_order(["input0", "INPUT1", "INPUT0"]) == ["INPUT0", "INPUT1", "input0"]
    assert string_hash(b"") == 6142509188972423790


def test_validator_raises_a_decoder_s_byte_size_error_after_the_other_checks() -> None:
    validator = make_validator()
    request = make_request((16,), (1,), (1,), (1,))  # too many inputs: Triton says so before byte sizes
    request.input_errors = {"INPUT0": InvalidArgumentError("size of INPUT0")}
    with pytest.raises(InvalidArgumentError, match="expected number of inputs between 2 and 3 but got 4"):
        validator.validate(request)
    assert validator.validate(make_request((16,), (1,), layout=("L",))) == 1  # a verdict for this layout
    request = make_request((16,), (1,), layout=("L",))
    request.input_errors = {"INPUT1": InvalidArgumentError("size of INPUT1")}
    with pytest.raises(InvalidArgumentError, match=r"^size of INPUT1$"):
        validator.validate(request)
