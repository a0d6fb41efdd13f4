from __future__ import annotations

import threading

import pytest
from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import ModelInstanceGroup

from airtower.errors import InvalidArgumentError
from airtower.scheduling.rate_limiter import RateLimiter, ResourceLimit, Waiter, parse_resource_limit, pick


def group(text: str) -> ModelInstanceGroup:
    return text_format.Parse(text, ModelInstanceGroup())


def test_parse_resource_limit() -> None:
    assert parse_resource_limit("R:4") == ResourceLimit("R", 4, None)
    assert parse_resource_limit("R:4:1") == ResourceLimit("R", 4, 1)
    for bad in ("R", "R:x", ":4", "R:4:1:2", "R:-1"):
        with pytest.raises(ValueError, match=r"expected <name>:<count>|must not be negative"):
            parse_resource_limit(bad)


def test_pick_grants_the_least_served_waiter_that_fits() -> None:
    small = Waiter({("R", 0): 1}, 1, served=5, ticket=1)
    big = Waiter({("R", 0): 3}, 1, served=0, ticket=2)
    assert pick([small, big], {("R", 0): 3}) is big
    assert pick([small, big], {("R", 0): 2}) is small  # big does not fit
    assert pick([small, big], {("R", 0): 0}) is None


def test_pick_breaks_ties_by_arrival() -> None:
    first, second = Waiter({}, 1, ticket=1), Waiter({}, 1, ticket=2)
    assert pick([second, first], {}) is first


def test_an_instance_needing_nothing_is_not_limited() -> None:
    assert RateLimiter().register(group("count: 1"), 0, "m_0") is None


def test_unset_amounts_default_to_the_largest_need() -> None:
    limiter = RateLimiter()
    two = limiter.register(group('rate_limiter { resources [ { name: "R" count: 2 } ] }'), 0, "a_0")
    one = limiter.register(group('rate_limiter { resources [ { name: "R" count: 1 } ] }'), 0, "b_0")
    assert two is not None
    assert one is not None
    grant = limiter.acquire(two)  # all of R: the other must wait
    taken = threading.Event()

    def other() -> None:
        limiter.release(limiter.acquire(one))
        taken.set()

    thread = threading.Thread(target=other)
    thread.start()
    assert not taken.wait(0.05)
    limiter.release(grant)
    thread.join(timeout=30)
    assert taken.is_set()


def test_a_given_amount_smaller_than_a_need_is_refused() -> None:
    limiter = RateLimiter([ResourceLimit("R", 1)])
    with pytest.raises(InvalidArgumentError) as error:
        limiter.register(group('rate_limiter { resources [ { name: "R" count: 2 } ] }'), 0, "a_0")
    assert error.value.message == (
        "Resource count for 'R' is limited to 1 which will prevent scheduling of one or more model instances, "
        "the minimum required count is 2"
    )


def test_global_resources_are_shared_across_devices_and_others_are_per_device() -> None:
    limiter = RateLimiter([ResourceLimit("G", 1), ResourceLimit("L", 1)])
    on_0 = limiter.register(group('rate_limiter { resources [ { name: "L" count: 1 } ] }'), 0, "a_0")
    on_1 = limiter.register(group('rate_limiter { resources [ { name: "L" count: 1 } ] }'), 1, "a_1")
    assert on_0 is not None
    assert on_1 is not None
    both = (limiter.acquire(on_0), limiter.acquire(on_1))  # one L per device: no wait
    for grant in both:
        limiter.release(grant)
    shared = limiter.register(group('rate_limiter { resources [ { name: "G" global: true count: 1 } ] }'), 1, "b_0")
    assert shared is not None
    assert set(shared.needs) == {("G", None)}


def test_priority_weights_the_turns() -> None:
    limiter = RateLimiter([ResourceLimit("R", 1)])
    fast = limiter.register(group('rate_limiter { resources [ { name: "R" count: 1 } ] priority: 1 }'), 0, "a")
    slow = limiter.register(group('rate_limiter { resources [ { name: "R" count: 1 } ] priority: 2 }'), 0, "b")
    assert fast is not None
    assert slow is not None
    limiter.release(limiter.acquire(fast))
    limiter.release(limiter.acquire(slow))
    assert (fast.served, slow.served) == (1, 2)
    assert pick([slow, fast], {("R", 0): 1}) is fast
