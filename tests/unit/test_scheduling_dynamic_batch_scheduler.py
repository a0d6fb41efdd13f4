from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse
from airtower.core.tensor import Tensor
from airtower.errors import QueueTimeoutError, TritonError
from airtower.scheduling.dynamic_batch_scheduler import DynamicBatchScheduler, ResponseOrder, shape_key_function
from airtower.scheduling.dynamic_batcher import BatcherPolicy, QueuePolicy
from airtower.scheduling.scheduler import Pending

HOUR_NS = 3600 * 10**9


class Rejections:
    def __init__(self) -> None:
        self.calls: list[tuple[list[Pending], TritonError]] = []

    def __call__(self, batch: Sequence[Pending], error: TritonError) -> None:
        self.calls.append((list(batch), error))


def pending(loop: asyncio.AbstractEventLoop, enqueue_ns: int | None = None) -> Pending:
    future: asyncio.Future[InferenceResponse] = loop.create_future()
    return Pending(InferenceRequest("m"), future, 1, time.monotonic_ns() if enqueue_ns is None else enqueue_ns)


def policy(**fields: object) -> BatcherPolicy:
    defaults: dict[str, object] = {"max_batch_size": 8, "preferred_batch_sizes": (4,), "max_queue_delay_ns": HOUR_NS}
    defaults.update(fields)
    return BatcherPolicy(**defaults)  # type: ignore[arg-type]


async def test_take_returns_a_batch_once_a_preferred_size_is_queued() -> None:
    loop = asyncio.get_running_loop()
    scheduler = DynamicBatchScheduler(policy(), Rejections())
    requests = [pending(loop) for _ in range(4)]
    for request in requests:
        scheduler.enqueue(request)
    assert scheduler.pending_count() == 4
    assert scheduler.take() == requests
    assert scheduler.pending_count() == 0


async def test_a_waiting_instance_wakes_when_the_batch_fills() -> None:
    loop = asyncio.get_running_loop()
    scheduler = DynamicBatchScheduler(policy(), Rejections())
    taken: list[Sequence[Pending] | None] = []
    thread = threading.Thread(target=lambda: taken.append(scheduler.take()))
    requests = [pending(loop) for _ in range(4)]
    scheduler.enqueue(requests[0])
    thread.start()  # waits: one request, an hour of queue delay left
    for request in requests[1:]:
        scheduler.enqueue(request)
    await asyncio.to_thread(thread.join, 30)  # the loop runs the wake-up meanwhile
    assert taken == [requests]


async def test_requests_queued_in_one_loop_iteration_form_one_batch() -> None:
    loop = asyncio.get_running_loop()
    scheduler = DynamicBatchScheduler(policy(preferred_batch_sizes=(), max_queue_delay_ns=0), Rejections())
    taken: list[Sequence[Pending] | None] = []
    thread = threading.Thread(target=lambda: taken.append(scheduler.take()))
    thread.start()
    while not scheduler._parked:  # noqa: ASYNC110 - waits for the instance thread to park (no event to wait on)
        await asyncio.sleep(0.01)
    requests = [pending(loop) for _ in range(3)]
    for request in requests:  # as the HTTP frontend queues the requests read in one loop iteration
        scheduler.enqueue(request)
    assert not taken  # the instance is woken once, after the iteration
    await asyncio.to_thread(thread.join, 30)
    assert taken == [requests]


async def test_flush_runs_a_partial_batch_without_waiting_for_the_delay() -> None:
    loop = asyncio.get_running_loop()
    scheduler = DynamicBatchScheduler(policy(), Rejections())
    requests = [pending(loop) for _ in range(2)]
    for request in requests:
        scheduler.enqueue(request)
    taken: list[Sequence[Pending] | None] = []
    thread = threading.Thread(target=lambda: taken.append(scheduler.take()))
    thread.start()
    scheduler.flush()
    thread.join(timeout=30)
    assert taken == [requests]


async def test_stop_runs_what_is_queued_then_lets_every_instance_exit() -> None:
    loop = asyncio.get_running_loop()
    scheduler = DynamicBatchScheduler(policy(), Rejections())
    request = pending(loop)
    scheduler.enqueue(request)
    scheduler.stop(2)
    assert scheduler.take() == [request]
    assert scheduler.take() is None
    assert scheduler.take() is None


async def test_cancelled_requests_are_left_out_of_the_batch() -> None:
    loop = asyncio.get_running_loop()
    scheduler = DynamicBatchScheduler(policy(preferred_batch_sizes=(3,)), Rejections())
    first, cancelled, last = (pending(loop) for _ in range(3))
    for request in (first, cancelled, last):
        scheduler.enqueue(request)
    cancelled.future.cancel()
    assert scheduler.take() == [first, last]


async def test_a_batch_of_cancelled_requests_only_is_skipped() -> None:
    loop = asyncio.get_running_loop()
    scheduler = DynamicBatchScheduler(policy(preferred_batch_sizes=(2,)), Rejections())
    gone = [pending(loop) for _ in range(2)]
    kept = [pending(loop) for _ in range(2)]
    for request in gone + kept:
        scheduler.enqueue(request)
    for request in gone:
        request.future.cancel()
    assert scheduler.take() == kept


