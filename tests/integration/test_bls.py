"""BLS: Python models calling other models of the server with ``exec`` and ``async_exec``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.integration.fixture_models import write_python_model
from tests.integration.server_process import ServerProcess, start_server
from tests.integration.test_decoupled import REPEAT_CONFIG, REPEAT_MODEL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# MODE 0: add_sub through exec(); 1: the same through async_exec() (execute is async then);
# 2: an unknown model (the error comes back in the response); 3: a bad input for add_sub;
# 4 / 5: the decoupled "repeat" model through exec(decoupled=True) / async_exec(decoupled=True).
BLS_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


def call(model, a, b):
    return pb_utils.InferenceRequest(
        model_name=model,
        requested_output_names=["OUTPUT0"],
        inputs=[pb_utils.Tensor("INPUT0", a), pb_utils.Tensor("INPUT1", b)],
    )


class TritonPythonModel:
    async def execute(self, requests):
        responses = []
        for request in requests:
            mode = int(pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0])
            a = np.arange(16, dtype=np.float32)
            b = np.full(16, 3, dtype=np.float32)
            if mode == 0:
                answer = call("add_sub", a, b).exec()
            elif mode == 1:
                answer = await call("add_sub", a, b).async_exec()
            elif mode == 2:
                answer = call("nope", a, b).exec()
            elif mode == 3:
                answer = call("add_sub", a[:3], b[:3]).exec()
            elif mode == 6:
                answer = pb_utils.InferenceRequest(
                    model_name="repeat", requested_output_names=["OUT"],
                    inputs=[pb_utils.Tensor("N", np.array([3], np.int32))],
                ).exec()
            else:
                repeat = pb_utils.InferenceRequest(
                    model_name="repeat", requested_output_names=["OUT"],
                    inputs=[pb_utils.Tensor("N", np.array([3], np.int32))],
                )
                if mode == 4:
                    answers = list(repeat.exec(decoupled=True))
                else:
                    answers = [answer async for answer in await repeat.async_exec(decoupled=True)]
                seen = [
                    [int(t.as_numpy()[0]) for t in answer.output_tensors()] for answer in answers
                ]
                out = np.array([repr(seen).encode()], dtype=np.object_)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("RESULT", out)]))
                continue
            if answer.has_error():
                error = answer.error()
                text = f"{error.code().name}: {error.message()}"
                out = np.array([text.encode()], dtype=np.object_)
            else:
                values = pb_utils.get_output_tensor_by_name(answer, "OUTPUT0").as_numpy().tolist()
                out = np.array([repr(values).encode()], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("RESULT", out)]))
        return responses
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repository = tmp_path_factory.mktemp("bls")
    shutil.copytree(ROOT / "examples" / "model_repository" / "add_sub", repository / "add_sub")
    write_python_model(
        repository / "bls",
        """\
        name: "bls"
        backend: "python"
        max_batch_size: 0
        input [ { name: "MODE" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "RESULT" data_type: TYPE_STRING dims: [ 1 ] } ]
        """,
        BLS_MODEL,
    )
    write_python_model(repository / "repeat", REPEAT_CONFIG, REPEAT_MODEL)
    process = start_server([repository])
    yield process
    assert process.stop() == 0, process.output()


def run(server: ServerProcess, mode: int) -> str:
    with httpclient.InferenceServerClient(server.url) as client:
        tensor = httpclient.InferInput("MODE", [1], "INT32")
        tensor.set_data_from_numpy(np.array([mode], np.int32))
        return str(client.infer("bls", [tensor]).as_numpy("RESULT")[0].decode())


@pytest.mark.parametrize("mode", [0, 1], ids=["exec", "async_exec"])
def test_bls_calls_another_model(server: ServerProcess, mode: int) -> None:
    expected = (np.arange(16, dtype=np.float32) + 3).tolist()
    assert run(server, mode) == repr(expected)


def test_bls_errors_come_back_in_the_response(server: ServerProcess) -> None:
    # As Triton 2.51's Python backend words them: refused requests named, every code INTERNAL.
    assert run(server, 2) == (
        "INTERNAL: Model nope - Error when running inference: Failed for execute the inference request. "
        "Model 'nope' is not ready."
    )
    message = run(server, 3)
    assert message.startswith("INTERNAL: Model add_sub - Error when running inference: [request id: <id_unknown>] ")
    assert "unexpected shape for input 'INPUT1' for model 'add_sub'" in message  # both wrong: Triton's order
    assert run(server, 6) == (
        "INTERNAL: Model repeat - Error when running inference: Model repeat is using the decoupled. The current BLS "
        "request call doesn't support models using the decoupled transaction policy. Please use 'decoupled=True' "
        "argument to the 'exec' or 'async_exec' calls for decoupled models.'"
    )


def test_bls_calls_count_in_the_called_model_statistics(server: ServerProcess) -> None:
    with httpclient.InferenceServerClient(server.url) as client:
        before = client.get_inference_statistics("add_sub")["model_stats"][0]["inference_count"]
        run(server, 0)
        after = client.get_inference_statistics("add_sub")["model_stats"][0]["inference_count"]
    assert after - before == 1


@pytest.mark.parametrize("mode", [4, 5], ids=["exec", "async_exec"])
def test_bls_iterates_a_decoupled_model_s_responses(server: ServerProcess, mode: int) -> None:
    # Three responses, then Triton's empty last response for the bare final flag.
    assert run(server, mode) == repr([[0], [1], [2], []])
