from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse
from airtower.errors import InvalidArgumentError, ModelConfigError, TritonError
from airtower.scheduling.scheduler import Pending
from airtower.scheduling.sequence_batch_scheduler import SEQUENCE_START, SequenceBatchScheduler, implicit_states
from airtower.scheduling.sequence_batcher import Queued, SequenceTable

SECOND = 10**9


def table(instances: int = 1, slots: int = 1, idle_ns: int = SECOND, batch_limit: int = 4) -> SequenceTable[str]:
    return SequenceTable("acc", instances, slots, idle_ns, batch_limit)


def hold_until(t: SequenceTable[str]) -> int | None:
    return t.hold_until_ns


def items(batch: list[Queued[str]]) -> list[str]:
    return [queued.item for queued in batch]


def test_a_request_without_correlation_id_is_refused() -> None:
    for missing in (0, ""):
        with pytest.raises(InvalidArgumentError) as error:
            table().admit("r", missing, True, False, 0)
        assert error.value.message == (
            "inference request to model 'acc' must specify a non-zero or non-empty correlation ID"
        )


def test_a_request_of_more_than_one_batch_item_is_refused_first() -> None:
    """As Triton: before the correlation ID is looked at (the example has none)."""
    with pytest.raises(InvalidArgumentError) as error:
        table().admit("r", 0, True, False, 0, batch_size=2)
    assert error.value.message == (
        "inference request to model 'acc' must specify batch-size 1 due to requirements of sequence batcher"
    )


def test_a_sequence_must_start_with_the_start_flag() -> None:
    with pytest.raises(InvalidArgumentError) as error:
        table().admit("r", 7, False, False, 0)
    assert error.value.message == (
        "inference request for sequence 7 to model 'acc' must specify the START flag on the first request of the "
        "sequence"
    )


def test_requests_of_a_sequence_run_one_at_a_time_in_order() -> None:
    t = table(slots=2)
    t.admit("a1", 1, True, False, 0)
    t.admit("a2", 1, False, False, 1)
    t.admit("b1", "b", True, False, 2)
    assert items(t.next_batch(0, 3)) == ["a1", "b1"]  # one request per sequence per batch
    assert items(t.next_batch(0, 4)) == ["a2"]
    assert t.next_batch(0, 5) == []


def test_flags_travel_with_each_request() -> None:
    t = table()
    t.admit("first", 1, True, False, 0)
    t.admit("last", 1, False, True, 1)
    [first] = t.next_batch(0, 2)
    [last] = t.next_batch(0, 3)
    assert (first.start, first.end, last.start, last.end) == (True, False, False, True)


def test_after_end_the_id_needs_a_new_start_and_the_slot_is_free() -> None:
    t = table(slots=1)
    t.admit("a1", 1, True, True, 0)
    t.admit("b1", 2, True, False, 1)  # waits: the only slot is taken
    assert items(t.next_batch(0, 2)) == ["a1"]  # END taken: the slot goes to sequence 2
    assert items(t.next_batch(0, 3)) == ["b1"]
    with pytest.raises(InvalidArgumentError, match="must specify the START flag"):
        t.admit("a2", 1, False, False, 4)


def test_sequences_spread_over_instances_and_stay_on_theirs() -> None:
    t = table(instances=2, slots=1)
    t.admit("a1", 1, True, False, 0)
    t.admit("b1", 2, True, False, 1)
    t.admit("a2", 1, False, False, 2)
    assert items(t.next_batch(0, 3)) == ["a1"]
    assert items(t.next_batch(1, 3)) == ["b1"]
    assert items(t.next_batch(1, 4)) == []
    assert items(t.next_batch(0, 4)) == ["a2"]


def test_idle_sequences_are_released() -> None:
    t = table(slots=1, idle_ns=10)
    t.admit("a1", 1, True, False, 0)
    assert items(t.next_batch(0, 1)) == ["a1"]
    t.admit("b1", 2, True, False, 2)  # no slot yet: sequence 1 is still active
    assert t.next_idle_ns() == 11
    assert items(t.next_batch(0, 5)) == []
    assert items(t.next_batch(0, 11)) == ["b1"]  # sequence 1 went idle and freed the slot
    with pytest.raises(InvalidArgumentError, match="must specify the START flag"):
        t.admit("a2", 1, False, False, 12)


def test_a_batch_holds_at_most_the_batch_limit_oldest_first() -> None:
    t = table(slots=8, batch_limit=2)
    for index, cid in enumerate((3, 1, 2)):
        t.admit(f"s{cid}", cid, True, False, index)
    assert items(t.next_batch(0, 10)) == ["s3", "s1"]
    assert items(t.next_batch(0, 11)) == ["s2"]


