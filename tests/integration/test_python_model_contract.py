"""What a Python model may count on, as on Triton, although it runs in the server's process.

Tensors are the model's own (Triton copies each between the stub and the server): a model may change
its inputs in place, and may reuse an output array for its next response, without changing what
another model, a BLS caller or a client sees. ``pb_utils.get_model_dir()`` names the model's version
directory. ``asyncio.get_event_loop()`` gives the model's thread a loop, as on the stub's main thread.
"""

from __future__ import annotations

import concurrent.futures
import queue
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.integration.fixture_models import write_python_model
from tests.integration.server_process import ServerProcess, start_server

pytestmark = pytest.mark.integration

VECTOR_CONFIG = """\
    name: "{name}"
    backend: "python"
    max_batch_size: 0
    input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }} ]
    output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }} ]
    instance_group [ {{ kind: KIND_CPU, count: 1 }} ]
    """

# Adds 1 to its input in place (Triton hands the model a writable copy) and returns it.
IN_PLACE_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            x += 1
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x)]))
        return responses
"""

# Answers every request from the one array it keeps, overwritten by the next execution.
REUSE_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.buffer = np.zeros(4, np.float32)

    def execute(self, requests):
        responses = []
        for request in requests:
            self.buffer[:] = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", self.buffer)]))
        return responses
"""

# BLS: calls "reuse" twice and keeps both answers (the first must not become the second), then
# passes its own input to "in_place" (which changes its copy, not the caller's tensor).
CALLER_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


def call(model, tensor):
    request = pb_utils.InferenceRequest(model_name=model, requested_output_names=["OUT"], inputs=[tensor])
    response = request.exec()
    if response.has_error():
        raise pb_utils.TritonModelException(response.error().message())
    return pb_utils.get_output_tensor_by_name(response, "OUT").as_numpy()


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            own = pb_utils.get_input_tensor_by_name(request, "IN")
            first = call("reuse", pb_utils.Tensor("IN", np.full(4, 1, np.float32)))
            second = call("reuse", pb_utils.Tensor("IN", np.full(4, 2, np.float32)))
            changed = call("in_place", own)
            outputs = [
                pb_utils.Tensor("FIRST", first),
                pb_utils.Tensor("SECOND", second),
                pb_utils.Tensor("CHANGED", changed),
                pb_utils.Tensor("OWN", own.as_numpy()),
            ]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
"""

CALLER_CONFIG = """\
    name: "caller"
    backend: "python"
    max_batch_size: 0
    input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
    output [
      { name: "FIRST" data_type: TYPE_FP32 dims: [ 4 ] },
      { name: "SECOND" data_type: TYPE_FP32 dims: [ 4 ] },
      { name: "CHANGED" data_type: TYPE_FP32 dims: [ 4 ] },
      { name: "OWN" data_type: TYPE_FP32 dims: [ 4 ] }
    ]
    """

# Decoupled: N responses sent from one array, changed after each send.
REUSE_STREAM_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            sender = request.get_response_sender()
            buffer = np.zeros(1, np.int32)
            for i in range(n):
                buffer[0] = i
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", buffer)]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

REUSE_STREAM_CONFIG = """\
    name: "reuse_stream"
    backend: "python"
    max_batch_size: 0
    model_transaction_policy { decoupled: true }
    input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]
    output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
    """

# get_model_dir() at import, in initialize, in execute, in a thread the model starts, and in a
# helper module next to model.py that the model calls.
MODEL_DIR_MODEL = """
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

import dir_helper

AT_IMPORT = pb_utils.get_model_dir()


class TritonPythonModel:
    def initialize(self, args):
        self.at_initialize = pb_utils.get_model_dir()

    def execute(self, requests):
        found = []
        thread = threading.Thread(target=lambda: found.append(pb_utils.get_model_dir()))
        thread.start()
        thread.join()
        places = [AT_IMPORT, self.at_initialize, pb_utils.get_model_dir(), found[0], dir_helper.model_dir()]
        out = pb_utils.Tensor("DIRS", np.array(places, dtype=np.object_))
        return [pb_utils.InferenceResponse([out]) for _ in requests]
"""

MODEL_DIR_HELPER = """
import triton_python_backend_utils as pb_utils


def model_dir():
    return pb_utils.get_model_dir()
"""

MODEL_DIR_CONFIG = """\
    name: "{name}"
    backend: "python"
    max_batch_size: 0
    input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
    output [ { name: "DIRS" data_type: TYPE_STRING dims: [ 5 ] } ]
    """


# Keeps asyncio.get_event_loop() from initialize (a common way to run an async client's calls from a
# synchronous execute), as on the stub's main thread.
EVENT_LOOP_MODEL = """
import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils


async def double(x):
    await asyncio.sleep(0)
    return x * 2


class TritonPythonModel:
    def initialize(self, args):
        self.loop = asyncio.get_event_loop()

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            y = self.loop.run_until_complete(double(x))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", y)]))
        return responses
"""


# Non-decoupled, answering with its requests' response senders (Triton's python backend allows it
# since 24.x): IN[0] == 0 sends the response then the final flag, 1 both at once, else both from a
# thread after execute returned.
SENDER_MODEL = """
import threading
import time

import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            response = pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x + 10)])
            sender = request.get_response_sender()
            if x[0] == 0:
                sender.send(response)
                sender.send(flags=FINAL)
            elif x[0] == 1:
                sender.send(response, flags=FINAL)
            else:  # after execute returned, from another thread
                threading.Thread(target=later, args=(sender, response)).start()
        return None


def later(sender, response):
    time.sleep(0.05)
    sender.send(response, flags=FINAL)
