"""The dynamic batcher's decisions: which queued requests run together, and when.

Pure and synchronous: no asyncio, no threads, no clock. Every method that needs the time takes
``now_ns``, so unit tests drive it with plain integers. The thread-side scheduler wraps a
``BatchQueue`` in a lock and asks it for the next batch whenever a model instance is free.

What it reproduces (triton-inference-server/core):

* ``src/scheduler_utils.cc`` ``PriorityQueue`` / ``PolicyQueue``: one queue per priority level
  (level 1 first), each with its ``ModelQueuePolicy``; ``max_queue_size`` per level; queue
  timeouts applied lazily while the batch is being formed; expired requests are rejected or moved
  behind the level's unexpired requests (the "delayed queue").
* ``src/dynamic_batch_scheduler.cc`` ``GetDynamicBatch``: the preferred-size / max-batch-size /
  queue-delay decision, with an always-empty payload (a batch is formed only when an instance is
  free, so nothing is ever added to a batch already handed to an instance).
* ``src/infer_request.cc`` ``SetPriority``: priority 0, or above ``priority_levels``, means
  ``default_priority_level``.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Generator, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, Protocol, TypeVar

from airtower.errors import QueueFullError

if TYPE_CHECKING:
    from airtower.core.model_config import ModelConfig

TimeoutAction = Literal["REJECT", "DELAY"]

#: Triton's message for a request whose queue timeout expired with ``timeout_action: REJECT``
#: (UNAVAILABLE, no request-id prefix: dynamic_batch_scheduler.cc ``BatcherThread``).
REQUEST_TIMEOUT_MESSAGE = "Request timeout expired"

#: Triton's message for a request refused because its priority level is at ``max_queue_size``
#: (UNAVAILABLE; prefixed with the request's log prefix, ``[request id: <id_unknown>] ``).
QUEUE_FULL_MESSAGE = "Exceeds maximum queue size"


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """Triton's ``ModelQueuePolicy`` for one priority level."""

    timeout_action: TimeoutAction = "REJECT"
    default_timeout_us: int = 0  # 0: requests never time out in the queue
    allow_timeout_override: bool = False  # a request's own timeout may only LOWER the default
    max_queue_size: int = 0  # requests (not batch sizes) per level; 0: unbounded


@dataclass(frozen=True, slots=True)
class BatcherPolicy:
    """Everything ``dynamic_batching { }`` configures, plus the model's ``max_batch_size``."""

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...] = ()  # sorted ascending, unique; may be empty
    max_queue_delay_ns: int = 0
    preserve_ordering: bool = False  # carried only: the scheduler orders the responses
    priority_levels: int = 0  # 0: one queue
    default_priority_level: int = 0
    default_queue_policy: QueuePolicy = field(default_factory=QueuePolicy)
    priority_queue_policy: Mapping[int, QueuePolicy] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: ModelConfig) -> BatcherPolicy:
        """The policy of ``config.dynamic_batching`` (all defaults when the message is unset).

        Preferred sizes are used as given (Triton keeps them in a ``std::set``); filling an
        empty list with ``[max_batch_size]`` is config normalization's job, and either way the
        decisions are the same. ``max_batch_size`` 0 batches nothing (Triton: ``max(1, mbs)``).
        """
        batching = config.dynamic_batching
        return cls(
            max_batch_size=max(1, int(config.max_batch_size)),
            preferred_batch_sizes=tuple(sorted({int(size) for size in batching.preferred_batch_size})),
            max_queue_delay_ns=int(batching.max_queue_delay_microseconds) * 1000,
            preserve_ordering=bool(batching.preserve_ordering),
            priority_levels=int(batching.priority_levels),
            default_priority_level=int(batching.default_priority_level),
            default_queue_policy=_queue_policy_from_message(batching.default_queue_policy),
            priority_queue_policy={
                int(level): _queue_policy_from_message(policy)
                for level, policy in batching.priority_queue_policy.items()
            },
        )

    @property
    def max_preferred_batch_size(self) -> int:
        """The largest preferred size; ``max_batch_size`` when none is given."""
        return self.preferred_batch_sizes[-1] if self.preferred_batch_sizes else self.max_batch_size

    def level_of(self, priority: int) -> int:
        """The queue a request with this ``priority`` parameter goes to (infer_request.cc ``SetPriority``)."""
        if self.priority_levels == 0:
            return 0
        if priority == 0 or priority > self.priority_levels:
            return self.default_priority_level
        return priority

    def queue_policy(self, level: int) -> QueuePolicy:
        # With priority_levels 0 Triton builds only the default-policy queue (PriorityQueue ctor).
        if self.priority_levels == 0:
            return self.default_queue_policy
        return self.priority_queue_policy.get(level, self.default_queue_policy)


