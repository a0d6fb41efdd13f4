"""SharedLoop: which thread runs the event loop, and when it changes hands.

Each test runs ``SharedLoop.run`` on a thread of its own (standing in for the main thread) and an
"instance" thread that asks for the loop, as ``ModelInstance`` does. Nothing here depends on timing
except the watchdog test, which waits for the steal (it comes ``WATCHDOG_S`` after the holder stopped).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from airtower import shared_loop
from airtower.shared_loop import SharedLoop


def run_as_main(make: Callable[[SharedLoop], Coroutine[Any, Any, int]]) -> tuple[int, int]:
    """Run ``make(shared)`` through a SharedLoop on a new thread; returns that thread's ident and
    the coroutine's result."""
    out: dict[str, int] = {}

    def main() -> None:
        shared = SharedLoop(uvloop.new_event_loop())
        out["main"] = threading.get_ident()
        out["result"] = shared.run(make(shared))

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    return out["main"], out["result"]


def run_instance(instance: Callable[[SharedLoop], None]) -> int:
    """Run ``instance(shared)`` on an instance thread while the main thread awaits its end; returns
    the main thread's ident."""

    async def main(shared: SharedLoop) -> int:
        thread = threading.Thread(target=instance, args=(shared,))
        thread.start()
        await asyncio.to_thread(thread.join)
        return 0

    return run_as_main(main)[0]


def acquire(shared: SharedLoop) -> bool:
    """Ask for the loop until it is handed over (a request not granted within ``WATCHDOG_S`` is
    withdrawn, which a loaded machine may cause; an idle holder gives it up after ``IDLE_HANDOVER_S``)."""
    for _ in range(5000):
        shared.ask()
        if shared.settle():
            return True
        time.sleep(0.001)
    return False


def test_an_instance_that_asks_gets_the_loop_runs_it_and_gives_it_back_when_it_leaves() -> None:
    seen: dict[str, int] = {}
    wake: list[Callable[[], None]] = []
    posted = asyncio.Event()

    def instance(shared: SharedLoop) -> None:
        seen["instance"] = threading.get_ident()
        shared.join()
        assert acquire(shared)  # handed over at the end of the main thread's iteration

        def on_loop() -> None:
            seen["posted on"] = threading.get_ident()
            posted.set()

        assert shared.post(on_loop)
        # Runs the loop (the coroutine below goes on here) until the "scheduler" wakes it.
        assert shared.run_idle(lambda w: wake.append(w) if w is not None else None)
        seen["idle runs"] = len(wake)
        shared.leave()

    async def main(shared: SharedLoop) -> int:
        assert shared_loop.of(asyncio.get_running_loop()) is shared
        thread = threading.Thread(target=instance, args=(shared,))
        thread.start()
        await posted.wait()
        seen["coroutine on"] = threading.get_ident()
        wake[-1]()  # work queued: the instance's run_idle returns after this iteration
        await asyncio.to_thread(thread.join)  # the loop is the main thread's again once the instance left
        return threading.get_ident()

    main_ident, finished_on = run_as_main(main)
    assert seen["posted on"] == seen["instance"]
    assert seen["coroutine on"] == seen["instance"]
    assert seen["idle runs"] == 1
    assert finished_on == main_ident


def test_the_main_thread_takes_the_loop_back_from_a_holder_that_stopped_running_it() -> None:
    seen: dict[str, object] = {}
    release = threading.Event()
    holds = asyncio.Event()

    def instance(shared: SharedLoop) -> None:
        shared.join()
        assert acquire(shared)
        shared.loop.call_soon_threadsafe(holds.set)  # runs once a thread runs the loop again
        # "Executes" until the main thread served a callback: it must take the loop to do so.
        seen["set free"] = release.wait(60)
        seen["post while stolen"] = shared.post(lambda: None)
        shared.leave()

    async def main(shared: SharedLoop) -> int:
        thread = threading.Thread(target=instance, args=(shared,))
        thread.start()
        # Once the instance owns the loop (and never runs it), this coroutine goes on only on a
        # thread that took the loop back from it.
        await holds.wait()
        seen["served on"] = threading.get_ident()
        release.set()
        await asyncio.to_thread(thread.join)
        return threading.get_ident()

    main_ident, _ = run_as_main(main)
    assert seen["served on"] == main_ident
    assert seen["set free"] is True
    assert seen["post while stolen"] is False


