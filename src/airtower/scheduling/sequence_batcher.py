"""The sequence batcher's decisions: which sequence runs on which instance, and what runs next.

Pure and synchronous like ``dynamic_batcher``: the thread-side shell
(``sequence_batch_scheduler``) locks, reads the clock and waits.

A stateful model sees every request of a sequence (one correlation ID, from the request with
the START flag to the one with END) on the same instance, in order. Each instance has ``slots``
places for sequences (``max_batch_size``, at least 1: Triton's direct strategy gives each
sequence a batch slot; for the oldest strategy, ``max_candidate_sequences``). A new sequence
takes a free slot on the least busy instance, or waits in a backlog until one frees: when its
END request is taken, or when it has been idle longer than ``max_sequence_idle_microseconds``.
A batch for an instance holds at most one request per sequence (the oldest first), so a
sequence's requests never run at the same time and run in arrival order.

The oldest strategy's ``max_queue_delay_microseconds`` and ``preferred_batch_size`` apply as in
the dynamic batcher: while fewer sequences have a request ready than the batch limit, a batch goes
at once only if a preferred size can be formed (the largest that fits); otherwise it waits until
the oldest ready request has waited the delay (``hold_until_ns`` says until when).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from airtower.errors import InvalidArgumentError

T = TypeVar("T")


class Queued(Generic[T]):
    """A request of a sequence, with its sequence flags."""

    # Written out, not a dataclass: mypyc (which compiles this module) cannot build generic dataclasses.
    def __init__(self, item: T, start: bool, end: bool, enqueue_ns: int) -> None:
        self.item = item
        self.start = start
        self.end = end
        self.enqueue_ns = enqueue_ns


class _Sequence(Generic[T]):
    def __init__(self, correlation_id: Hashable) -> None:
        self.correlation_id = correlation_id
        self.instance: int | None = None  # None: waiting in the backlog for a slot
        self.queue: deque[Queued[T]] = deque()
        self.last_ns = 0
        self.ending = False  # its END request was queued


class SequenceTable(Generic[T]):
    """Active sequences, their instances and their queued requests. Not thread-safe."""

    def __init__(
        self,
        model_name: str,
        instances: int,
        slots: int,
        idle_ns: int,
        batch_limit: int,
        preferred: tuple[int, ...] = (),
        delay_ns: int = 0,
    ) -> None:
        self.model_name = model_name
        self.preferred = tuple(sorted(size for size in preferred if size > 0))
        self.delay_ns = delay_ns
        #: Set by ``next_batch`` when it holds a partial batch back: when to ask again.
        self.hold_until_ns: int | None = None
        self.instances = instances
        self.slots = max(slots, 1)
        self.idle_ns = idle_ns
        self.batch_limit = max(batch_limit, 1)
        self._sequences: dict[Hashable, _Sequence[T]] = {}
        self._backlog: deque[_Sequence[T]] = deque()
        self._load = [0] * instances  # sequences assigned to each instance

    def __len__(self) -> int:
        """Requests queued and not yet taken."""
        return sum(len(sequence.queue) for sequence in self._sequences.values())

    def admit(
        self, item: T, correlation_id: int | str, start: bool, end: bool, now_ns: int, batch_size: int = 1
    ) -> None:
        """Queue ``item`` (a request of ``batch_size``) on its sequence.

        Raises:
            InvalidArgumentError: a batch of more than one, no correlation ID, or a request that does
                not start a sequence for an ID with no active sequence (Triton's messages, in its order).
        """
        if batch_size > 1:
            raise InvalidArgumentError(
                f"inference request to model '{self.model_name}' must specify batch-size 1 due to requirements of "
                "sequence batcher"
            )
        if correlation_id == 0 or correlation_id == "":
            raise InvalidArgumentError(
                f"inference request to model '{self.model_name}' must specify a non-zero or non-empty correlation ID"
            )
        self.release_idle(now_ns)
        sequence = self._sequences.get(correlation_id)
        if sequence is None or sequence.ending:
            if not start:
                raise InvalidArgumentError(
                    f"inference request for sequence {correlation_id} to model '{self.model_name}' must specify "
                    "the START flag on the first request of the sequence"
                )
            if sequence is None:
                sequence = self._sequences[correlation_id] = _Sequence(correlation_id)
                self._assign(sequence)
        sequence.queue.append(Queued(item, start, end, now_ns))
        sequence.last_ns = now_ns
        sequence.ending = end

    def next_batch(self, instance: int, now_ns: int) -> list[Queued[T]]:
        """The next requests for ``instance``: the head of each of its sequences, oldest first."""
        self.release_idle(now_ns)
        self.hold_until_ns = None
        heads = [sequence for sequence in self._sequences.values() if sequence.instance == instance and sequence.queue]
        heads.sort(key=lambda sequence: sequence.queue[0].enqueue_ns)
        size = min(len(heads), self.batch_limit)
        if self.delay_ns and heads and size < self.batch_limit:
            fitting = [preferred for preferred in self.preferred if preferred <= size]
            oldest = heads[0].queue[0].enqueue_ns
            if fitting:
                size = fitting[-1]
            elif now_ns - oldest < self.delay_ns:
                self.hold_until_ns = oldest + self.delay_ns
                return []
        batch: list[Queued[T]] = []
        for sequence in heads[:size]:
            queued = sequence.queue.popleft()
            sequence.last_ns = now_ns
            batch.append(queued)
            if queued.end and not sequence.queue:
                self._release(sequence)
        return batch

    def next_idle_ns(self) -> int | None:
        """When the next assigned sequence with nothing queued becomes idle (only matters while
        sequences wait for a slot)."""
        if not self._backlog or not self.idle_ns:
            return None
        times = [s.last_ns + self.idle_ns for s in self._sequences.values() if s.instance is not None and not s.queue]
        return min(times) if times else None

    def release_idle(self, now_ns: int) -> None:
        """Forget sequences idle for longer than ``max_sequence_idle_microseconds``."""
        if not self.idle_ns:
            return
        for sequence in list(self._sequences.values()):
            if not sequence.queue and now_ns - sequence.last_ns >= self.idle_ns:
                self._release(sequence)

    def drain(self) -> list[T]:
        """Every queued request (unload); the sequences are forgotten."""
        items = [queued.item for sequence in self._sequences.values() for queued in sequence.queue]
        self._sequences.clear()
        self._backlog.clear()
        self._load = [0] * self.instances
        return items

    def _assign(self, sequence: _Sequence[T]) -> None:
        instance = min(range(self.instances), key=lambda index: self._load[index])
        if self._load[instance] < self.slots:
            sequence.instance = instance
            self._load[instance] += 1
        else:
            self._backlog.append(sequence)

    def _release(self, sequence: _Sequence[T]) -> None:
        self._sequences.pop(sequence.correlation_id, None)
        if sequence.instance is None:
            if sequence in self._backlog:
                self._backlog.remove(sequence)
            return
        self._load[sequence.instance] -= 1
        while self._backlog and self._load[sequence.instance] < self.slots:
            waiting = self._backlog.popleft()
            waiting.instance = sequence.instance
            self._load[sequence.instance] += 1