"""

# Decoupled, but returns responses from execute instead of None: Triton answers an error.
DECOUPLED_RETURNS_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.zeros(1, np.int32))]) for _ in requests]
"""


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("buffers")
    write_python_model(repository / "in_place", VECTOR_CONFIG.format(name="in_place"), IN_PLACE_MODEL)
    write_python_model(repository / "reuse", VECTOR_CONFIG.format(name="reuse"), REUSE_MODEL)
    write_python_model(repository / "caller", CALLER_CONFIG, CALLER_MODEL)
    write_python_model(repository / "reuse_stream", REUSE_STREAM_CONFIG, REUSE_STREAM_MODEL)
    write_python_model(repository / "event_loop", VECTOR_CONFIG.format(name="event_loop"), EVENT_LOOP_MODEL)
    write_python_model(repository / "sender", VECTOR_CONFIG.format(name="sender"), SENDER_MODEL)
    write_python_model(
        repository / "decoupled_returns",
        REUSE_STREAM_CONFIG.replace("reuse_stream", "decoupled_returns"),
        DECOUPLED_RETURNS_MODEL,
    )
    for name in ("model_dir_a", "model_dir_b"):  # two models, one process: each is told its own
        write_python_model(repository / name, MODEL_DIR_CONFIG.replace("{name}", name), MODEL_DIR_MODEL)
        (repository / name / "1" / "dir_helper.py").write_text(MODEL_DIR_HELPER)
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    process = start_server([repository])
    yield process
    assert process.stop() == 0, process.output()


def vector(value: float) -> list[httpclient.InferInput]:
    tensor = httpclient.InferInput("IN", [4], "FP32")
    tensor.set_data_from_numpy(np.full(4, value, np.float32))
    return [tensor]


def test_a_model_changes_its_input_in_place(server: ServerProcess) -> None:
    with httpclient.InferenceServerClient(server.url) as client:
        for binary in (True, False):
            tensor = httpclient.InferInput("IN", [4], "FP32")
            tensor.set_data_from_numpy(np.arange(4, dtype=np.float32), binary_data=binary)
            result = client.infer("in_place", [tensor])
            np.testing.assert_array_equal(result.as_numpy("OUT"), np.arange(4, dtype=np.float32) + 1)


def test_bls_answers_keep_their_values_and_callers_keep_their_inputs(server: ServerProcess) -> None:
    with httpclient.InferenceServerClient(server.url) as client:
        result = client.infer("caller", vector(5))
    np.testing.assert_array_equal(result.as_numpy("FIRST"), np.full(4, 1, np.float32))
    np.testing.assert_array_equal(result.as_numpy("SECOND"), np.full(4, 2, np.float32))
    np.testing.assert_array_equal(result.as_numpy("CHANGED"), np.full(4, 6, np.float32))
    np.testing.assert_array_equal(result.as_numpy("OWN"), np.full(4, 5, np.float32))


def test_a_reused_output_array_does_not_change_sent_responses(server: ServerProcess) -> None:
    def client_run(worker: int) -> list[tuple[float, float]]:
        wrong = []
        with httpclient.InferenceServerClient(server.url) as client:
            for index in range(50):
                value = float(worker * 1000 + index)
                got = client.infer("reuse", vector(value)).as_numpy("OUT")
                if not np.array_equal(got, np.full(4, value, np.float32)):
                    wrong.append((value, float(got[0])))
        return wrong

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        wrong = [pair for answers in pool.map(client_run, range(4)) for pair in answers]
    assert wrong == []


def stream(server: ServerProcess, model: str, n: int, count: int) -> list[tuple[object, object]]:
    """The first ``count`` (result, error) pairs of one ModelStreamInfer request with N = ``n``."""
    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    tensor = grpcclient.InferInput("N", [1], "INT32")
    tensor.set_data_from_numpy(np.array([n], np.int32))
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            client.async_stream_infer(model, [tensor])
            return [answers.get(timeout=30) for _ in range(count)]
        finally:
            client.stop_stream()


def test_a_stream_sent_from_one_array_keeps_each_value(server: ServerProcess) -> None:
    values = []
    for result, error in stream(server, "reuse_stream", 40, 40):
        assert error is None, error
        values.append(int(result.as_numpy("OUT")[0]))  # type: ignore[attr-defined]
    assert values == list(range(40))


def test_get_model_dir_names_the_calling_models_version_directory(server: ServerProcess, repository: Path) -> None:
    with httpclient.InferenceServerClient(server.url) as client:
        for name in ("model_dir_a", "model_dir_b"):
            dirs = client.infer(name, vector(0)).as_numpy("DIRS")
            assert [d.decode() for d in dirs] == [str(repository / name / "1")] * 5


def test_a_model_runs_coroutines_on_the_loop_asyncio_gave_its_thread(server: ServerProcess) -> None:
    with httpclient.InferenceServerClient(server.url) as client:
        for value in (1.5, 2.5):
            result = client.infer("event_loop", vector(value))
            np.testing.assert_array_equal(result.as_numpy("OUT"), np.full(4, 2 * value, np.float32))


def test_a_non_decoupled_model_answers_with_its_response_sender(server: ServerProcess) -> None:
    with httpclient.InferenceServerClient(server.url) as client:
        for value in (0.0, 1.0, 2.0):  # the response then the final flag; both at once; both later
            result = client.infer("sender", vector(value))
            np.testing.assert_array_equal(result.as_numpy("OUT"), np.full(4, value + 10, np.float32))


def test_a_decoupled_model_returning_responses_gets_tritons_error(server: ServerProcess) -> None:
    [(result, error)] = stream(server, "decoupled_returns", 1, 1)
    assert result is None
    assert str(error).endswith(
        "Python model 'decoupled_returns_0' is using the decoupled mode and the execute function must return None."
    )
