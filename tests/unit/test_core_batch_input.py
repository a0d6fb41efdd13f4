"""Batch inputs, ragged concatenation and batch-output scatter: the values Triton's backends compute."""

from __future__ import annotations

import numpy as np
import pytest

from airtower.core.batch_input import (
    BATCH_ACCUMULATED_ELEMENT_COUNT,
    BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO,
    BATCH_ELEMENT_COUNT,
    BATCH_INPUT_KINDS,
    BATCH_ITEM_SHAPE,
    BATCH_ITEM_SHAPE_FLATTEN,
    BATCH_MAX_ELEMENT_COUNT_AS_SHAPE,
    BatchInputSpec,
    batch_input_array,
    concatenate_ragged,
    element_counts,
    scatter_shapes,
    scatter_with_input_shape,
)
from airtower.errors import InternalError, InvalidArgumentError

#: Three requests of batch sizes 1, 2 and 1 (a batch of 4 items) with ragged second dimensions.
SHAPES = [(1, 3), (2, 2), (1, 5)]
#: The model_config.proto example: one batch-2 input of shape [3, 1] and one batch-1 of [2, 2].
PROTO_SHAPES = [(2, 3, 1), (1, 2, 2)]


def test_element_counts_include_the_batch_dimension() -> None:
    assert element_counts(SHAPES) == [3, 4, 5]
    assert element_counts([(4,), (1, 1, 1)]) == [4, 1]


def test_batch_element_count_has_one_value_per_request() -> None:
    array = batch_input_array(BATCH_ELEMENT_COUNT, SHAPES)
    assert array.dtype == np.int32
    assert array.tolist() == [3, 4, 5]


def test_batch_accumulated_element_count_gives_where_each_request_ends() -> None:
    # ragged_batching.md: requests [1, 3], [1, 4], [1, 5] → [3, 7, 12].
    assert batch_input_array(BATCH_ACCUMULATED_ELEMENT_COUNT, [(1, 3), (1, 4), (1, 5)]).tolist() == [3, 7, 12]
    assert batch_input_array(BATCH_ACCUMULATED_ELEMENT_COUNT, SHAPES).tolist() == [3, 7, 12]


def test_batch_accumulated_element_count_with_zero_starts_with_zero() -> None:
    array = batch_input_array(BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO, SHAPES)
    assert array.shape == (len(SHAPES) + 1,)
    assert array.tolist() == [0, 3, 7, 12]


def test_batch_max_element_count_as_shape_is_described_by_its_shape() -> None:
    array = batch_input_array(BATCH_MAX_ELEMENT_COUNT_AS_SHAPE, SHAPES, "TYPE_FP32")
    assert array.shape == (5,)
    assert array.dtype == np.float32


def test_batch_item_shape_has_one_row_per_batch_item() -> None:
    array = batch_input_array(BATCH_ITEM_SHAPE, PROTO_SHAPES)
    assert array.shape == (3, 2)
    assert array.tolist() == [[3, 1], [3, 1], [2, 2]]
    assert batch_input_array(BATCH_ITEM_SHAPE, SHAPES).tolist() == [[3], [2], [2], [5]]


def test_batch_item_shape_flatten_has_the_same_values_in_one_dimension() -> None:
    assert batch_input_array(BATCH_ITEM_SHAPE_FLATTEN, PROTO_SHAPES).tolist() == [3, 1, 3, 1, 2, 2]
    assert batch_input_array(BATCH_ITEM_SHAPE_FLATTEN, SHAPES).tolist() == [3, 2, 2, 5]


def test_batch_item_shape_of_inputs_with_only_a_batch_dimension_is_empty_per_item() -> None:
    assert batch_input_array(BATCH_ITEM_SHAPE, [(2,), (1,)]).shape == (3, 0)
    assert batch_input_array(BATCH_ITEM_SHAPE_FLATTEN, [(2,), (1,)]).shape == (0,)


@pytest.mark.parametrize("kind", BATCH_INPUT_KINDS)
@pytest.mark.parametrize(("data_type", "dtype"), [("TYPE_INT32", np.int32), ("TYPE_FP32", np.float32)])
def test_batch_input_has_the_configured_datatype(kind: str, data_type: str, dtype: type[np.generic]) -> None:
    array = batch_input_array(kind, SHAPES, data_type)
    assert array.dtype == dtype
    if kind != BATCH_MAX_ELEMENT_COUNT_AS_SHAPE:
        np.testing.assert_array_equal(array, batch_input_array(kind, SHAPES, "TYPE_INT32").astype(dtype))


