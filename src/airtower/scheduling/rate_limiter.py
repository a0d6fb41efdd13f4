"""The rate limiter (``--rate-limit=execution_count``): model instances share named resources.

Each instance group may declare ``rate_limiter { resources [ { name, global, count } ] priority }``.
With the rate limiter on, an instance executes only while it holds its group's resources, so
instances of every model that share a resource never need more of it at once than there is.
A resource's amount is ``--rate-limit-resource=<name>:<count>[:<device>]``, or, when not given,
the most any one instance needs (Triton's rule, so every instance can run). Resources are per
device unless declared ``global``.

Which waiting instance goes next is a pure decision (``pick``): among the waiters whose needs
fit what is free, the one with the least weighted service so far, where each grant costs an
instance its group's ``priority`` (1 when unset): an instance of priority 2 gets half the turns
of one of priority 1, as Triton documents. Ties go to the earliest waiter.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airtower.errors import InvalidArgumentError

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelInstanceGroup

#: A resource: its name and device, ``None`` for a global resource.
ResourceKey = tuple[str, int | None]


@dataclass(frozen=True, slots=True)
class ResourceLimit:
    """One ``--rate-limit-resource``: ``device`` ``None`` applies to every device."""

    name: str
    count: int
    device: int | None = None


def parse_resource_limit(text: str) -> ResourceLimit:
    """``<name>:<count>[:<device>]``, as tritonserver takes it.

    Raises:
        ValueError: the text is not in that form.
    """
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError(f"expected <name>:<count>[:<device>], got '{text}'")
    try:
        count = int(parts[1])
        device = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise ValueError(f"expected <name>:<count>[:<device>] with integer count and device, got '{text}'") from None
    if count < 0 or (device is not None and device < 0):
        raise ValueError(f"count and device must not be negative, got '{text}'")
    return ResourceLimit(parts[0], count, device)


@dataclass(slots=True)
class Waiter:
    """An instance asking for its resources; ``served`` is its weighted count of grants so far."""

    needs: Mapping[ResourceKey, int]
    priority: int
    served: int = 0
    ticket: int = 0


def pick(waiters: Sequence[Waiter], free: Mapping[ResourceKey, int]) -> Waiter | None:
    """The waiter to grant now: fits in ``free``, least ``served``, then earliest ``ticket``."""
    best: Waiter | None = None
    for waiter in waiters:
        if best is not None and (waiter.served, waiter.ticket) >= (best.served, best.ticket):
            continue
        if all(free.get(key, 0) >= amount for key, amount in waiter.needs.items()):
            best = waiter
    return best


@dataclass(slots=True)
class Grant:
    """What an instance holds while it executes; give it back with ``RateLimiter.release``."""

    waiter: Waiter
    limiter: RateLimiter = field(repr=False)


class RateLimiter:
    """Shared by every model of a server. ``acquire``/``release`` run on instance threads."""

    def __init__(self, limits: Iterable[ResourceLimit] = ()) -> None:
        self._limits = list(limits)
        self._total: dict[ResourceKey, int] = {}
        self._free: dict[ResourceKey, int] = {}
        self._waiting: list[Waiter] = []
        self._tickets = itertools.count()
        self._changed = threading.Condition(threading.Lock())

    def register(self, group: ModelInstanceGroup, device: int, instance: str) -> Waiter | None:
        """The needs of one instance of ``group`` on ``device``; ``None`` when it needs nothing.

        Raises:
            InvalidArgumentError: a ``--rate-limit-resource`` is smaller than this instance needs.
        """
        limiter = group.rate_limiter
        needs: dict[ResourceKey, int] = {}
        for resource in limiter.resources:
            is_global = getattr(resource, "global")  # a Python keyword as a field name
            key: ResourceKey = (resource.name, None if is_global else device)
            needs[key] = needs.get(key, 0) + int(resource.count)
        if not needs:
            return None
        with self._changed:
            for key, amount in needs.items():
                given = self._given(key)
                if given is not None and given < amount:
                    raise InvalidArgumentError(
                        f"Resource count for '{key[0]}' is limited to {given} which will prevent scheduling of one "
                        f"or more model instances, the minimum required count is {amount}"
                    )
                total = given if given is not None else max(self._total.get(key, 0), amount)
                self._free[key] = self._free.get(key, 0) + total - self._total.get(key, 0)
                self._total[key] = total
        return Waiter(needs, max(int(limiter.priority), 1))

    def acquire(self, waiter: Waiter) -> Grant:
        """Block until ``waiter``'s resources are granted to it."""
        with self._changed:
            waiter.ticket = next(self._tickets)
            self._waiting.append(waiter)
            while pick(self._waiting, self._free) is not waiter:
                self._changed.wait()
            self._waiting.remove(waiter)
            for key, amount in waiter.needs.items():
                self._free[key] -= amount
            waiter.served += waiter.priority
            # Another waiter may fit in what is left.
            self._changed.notify_all()
        return Grant(waiter, self)

    def release(self, grant: Grant) -> None:
        with self._changed:
            for key, amount in grant.waiter.needs.items():
                self._free[key] += amount
            self._changed.notify_all()

    def _given(self, key: ResourceKey) -> int | None:
        """The ``--rate-limit-resource`` count for ``key``: its device's, else the all-devices one."""
        name, device = key
        for limit in self._limits:
            if limit.name == name and limit.device is not None and limit.device == device:
                return limit.count
        for limit in self._limits:
            if limit.name == name and limit.device is None:
                return limit.count
        return None
