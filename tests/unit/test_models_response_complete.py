"""The response-complete hook (``InferenceRequest.on_complete``): a real ``Model`` with an
in-process Python model calls it once per request, in the loop iteration that settles the
request's future (before that future's done-callbacks), whatever the outcome."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airtower.backends.base import ModelContext
from airtower.backends.python.backend import PythonBackend
from airtower.core.model_config import parse_config_text
from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse
from airtower.core.tensor import Tensor
from airtower.errors import TritonError
from airtower.models.model import Model
from airtower.models.response_cache import ResponseCache

CONFIG = """
name: "doubler"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 2 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

# Doubles IN; a negative first element fails that request with an error response.
MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            if x[0] < 0:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("negative input")))
            else:
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x * 2)]))
        return responses
"""


async def load(root: Path, extra_config: str = "", cache: ResponseCache | None = None) -> Model:
    version = root / "doubler" / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(textwrap.dedent(MODEL))
    config = parse_config_text(CONFIG + extra_config, "config.pbtxt")
    model = Model(config, 1, ModelContext("doubler", root / "doubler", root, version=1), cache=cache)
    await model.load(PythonBackend())
    return model


@pytest.fixture
async def model(tmp_path: Path) -> AsyncIterator[Model]:
    loaded = await load(tmp_path)
    yield loaded
    await loaded.aclose()


def request(*values: float) -> InferenceRequest:
    data = np.array(values, np.float32)
    return InferenceRequest("doubler", inputs={"IN": Tensor.from_numpy("IN", "FP32", data)})


def watch(
    request: InferenceRequest, future: asyncio.Future[InferenceResponse], events: list[Any]
) -> asyncio.Future[None]:
    """Record the hook's calls (and whether the future was done) and the future's done-callback."""
    hooked: asyncio.Future[None] = future.get_loop().create_future()

    def hook(settled: asyncio.Future[InferenceResponse]) -> None:
        events.append(("hook", settled is future, settled.done()))
        if not hooked.done():
            hooked.set_result(None)

    future.add_done_callback(lambda _: events.append("done-callback"))  # registered first, runs later
    request.on_complete = hook
    return hooked


async def settle(hooked: asyncio.Future[None]) -> None:
    await asyncio.wait_for(hooked, 60)  # bounds a failure only
    for _ in range(3):  # let any later callback run too
        await asyncio.sleep(0)


async def test_hook_runs_once_before_the_futures_done_callbacks(model: Model) -> None:
    events: list[Any] = []
    first = request(1, 2)
    future = model.submit(first)
    await settle(watch(first, future, events))
    assert events == [("hook", True, True), "done-callback"]
    assert np.array_equal(future.result().outputs[0].data, [2, 4])
    assert first.on_complete is None  # cleared once called: the request no longer refers to the frontend


async def test_hook_runs_for_a_failed_request(model: Model) -> None:
    events: list[Any] = []
    failing = request(-1, 0)
    future = model.submit(failing)
    await settle(watch(failing, future, events))
    assert events == [("hook", True, True), "done-callback"]
    with pytest.raises(TritonError, match="negative input"):
        future.result()


async def test_hook_runs_for_a_request_its_client_cancelled(model: Model) -> None:
    events: list[Any] = []
    cancelled = request(3, 4)
    future = model.submit(cancelled)
    hooked = watch(cancelled, future, events)
    future.cancel()  # the client went away: the model drops (or finishes) the request, then calls the hook
    await settle(hooked)
    assert ("hook", True, True) in events
    assert events.count("done-callback") == 1
    assert len(events) == 2
    assert future.cancelled()


async def test_hook_runs_for_a_response_cache_hit(tmp_path: Path) -> None:
    cached_model = await load(tmp_path, "response_cache { enable: true }\n", ResponseCache(size=1 << 20))
    try:
        await cached_model.submit(request(5, 6))
        events: list[Any] = []
        again = request(5, 6)
        future = cached_model.submit(again)
        assert future.done()  # answered from the cache at once; the hook follows once the caller set it
        await settle(watch(again, future, events))
        assert events.count(("hook", True, True)) == 1
        assert len(events) == 2
        assert cached_model.stats.cache_hit.count == 1
    finally:
        await cached_model.aclose()