async def test_requests_timed_out_in_the_queue_go_to_the_reject_callback() -> None:
    loop = asyncio.get_running_loop()
    rejections = Rejections()
    queue_policy = QueuePolicy(timeout_action="REJECT", default_timeout_us=1)
    scheduler = DynamicBatchScheduler(policy(default_queue_policy=queue_policy), rejections)
    request = pending(loop, enqueue_ns=0)  # its deadline has long passed
    scheduler.enqueue(request)
    scheduler.stop(1)
    assert scheduler.take() is None
    [(batch, error)] = rejections.calls
    assert batch == [request]
    assert isinstance(error, QueueTimeoutError)
    assert error.message == "Request timeout expired"


async def test_preserve_ordering_numbers_the_requests_in_the_order_they_are_taken() -> None:
    loop = asyncio.get_running_loop()
    scheduler = DynamicBatchScheduler(policy(preferred_batch_sizes=(2,), preserve_ordering=True), Rejections())
    requests = [pending(loop) for _ in range(4)]
    for request in requests:
        scheduler.enqueue(request)
    scheduler.take()
    scheduler.take()
    assert [request.order for request in requests] == [0, 1, 2, 3]


def test_response_order_holds_later_requests_until_earlier_ones_are_delivered() -> None:
    order = ResponseOrder()
    delivered: list[int] = []
    order.deliver(2, lambda: delivered.append(2))
    order.deliver(1, lambda: delivered.append(1))
    assert delivered == []
    assert order.held_count() == 2
    order.deliver(0, lambda: delivered.append(0))
    assert delivered == [0, 1, 2]
    order.deliver(3, lambda: delivered.append(3))
    assert delivered == [0, 1, 2, 3]
    assert order.held_count() == 0


def config(text: str) -> ModelConfig:
    return text_format.Parse(text, ModelConfig())


def request_with(**shapes: tuple[int, ...]) -> InferenceRequest:
    inputs = {name: Tensor.from_numpy(name, "FP32", np.zeros(shape, np.float32)) for name, shape in shapes.items()}
    return InferenceRequest("m", inputs=inputs)


def test_inputs_with_fixed_dims_never_keep_requests_apart() -> None:
    key = shape_key_function(config('max_batch_size: 8 input [ { name: "A" data_type: TYPE_FP32 dims: [ 4 ] } ]'))
    assert key(request_with(A=(1, 4))) == key(request_with(A=(3, 4)))


def test_variable_dims_must_match_except_in_the_batch_dimension() -> None:
    key = shape_key_function(
        config(
            'max_batch_size: 8 input [ { name: "A" data_type: TYPE_FP32 dims: [ -1 ] },'
            ' { name: "B" data_type: TYPE_FP32 dims: [ 2 ] } ]'
        )
    )
    assert key(request_with(A=(1, 5), B=(1, 2))) == key(request_with(A=(3, 5), B=(3, 2)))
    assert key(request_with(A=(1, 5), B=(1, 2))) != key(request_with(A=(1, 6), B=(1, 2)))


def test_ragged_inputs_may_differ() -> None:
    key = shape_key_function(
        config('max_batch_size: 8 input [ { name: "A" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]')
    )
    assert key(request_with(A=(1, 5))) == key(request_with(A=(1, 6)))


async def test_every_request_is_taken_exactly_once_by_concurrent_instances() -> None:
    loop = asyncio.get_running_loop()
    scheduler = DynamicBatchScheduler(policy(preferred_batch_sizes=(), max_queue_delay_ns=0), Rejections())
    taken: list[Pending] = []
    lock = threading.Lock()

    def instance() -> None:
        while (batch := scheduler.take()) is not None:
            assert 1 <= len(batch) <= 8
            with lock:
                taken.extend(batch)

    threads = [threading.Thread(target=instance) for _ in range(4)]
    for thread in threads:
        thread.start()
    requests = [pending(loop) for _ in range(2000)]
    for request in requests:
        scheduler.enqueue(request)
    scheduler.stop(len(threads))
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(map(id, taken)) == sorted(map(id, requests))


async def test_without_a_queue_delay_an_instance_holding_the_loop_takes_batches_without_parking() -> None:
    loop = asyncio.get_running_loop()
    assert not DynamicBatchScheduler(policy(), Rejections()).can_share_loop()  # a delay: batches come due later
    scheduler = DynamicBatchScheduler(policy(max_queue_delay_ns=0, preserve_ordering=True), Rejections())
    assert scheduler.can_share_loop()
    woken: list[str] = []
    scheduler.set_idle_wake(lambda: woken.append("wake"))
    assert scheduler.take_nowait() == ()
    cancelled, *requests = (pending(loop) for _ in range(4))
    cancelled.future.cancel()
    for request in (cancelled, *requests):
        scheduler.enqueue(request)
    assert woken == ["wake"] * 4
    assert scheduler.take_nowait() == requests  # all queued so far, less the cancelled one
    assert [request.order for request in requests] == [0, 1, 2]
    assert scheduler.take_nowait() == ()
    scheduler.stop(1)
    assert woken == ["wake"] * 5
    assert scheduler.take_nowait() is None
