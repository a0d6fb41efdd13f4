from __future__ import annotations

import asyncio
import queue

from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse
from airtower.models.instance import live_requests
from airtower.scheduling.direct import DirectScheduler
from airtower.scheduling.scheduler import Pending, ReadyQueue


def make_pending(loop: asyncio.AbstractEventLoop) -> Pending:
    future: asyncio.Future[InferenceResponse] = loop.create_future()
    return Pending(InferenceRequest("m"), future, 1, 0)


async def test_direct_scheduler_queues_one_request_per_batch_in_order() -> None:
    loop = asyncio.get_running_loop()
    ready: ReadyQueue = queue.SimpleQueue()
    scheduler = DirectScheduler(ready)
    pendings = [make_pending(loop) for _ in range(3)]
    for pending in pendings:
        scheduler.enqueue(pending)
    assert scheduler.pending_count() == 3
    assert [ready.get_nowait() for _ in range(3)] == [(p,) for p in pendings]
    assert scheduler.pending_count() == 0


async def test_cancelled_requests_are_dropped_before_executing() -> None:
    loop = asyncio.get_running_loop()
    first, cancelled, last = (make_pending(loop) for _ in range(3))
    cancelled.future.cancel()
    assert live_requests([first, cancelled, last]) == [first, last]