class _QueuePolicyMessage(Protocol):
    """The fields read from an ``inference.ModelQueuePolicy`` message."""

    timeout_action: int
    default_timeout_microseconds: int
    allow_timeout_override: bool
    max_queue_size: int


#: ``ModelQueuePolicy.TimeoutAction.DELAY`` in model_config.proto (REJECT is 0).
_TIMEOUT_ACTION_DELAY = 1


def _queue_policy_from_message(message: _QueuePolicyMessage) -> QueuePolicy:
    return QueuePolicy(
        timeout_action="DELAY" if message.timeout_action == _TIMEOUT_ACTION_DELAY else "REJECT",
        default_timeout_us=int(message.default_timeout_microseconds),
        allow_timeout_override=bool(message.allow_timeout_override),
        max_queue_size=int(message.max_queue_size),
    )


class Batchable(Protocol):
    """What a queued request exposes to the batcher."""

    @property
    def batch_size(self) -> int:
        """Size of the request's batch dimension (>= 1)."""
        ...

    @property
    def enqueue_ns(self) -> int:
        """When it entered the scheduler; the queue delay counts from the oldest of a batch."""
        ...

    @property
    def priority(self) -> int:
        """The request's ``priority`` parameter; 0: the default level."""
        ...

    @property
    def timeout_us(self) -> int:
        """The request's ``timeout`` parameter in microseconds; 0: none."""
        ...

    @property
    def shape_key(self) -> Hashable:
        """Requests are merged only when these are equal (non-batch dims of the inputs, ...)."""
        ...


T = TypeVar("T", bound=Batchable)


# The classes made per request or per batch are plain classes with a written-out ``__init__``
# rather than dataclasses: mypyc compiles this module (``airtower.compiled``) and cannot compile
# generic slotted dataclasses, and a dataclass-generated ``__init__`` would run interpreted.


class BatchDecision(Generic[T]):
    """The outcome of one ``BatchQueue.next_batch`` call.

    ``batch``: execute these now, together, in this order; empty: nothing to run now.
    ``rejected``: timed out in the queue under ``timeout_action: REJECT``: fail each with
    ``QueueTimeoutError(REQUEST_TIMEOUT_MESSAGE)``; may be non-empty whatever ``batch`` is.
    ``wake_at_ns``: set only when ``batch`` is empty and requests wait: ask again at this time
    (the queue delay expires or the closest queue timeout falls due), or earlier when a request
    arrives.
    """

    def __init__(self, batch: list[T], rejected: list[T], wake_at_ns: int | None) -> None:
        self.batch = batch
        self.rejected = rejected
        self.wake_at_ns = wake_at_ns

    def __repr__(self) -> str:
        return f"BatchDecision(batch={self.batch!r}, rejected={self.rejected!r}, wake_at_ns={self.wake_at_ns!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BatchDecision):
            return NotImplemented
        return (self.batch, self.rejected, self.wake_at_ns) == (other.batch, other.rejected, other.wake_at_ns)

    __hash__ = None  # type: ignore[assignment]


class _Entry(Generic[T]):
    def __init__(self, item: T, deadline_ns: int) -> None:
        self.item = item
        self.deadline_ns = deadline_ns  # 0: no queue timeout


