"""SharedLoop: the server's event loop, run by whichever thread holds it.

With the GIL, the event loop thread and a Python model's instance thread cannot run Python at the
same time; what a request costs beyond the work itself is one thread waking the other, twice
(the request to the instance, its answer back), each a sleep and a wake-up of a thread and a
hand-over of the GIL (docs/performance.md). A Python model's ``execute`` must stay on its
instance's own thread (Triton runs it on its stub's one thread, and models rely on that), so
instead of bringing the model to the loop, the loop comes to the model: an instance thread that
executes quickly takes the event loop over, runs it while it has nothing to execute, stops it
when its scheduler queues work, executes with the loop stopped, and queues the answers on the
loop it holds. In steady state one thread does all the work and nothing wakes.

Who may run the loop is ``owner`` (a thread ident); only the owner touches the loop, and it
changes hands under ``_cond``:

- The **main thread** owns it at first and whenever no instance holds it. An instance thread
  that took a request ``ask``s for it; the thread running the loop hands it over when its
  iteration ends (``run_forever`` returns, ``_after_run``), and the instance finds it at
  ``settle``.
- An instance gives it back (``release``) when it exits, when its execution was slow or waited
  for the loop (a BLS call: ``release_if_holder``), so that models which do not qualify run as
  before: the loop on the main thread, results posted with ``call_soon_threadsafe``.
- A decoupled model's sends from inside ``execute`` on a holding instance thread are queued on the
  loop it holds (``sending``, ``post``) and written by that thread (``run_briefly`` runs the
  loop for what is ready, then it stays stopped): a stream's first response without a hand-over.
- The main thread takes it back (a steal) when the holder has not run it for ``WATCHDOG_S``: an
  ``execute`` that runs long, or blocks, never holds up the other connections for longer.

Signals: the loop may run on any thread, so uvloop's own signal handling (main thread only) is
replaced by ``add_signal_handler``, which posts the callback to the loop from a Python signal
handler on the main thread.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: The main thread takes the loop back from a holder that has not run it for this long.
WATCHDOG_S = 0.004
#: While the holder runs the loop idle, the main thread looks less often, up to this.
IDLE_CHECK_MAX_S = 0.032
#: An instance holding the loop gives it to another model's instance that asks only once it has run
#: the loop idle this long (models taking turns would otherwise hand it back and forth each request).
IDLE_HANDOVER_S = 0.01
#: An instance whose execution took longer than this does not hold the loop.
MAX_HOLDING_EXECUTION_NS = 500_000

_by_loop: dict[int, SharedLoop] = {}


def of(loop: asyncio.AbstractEventLoop | None) -> SharedLoop | None:
    """The SharedLoop that runs ``loop``, when the server runs it through one."""
    return None if loop is None else _by_loop.get(id(loop))


def release_if_holder(loop: asyncio.AbstractEventLoop | None) -> None:
    """Called on a thread about to wait for ``loop`` (a BLS request): if the thread holds the loop,
    stopped, the main thread gets it; a pending request for it is withdrawn. Either way the thread's
    instance stops holding the loop (``waited``). (A decoupled model's sends go through ``sending``.)"""
    shared = of(loop)
    # Only instance threads hold the loop (other threads, and the thread running it, go on at once).
    if shared is not None and threading.get_ident() in shared._instances and asyncio._get_running_loop() is not loop:
        shared.release(waited=True)


class SharedLoop:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._cond = threading.Condition(threading.Lock())
        self._main = threading.get_ident()
        #: The thread that may run (or touch) the loop.
        self.owner = self._main
        self._wanted = 0  # an instance thread that asked for the loop
        self._stopped_since = 0.0  # when the (instance) owner last stopped running it; 0 while it runs it
        self._runs = 0  # iterations run by instance owners (the watchdog tells busy from idle)
        self._idle_since = 0.0  # when the (instance) owner started running the loop with nothing to execute
        self._finished = False
        self._main_parked = False  # the main thread waits without a timeout (the holder was idle)
        self._instances: set[int] = set()  # instance threads that may hold the loop
        self._waited: set[int] = set()  # those that waited for the loop since they last looked
        self._signal_callbacks: dict[int, Callable[[], object]] = {}
        #: Instance threads whose execution sent responses itself (a decoupled model): the first and
        #: last send (time.monotonic_ns) and whether a pause between two sends was long.
        self._sends: dict[int, list[int]] = {}

    # -- the main thread ----------------------------------------------------------------

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` to completion on the loop (as ``asyncio.run``), then close the loop."""
        loop = self.loop
        asyncio.set_event_loop(loop)
        _by_loop[id(loop)] = self
        task = loop.create_task(main)

        def done(_: object) -> None:
            self._finished = True
            loop.stop()

        task.add_done_callback(done)
        try:
            while True:
                self._wait_until_owner()
                if task.done():
                    break
                loop.run_forever()
                self._after_run()
            return task.result()
        finally:
            _by_loop.pop(id(loop), None)
            for sig in self._signal_callbacks:
                signal.signal(sig, signal.SIG_DFL)
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def add_signal_handler(self, sig: int, callback: Callable[[], object]) -> None:
        """Call ``callback`` on the loop when ``sig`` arrives, whichever thread runs the loop
        (from the main thread, as ``signal.signal``)."""
        self._signal_callbacks[sig] = callback
        signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        callback = self._signal_callbacks.get(signum)
        if callback is None:  # pragma: no cover - handlers are installed with their callback
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.loop.call_soon_threadsafe(callback)

    def _wait_until_owner(self) -> None:
        """Wait (on the main thread) until the loop is handed back, taking it from a holder that
        stopped running it ``WATCHDOG_S`` ago. While the holder runs the loop and nothing happens,
        the checks grow sparser; once they reach ``IDLE_CHECK_MAX_S`` the main thread sleeps until
        the holder's loop next returns (``_after_run`` wakes it), so an idle server does not wake."""
        me = self._main
        timeout = WATCHDOG_S
        runs = -1
        with self._cond:
            while self.owner != me:
                if timeout >= IDLE_CHECK_MAX_S and not self._stopped_since and self._runs == runs:
                    self._main_parked = True
                    self._cond.wait()  # signal handlers run here too
                    self._main_parked = False
                    timeout = WATCHDOG_S
                else:
                    self._cond.wait(timeout)  # signal handlers run here too
                if self.owner == me:
                    break
                since = self._stopped_since
                if since:
                    waited = time.monotonic() - since
                    if waited >= WATCHDOG_S:
                        self.owner = me  # a long execution, or the holder waits: serve the connections here
                        self._wanted = 0
                        break
                    timeout = WATCHDOG_S - waited
                elif self._runs == runs:  # the holder waits for I/O: look less often
                    timeout = min(max(timeout, WATCHDOG_S) * 2, IDLE_CHECK_MAX_S)
                else:
                    runs = self._runs
                    timeout = WATCHDOG_S

    # -- the thread running the loop ----------------------------------------------------

    def _after_run(self) -> bool:
        """After ``run_forever`` returned: hand the loop to the instance thread that asked for it
        (to the main thread once ``run``'s coroutine is done). Returns whether the caller still
        owns it."""
        with self._cond:
            self._runs += 1
            self._idle_since = 0.0
            if self._main_parked:  # the main thread slept through the idle time: it watches again
                self._main_parked = False
                self._cond.notify_all()
            target = self._main if self._finished else self._wanted
            self._wanted = 0
            if target and target != self.owner:
                self.owner = target
                self._stopped_since = time.monotonic()  # until the new owner runs it
                self._cond.notify_all()
                return False
            if self.owner != self._main:
                self._stopped_since = time.monotonic()
            return True

    # -- instance threads ---------------------------------------------------------------

    def join(self) -> None:
        """The calling instance thread may hold the loop from now on."""
        self._instances.add(threading.get_ident())

    def leave(self) -> None:
        """The calling instance thread exits: the loop goes back to the main thread."""
        self.release()
        me = threading.get_ident()
        self._instances.discard(me)
        self._waited.discard(me)

    def ask(self) -> None:
        """The calling instance thread, about to execute, wants the loop: the thread running it
        hands it over at the end of its current iteration. An instance thread keeps it unless it
        has run it idle for ``IDLE_HANDOVER_S``."""
        me = threading.get_ident()
        with self._cond:
            if self._wanted or self._finished or self.owner == me:
                return
            if self.owner != self._main and not (
                self._idle_since and time.monotonic() - self._idle_since >= IDLE_HANDOVER_S
            ):
                return
            self._wanted = me
        self.loop.call_soon_threadsafe(self.loop.stop)

    def settle(self) -> bool:
        """After an execution without the loop: whether the caller owns it now. When it asked, it
        waits for the hand-over (at the end of the main thread's iteration, which holds the GIL
        until then anyway); a request not granted by then is withdrawn."""
        me = threading.get_ident()
        with self._cond:
            if self._wanted == me:
                self._cond.wait_for(lambda: self._wanted != me, WATCHDOG_S)
                if self._wanted == me:
                    self._wanted = 0
            return self.owner == me

    def post(self, callback: Callable[..., object], *args: object) -> bool:
        """Queue ``callback(*args)`` on the loop the caller owns (it runs when the caller next runs
        the loop). Returns False, queueing nothing, when the caller does not own it."""
        with self._cond:
            if self.owner != threading.get_ident():
                return False
            self.loop.call_soon(callback, *args)
            return True

    def sending(self) -> bool:
        """Called at each send of a decoupled model. On an instance thread inside ``execute`` the send
        is noted (``stopped_briefly`` judges a streaming execution by its pauses, not its length),
        and the result says whether the thread holds the loop, stopped, and may run it (a hand-over
        it asked for is awaited, as at ``settle``): then the response is queued with ``post`` and
        ``run_briefly`` writes it from this thread. Otherwise the caller posts with
        ``call_soon_threadsafe``: a request for the loop is withdrawn, and an instance thread running
        an ``async def execute``'s own loop, which cannot run this one, gives it back and stops
        holding it (``waited``)."""
        me = threading.get_ident()
        if me not in self._instances:
            return False
        running = asyncio._get_running_loop()
        if running is not None:
            if running is not self.loop:
                self.release(waited=True)
            return False
        now = time.monotonic_ns()
        sends = self._sends.get(me)
        if sends is None:
            self._sends[me] = [now, now, 0]
        else:
            if now - sends[1] > MAX_HOLDING_EXECUTION_NS:
                sends[2] = 1
            sends[1] = now
        return self.owner == me or self.settle()

    def run_briefly(self) -> bool:
        """The owner, inside an execution, runs what is ready on the loop (two iterations: a callback
        may queue a write for the next one, as the gRPC frontend's ``cork`` does), without waiting
        for I/O, and keeps the loop stopped. Returns whether the caller still owns it."""
        with self._cond:
            if self.owner != threading.get_ident():
                return False
            self._stopped_since = 0.0
        loop = self.loop
        loop.call_soon(loop.call_soon, loop.stop)
        loop.run_forever()
        return self._after_run()

    def stopped_briefly(self, start_ns: int, end_ns: int) -> bool:
        """Whether the calling instance thread's execution from ``start_ns`` to ``end_ns``
        (``time.monotonic_ns``) would keep the loop stopped for at most ``MAX_HOLDING_EXECUTION_NS``
        at a stretch: its whole length, or, for one that sent responses itself (a holder writes them
        as it goes, ``run_briefly``), the time before its first send, between two sends and after
        its last."""
        sends = self._sends.pop(threading.get_ident(), None) if self._sends else None
        if sends is not None and sends[0] >= start_ns:
            first, last, long_pause = sends
            return (
                not long_pause
                and first - start_ns <= MAX_HOLDING_EXECUTION_NS
                and end_ns - last <= MAX_HOLDING_EXECUTION_NS
            )
        return end_ns - start_ns <= MAX_HOLDING_EXECUTION_NS

    def run_idle(self, wake_slot: Callable[[Callable[[], None] | None], None], due_ns: int | None = None) -> bool:
        """Run the loop until it is stopped: by the caller's scheduler, which calls the function
        given to ``wake_slot`` when it queues work, at ``due_ns`` (``time.monotonic_ns``) when
        given, or by another thread asking for the loop. Returns whether the caller still owns it."""
        with self._cond:
            if self.owner != threading.get_ident():
                return False
            self._stopped_since = 0.0  # running it: the main thread does not take it
            self._idle_since = time.monotonic()
        loop = self.loop
        timer = None if due_ns is None else loop.call_later(max(due_ns - time.monotonic_ns(), 0) / 1e9, loop.stop)
        wake_slot(loop.stop)
        try:
            loop.run_forever()
        finally:
            wake_slot(None)
            if timer is not None:
                timer.cancel()
        return self._after_run()

    def waited(self) -> bool:
        """Whether the calling thread waited for the loop (``release_if_holder``) since it last
        asked; clears the mark."""
        me = threading.get_ident()
        if me in self._waited:
            self._waited.discard(me)
            return True
        return False

    def release(self, waited: bool = False) -> None:
        """The caller gives the loop (stopped) back to the main thread, if it owns it, and
        withdraws its request for it."""
        me = threading.get_ident()
        with self._cond:
            if waited:
                self._waited.add(me)
            if self._wanted == me:
                self._wanted = 0
            if self.owner != me:
                return
            self.owner = self._main
            self._stopped_since = 0.0
            self._cond.notify_all()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