@pytest.mark.parametrize("kind", BATCH_INPUT_KINDS)
def test_batch_input_of_a_single_request(kind: str) -> None:
    expected = {
        BATCH_ELEMENT_COUNT: [6],
        BATCH_ACCUMULATED_ELEMENT_COUNT: [6],
        BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO: [0, 6],
        BATCH_MAX_ELEMENT_COUNT_AS_SHAPE: [0] * 6,
        BATCH_ITEM_SHAPE: [[3], [3]],
        BATCH_ITEM_SHAPE_FLATTEN: [3, 3],
    }
    assert batch_input_array(kind, [(2, 3)]).tolist() == expected[kind]


def test_batch_input_spec_computes_its_kind() -> None:
    spec = BatchInputSpec(BATCH_ACCUMULATED_ELEMENT_COUNT, ("INDEX",), "TYPE_FP32", "INPUT")
    array = spec.to_array([(1, 3), (1, 4), (1, 5)])
    assert array.dtype == np.float32
    assert array.tolist() == [3.0, 7.0, 12.0]


def test_batch_input_rejects_unknown_kind_datatype_and_empty_batch() -> None:
    with pytest.raises(InvalidArgumentError, match="unsupported batch input kind 'BATCH_SOMETHING'"):
        batch_input_array("BATCH_SOMETHING", SHAPES)
    with pytest.raises(InvalidArgumentError, match="TYPE_INT32 or TYPE_FP32, got TYPE_INT64"):
        batch_input_array(BATCH_ELEMENT_COUNT, SHAPES, "TYPE_INT64")
    with pytest.raises(InvalidArgumentError, match="at least one request"):
        batch_input_array(BATCH_ELEMENT_COUNT, [])


def test_batch_item_shape_rejects_mixed_ranks_and_scalars() -> None:
    with pytest.raises(InvalidArgumentError, match=r"one rank, got shapes \[1,3\], \[1,2,2\]"):
        batch_input_array(BATCH_ITEM_SHAPE, [(1, 3), (1, 2, 2)])
    with pytest.raises(InvalidArgumentError, match="batch dimension"):
        batch_input_array(BATCH_ITEM_SHAPE_FLATTEN, [()])


def test_concatenate_ragged_flattens_every_request_in_order() -> None:
    arrays = [np.arange(3).reshape(1, 3), np.arange(10, 14).reshape(2, 2), np.arange(20, 25).reshape(1, 5)]
    result = concatenate_ragged(arrays)
    assert result.shape == (12,)
    assert result.tolist() == [0, 1, 2, 10, 11, 12, 13, 20, 21, 22, 23, 24]


def test_concatenate_ragged_of_one_request_is_a_flat_view() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    result = concatenate_ragged([array])
    assert result.shape == (6,)
    assert np.shares_memory(result, array)


def test_concatenate_ragged_keeps_bytes_elements() -> None:
    first = np.array([[b"a", b"bc"]], dtype=np.object_)
    second = np.array([[b"d"]], dtype=np.object_)
    assert concatenate_ragged([first, second]).tolist() == [b"a", b"bc", b"d"]


def test_concatenate_ragged_rejects_mixed_datatypes_and_no_request() -> None:
    with pytest.raises(InvalidArgumentError, match="different datatypes"):
        concatenate_ragged([np.zeros((1, 2), np.float32), np.zeros((1, 2), np.int32)])
    with pytest.raises(InvalidArgumentError, match="at least one request"):
        concatenate_ragged([])


def test_scatter_shapes_take_variable_dimensions_from_the_source_input() -> None:
    assert scatter_shapes([-1], SHAPES, batching=True) == SHAPES
    assert scatter_shapes([-1, 4], PROTO_SHAPES, batching=True) == [(2, 3, 4), (1, 2, 4)]
    assert scatter_shapes([2, -1], [(3, 5)], batching=False) == [(2, 5)]


def test_scatter_shapes_reject_a_variable_dimension_the_source_lacks() -> None:
    with pytest.raises(InternalError, match=r"variable dimension 2 .* shape \[1,3\]"):
        scatter_shapes([-1, -1], [(1, 3)], batching=True)


def test_scatter_with_input_shape_splits_a_flat_output_per_request() -> None:
    output = np.arange(12, dtype=np.float32)
    pieces = scatter_with_input_shape(output, [-1], SHAPES)
    assert [piece.shape for piece in pieces] == SHAPES
    assert pieces[0].tolist() == [[0, 1, 2]]
    assert pieces[1].tolist() == [[3, 4], [5, 6]]
    assert pieces[2].tolist() == [[7, 8, 9, 10, 11]]
    assert all(np.shares_memory(piece, output) for piece in pieces)


def test_scatter_with_input_shape_rejects_a_too_small_output() -> None:
    with pytest.raises(InternalError, match=r"holds 11 elements.*need 12"):
        scatter_with_input_shape(np.zeros(11, np.float32), [-1], SHAPES)