def test_oldest_strategy_waits_the_queue_delay_for_a_fuller_batch() -> None:
    t = SequenceTable[str]("acc", 1, 8, SECOND, 4, preferred=(), delay_ns=100)
    t.admit("a1", 1, True, False, 0)
    t.admit("b1", 2, True, False, 10)
    assert t.next_batch(0, 50) == []  # 2 of 4 ready, the oldest waited 50 of 100 ns
    assert hold_until(t) == 100
    t.admit("c1", 3, True, False, 60)
    t.admit("d1", 4, True, False, 70)
    assert items(t.next_batch(0, 80)) == ["a1", "b1", "c1", "d1"]  # the batch limit: no need to wait
    assert hold_until(t) is None
    t.admit("a2", 1, False, False, 90)
    assert t.next_batch(0, 150) == []
    assert items(t.next_batch(0, 190)) == ["a2"]  # the delay is over: what is ready goes


def test_oldest_strategy_sends_a_preferred_size_at_once() -> None:
    t = SequenceTable[str]("acc", 1, 8, SECOND, 4, preferred=(2,), delay_ns=SECOND)
    for index, cid in enumerate((1, 2, 3)):
        t.admit(f"s{cid}", cid, True, False, index)
    assert items(t.next_batch(0, 5)) == ["s1", "s2"]  # the largest preferred size that fits
    assert t.next_batch(0, 6) == []  # one left: below every preferred size, within the delay
    assert items(t.next_batch(0, SECOND + 3)) == ["s3"]


def test_drain_returns_every_queued_request() -> None:
    t = table(slots=1)
    t.admit("a1", 1, True, False, 0)
    t.admit("b1", 2, True, False, 1)
    assert sorted(t.drain()) == ["a1", "b1"]
    assert len(t) == 0


def test_implicit_state_initial_values(tmp_path: Path) -> None:
    (tmp_path / "initial_state").mkdir()
    (tmp_path / "initial_state" / "s.bin").write_bytes(np.array([1.5, 2.5], np.float32).tobytes())
    config = text_format.Parse(
        """
        name: "m"
        sequence_batching { state [
          { input_name: "A" output_name: "A_OUT" data_type: TYPE_FP32 dims: [ 2 ] },
          { input_name: "B" output_name: "B_OUT" data_type: TYPE_FP32 dims: [ 2 ]
            initial_state { name: "f" data_type: TYPE_FP32 dims: [ 2 ] data_file: "s.bin" } }
        ] }
        """,
        ModelConfig(),
    )
    zeros, from_file = implicit_states(config, tmp_path)
    assert (zeros.input_name, zeros.output_name, zeros.datatype) == ("A", "A_OUT", "FP32")
    np.testing.assert_array_equal(zeros.initial, [0, 0])
    np.testing.assert_array_equal(from_file.initial, [1.5, 2.5])
    (tmp_path / "initial_state" / "s.bin").write_bytes(b"\0")
    with pytest.raises(ModelConfigError, match="failed to read initial state 'f'"):
        implicit_states(config, tmp_path)


SHELL_CONFIG = """
name: "acc"
backend: "python"
max_batch_size: 1
sequence_batching { max_sequence_idle_microseconds: 2000 }
"""


def test_an_instance_holding_the_loop_takes_without_waiting_and_wakes_for_an_idle_slot() -> None:
    loop = asyncio.new_event_loop()  # for the requests' futures
    rejected: list[TritonError] = []
    config = text_format.Parse(SHELL_CONFIG, ModelConfig())
    scheduler = SequenceBatchScheduler(config, 1, lambda batch, error: rejected.append(error))

    def pending(sequence_id: int) -> Pending:
        request = InferenceRequest("acc", correlation_id=sequence_id, flags=SEQUENCE_START)
        future: asyncio.Future[InferenceResponse] = loop.create_future()
        return Pending(request, future, 1, time.monotonic_ns())

    assert scheduler.can_share_loop()
    assert scheduler.take_nowait() == ()
    assert scheduler.next_due_ns() is None  # nothing waits for a slot
    woken: list[str] = []
    scheduler.set_idle_wake(lambda: woken.append("wake"))
    first, second = pending(1), pending(2)
    scheduler.enqueue(first)
    assert woken == ["wake"]
    assert scheduler.take_nowait() == [first]
    scheduler.enqueue(second)  # one slot, held by sequence 1: it waits until 1 is idle
    assert scheduler.take_nowait() == ()
    due = scheduler.next_due_ns()
    assert due is not None
    while time.monotonic_ns() < due:  # the scheduler's own clock
        time.sleep(max(due - time.monotonic_ns(), 0) / 1e9)
    assert scheduler.take_nowait() == [second]
    scheduler.stop(1)
    assert woken == ["wake", "wake", "wake"]
    assert scheduler.take_nowait() is None
    assert rejected == []
    loop.close()


def test_the_oldest_strategy_with_a_queue_delay_does_not_share_the_loop() -> None:
    text = SHELL_CONFIG.replace("{ max_sequence", "{ oldest { max_queue_delay_microseconds: 100 } max_sequence")
    scheduler = SequenceBatchScheduler(text_format.Parse(text, ModelConfig()), 1, lambda batch, error: None)
    assert not scheduler.can_share_loop()
