from __future__ import annotations

import asyncio
from collections.abc import Sequence

from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse
from airtower.errors import TritonError
from airtower.scheduling.direct import DirectScheduler
from airtower.scheduling.scheduler import Pending


class Rejections:
    def __init__(self) -> None:
        self.calls: list[tuple[list[Pending], TritonError]] = []

    def __call__(self, batch: Sequence[Pending], error: TritonError) -> None:
        self.calls.append((list(batch), error))


def make_pending(loop: asyncio.AbstractEventLoop) -> Pending:
    future: asyncio.Future[InferenceResponse] = loop.create_future()
    return Pending(InferenceRequest("m"), future, 1, 0)


async def test_direct_scheduler_gives_one_request_per_batch_in_order() -> None:
    loop = asyncio.get_running_loop()
    rejections = Rejections()
    scheduler = DirectScheduler(rejections)
    pendings = [make_pending(loop) for _ in range(3)]
    for pending in pendings:
        scheduler.enqueue(pending)
    assert scheduler.pending_count() == 3
    await asyncio.sleep(0)  # the loop's iteration ends: the staged requests reach the instances
    assert [scheduler.take() for _ in range(3)] == [(p,) for p in pendings]
    assert scheduler.pending_count() == 0


async def test_direct_scheduler_skips_cancelled_requests() -> None:
    loop = asyncio.get_running_loop()
    rejections = Rejections()
    scheduler = DirectScheduler(rejections)
    first, cancelled, last = (make_pending(loop) for _ in range(3))
    cancelled.future.cancel()
    for pending in (first, cancelled, last):
        scheduler.enqueue(pending)
    await asyncio.sleep(0)
    assert scheduler.take() == (first,)
    assert scheduler.take() == (last,)
    [(dropped, error)] = rejections.calls
    assert dropped == [cancelled]
    assert error.code.value == "CANCELLED"


async def test_direct_scheduler_stop_lets_each_instance_exit_after_the_queue() -> None:
    loop = asyncio.get_running_loop()
    rejections = Rejections()
    scheduler = DirectScheduler(rejections)
    pending = make_pending(loop)
    scheduler.enqueue(pending)
    scheduler.stop(2)
    assert scheduler.take() == (pending,)
    assert scheduler.take() is None
    assert scheduler.take() is None


async def test_direct_scheduler_hands_requests_over_once_per_loop_iteration() -> None:
    # Requests queued in one iteration reach the instances together, after it: no instance thread
    # is woken while the loop still runs (and holds the GIL).
    loop = asyncio.get_running_loop()
    scheduler = DirectScheduler(Rejections())
    ready = scheduler._ready  # what the instance threads wait on
    pendings = [make_pending(loop) for _ in range(3)]
    for pending in pendings:
        scheduler.enqueue(pending)
    assert ready.qsize() == 0
    assert scheduler.pending_count() == 3
    await asyncio.sleep(0)
    assert ready.qsize() == 3
    assert [scheduler.take() for _ in range(3)] == [(p,) for p in pendings]
    scheduler.enqueue(make_pending(loop))
    assert ready.qsize() == 0
    await asyncio.sleep(0)
    assert ready.qsize() == 1


async def test_direct_scheduler_flush_hands_over_staged_requests_at_once() -> None:
    loop = asyncio.get_running_loop()
    scheduler = DirectScheduler(Rejections())
    pending = make_pending(loop)
    scheduler.enqueue(pending)
    scheduler.flush()
    assert scheduler.take() == (pending,)
