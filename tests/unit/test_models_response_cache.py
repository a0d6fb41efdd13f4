from __future__ import annotations

import numpy as np
import pytest

from airtower.core.request import InferenceRequest, RequestedOutput
from airtower.core.response import InferenceResponse
from airtower.core.tensor import Tensor
from airtower.errors import InvalidArgumentError
from airtower.models.response_cache import CacheConfig, ResponseCache, request_key


def request(values: list[float], outputs: tuple[str, ...] = ()) -> InferenceRequest:
    array = np.array(values, np.float32)
    return InferenceRequest(
        "m",
        inputs={"X": Tensor.from_numpy("X", "FP32", array)},
        outputs=[RequestedOutput(name) for name in outputs],
    )


def response(nbytes: int) -> InferenceResponse:
    return InferenceResponse("m", "1", "", [Tensor.from_numpy("Y", "UINT8", np.zeros(nbytes, np.uint8))])


def test_keys_depend_on_model_version_inputs_and_outputs() -> None:
    key = request_key("m", 1, request([1, 2]))
    assert key == request_key("m", 1, request([1, 2]))
    assert key != request_key("m", 2, request([1, 2]))
    assert key != request_key("n", 1, request([1, 2]))
    assert key != request_key("m", 1, request([1, 3]))
    assert key != request_key("m", 1, request([1, 2], ("Y",)))


def test_least_recently_used_entries_go_first() -> None:
    cache = ResponseCache(size=100)
    assert cache.insert(b"a", response(40))
    assert cache.insert(b"b", response(40))
    assert cache.lookup(b"a") is not None  # a is now the most recent
    assert cache.insert(b"c", response(40))  # evicts b
    assert cache.lookup(b"b") is None
    assert cache.lookup(b"a") is not None
    assert cache.used == 80
    assert not cache.insert(b"huge", response(101))
    assert len(cache) == 2


def test_cache_config_parsing() -> None:
    assert CacheConfig.parse([]) is None
    assert CacheConfig.parse([("local", "size", "1024")]) == CacheConfig(1024)
    with pytest.raises(InvalidArgumentError, match="only the 'local' cache"):
        CacheConfig.parse([("redis", "size", "1")])
    with pytest.raises(InvalidArgumentError, match="invalid cache size"):
        CacheConfig.parse([("local", "size", "big")])
