from __future__ import annotations

import asyncio
from collections.abc import Sequence

from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse
from airtower.scheduling.direct import DirectScheduler
from airtower.scheduling.scheduler import DoneCallback, Pending


class FakeExecutor:
    def __init__(self) -> None:
        self.batches: list[Sequence[Pending]] = []
        self.done: DoneCallback | None = None

    def execute(self, batch: Sequence[Pending], done: DoneCallback) -> None:
        self.batches.append(batch)
        self.done = done

    def finish(self) -> None:
        assert self.done is not None
        self.done(self, self.batches[-1])


def make_pending(loop: asyncio.AbstractEventLoop) -> Pending:
    future: asyncio.Future[InferenceResponse] = loop.create_future()
    return Pending(InferenceRequest("m"), future, 1, 0)


async def test_direct_scheduler_uses_every_idle_instance_then_queues() -> None:
    loop = asyncio.get_running_loop()
    a, b = FakeExecutor(), FakeExecutor()
    scheduler = DirectScheduler([a, b])
    pendings = [make_pending(loop) for _ in range(3)]
    for pending in pendings:
        scheduler.enqueue(pending)
    assert len(a.batches) + len(b.batches) == 2
    assert scheduler.pending_count() == 1
    busy = b if b.batches else a
    busy.finish()
    assert busy.batches[-1] == (pendings[2],)
    assert scheduler.pending_count() == 0


async def test_direct_scheduler_drops_cancelled_requests_before_executing() -> None:
    loop = asyncio.get_running_loop()
    executor = FakeExecutor()
    scheduler = DirectScheduler([executor])
    first, cancelled, last = (make_pending(loop) for _ in range(3))
    for pending in (first, cancelled, last):
        scheduler.enqueue(pending)
    cancelled.future.cancel()
    executor.finish()
    assert executor.batches[-1] == (last,)
