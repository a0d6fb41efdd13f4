"""Doubles written as Triton 2.51 writes them in JSON (each expectation is the reference server's
output for the same value)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from airtower.frontends.http import rapidjson_double
from airtower.frontends.http.rapidjson_double import (
    double_text,
    float_array_json,
    python_double_text,
    python_float_array_json,
)


def f32(value: float) -> float:
    """``value`` rounded to FP32, as an FP32 output's element is widened for JSON."""
    return float(np.float32(value))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (f32(-0.13210486), "-0.13210485875606538"),  # Grisu2's digits, not repr's ...537
        (0.6404226422309875, "0.6404226422309876"),
        (2.0**64, "18446744073709553000.0"),  # decimal notation up to 21 digits
        (f32(1e20), "100000002004087730000.0"),
        (f32(1.5e20), "150000003006131600000.0"),
        (f32(1e21), "1.0000000200408774e21"),  # then an exponent without '+'
        (f32(1e22), "9.999999778196309e21"),
        (f32(3.2e-8), "3.199999909497819e-8"),  # and without zero padding
        (f32(1e-7), "1.0000000116860974e-7"),
        (f32(1e-6), "9.999999974752428e-7"),
        (f32(0.000001234), "0.0000012340000239419169"),  # down to 1e-6 without an exponent
        (f32(1.5e-5), "0.000014999999621068128"),
        (f32(1e-45), "1.401298464324817e-45"),
        (f32(-1e-38), "-9.999999350456404e-39"),
        (123456790528.0, "123456790528.0"),
        (2.0, "2.0"),
        (0.5, "0.5"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
    ],
)
def test_doubles_are_written_as_triton_writes_them(value: float, text: str) -> None:
    assert double_text(value) == text
    assert python_double_text(value) == text
    assert float_array_json([value]) == f"[{text}]"


def test_every_double_reads_back_as_itself() -> None:
    rng = np.random.default_rng(7)
    values = [
        *rng.integers(0, 2**63, 5000, dtype=np.int64).view(np.float64).tolist(),
        *rng.standard_normal(2000).tolist(),
        *rng.standard_normal(2000).astype(np.float32).tolist(),
        5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308, 2.0**53, 2.0**53 + 2,
    ]  # fmt: skip
    for value in values:
        if math.isfinite(value):
            assert float(double_text(value)) == value, value
            assert float(double_text(-value)) == -value, value


def test_float_array_json() -> None:
    for write in (float_array_json, python_float_array_json):
        assert write([]) == "[]"
        assert write([1.0, f32(0.1), -2.5e-9]) == "[1.0,0.10000000149011612,-2.5e-9]"
        assert write(np.array([[1.5, 2.5], [3.5, 4.5]])[:, 0]) == "[1.5,3.5]"  # not contiguous


def test_arrays_write_each_value_as_alone() -> None:
    """Large arrays take the numpy path; every element reads as ``double_text`` writes it alone."""
    rng = np.random.default_rng(11)
    values = np.concatenate(
        [
            rng.integers(0, 2**63, 3000, dtype=np.int64).view(np.float64),
            rng.standard_normal(3000),
            rng.standard_normal(3000).astype(np.float32),
            np.exp(rng.uniform(-700, 700, 1000)),
            [5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 2.0**52, 2.0**53, 2.0**64, 1e-7],
            [0.0, -0.0, math.nan, math.inf, -math.inf, 3.0, 1e300],
        ]
    )
    values[::3] *= -1
    expected = "[" + ",".join(python_double_text(value) for value in values.tolist()) + "]"
    assert python_float_array_json(values) == expected
    assert float_array_json(values) == expected
    with np.errstate(over="ignore", invalid="ignore"):  # beyond FP32's range: infinity
        singles = values.astype(np.float32)
    assert float_array_json(singles) == "[" + ",".join(double_text(value) for value in singles.tolist()) + "]"


def test_the_c_accelerator_writes_what_the_python_implementation_writes() -> None:
    """``make test`` builds ``_rapidjson_double.c``; it must agree with the Python writer everywhere."""
    if rapidjson_double._ACCELERATOR is None:
        assert not os.environ.get("AIRTOWER_EXPECT_COMPILED"), "make test builds the accelerator"
        pytest.skip("the C accelerator is not built (make compile)")
    rng = np.random.default_rng(20261127)
    values = np.concatenate(
        [
            rng.integers(0, 2**64, 20000, dtype=np.uint64).view(np.float64),
            rng.standard_normal(20000),
            rng.standard_normal(20000).astype(np.float32),
            np.exp(rng.uniform(-745, 709, 20000)),
            rng.integers(-(2**60), 2**60, 2000).astype(np.float64),
            [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 2.0**53, 2.0**53 - 1, 2.0**53 + 2, 1e21, 1e22],
        ]
    )
    with np.errstate(invalid="ignore"):
        expected = [python_double_text(value) for value in values.tolist()]
    assert [double_text(value) for value in values.tolist()] == expected
    assert float_array_json(values) == "[" + ",".join(expected) + "]"
