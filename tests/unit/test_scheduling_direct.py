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


async def test_take_nowait_and_the_idle_wake_of_an_instance_holding_the_loop() -> None:
    loop = asyncio.get_running_loop()
    rejections = Rejections()
    scheduler = DirectScheduler(rejections)
    woken: list[str] = []
    assert scheduler.can_share_loop()
    assert scheduler.take_nowait() == ()
    scheduler.set_idle_wake(lambda: woken.append("wake"))
    cancelled, pending = make_pending(loop), make_pending(loop)
    cancelled.future.cancel()
    scheduler.enqueue(cancelled)
    scheduler.enqueue(pending)
    assert woken == ["wake", "wake"]
    assert scheduler.take_nowait() == (pending,)  # the cancelled one is dropped on the way
    assert scheduler.take_nowait() == ()
    scheduler.stop(1)
    assert woken == ["wake", "wake", "wake"]
    scheduler.set_idle_wake(None)
    assert scheduler.take_nowait() is None
    assert [error.code.value for _, error in rejections.calls] == ["CANCELLED"]
