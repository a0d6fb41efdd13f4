"""Decoupled models: zero or many responses per request over gRPC streaming, Triton's final
response flag, and the unary endpoints refusing them as Triton does."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.fixture_models import write_python_model
from tests.integration.server_process import ServerProcess, start_server

pytestmark = pytest.mark.integration

# N responses (0..N-1) sent from another thread after execute returned, then a bare final flag;
# N < 0: execute raises.
REPEAT_MODEL = """
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy()[0])
            if n < 0:
                raise RuntimeError("negative count")
            sender = request.get_response_sender()

            def work(sender=sender, n=n):
                for i in range(n):
                    sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([i], np.int32))]))
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

            threading.Thread(target=work).start()
        return None
"""

REPEAT_CONFIG = """\
        name: "repeat"
        backend: "python"
        max_batch_size: 0
        model_transaction_policy { decoupled: true }
        input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
        """


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repository = tmp_path_factory.mktemp("decoupled")
    write_python_model(repository / "repeat", REPEAT_CONFIG, REPEAT_MODEL)
    process = start_server([repository])
    yield process
    assert process.stop() == 0, process.output()


def count(module: Any, n: int) -> list[Any]:
    tensor = module.InferInput("N", [1], "INT32")
    tensor.set_data_from_numpy(np.array([n], np.int32))
    return [tensor]


def stream(server: ServerProcess, counts: list[int], expected: int, empty_final: bool) -> list[tuple[Any, Any]]:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            for n in counts:
                client.async_stream_infer(
                    "repeat", count(grpcclient, n), request_id=f"n{n}", enable_empty_final_response=empty_final
                )
            return [answers.get(timeout=60) for _ in range(expected)]
        finally:
            client.stop_stream()


def final_flag(result: Any) -> bool:
    return bool(result.get_response().parameters["triton_final_response"].bool_param)


def test_many_responses_then_nothing_without_empty_final(server: ServerProcess) -> None:
    got = stream(server, [3], 3, empty_final=False)
    assert [error for _, error in got] == [None] * 3
    assert [int(result.as_numpy("OUT")[0]) for result, _ in got] == [0, 1, 2]
    assert [final_flag(result) for result, _ in got] == [False, False, False]
    assert {result.get_response().id for result, _ in got} == {"n3"}


def test_empty_final_response_ends_each_request(server: ServerProcess) -> None:
    got = stream(server, [2, 0], 4, empty_final=True)
    by_request: dict[str, list[Any]] = {}
    for result, error in got:
        assert error is None
        by_request.setdefault(result.get_response().id, []).append(result)
    assert [final_flag(r) for r in by_request["n2"]] == [False, False, True]
    assert [final_flag(r) for r in by_request["n0"]] == [True]
    final = by_request["n0"][0].get_response()
    # As Triton 2.51: the version the request named, and it named none.
    assert (final.model_name, final.model_version, list(final.outputs)) == ("repeat", "", [])


def test_an_execute_error_is_an_error_response_and_the_stream_goes_on(server: ServerProcess) -> None:
    got = stream(server, [-1, 1], 2, empty_final=False)
    errors = [error for _, error in got if error is not None]
    assert len(errors) == 1
    assert "negative count" in errors[0].message()
    [ok] = [result for result, error in got if error is None]
    assert int(ok.as_numpy("OUT")[0]) == 0


def test_unary_endpoints_refuse_decoupled_models_like_triton(server: ServerProcess) -> None:
    with (
        httpclient.InferenceServerClient(server.url) as client,
        pytest.raises(InferenceServerException) as http_error,
    ):
        client.infer("repeat", count(httpclient, 1))
    assert http_error.value.status() == "501"
    assert http_error.value.message() == "HTTP end point doesn't support models with decoupled transaction policy"
    with (
        grpcclient.InferenceServerClient(server.grpc_url) as grpc,
        pytest.raises(InferenceServerException) as grpc_error,
    ):
        grpc.infer("repeat", count(grpcclient, 1))
    assert grpc_error.value.status() == "StatusCode.UNIMPLEMENTED"
    assert grpc_error.value.message() == "ModelInfer RPC doesn't support models with decoupled transaction policy"