def test_a_holder_about_to_wait_for_the_loop_gives_it_to_the_main_thread() -> None:
    seen: dict[str, object] = {}

    def instance(shared: SharedLoop) -> None:
        shared.join()
        assert acquire(shared)
        # As a BLS call does before it waits for its answer: the loop must run elsewhere meanwhile.
        shared_loop.release_if_holder(shared.loop)
        seen["owner"] = shared.owner
        seen["waited"] = shared.waited()
        seen["waited again"] = shared.waited()
        answered = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, "answer"), shared.loop)
        seen["answer"] = answered.result(60)
        shared.leave()

    main_ident = run_instance(instance)
    assert seen["owner"] == main_ident
    assert seen["waited"] is True
    assert seen["waited again"] is False
    assert seen["answer"] == "answer"


def test_a_busy_holder_keeps_the_loop_and_an_idle_one_hands_it_over() -> None:
    seen: dict[str, object] = {}
    first_holds = threading.Event()
    first_idle = threading.Event()
    second_asked = threading.Event()

    def first(shared: SharedLoop) -> None:
        shared.join()
        assert acquire(shared)
        first_holds.set()
        second_asked.wait(60)  # "executing" meanwhile
        # Runs the loop idle until the second instance's request for it stops it.
        seen["first holds after idle"] = shared.run_idle(lambda w: first_idle.set() if w is not None else None)
        shared.leave()

    def second(shared: SharedLoop) -> None:
        shared.join()
        first_holds.wait(60)
        shared.ask()  # the first is executing: no request is made
        seen["second holds while first executes"] = shared.settle()
        second_asked.set()
        first_idle.wait(60)
        seen["second holds once first is idle"] = acquire(shared)
        shared.leave()

    async def main(shared: SharedLoop) -> int:
        threads = [threading.Thread(target=f, args=(shared,)) for f in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            await asyncio.to_thread(thread.join)
        return 0

    run_as_main(main)
    assert seen == {
        "second holds while first executes": False,
        "first holds after idle": False,
        "second holds once first is idle": True,
    }


def test_after_an_idle_spell_the_main_thread_sleeps_and_still_takes_the_loop_from_a_long_execution() -> None:
    seen: dict[str, object] = {}
    release = threading.Event()
    holds = asyncio.Event()
    wake: list[Callable[[], None]] = []

    def instance(shared: SharedLoop) -> None:
        shared.join()
        assert acquire(shared)
        shared.loop.call_soon_threadsafe(holds.set)
        # Idle until the coroutine below stops it, once the main thread has stopped looking.
        seen["holds after idle"] = shared.run_idle(lambda w: wake.append(w) if w is not None else None)
        # Then "executes" until the coroutine runs again: only on the main thread, once it took the loop.
        seen["set free"] = release.wait(60)
        seen["post while stolen"] = shared.post(lambda: None)
        shared.leave()

    async def main(shared: SharedLoop) -> int:
        thread = threading.Thread(target=instance, args=(shared,))
        thread.start()
        await holds.wait()
        for _ in range(6000):  # the main thread's checks grow sparser, then stop (within ~0.1 s)
            if shared._main_parked:
                break
            await asyncio.sleep(0.001)
        seen["main parked"] = shared._main_parked
        seen["idle on"] = threading.get_ident()
        wake[-1]()  # the instance's run_idle returns at the end of this iteration
        await asyncio.sleep(0.01)  # in a later iteration: on the main thread, once it took the loop back
        seen["served on"] = threading.get_ident()
        release.set()
        await asyncio.to_thread(thread.join)
        return 0

    main_ident, _ = run_as_main(main)
    assert seen["main parked"] is True
    assert seen["idle on"] != main_ident
    assert seen["holds after idle"] is True
    assert seen["served on"] == main_ident
    assert seen["set free"] is True
    assert seen["post while stolen"] is False


def test_an_idle_holder_stops_running_the_loop_when_its_scheduler_has_work_due() -> None:
    # A scheduler with work due later and nothing queued (a sequence waiting for an idle one's slot)
    # names the time: the holder's idle loop stops then, without a wake-up from anyone.
    seen: dict[str, object] = {}

    def instance(shared: SharedLoop) -> None:
        shared.join()
        assert acquire(shared)
        due = time.monotonic_ns() + 20_000_000
        seen["kept"] = shared.run_idle(lambda wake: None, due)  # nobody calls the wake
        seen["late_enough"] = time.monotonic_ns() >= due - 2_000_000  # the loop's clock rounds to 1 ms
        shared.leave()

    run_instance(instance)
    assert seen == {"kept": True, "late_enough": True}


def test_a_holder_that_sends_from_its_execution_writes_on_its_own_thread_and_keeps_the_loop() -> None:
    # A decoupled model's first response: the instance thread holding the loop runs what is ready,
    # including what a callback queues for the next iteration (the gRPC frontend's corked write).
    seen: dict[str, object] = {}

    def instance(shared: SharedLoop) -> None:
        shared.join()
        assert acquire(shared)
        start = time.monotonic_ns()
        seen["holds"] = shared.sending()

        def deliver() -> None:
            seen["delivered on"] = threading.get_ident()
            shared.loop.call_soon(lambda: seen.setdefault("flushed on", threading.get_ident()))

        assert shared.post(deliver)
        seen["kept"] = shared.run_briefly()
        seen["owner"] = shared.owner
        seen["instance"] = threading.get_ident()
        seen["quick"] = shared.stopped_briefly(start, time.monotonic_ns())
        shared.leave()

    run_instance(instance)
    assert seen["delivered on"] == seen["flushed on"] == seen["instance"] == seen["owner"]
    assert seen["holds"] is True
    assert seen["kept"] is True
    assert seen["quick"] is True


def test_sending_waits_for_a_hand_over_it_asked_for() -> None:
    seen: dict[str, object] = {}

    def instance(shared: SharedLoop) -> None:
        shared.join()
        shared.ask()  # as an instance does before it executes; the main thread hands over at its iteration's end
        seen["holds"] = shared.sending()
        seen["is owner"] = shared.owner == threading.get_ident()
        shared.leave()

    run_instance(instance)
    assert seen == {"holds": True, "is owner": True}


def test_threads_that_cannot_run_the_loop_do_not_hold_it_for_sending() -> None:
    seen: dict[str, object] = {}

    def instance(shared: SharedLoop) -> None:
        shared.join()
        assert acquire(shared)

        async def execute() -> bool:  # an ``async def execute``, on its own loop on this thread
            return shared.sending()

        seen["from its own loop"] = asyncio.run(execute())
        seen["owner after"] = shared.owner
        seen["waited"] = shared.waited()
        shared.leave()

    def other(shared: SharedLoop) -> None:  # a model's own sender thread: never an instance
        seen["from another thread"] = shared.sending()

    async def main(shared: SharedLoop) -> int:
        for target in (instance, other):
            thread = threading.Thread(target=target, args=(shared,))
            thread.start()
            await asyncio.to_thread(thread.join)
        return threading.get_ident()

    main_ident, _ = run_as_main(main)
    assert seen == {
        "from its own loop": False,
        "owner after": main_ident,
        "waited": True,
        "from another thread": False,
    }


def test_a_streaming_execution_is_judged_by_its_pauses_and_any_other_by_its_length() -> None:
    seen: dict[str, object] = {}
    limit = shared_loop.MAX_HOLDING_EXECUTION_NS

    def instance(shared: SharedLoop) -> None:
        shared.join()  # (sends are noted whether or not the thread holds the loop)
        start = time.monotonic_ns()
        for _ in range(3):
            shared.sending()
        now = time.monotonic_ns()
        seen["long, no pauses"] = shared.stopped_briefly(start, now + limit // 2)
        seen["long, not streaming"] = shared.stopped_briefly(start, now + limit * 2)
        start = time.monotonic_ns()
        shared.sending()
        time.sleep(limit * 2 / 1e9)
        shared.sending()
        seen["a long pause"] = shared.stopped_briefly(start, time.monotonic_ns())
        start = time.monotonic_ns()
        shared.sending()
        seen["a long tail"] = shared.stopped_briefly(start, time.monotonic_ns() + limit * 2)
        time.sleep(limit * 2 / 1e9)
        start = time.monotonic_ns() - limit * 2
        shared.sending()
        seen["a late first send"] = shared.stopped_briefly(start, time.monotonic_ns())
        shared.leave()

    run_instance(instance)
    assert seen == {
        "long, no pauses": True,
        "long, not streaming": False,
        "a long pause": False,
        "a long tail": False,
        "a late first send": False,
    }
