"""The CUDA GPUs this server may place model instances on, as Triton finds them.

Triton counts the devices the CUDA driver shows (``CUDA_VISIBLE_DEVICES`` applies) and keeps those
whose compute capability is at least ``--min-supported-compute-capability`` (6.0 by default). Their
ids decide how ``KIND_AUTO`` instance groups resolve and which ``gpus: [...]`` a ``KIND_GPU`` group
may name. airtower asks the driver library itself (``libcuda``, through ``ctypes``), so finding GPUs
needs no framework installed; a machine without the driver, or whose driver fails to start, has no
GPUs, exactly like a CPU-only Triton build.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_MIN_COMPUTE_CAPABILITY", "Gpu", "driver_gpus", "supported_gpus"]

logger = logging.getLogger(__name__)

#: tritonserver's default ``--min-supported-compute-capability`` (TRITON_MIN_COMPUTE_CAPABILITY).
DEFAULT_MIN_COMPUTE_CAPABILITY = 6.0

_DRIVER_LIBRARIES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")
_CUDA_SUCCESS = 0
_COMPUTE_CAPABILITY_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
_COMPUTE_CAPABILITY_MINOR = 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR


@dataclass(frozen=True, slots=True)
class Gpu:
    """One device as the driver numbers it (after ``CUDA_VISIBLE_DEVICES``)."""

    id: int
    compute_capability: float


def driver_gpus(load: Callable[[str], ctypes.CDLL] = ctypes.CDLL) -> list[Gpu]:
    """Every device the CUDA driver shows; empty without a driver, a device, or a working driver."""
    driver = None
    for name in _DRIVER_LIBRARIES:
        try:
            driver = load(name)
            break
        except OSError:
            continue
    if driver is None:
        return []
    try:
        if driver.cuInit(0) != _CUDA_SUCCESS:
            logger.info("the CUDA driver is present but did not start: no GPUs")
            return []
        count = ctypes.c_int(0)
        if driver.cuDeviceGetCount(ctypes.byref(count)) != _CUDA_SUCCESS:
            return []
        gpus = []
        for ordinal in range(count.value):
            major, minor = ctypes.c_int(0), ctypes.c_int(0)
            results = (
                driver.cuDeviceGetAttribute(ctypes.byref(major), _COMPUTE_CAPABILITY_MAJOR, ordinal),
                driver.cuDeviceGetAttribute(ctypes.byref(minor), _COMPUTE_CAPABILITY_MINOR, ordinal),
            )
            if results == (_CUDA_SUCCESS, _CUDA_SUCCESS):
                gpus.append(Gpu(ordinal, float(f"{major.value}.{minor.value}")))
    except AttributeError:  # not a CUDA driver after all
        return []
    return gpus


def supported_gpus(
    min_compute_capability: float = DEFAULT_MIN_COMPUTE_CAPABILITY, gpus: Sequence[Gpu] | None = None
) -> tuple[int, ...]:
    """The ids of the GPUs (``gpus``, default: the driver's) that Triton would use."""
    found = driver_gpus() if gpus is None else gpus
    usable = []
    for gpu in found:
        if gpu.compute_capability >= min_compute_capability:
            usable.append(gpu.id)
        else:
            logger.warning(
                "GPU %d with compute capability %.1f is below the minimum supported %.1f and is not used",
                gpu.id,
                gpu.compute_capability,
                min_compute_capability,
            )
    return tuple(usable)