class _Level(Generic[T]):
    """One priority level: Triton's ``PolicyQueue``."""

    def __init__(self, policy: QueuePolicy) -> None:
        self.policy = policy
        self.queue: deque[_Entry[T]] = deque()
        # Requests whose timeout expired under DELAY: served after every unexpired request of the
        # level, and never time out again (PolicyQueue::At / TimeoutAt).
        self.delayed: deque[T] = deque()

    def __len__(self) -> int:
        return len(self.queue) + len(self.delayed)


class BatchQueue(Generic[T]):
    """Requests waiting for the dynamic batcher, by priority level. Not thread-safe: the caller holds a lock."""

    def __init__(self, policy: BatcherPolicy) -> None:
        self.policy = policy
        self._levels: dict[int, _Level[T]] = {}
        self._order: list[int] = []  # level numbers, ascending: level 1 is served first
        self._size = 0
        # Triton's default ``dynamic_batching { }`` (one level, no queue timeouts, no delay, no
        # preferred size below max_batch_size) always sends the longest FIFO prefix that fits:
        # ``next_batch`` takes it directly instead of walking the general decision.
        self._simple = (
            policy.priority_levels == 0
            and policy.max_queue_delay_ns == 0
            and policy.default_queue_policy.default_timeout_us == 0
            and policy.preferred_batch_sizes in ((), (policy.max_batch_size,))
        )

    def __len__(self) -> int:
        return self._size

    def enqueue(self, item: T, now_ns: int, *, request_id: str = "") -> None:
        """Queue ``item`` at its priority level; its queue timeout starts at ``now_ns``.

        Raises:
            QueueFullError: the level already holds ``max_queue_size`` requests; the message is
                Triton's, ``[request id: <id>] Exceeds maximum queue size``.
        """
        level_number = self.policy.level_of(item.priority)
        level = self._level(level_number)
        policy = level.policy
        # PolicyQueue::Enqueue: delayed requests count towards the limit too.
        if policy.max_queue_size != 0 and len(level) >= policy.max_queue_size:
            raise QueueFullError(f"[request id: {request_id or '<id_unknown>'}] {QUEUE_FULL_MESSAGE}")
        timeout_us = policy.default_timeout_us
        # PolicyQueue::Enqueue: an override may only lower a non-zero default; with a default of 0
        # (no timeout) the request's timeout is ignored (checked against tritonserver 2.51).
        if policy.allow_timeout_override and 0 < item.timeout_us < timeout_us:
            timeout_us = item.timeout_us
        level.queue.append(_Entry(item, now_ns + timeout_us * 1000 if timeout_us else 0))
        self._size += 1

    def next_batch(self, now_ns: int) -> BatchDecision[T]:
        """Decide what to execute now (GetDynamicBatch with an empty payload).

        Walks the queue in priority order, applying queue timeouts to each request it reaches,
        and accumulates requests until the next one would exceed ``max_batch_size`` or has
        another ``shape_key``. It returns the longest accumulated prefix that hit a preferred
        batch size (or the prefix before the largest preferred size would be passed) unless the
        queue delay of the oldest accumulated request has expired; otherwise everything
        accumulated when it can't grow, reached the largest preferred size, or the delay is 0 or
        expired; otherwise nothing, with the time to ask again.
        """
        if self._simple:
            return BatchDecision(self._take_prefix(), [], None)
        policy = self.policy
        max_preferred = policy.max_preferred_batch_size
        rejected: list[T] = []
        accumulated: list[T] = []
        total = 0  # batch size of ``accumulated``
        best_count = 0  # requests in the chosen prefix (Triton's marked cursor); 0: none
        send_now = False
        oldest_ns = 0
        closest_deadline_ns = 0
        walk = self._walk(now_ns, rejected)
        for item, deadline_ns in walk:
            size = max(1, item.batch_size)
            if accumulated:
                # Adding it would pass every preferred size: remember the batch so far, but keep
                # looking so the queue delay of everything that fits is known.
                if total + size > max_preferred and best_count == 0:
                    best_count = len(accumulated)
                if total + size > policy.max_batch_size or item.shape_key != accumulated[0].shape_key:
                    send_now = True
                    break
                oldest_ns = min(oldest_ns, item.enqueue_ns)
            else:
                # The first request starts the batch unchecked: one larger than max_batch_size
                # (validation should have refused it) runs alone instead of blocking the queue.
                oldest_ns = item.enqueue_ns
            if deadline_ns and (closest_deadline_ns == 0 or deadline_ns < closest_deadline_ns):
                closest_deadline_ns = deadline_ns
            accumulated.append(item)
            total += size
            if total in policy.preferred_batch_sizes:
                best_count = len(accumulated)
        walk.close()  # before _pop changes the deques it iterates

        if not accumulated:  # empty, or every request timed out under REJECT
            return BatchDecision([], rejected, None)
        delay_ns = policy.max_queue_delay_ns
        delay_exceeded = delay_ns != 0 and now_ns - oldest_ns >= delay_ns
        if best_count and not delay_exceeded:
            return BatchDecision(self._pop(best_count), rejected, None)
        if send_now or total >= max_preferred or delay_exceeded or delay_ns == 0:
            return BatchDecision(self._pop(len(accumulated)), rejected, None)
        wake_at_ns = oldest_ns + delay_ns
        # Waking at the closest queue timeout lets an expired request leave the pending batch
        # (rejected or delayed) as soon as it expires, as Triton does.
        if closest_deadline_ns:
            wake_at_ns = min(wake_at_ns, closest_deadline_ns)
        return BatchDecision([], rejected, wake_at_ns)

    def _take_prefix(self) -> list[T]:
        """The longest FIFO prefix of the single queue that fits max_batch_size with one shape."""
        if not self._order:
            return []
        queue = self._levels[self._order[0]].queue
        batch: list[T] = []
        total = 0
        limit = self.policy.max_batch_size
        while queue:
            item = queue[0].item
            size = max(1, item.batch_size)
            if batch and (total + size > limit or item.shape_key != batch[0].shape_key):
                break
            queue.popleft()
            batch.append(item)
            total += size
        self._size -= len(batch)
        return batch

    def drain(self) -> list[T]:
        """Remove and return every queued request, in the order they would have been served."""
        items: list[T] = []
        for number in self._order:
            level = self._levels[number]
            items.extend(entry.item for entry in level.queue)
            items.extend(level.delayed)
            level.queue.clear()
            level.delayed.clear()
        self._size = 0
        return items

    def _level(self, number: int) -> _Level[T]:
        level = self._levels.get(number)
        if level is None:
            level = self._levels[number] = _Level(self.policy.queue_policy(number))
            bisect.insort(self._order, number)
        return level

    def _walk(self, now_ns: int, rejected: list[T]) -> Generator[tuple[T, int], None, None]:
        """Yield (request, deadline) in service order, applying the queue policy on the way.

        Each level yields its unexpired requests, then its delayed ones (PolicyQueue::At). An
        expired request met on the way is removed: into ``rejected`` (REJECT) or to the back of
        the level's delayed requests (DELAY), where this same walk meets it again
        (PolicyQueue::ApplyPolicy). As in Triton, requests past the point where the walk stops
        are not checked. Expiry is ``now >= deadline`` (Triton: ``now > deadline``) so that
        asking again at ``wake_at_ns`` always makes progress.
        """
        for number in self._order:
            level = self._levels[number]
            queue = level.queue
            index = 0
            while index < len(queue):
                entry = queue[index]
                if entry.deadline_ns and now_ns >= entry.deadline_ns:
                    del queue[index]
                    if level.policy.timeout_action == "DELAY":
                        level.delayed.append(entry.item)
                    else:
                        rejected.append(entry.item)
                        self._size -= 1
                    continue
                yield entry.item, entry.deadline_ns
                index += 1
            for item in level.delayed:
                yield item, 0

    def _pop(self, count: int) -> list[T]:
        """Remove the first ``count`` requests in service order (PriorityQueue::Dequeue)."""
        batch: list[T] = []
        for number in self._order:
            level = self._levels[number]
            while len(batch) < count and level.queue:
                batch.append(level.queue.popleft().item)
            while len(batch) < count and level.delayed:
                batch.append(level.delayed.popleft())
            if len(batch) == count:
                break
        self._size -= len(batch)
        return batch
