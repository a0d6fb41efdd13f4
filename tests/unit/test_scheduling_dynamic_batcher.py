"""Unit tests of the dynamic batcher's pure decisions, driven by a fake clock (plain ints, ns)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from airtower.errors import ErrorCode, QueueFullError
from airtower.scheduling.dynamic_batcher import BatchDecision, BatcherPolicy, BatchQueue, QueuePolicy

US = 1_000  # ns


@dataclass(frozen=True, slots=True)
class Req:
    name: str
    batch_size: int = 1
    enqueue_ns: int = 0
    priority: int = 0
    timeout_us: int = 0
    shape_key: Hashable = field(default=())


def make_queue(max_batch_size: int = 8, **kwargs: object) -> BatchQueue[Req]:
    return BatchQueue(BatcherPolicy(max_batch_size, **kwargs))  # type: ignore[arg-type]


def fill(queue: BatchQueue[Req], *names: str, now_ns: int = 0, **kwargs: object) -> list[Req]:
    reqs = [Req(name, enqueue_ns=now_ns, **kwargs) for name in names]  # type: ignore[arg-type]
    for req in reqs:
        queue.enqueue(req, now_ns)
    return reqs


def add(queue: BatchQueue[Req], reqs: Iterable[Req]) -> None:
    for req in reqs:
        queue.enqueue(req, req.enqueue_ns)


def names(items: Sequence[Req]) -> list[str]:
    return [item.name for item in items]


def batches(queue: BatchQueue[Req], now_ns: int) -> list[list[str]]:
    """Every batch the queue hands out at ``now_ns``, until it has none to run now."""
    out: list[list[str]] = []
    while (decision := queue.next_batch(now_ns)).batch:
        out.append(names(decision.batch))
    return out


# --- preferred batch sizes -------------------------------------------------------------------


def test_dynamic_batcher_sends_exact_preferred_batch_size_at_once() -> None:
    queue = make_queue(8, preferred_batch_sizes=(4,), max_queue_delay_ns=1_000 * US)
    fill(queue, "a", "b", "c", "d")
    decision = queue.next_batch(0)
    assert names(decision.batch) == ["a", "b", "c", "d"]
    assert decision.rejected == []
    assert decision.wake_at_ns is None
    assert len(queue) == 0


def test_dynamic_batcher_sends_preferred_prefix_before_max_batch_size() -> None:
    queue = make_queue(8, preferred_batch_sizes=(4,), max_queue_delay_ns=1_000 * US)
    fill(queue, "a", "b", "c", "d", "e", "f")
    assert names(queue.next_batch(0).batch) == ["a", "b", "c", "d"]
    rest = queue.next_batch(0)
    assert rest.batch == []
    assert rest.wake_at_ns == 1_000 * US
    assert len(queue) == 2


@pytest.mark.parametrize(
    ("count", "expected"),
    [(1, None), (2, 2), (3, 2), (4, 4), (5, 4), (6, 6), (7, 6), (8, 6)],
)
def test_dynamic_batcher_picks_largest_preferred_size_reached(count: int, expected: int | None) -> None:
    queue = make_queue(8, preferred_batch_sizes=(2, 4, 6), max_queue_delay_ns=1_000 * US)
    fill(queue, *(str(i) for i in range(count)))
    decision = queue.next_batch(0)
    if expected is None:
        assert decision.batch == []
        assert decision.wake_at_ns == 1_000 * US
    else:
        assert names(decision.batch) == [str(i) for i in range(expected)]


def test_dynamic_batcher_stops_before_passing_largest_preferred_size() -> None:
    # Triton marks the batch when the next request would pass the largest preferred size and
    # sends that mark while the delay lasts; once the delay expired, everything that fits goes.
    queue = make_queue(8, preferred_batch_sizes=(4,), max_queue_delay_ns=100 * US)
    add(queue, [Req("a", batch_size=3), Req("b", batch_size=3)])
    assert names(queue.next_batch(0).batch) == ["a"]
    assert queue.next_batch(0).wake_at_ns == 100 * US

    queue = make_queue(8, preferred_batch_sizes=(4,), max_queue_delay_ns=100 * US)
    add(queue, [Req("a", batch_size=3), Req("b", batch_size=3)])
    assert names(queue.next_batch(100 * US).batch) == ["a", "b"]


def test_dynamic_batcher_sends_preferred_prefix_when_delay_is_zero() -> None:
    # With a preferred size reached, GetDynamicBatch returns it even with no queue delay.
    queue = make_queue(8, preferred_batch_sizes=(2, 4))
    fill(queue, "a", "b", "c")
    assert batches(queue, 0) == [["a", "b"], ["c"]]


# --- queue delay -----------------------------------------------------------------------------


def test_dynamic_batcher_sends_whatever_is_queued_when_delay_is_zero() -> None:
    queue = make_queue(8)
    fill(queue, "a", "b", "c")
    decision = queue.next_batch(0)
    assert names(decision.batch) == ["a", "b", "c"]
    assert decision.wake_at_ns is None


def test_dynamic_batcher_flushes_non_preferred_batch_when_max_queue_delay_expires() -> None:
    queue = make_queue(8, preferred_batch_sizes=(4,), max_queue_delay_ns=100 * US)
    fill(queue, "a", "b", now_ns=0)
    waiting = queue.next_batch(50 * US)
    assert waiting == BatchDecision([], [], 100 * US)
    assert names(queue.next_batch(100 * US).batch) == ["a", "b"]


def test_dynamic_batcher_wake_at_counts_from_oldest_request_of_the_batch() -> None:
    queue = make_queue(8, preferred_batch_sizes=(4,), max_queue_delay_ns=100 * US, priority_levels=2)
    # The oldest request is at the lower priority level, so it is not the first of the batch.
    add(queue, [Req("late", enqueue_ns=30 * US, priority=2), Req("early", enqueue_ns=10 * US, priority=1)])
    queue.enqueue(Req("later", enqueue_ns=40 * US, priority=1), 40 * US)
    assert queue.next_batch(40 * US).wake_at_ns == 110 * US
    assert names(queue.next_batch(110 * US).batch) == ["early", "later", "late"]


def test_dynamic_batcher_wake_at_is_closest_queue_timeout_when_sooner() -> None:
    policy = QueuePolicy(default_timeout_us=20)
    queue = make_queue(8, preferred_batch_sizes=(4,), max_queue_delay_ns=100 * US, default_queue_policy=policy)
    fill(queue, "a", now_ns=5 * US)
    assert queue.next_batch(5 * US).wake_at_ns == 25 * US
    decision = queue.next_batch(25 * US)
    assert names(decision.rejected) == ["a"]
    assert decision.wake_at_ns is None


def test_dynamic_batcher_wake_at_is_none_when_queue_empty() -> None:
    assert make_queue(8, max_queue_delay_ns=100 * US).next_batch(0) == BatchDecision([], [], None)


# --- max_batch_size and shapes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([1] * 10, [[str(i) for i in range(8)], ["8", "9"]]),
        ([3, 3, 3], [["0", "1"], ["2"]]),
        ([5, 4], [["0"], ["1"]]),
        ([4, 2, 2, 1], [["0", "1", "2"], ["3"]]),
    ],
)
def test_dynamic_batcher_never_exceeds_max_batch_size(sizes: list[int], expected: list[list[str]]) -> None:
    queue = make_queue(8)
    add(queue, [Req(str(i), batch_size=size) for i, size in enumerate(sizes)])
    assert batches(queue, 0) == expected


def test_dynamic_batcher_sends_oversized_request_alone() -> None:
    queue = make_queue(4, max_queue_delay_ns=100 * US)
    add(queue, [Req("big", batch_size=6), Req("small")])
    assert batches(queue, 0) == [["big"]]
    queue = make_queue(4, max_queue_delay_ns=100 * US)
    add(queue, [Req("big", batch_size=6)])
    assert batches(queue, 0) == [["big"]]


def test_dynamic_batcher_does_not_merge_requests_with_different_shapes() -> None:
    queue = make_queue(8)
    add(queue, [Req(n, shape_key=k) for n, k in [("a1", "A"), ("a2", "A"), ("b1", "B"), ("a3", "A")]])
    assert batches(queue, 0) == [["a1", "a2"], ["b1"], ["a3"]]


def test_dynamic_batcher_sends_at_once_when_next_request_has_another_shape() -> None:
    # The batch can't grow past a request of another shape, so it goes without waiting.
    queue = make_queue(8, preferred_batch_sizes=(4,), max_queue_delay_ns=100 * US)
    add(queue, [Req("a1", shape_key=(3,)), Req("b1", shape_key=(5,)), Req("a2", shape_key=(3,))])
    assert names(queue.next_batch(0).batch) == ["a1"]
    assert names(queue.next_batch(0).batch) == ["b1"]
    assert queue.next_batch(0).wake_at_ns == 100 * US


# --- priorities ------------------------------------------------------------------------------


def test_dynamic_batcher_serves_priority_levels_in_order_and_clamps_levels() -> None:
    queue = make_queue(8, priority_levels=3, default_priority_level=2)
    add(queue, [Req("p0", priority=0), Req("p3", priority=3), Req("p1", priority=1), Req("p7", priority=7)])
    assert batches(queue, 0) == [["p1", "p0", "p7", "p3"]]


def test_dynamic_batcher_ignores_priority_when_priority_levels_is_zero() -> None:
    queue = make_queue(8)
    add(queue, [Req("a", priority=3), Req("b", priority=1), Req("c")])
    assert batches(queue, 0) == [["a", "b", "c"]]


def test_dynamic_batcher_higher_priority_fills_batch_first() -> None:
    queue = make_queue(2, priority_levels=2, default_priority_level=2)
    add(queue, [Req("low1"), Req("low2"), Req("high", priority=1)])
    assert batches(queue, 0) == [["high", "low1"], ["low2"]]


def test_policy_level_of_maps_priority_parameter_to_level() -> None:
    policy = BatcherPolicy(8, priority_levels=4, default_priority_level=3)
    assert [policy.level_of(p) for p in (0, 1, 2, 4, 5, 2**63)] == [3, 1, 2, 4, 3, 3]
    assert BatcherPolicy(8).level_of(2) == 0


# --- queue policies: max_queue_size ----------------------------------------------------------


def test_dynamic_batcher_rejects_enqueue_when_level_is_full() -> None:
    queue = make_queue(
        8, priority_levels=2, default_priority_level=2, priority_queue_policy={1: QueuePolicy(max_queue_size=1)}
    )
    queue.enqueue(Req("a", priority=1), 0)
    with pytest.raises(QueueFullError) as info:
        queue.enqueue(Req("b", priority=1), 0)
    assert info.value.code is ErrorCode.UNAVAILABLE
    assert info.value.message == "[request id: <id_unknown>] Exceeds maximum queue size"
    with pytest.raises(QueueFullError, match=r"^\[request id: r7\] Exceeds maximum queue size$"):
        queue.enqueue(Req("c", priority=1), 0, request_id="r7")
    fill(queue, "d", "e", "f")  # level 2 uses the (unbounded) default policy
    assert len(queue) == 4


def test_dynamic_batcher_max_queue_size_counts_requests_not_batch_sizes() -> None:
    queue = make_queue(8, default_queue_policy=QueuePolicy(max_queue_size=2))
    add(queue, [Req("a", batch_size=4), Req("b", batch_size=4)])
    with pytest.raises(QueueFullError):
        queue.enqueue(Req("c"), 0)
    queue.next_batch(0)
    fill(queue, "d", "e")  # room again once the batch left the queue


def test_dynamic_batcher_max_queue_size_counts_delayed_requests() -> None:
    policy = QueuePolicy(timeout_action="DELAY", default_timeout_us=10, max_queue_size=2)
    queue = make_queue(8, preferred_batch_sizes=(4,), max_queue_delay_ns=100 * US, default_queue_policy=policy)
    fill(queue, "a", "b")
    assert queue.next_batch(10 * US).batch == []  # both are now delayed, still queued
    with pytest.raises(QueueFullError):
        queue.enqueue(Req("c", enqueue_ns=10 * US), 10 * US)


# --- queue policies: timeouts ----------------------------------------------------------------


def test_dynamic_batcher_rejects_requests_whose_queue_timeout_expired() -> None:
    policy = QueuePolicy(default_timeout_us=10)
    queue = make_queue(8, preferred_batch_sizes=(4,), max_queue_delay_ns=100 * US, default_queue_policy=policy)
    fill(queue, "a", "b", now_ns=0)
    fill(queue, "c", now_ns=5 * US)
    decision = queue.next_batch(10 * US)
    assert names(decision.rejected) == ["a", "b"]
    assert decision.batch == []
    assert decision.wake_at_ns == 15 * US
    assert len(queue) == 1
    later = queue.next_batch(15 * US)
    assert (names(later.rejected), later.batch, later.wake_at_ns, len(queue)) == (["c"], [], None, 0)


def test_dynamic_batcher_returns_rejected_requests_alongside_a_batch() -> None:
    policy = QueuePolicy(default_timeout_us=10)
    queue = make_queue(8, default_queue_policy=policy)
    fill(queue, "old", now_ns=0)
    fill(queue, "new", now_ns=8 * US)
    decision = queue.next_batch(10 * US)
    assert (names(decision.batch), names(decision.rejected)) == (["new"], ["old"])


def test_dynamic_batcher_delays_expired_requests_behind_their_level() -> None:
    policy = QueuePolicy(timeout_action="DELAY", default_timeout_us=10)
    queue = make_queue(2, default_queue_policy=policy)
    fill(queue, "a", now_ns=0)
    fill(queue, "b", "c", now_ns=20 * US)
    decision = queue.next_batch(25 * US)
    assert (names(decision.batch), decision.rejected) == (["b", "c"], [])
    assert batches(queue, 25 * US) == [["a"]]


def test_dynamic_batcher_delayed_requests_precede_lower_priority_levels_and_never_expire_again() -> None:
    delay_policy = QueuePolicy(timeout_action="DELAY", default_timeout_us=10)
    queue = make_queue(
        8,
        preferred_batch_sizes=(8,),
        max_queue_delay_ns=1_000 * US,
        priority_levels=2,
        default_priority_level=2,
        priority_queue_policy={1: delay_policy},
    )
    add(queue, [Req("high_old", priority=1), Req("low")])
    queue.enqueue(Req("high_new", enqueue_ns=50 * US, priority=1), 50 * US)
    waiting = queue.next_batch(50 * US)  # high_old is delayed now; high_new expires at 60 us
    assert (waiting.batch, waiting.rejected, waiting.wake_at_ns) == ([], [], 60 * US)
    assert queue.next_batch(500 * US).batch == []  # delayed requests are not rejected later
    assert names(queue.drain()) == ["high_old", "high_new", "low"]


@pytest.mark.parametrize(
    ("default_us", "override", "request_us", "deadline_us"),
    [
        (100, True, 10, 10),  # a request may lower the default
        (100, True, 200, 100),  # ...but not raise it
        (100, True, 0, 100),  # 0: the default applies
        (100, False, 10, 100),  # no override allowed
        (0, True, 10, None),  # no default timeout: the request's is ignored (as tritonserver 2.51)
        (0, False, 0, None),
    ],
)
def test_dynamic_batcher_queue_timeout_override_rules(
    default_us: int, override: bool, request_us: int, deadline_us: int | None
) -> None:
    policy = QueuePolicy(default_timeout_us=default_us, allow_timeout_override=override)
    queue = make_queue(8, preferred_batch_sizes=(4,), max_queue_delay_ns=10_000 * US, default_queue_policy=policy)
    queue.enqueue(Req("a", timeout_us=request_us), 0)
    if deadline_us is None:
        assert queue.next_batch(0).wake_at_ns == 10_000 * US
        assert queue.next_batch(10_000 * US).rejected == []
        return
    assert queue.next_batch(0).wake_at_ns == deadline_us * US
    assert queue.next_batch(deadline_us * US - 1).rejected == []
    assert names(queue.next_batch(deadline_us * US).rejected) == ["a"]


def test_dynamic_batcher_queue_timeout_starts_at_enqueue_time() -> None:
    policy = QueuePolicy(default_timeout_us=10)
    queue = make_queue(8, preferred_batch_sizes=(4,), max_queue_delay_ns=100 * US, default_queue_policy=policy)
    queue.enqueue(Req("a", enqueue_ns=0), 7 * US)
    assert queue.next_batch(7 * US).wake_at_ns == 17 * US


# --- drain and size --------------------------------------------------------------------------


def test_dynamic_batcher_drain_returns_everything_in_service_order() -> None:
    policy = QueuePolicy(timeout_action="DELAY", default_timeout_us=10)
    queue = make_queue(
        8,
        preferred_batch_sizes=(8,),
        max_queue_delay_ns=1_000 * US,
        priority_levels=2,
        default_priority_level=2,
        default_queue_policy=policy,
    )
    add(queue, [Req("low_old"), Req("high", enqueue_ns=20 * US, priority=1)])
    queue.enqueue(Req("low_new", enqueue_ns=20 * US), 20 * US)
    assert queue.next_batch(20 * US).batch == []  # low_old is delayed behind low_new
    assert len(queue) == 3
    assert names(queue.drain()) == ["high", "low_new", "low_old"]
    assert len(queue) == 0
    assert queue.drain() == []
    assert queue.next_batch(20 * US) == BatchDecision([], [], None)


# --- from_config -----------------------------------------------------------------------------


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_batcher_policy_from_config_defaults() -> None:
    policy = BatcherPolicy.from_config(parse('name: "m" max_batch_size: 8 dynamic_batching {}'))
    assert policy == BatcherPolicy(8)
    assert policy.default_queue_policy == QueuePolicy("REJECT", 0, False, 0)
    assert policy.max_preferred_batch_size == 8


def test_batcher_policy_from_config_without_batching_runs_requests_alone() -> None:
    assert BatcherPolicy.from_config(parse('name: "m" max_batch_size: 0 dynamic_batching {}')).max_batch_size == 1


def test_batcher_policy_from_config_full() -> None:
    config = parse(
        """
        name: "m"
        max_batch_size: 16
        dynamic_batching {
          preferred_batch_size: [8, 4, 8]
          max_queue_delay_microseconds: 250
          preserve_ordering: true
          priority_levels: 3
          default_priority_level: 2
          default_queue_policy {
            timeout_action: DELAY
            default_timeout_microseconds: 1000
            allow_timeout_override: true
            max_queue_size: 5
          }
          priority_queue_policy {
            key: 1
            value { max_queue_size: 2 default_timeout_microseconds: 10 }
          }
        }
        """
    )
    policy = BatcherPolicy.from_config(config)
    assert policy == BatcherPolicy(
        max_batch_size=16,
        preferred_batch_sizes=(4, 8),
        max_queue_delay_ns=250_000,
        preserve_ordering=True,
        priority_levels=3,
        default_priority_level=2,
        default_queue_policy=QueuePolicy("DELAY", 1000, True, 5),
        priority_queue_policy={1: QueuePolicy("REJECT", 10, False, 2)},
    )
    assert policy.max_preferred_batch_size == 8
    assert policy.queue_policy(1) == QueuePolicy("REJECT", 10, False, 2)
    assert policy.queue_policy(3) == QueuePolicy("DELAY", 1000, True, 5)
