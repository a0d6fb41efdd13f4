"""SequenceBatchScheduler: the thread-side shell of the sequence batcher, and its control inputs.

Requests are admitted under a lock on the event loop (a missing correlation ID or START flag
fails there, with Triton's message); each instance thread asks for the next batch of the
sequences assigned to it and waits on a condition when there is none. The control inputs the
config names (``CONTROL_SEQUENCE_START/END/READY/CORRID``) are added to each request as it is
taken, with the configured values and types, and so are implicit states (``state [ ]``): the
state a request's execution wrote is its sequence's next request's state input.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from airtower.core.tensor import Tensor, array_from_buffer
from airtower.errors import ModelConfigError, TritonError
from airtower.scheduling.scheduler import Pending, Reject
from airtower.scheduling.sequence_batcher import SequenceTable
from airtower.types import NUMPY_DTYPE_BY_WIRE, config_to_wire

if TYPE_CHECKING:
    from airtower.core.model_config import ModelConfig
    from airtower.core.request import InferenceRequest

#: ``InferenceRequest.flags`` bits (TRITONSERVER_RequestFlag).
SEQUENCE_START = 1
SEQUENCE_END = 2

#: Triton's default ``max_sequence_idle_microseconds``.
DEFAULT_IDLE_US = 1_000_000


@dataclass(frozen=True, slots=True)
class ControlInput:
    """One control tensor: ``kind`` START/END/READY/CORRID, its wire type and false/true values."""

    name: str
    kind: str
    datatype: str
    false_value: Any = 0
    true_value: Any = 1


def control_inputs(config: ModelConfig) -> list[ControlInput]:
    """The ``sequence_batching.control_input`` entries of ``config``.

    Raises:
        ModelConfigError: a control without values (or, for CORRID, without a data type).
    """
    from tritonclient.grpc.model_config_pb2 import ModelSequenceBatching

    controls: list[ControlInput] = []
    for tensor in config.sequence_batching.control_input:
        for control in tensor.control:
            kind = ModelSequenceBatching.Control.Kind.Name(control.kind).removeprefix("CONTROL_SEQUENCE_")
            if kind == "CORRID":
                from tritonclient.grpc.model_config_pb2 import DataType

                controls.append(ControlInput(tensor.name, kind, config_to_wire(DataType.Name(control.data_type))))
            elif control.int32_false_true:
                false, true = control.int32_false_true
                controls.append(ControlInput(tensor.name, kind, "INT32", false, true))
            elif control.fp32_false_true:
                false, true = control.fp32_false_true
                controls.append(ControlInput(tensor.name, kind, "FP32", false, true))
            elif control.bool_false_true:
                false, true = control.bool_false_true
                controls.append(ControlInput(tensor.name, kind, "BOOL", false, true))
            else:
                raise ModelConfigError(
                    f"sequence batching control '{tensor.name}' of model '{config.name}' has no false/true values"
                )
    return controls


@dataclass(frozen=True, slots=True)
class ImplicitState:
    """One ``sequence_batching.state``: the model reads ``input_name`` and writes ``output_name``;
    the server carries the output of one request of a sequence to the input of the next."""

    input_name: str
    output_name: str
    datatype: str
    initial: Any  # numpy array of the state's dims: the value for a sequence's first request


def implicit_states(config: ModelConfig, model_dir: Path | None) -> list[ImplicitState]:
    """The ``sequence_batching.state`` entries, with their initial values (zeros, or
    ``<model>/initial_state/<data_file>``; zeros of the state's dims, -1 read as 1, when none).

    Raises:
        ModelConfigError: an initial state file that is missing or of the wrong size.
    """
    from tritonclient.grpc.model_config_pb2 import DataType

    states: list[ImplicitState] = []
    for state in config.sequence_batching.state:
        wire = config_to_wire(DataType.Name(state.data_type))
        dtype = np.object_ if wire == "BYTES" else NUMPY_DTYPE_BY_WIRE[wire]
        dims = tuple(max(int(d), 1) for d in state.dims)
        initial = np.zeros(dims, dtype=dtype) if wire != "BYTES" else np.full(dims, b"", dtype=np.object_)
        for entry in state.initial_state:
            dims = tuple(int(d) for d in entry.dims)
            if entry.WhichOneof("state_data") == "data_file":
                path = (model_dir or Path()) / "initial_state" / entry.data_file
                try:
                    initial = array_from_buffer(wire, dims, path.read_bytes()).copy()
                except (OSError, TritonError) as exc:
                    raise ModelConfigError(
                        f"failed to read initial state '{entry.name}' of model '{config.name}' from {path}: {exc}"
                    ) from exc
            else:
                initial = np.zeros(dims, dtype=dtype) if wire != "BYTES" else np.full(dims, b"", dtype=np.object_)
        states.append(ImplicitState(state.input_name, state.output_name, wire, initial))
    return states


class SequenceBatchScheduler:
    """Triton's sequence batcher (direct and oldest strategies share this shell)."""

    def __init__(self, config: ModelConfig, instances: int, reject: Reject, model_dir: Path | None = None) -> None:
        batching = config.sequence_batching
        strategy = batching.WhichOneof("strategy_choice") or "direct"
        slots = config.max_batch_size
        if strategy == "oldest" and batching.oldest.max_candidate_sequences > 0:
            slots = batching.oldest.max_candidate_sequences
        idle_us = batching.max_sequence_idle_microseconds or DEFAULT_IDLE_US
        preferred: tuple[int, ...] = ()
        delay_ns = 0
        if strategy == "oldest":
            preferred = tuple(batching.oldest.preferred_batch_size)
            delay_ns = batching.oldest.max_queue_delay_microseconds * 1000
        self._table: SequenceTable[Pending] = SequenceTable(
            config.name, max(instances, 1), slots, idle_us * 1000, config.max_batch_size, preferred, delay_ns
        )
        self._batched = config.max_batch_size > 0
        # Each control with its false and true tensor data, made once (read-only, shared by every
        # request); a CORRID control's data is made per request, from the request's correlation ID.
        self._controls: list[tuple[ControlInput, Any, Any]] = [
            (control, None, None)
            if control.kind == "CORRID"
            else (
                control,
                self._control_array(control, control.false_value),
                self._control_array(control, control.true_value),
            )
            for control in control_inputs(config)
        ]
        self.states = implicit_states(config, model_dir)
        self._saved: dict[Hashable, dict[str, Tensor]] = {}  # correlation ID → state input → tensor
        self._reject = reject
        self._changed = threading.Condition(threading.Lock())
        self._stopping = False
        #: Set while an instance thread runs the event loop with nothing to execute: stops it.
        self._idle_wake: Callable[[], None] | None = None

    def can_share_loop(self) -> bool:
        """Without a queue delay (``oldest`` may hold batches back) every batch is due at once;
        a sequence's idle expiry is the one later event (``next_due_ns``)."""
        return self._table.delay_ns == 0

    def set_idle_wake(self, wake: Callable[[], None] | None) -> None:
        self._idle_wake = wake

    def next_due_ns(self, instance: int = 0) -> int | None:
        """When an idle sequence frees a slot for one waiting (``take_nowait`` may then have work)."""
        with self._changed:
            return self._table.next_idle_ns()

    def enqueue(self, pending: Pending) -> None:
        if self._idle_wake is not None:
            self._idle_wake()  # the holder of the loop looks once this iteration has queued its requests
        request = pending.request
        flags = request.flags
        with self._changed:
            self._table.admit(
                pending,
                request.correlation_id,
                bool(flags & SEQUENCE_START),
                bool(flags & SEQUENCE_END),
                time.monotonic_ns(),
                pending.batch_size,
            )
            self._changed.notify_all()  # the sequence's instance may be any of the waiting threads

    def take(self, instance: int = 0) -> Sequence[Pending] | None:
        return self._take(instance, True)

    def take_nowait(self, instance: int = 0) -> Sequence[Pending] | None:
        """``take`` without blocking: ``()`` when nothing is due now."""
        return self._take(instance, False)

    def _take(self, instance: int, wait: bool) -> Sequence[Pending] | None:
        with self._changed:
            while True:
                now = time.monotonic_ns()
                taken = self._table.next_batch(instance, now)
                if taken:
                    self._changed.notify_all()  # a slot may have been freed for a waiting sequence
                    batch: list[Pending] = []
                    for queued in taken:
                        pending = queued.item
                        if pending.future.done():
                            continue  # the client went away
                        self._add_controls(pending, queued.start, queued.end)
                        batch.append(pending)
                    if batch:
                        return batch
                    continue
                if self._stopping:
                    if self._table.hold_until_ns is None:
                        return None
                    self._table.delay_ns = 0  # exiting: a batch held back for the queue delay runs now
                    continue
                if not wait:
                    return ()
                wakes = [at for at in (self._table.next_idle_ns(), self._table.hold_until_ns) if at is not None]
                self._changed.wait(max(min(wakes) - now, 0) / 1e9 if wakes else None)

    def flush(self) -> None:
        pass  # sequences never wait for a batch to fill

    def stop(self, instances: int) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._idle_wake is not None:
            self._idle_wake()

    def pending_count(self) -> int:
        with self._changed:
            return len(self._table)

    def _control_array(self, control: ControlInput, value: Any) -> Any:
        dtype = np.object_ if control.datatype == "BYTES" else NUMPY_DTYPE_BY_WIRE[control.datatype]
        array = np.full((1, 1) if self._batched else (1,), value, dtype=dtype)
        array.flags.writeable = False
        return array

    def _add_controls(self, pending: Pending, start: bool, end: bool) -> None:
        request = pending.request
        for control, off, on in self._controls:
            if on is None:  # CORRID
                array = self._control_array(control, _correlation_value(request.correlation_id, control.datatype))
            else:
                kind = control.kind
                array = on if (start if kind == "START" else end if kind == "END" else True) else off  # READY: on
            request.inputs[control.name] = Tensor(control.name, control.datatype, array.shape, array)
        if self.states:
            saved = None if start else self._saved.get(request.correlation_id)
            for state in self.states:
                tensor = saved.get(state.input_name) if saved is not None else None
                if tensor is None:
                    initial = state.initial[np.newaxis] if self._batched else state.initial
                    tensor = Tensor(state.input_name, state.datatype, tuple(initial.shape), initial)
                request.inputs[state.input_name] = tensor
            if end:
                self._saved.pop(request.correlation_id, None)

    def keep_state(self, request: InferenceRequest, outputs: list[Tensor]) -> list[Tensor]:
        """On the instance thread after an execution: save the request's state outputs for the
        next request of its sequence; returns the other outputs (states never reach clients)."""
        if not self.states:
            return outputs
        by_output = {state.output_name: state for state in self.states}
        kept: list[Tensor] = []
        saved: dict[str, Tensor] = {}
        for tensor in outputs:
            state = by_output.get(tensor.name)
            if state is None:
                kept.append(tensor)
            else:
                saved[state.input_name] = Tensor(state.input_name, tensor.datatype, tensor.shape, tensor.data)
        if saved and not request.flags & SEQUENCE_END:
            with self._changed:
                self._saved[request.correlation_id] = saved
        return kept


def _correlation_value(correlation_id: int | str, datatype: str) -> Any:
    """The CORRID control's value: the ID itself, or for a string ID in a numeric tensor a stable
    64-bit hash of it (Triton also hashes, with its own function)."""
    if datatype == "BYTES":
        return str(correlation_id).encode()
    if isinstance(correlation_id, str):
        return int.from_bytes(hashlib.blake2b(correlation_id.encode(), digest_size=8).digest(), "little") >> 1
    return correlation_id
