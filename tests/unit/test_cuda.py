"""Finding the GPUs: the CUDA driver asked through ctypes (a fake driver here), Triton's compute
capability threshold, and no GPUs wherever the driver is missing or broken."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from airtower.cli import build_parser, options_from_args
from airtower.core.cuda import Gpu, driver_gpus, supported_gpus


class FakeDriver:
    """``libcuda`` as ctypes sees it: functions taking ``byref`` out-parameters, returning CUresult."""

    def __init__(self, capabilities: list[tuple[int, int]], init_result: int = 0) -> None:
        self.capabilities = capabilities
        self.init_result = init_result

    def cuInit(self, flags: int) -> int:
        return self.init_result

    def cuDeviceGetCount(self, count: Any) -> int:
        count._obj.value = len(self.capabilities)
        return 0

    def cuDeviceGetAttribute(self, value: Any, attribute: int, ordinal: int) -> int:
        major, minor = self.capabilities[ordinal]
        value._obj.value = {75: major, 76: minor}[attribute]
        return 0


def loader(driver: object | None, seen: list[str] | None = None) -> Any:
    def load(name: str) -> Any:
        if seen is not None:
            seen.append(name)
        if driver is None:
            raise OSError(f"{name}: cannot open shared object file")
        return driver

    return load


def test_driver_gpus_reads_count_and_compute_capability() -> None:
    seen: list[str] = []
    gpus = driver_gpus(loader(FakeDriver([(9, 0), (5, 2), (8, 6)]), seen))
    assert gpus == [Gpu(0, 9.0), Gpu(1, 5.2), Gpu(2, 8.6)]
    assert seen == ["libcuda.so.1"]


def test_no_driver_or_a_driver_that_does_not_start_means_no_gpus() -> None:
    seen: list[str] = []
    assert driver_gpus(loader(None, seen)) == []
    assert seen == ["libcuda.so.1", "libcuda.so", "nvcuda.dll"]
    assert driver_gpus(loader(FakeDriver([(9, 0)], init_result=100))) == []  # CUDA_ERROR_NO_DEVICE
    assert driver_gpus(loader(object())) == []  # a library without the driver API


def test_supported_gpus_keeps_those_at_or_above_the_minimum(caplog: pytest.LogCaptureFixture) -> None:
    gpus = [Gpu(0, 9.0), Gpu(1, 5.2), Gpu(2, 6.0)]
    assert supported_gpus(gpus=gpus) == (0, 2)
    assert "GPU 1 with compute capability 5.2 is below the minimum supported 6.0" in caplog.text
    assert supported_gpus(8.0, gpus) == (0,)
    assert supported_gpus(gpus=[]) == ()


def test_supported_gpus_on_this_machine_are_device_ids() -> None:
    gpus = supported_gpus()
    assert all(isinstance(gpu, int) and gpu >= 0 for gpu in gpus)
    assert ctypes.sizeof(ctypes.c_void_p) == 8


def test_min_supported_compute_capability_flag_reaches_the_options() -> None:
    repository = ["serve", "--model-repository", "/models"]
    assert options_from_args(build_parser().parse_args(repository)).min_supported_compute_capability == 6.0
    args = build_parser().parse_args([*repository, "--min-supported-compute-capability", "7.5"])
    assert options_from_args(args).min_supported_compute_capability == 7.5
