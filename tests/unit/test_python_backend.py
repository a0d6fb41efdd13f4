"""PythonBackend: model.py loaded from a temporary repository and driven in-process."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airtower.backends.base import InstanceSpec, ModelContext
from airtower.backends.python import triton_python_backend_utils as pb_utils
from airtower.backends.python.backend import PythonBackend, PythonInstance, PythonModel
from airtower.core.model_config import ModelConfig, config_to_json, parse_config_text
from airtower.core.request import InferenceRequest, RequestedOutput
from airtower.core.response import InferenceResponse
from airtower.core.tensor import Tensor
from airtower.errors import (
    BackendExecutionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    TritonError,
    UnavailableError,
)

ADD_SUB_CONFIG = """
name: "{name}"
backend: "python"
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [16] }}, {{ name: "INPUT1" data_type: TYPE_FP32 dims: [16] }}]
output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [16] }}, {{ name: "OUTPUT1" data_type: TYPE_FP32 dims: [16] }}]
"""

ADD_SUB_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            in0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            in1 = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            out0 = pb_utils.Tensor("OUTPUT0", in0 + in1)
            out1 = pb_utils.Tensor("OUTPUT1", in0 - in1)
            responses.append(pb_utils.InferenceResponse([out0, out1]))
        return responses
"""

ASYNC_ADD_SUB_MODEL = """
import asyncio
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        await asyncio.sleep(0)
        responses = []
        for request in requests:
            in0, in1 = (t.as_numpy() for t in request.inputs())
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", in0 + in1), pb_utils.Tensor("OUTPUT1", in0 - in1)]
            ))
        return responses
"""

STRING_CONFIG = """
name: "{name}"
backend: "python"
input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [16] }}, {{ name: "INPUT1" data_type: TYPE_FP32 dims: [16] }}]
output [{{ name: "OUT" data_type: TYPE_STRING dims: [1] }}]
"""


class Repository:
    """Writes models into a temporary repository; closes everything it loaded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.backend = PythonBackend()
        self._open: list[PythonModel | PythonInstance] = []

    def write(self, name: str, code: str, config: str | None = None, version: int = 1, **files: str) -> ModelContext:
        version_dir = self.root / name / str(version)
        version_dir.mkdir(parents=True, exist_ok=True)
        (version_dir / "model.py").write_text(textwrap.dedent(code))
        for filename, text in files.items():
            (version_dir / f"{filename}.py").write_text(textwrap.dedent(text))
        if config is not None:
            (self.root / name / "config.pbtxt").write_text(config.format(name=name))
        return ModelContext(name, self.root / name, self.root, version=version)

    def config(self, ctx: ModelContext) -> ModelConfig:
        return parse_config_text((ctx.model_dir / "config.pbtxt").read_text(), "config.pbtxt")

    def load(self, ctx: ModelContext) -> PythonModel:
        model = self.backend.load(self.config(ctx), ctx)
        self._open.append(model)
        return model

    def instance(self, ctx: ModelContext, spec: InstanceSpec | None = None) -> PythonInstance:
        instance = self.load(ctx).create_instance(spec or InstanceSpec(f"{ctx.name}_0", "KIND_CPU"))
        self._open.insert(0, instance)
        return instance

    def close(self) -> None:
        for item in self._open:
            item.close()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    repository = Repository(tmp_path)
    yield repository
    repository.close()


def make_request(request_id: str = "", **kwargs: Any) -> InferenceRequest:
    in0 = np.arange(16, dtype=np.float32)
    in1 = np.ones(16, dtype=np.float32)
    inputs = {"INPUT0": Tensor("INPUT0", "FP32", (16,), in0), "INPUT1": Tensor("INPUT1", "FP32", (16,), in1)}
    return InferenceRequest("add_sub", id=request_id, inputs=inputs, **kwargs)


def response_of(result: object) -> InferenceResponse:
    assert isinstance(result, InferenceResponse), result
    return result


def echo(repo: Repository, body: str, config: str = STRING_CONFIG) -> PythonInstance:
    """A model whose execute returns ``json.dumps(<body expression>)`` as its BYTES output OUT."""
    code = f"""
    import json
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def initialize(self, args):
            self.args = args

        def execute(self, requests):
            return [
                pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([json.dumps({body})], dtype=object))])
                for request in requests
            ]
    """
    return repo.instance(repo.write("echo", code, config))


def echoed(instance: PythonInstance, request: InferenceRequest) -> Any:
    (result,) = instance.execute([request])
    out = response_of(result).outputs[0]
    assert out.datatype == "BYTES"
    return json.loads(out.data[0])


def test_python_backend_executes_add_sub(repo: Repository) -> None:
    instance = repo.instance(repo.write("add_sub", ADD_SUB_MODEL, ADD_SUB_CONFIG))
    (result,) = instance.execute([make_request("r1")])
    response = response_of(result)
    assert (response.model_name, response.model_version, response.id) == ("add_sub", "1", "r1")
    out0, out1 = response.outputs
    assert (out0.name, out0.datatype, out0.shape) == ("OUTPUT0", "FP32", (16,))
    np.testing.assert_array_equal(out0.data, np.arange(16, dtype=np.float32) + 1)
    np.testing.assert_array_equal(out1.data, np.arange(16, dtype=np.float32) - 1)


def test_python_backend_marks_the_phases_of_an_execution(repo: Repository) -> None:
    # The statistics' compute input / infer / output split, as Triton reports it for Python models:
    # the inputs ready for the model, then the model's own code returning.
    instance = repo.instance(repo.write("add_sub", ADD_SUB_MODEL, ADD_SUB_CONFIG))
    before = time.monotonic_ns()
    instance.execute([make_request("r1")])
    after = time.monotonic_ns()
    assert before <= instance.inputs_ready_ns <= instance.outputs_start_ns <= after


def test_python_backend_executes_async_execute_on_private_loop(repo: Repository) -> None:
    instance = repo.instance(repo.write("add_sub", ASYNC_ADD_SUB_MODEL, ADD_SUB_CONFIG))
    results = instance.execute([make_request("a"), make_request("b")])
    assert [response_of(r).id for r in results] == ["a", "b"]
    np.testing.assert_array_equal(response_of(results[1]).outputs[0].data, np.arange(16, dtype=np.float32) + 1)


def test_python_backend_passes_initialize_args_as_triton_does(repo: Repository) -> None:
    instance = echo(repo, "self.args")
    args = echoed(instance, make_request())
    config = repo.config(ModelContext("echo", repo.root / "echo", repo.root))
    assert args == {
        "model_config": json.dumps(config_to_json(config), separators=(",", ":")),
        "model_instance_kind": "CPU",
        "model_instance_name": "echo_0",
        "model_instance_device_id": "0",
        "model_repository": str(repo.root / "echo"),
        "model_version": "1",
        "model_name": "echo",
    }
    assert json.loads(args["model_config"])["output"][0]["dims"] == [1]


def test_python_backend_passes_gpu_kind_and_device(repo: Repository) -> None:
    ctx = repo.write("echo", "class TritonPythonModel:\n    def execute(self, r):\n        return []\n", STRING_CONFIG)
    args = repo.load(ctx).initialize_args(InstanceSpec("echo_1", "KIND_GPU", 3))
    assert (args["model_instance_kind"], args["model_instance_device_id"]) == ("GPU", "3")


def test_python_backend_exposes_request_fields(repo: Repository) -> None:
    body = """{
        "id": request.request_id(), "corr": request.correlation_id(), "flags": request.flags(),
        "timeout": request.timeout(), "params": json.loads(request.parameters()),
        "outputs": sorted(request.requested_output_names()), "shape": request.inputs()[0].shape(),
        "dtype": request.inputs()[0].triton_dtype(), "names": [t.name() for t in request.inputs()],
    }"""
    instance = echo(repo, body)
    request = make_request("rid", correlation_id="seq-1", flags=1, timeout_us=500, parameters={"a": 1, "b": "s"})
    assert echoed(instance, request) == {
        "id": "rid",
        "corr": "seq-1",
        "flags": 1,
        "timeout": 500,
        "params": {"a": 1, "b": "s"},
        "outputs": ["OUT"],
        "shape": [16],
        "dtype": 11,
        "names": ["INPUT0", "INPUT1"],
    }
    request.outputs = [RequestedOutput("OTHER")]
    assert echoed(instance, request)["outputs"] == ["OTHER"]


def test_python_backend_gives_the_model_writable_inputs_of_its_own(repo: Repository) -> None:
    code = """
    import triton_python_backend_utils as pb_utils
    SEEN = []

    class TritonPythonModel:
        def execute(self, requests):
            for tensor in requests[0].inputs():
                array = tensor.as_numpy()
                array += 100  # allowed on Triton: the model's copy
                SEEN.append(array)
            return [pb_utils.InferenceResponse([]) for _ in requests]
    """
    instance = repo.instance(repo.write("nocopy", code, ADD_SUB_CONFIG))
    request = make_request()
    before = {name: tensor.data.copy() for name, tensor in request.inputs.items()}
    instance.execute([request])
    seen = repo._open[-1].module.SEEN  # type: ignore[union-attr]
    for array, name in zip(seen, ("INPUT0", "INPUT1"), strict=True):
        np.testing.assert_array_equal(array, before[name] + 100)
        np.testing.assert_array_equal(request.inputs[name].data, before[name])  # the request's own is untouched


def test_python_backend_copies_the_outputs_a_model_may_change_later(repo: Repository) -> None:
    code = """
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def initialize(self, args):
            self.buffer = np.zeros(16, np.float32)

        def execute(self, requests):
            self.buffer[:] = pb_utils.get_input_tensor_by_name(requests[0], "INPUT0").as_numpy()
            return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", self.buffer)])]
    """
    instance = repo.instance(repo.write("reuse", code, ADD_SUB_CONFIG))
    first_request, second_request = make_request(), make_request()
    second_request.inputs["INPUT0"].data[...] = -1
    first = response_of(instance.execute([first_request])[0])
    response_of(instance.execute([second_request])[0])  # overwrites the model's buffer
    values = {t.name: t.data for t in first.outputs}
    np.testing.assert_array_equal(values["OUTPUT0"], np.arange(16, dtype=np.float32))


def test_python_backend_converts_outputs_to_wire_datatypes(repo: Repository) -> None:
    config = """
    name: "{name}"
    backend: "python"
    output [{{ name: "S" data_type: TYPE_STRING dims: [2] }}, {{ name: "F" data_type: TYPE_FP32 dims: [2] }},
            {{ name: "B" data_type: TYPE_BOOL dims: [1] }}, {{ name: "H" data_type: TYPE_BF16 dims: [1] }},
            {{ name: "U" data_type: TYPE_STRING dims: [2] }}, {{ name: "EXTRA" data_type: TYPE_FP32 dims: [1] }}]
    """
    code = """
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            outputs = [
                pb_utils.Tensor("S", np.array(["h\\u00e9", b"raw"], dtype=object)),
                pb_utils.Tensor("F", np.array([1.5, 2.5], dtype=np.float64)),
                pb_utils.Tensor("B", np.array([True])),
                pb_utils.Tensor("H", np.array([0x3F80], dtype=np.uint16)),
                pb_utils.Tensor("U", np.array(["x", "yz"])),
                pb_utils.Tensor("EXTRA", np.zeros(1, dtype=np.int8)),
                pb_utils.Tensor("NOT_IN_CONFIG", np.zeros(1, dtype=np.int8)),
            ]
            return [pb_utils.InferenceResponse(outputs, parameters={"p": 1, "q": "s"}) for _ in requests]
    """
    instance = repo.instance(repo.write("outputs", code, textwrap.dedent(config)))
    response = response_of(instance.execute([make_request()])[0])
    by_name = {t.name: t for t in response.outputs}
    assert by_name["S"].datatype == "BYTES"
    assert by_name["S"].data.tolist() == ["h\u00e9".encode(), b"raw"]
    assert (by_name["F"].datatype, by_name["F"].data.dtype) == (
        "FP64",
        np.dtype(np.float64),
    )  # Triton sends the array's type
    assert by_name["B"].datatype == "BOOL"
    assert by_name["H"].datatype == "BF16"
    assert (by_name["U"].datatype, by_name["U"].data.tolist()) == ("BYTES", [b"x", b"yz"])
    assert by_name["EXTRA"].datatype == "INT8"  # the array's own type, not the config's
    assert "NOT_IN_CONFIG" not in by_name  # no outputs asked for: those of the config, as Triton sends
    assert response.parameters == {"p": 1, "q": "s"}


def test_python_backend_fails_only_the_request_with_an_error_response(repo: Repository) -> None:
    code = """
    import triton_python_backend_utils as pb_utils

    NOT_FOUND = pb_utils.TritonError.NOT_FOUND

    class TritonPythonModel:
        def execute(self, requests):
            return [
                pb_utils.InferenceResponse(error=pb_utils.TritonError("bad " + r.request_id(), NOT_FOUND))
                if r.request_id() == "bad" else pb_utils.InferenceResponse([])
                for r in requests
            ]
    """
    instance = repo.instance(repo.write("errors", code, ADD_SUB_CONFIG))
    ok, bad = instance.execute([make_request("ok"), make_request("bad")])
    assert response_of(ok).id == "ok"
    assert isinstance(bad, NotFoundError)
    assert bad.message == "bad bad"


def test_python_backend_fails_batch_when_execute_raises(repo: Repository) -> None:
    code = "class TritonPythonModel:\n    def execute(self, requests):\n        raise ValueError('boom here')\n"
    instance = repo.instance(repo.write("raiser", code, ADD_SUB_CONFIG))
    with pytest.raises(BackendExecutionError) as caught:
        instance.execute([make_request(), make_request()])
    # As Triton: the Python error, then the model's own frames (none of airtower's), innermost first.
    message = caught.value.message
    assert message.startswith("Failed to process the request(s) for model 'raiser_0', message: ValueError: boom here")
    assert message.endswith("\n\nAt:\n  " + str(repo.root / "raiser" / "1" / "model.py") + "(3): execute\n")


def test_python_backend_keeps_code_of_triton_error_raised_by_execute(repo: Repository) -> None:
    code = """
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            raise pb_utils.TritonError("not now", pb_utils.TritonError.UNAVAILABLE)
    """
    instance = repo.instance(repo.write("raiser", code, ADD_SUB_CONFIG))
    with pytest.raises(UnavailableError, match="not now"):
        instance.execute([make_request()])


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (
            "[]",
            "Number of InferenceResponse objects do not match the number of InferenceRequest objects. "
            "InferenceRequest(s) size is:1, and InferenceResponse(s) size is:0\n",
        ),
        ("None", "Expected a list in the execute return, found type '<class 'NoneType'>'."),
        (
            "[None]",
            "Expected an 'InferenceResponse' object in the execute function return list, "
            "found type '<class 'NoneType'>'.",
        ),
    ],
)
def test_python_backend_rejects_malformed_execute_results(repo: Repository, returned: str, message: str) -> None:
    code = f"class TritonPythonModel:\n    def execute(self, requests):\n        return {returned}\n"
    instance = repo.instance(repo.write("malformed", code, ADD_SUB_CONFIG))
    with pytest.raises(BackendExecutionError) as caught:
        instance.execute([make_request()])
    assert caught.value.message == f"Failed to process the request(s) for model 'malformed_0', message: {message}"


AUTO_COMPLETE_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        assert auto_complete_model_config.as_dict()["name"] == "auto"
        auto_complete_model_config.set_max_batch_size(8)
        auto_complete_model_config.add_input({"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [16]})
        auto_complete_model_config.add_output({"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [16]})
        auto_complete_model_config.set_dynamic_batching()
        return {returned}

    def execute(self, requests):
        return []
"""


def test_python_backend_auto_complete_fills_config(repo: Repository) -> None:
    ctx = repo.write("auto", AUTO_COMPLETE_MODEL.replace("{returned}", "auto_complete_model_config"))
    config = parse_config_text('name: "auto" backend: "python"', "config.pbtxt")
    repo.backend.auto_complete_config(config, ctx)
    assert config.max_batch_size == 8
    assert [(i.name, list(i.dims)) for i in config.input] == [("INPUT0", [16])]
    assert [o.name for o in config.output] == ["OUTPUT0"]
    assert config.HasField("dynamic_batching")
    assert "_airtower_python_model_auto_1_" not in " ".join(sys.modules)


def test_python_backend_auto_complete_rejects_conflicting_input(repo: Repository) -> None:
    ctx = repo.write("auto", AUTO_COMPLETE_MODEL.replace("{returned}", "auto_complete_model_config"))
    config = parse_config_text(
        'name: "auto" backend: "python" input [{ name: "INPUT0" data_type: TYPE_INT32 dims: [16] }]', "config.pbtxt"
    )
    # Triton's reason: INTERNAL, the ValueError, and the frames down to pb_utils' own.
    with pytest.raises(
        InternalError, match=r"^ValueError: .* configuration expects datatype TYPE_INT32 for input 'INPUT0'.*\n\nAt:\n"
    ):
        repo.backend.auto_complete_config(config, ctx)


def test_python_backend_auto_complete_requires_returned_config(repo: Repository) -> None:
    ctx = repo.write("auto", AUTO_COMPLETE_MODEL.replace("{returned}", "None"))
    config = parse_config_text('name: "auto" backend: "python"', "config.pbtxt")
    with pytest.raises(InternalError, match=r"in model 'auto' must return a valid pb\.ModelConfig object\."):
        repo.backend.auto_complete_config(config, ctx)


def test_python_backend_auto_complete_leaves_config_without_hook(repo: Repository) -> None:
    ctx = repo.write("add_sub", ADD_SUB_MODEL, ADD_SUB_CONFIG)
    config = repo.config(ctx)
    before = config.SerializeToString()
    repo.backend.auto_complete_config(config, ctx)
    assert config.SerializeToString() == before


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        (
            "class Other:\n    pass\n",
            InternalError,
            "AttributeError: module '1.model' has no attribute 'TritonPythonModel'$",
        ),
        ("class TritonPythonModel\n    pass\n", InternalError, r"^SyntaxError: expected ':' \(model.py, line 1\)$"),
        (
            "import no_such_module_xyz\n",
            InternalError,
            "^ModuleNotFoundError: No module named 'no_such_module_xyz'\n\nAt:\n",
        ),
    ],
)
def test_python_backend_load_fails_for_broken_model_file(
    repo: Repository, code: str, error: type[TritonError], message: str
) -> None:
    # Triton's words: the Python error, and "At:" with the frames only when the model's code ran.
    with pytest.raises(error, match=message):
        repo.load(repo.write("broken", code, ADD_SUB_CONFIG))


@pytest.mark.parametrize(
    ("raised", "error", "message"),
    [
        ("RuntimeError('init failed badly')", InternalError, "RuntimeError: init failed badly"),
        ("pb_utils.TritonError('bad arg', pb_utils.TritonError.INVALID_ARG)", InvalidArgumentError, "bad arg"),
        ("pb_utils.TritonModelException('model says no')", InternalError, "TritonModelException: model says no"),
    ],
)
def test_python_backend_instance_fails_when_initialize_raises(
    repo: Repository, raised: str, error: type[TritonError], message: str
) -> None:
    code = f"""
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def initialize(self, args):
            raise {raised}

        def execute(self, requests):
            return []
    """
    with pytest.raises(error, match=f"^{message}") as caught:
        repo.instance(repo.write("init", code, ADD_SUB_CONFIG))
    if error is InternalError:  # a Python exception: with the model's frame, as Triton's reason
        assert caught.value.message.endswith(f"\n\nAt:\n  {repo.root / 'init' / '1' / 'model.py'}(6): initialize\n")


def test_python_backend_instance_without_execute_loads_and_fails_each_execution(repo: Repository) -> None:
    instance = repo.instance(repo.write("noexec", "class TritonPythonModel:\n    pass\n", ADD_SUB_CONFIG))
    with pytest.raises(BackendExecutionError) as caught:
        instance.execute([make_request()])
    path = repo.root / "noexec" / "1" / "model.py"
    assert caught.value.message == (
        f"Failed to process the request(s) for model 'noexec_0', message: Python model {path} does not implement "
        "`execute` method."
    )


DECOUPLED_MODEL = """
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", a * 2)]))

            def finish(sender=sender):
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

            thread = threading.Thread(target=finish)
            thread.start()
            thread.join()
        return None
"""


def test_python_backend_decoupled_model_sends_through_the_request_sink(repo: Repository) -> None:
    config = ADD_SUB_CONFIG + "model_transaction_policy {{ decoupled: true }}\n"
    instance = repo.instance(repo.write("dec", DECOUPLED_MODEL, config))
    sent: list[tuple[Any, bool]] = []
    request = make_request("r1")
    request.response_sink = lambda response, final: sent.append((response, final))
    assert instance.execute([request]) == [None]
    [(first, first_final), (last, last_final)] = sent
    assert isinstance(first, InferenceResponse)
    assert not first_final
    np.testing.assert_array_equal(first.outputs[0].data, request.inputs["INPUT0"].data * 2)
    assert (last, last_final) == (None, True)


def test_pb_utils_response_sender_rules() -> None:
    sent: list[tuple[Any, bool]] = []
    sender = pb_utils.InferenceResponseSender(lambda response, final: sent.append((response, final)))
    with pytest.raises(pb_utils.TritonModelException, match="must be provided when the response flags is set to zero"):
        sender.send()
    with pytest.raises(pb_utils.TritonModelException, match=r"^Unable to send response\. Unsupported flag provided\.$"):
        sender.send(pb_utils.InferenceResponse([]), flags=7)
    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    with pytest.raises(pb_utils.TritonModelException, match="Response sender has been closed"):
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    assert sent == [(None, True)]


def test_pb_utils_non_decoupled_response_sender_keeps_its_one_response() -> None:
    final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
    sender = pb_utils._SenderOfOne(None)
    with pytest.raises(pb_utils.TritonModelException, match="cannot send complete final before sending a response"):
        sender.send(flags=final)
    response = pb_utils.InferenceResponse([])
    sender.send(response)
    with pytest.raises(pb_utils.TritonModelException, match="cannot send more than one response"):
        sender.send(pb_utils.InferenceResponse([]))
    sender.send(flags=final)
    assert sender._detach() is response
    refused = pb_utils._SenderOfOne(None)
    assert refused._detach() is None  # execute returned the request's response itself
    with pytest.raises(pb_utils.TritonModelException, match="Response sender has been closed"):
        refused.send(pb_utils.InferenceResponse([]), flags=final)
    taken: list[Any] = []
    later = pb_utils._SenderOfOne(None)
    late_response = pb_utils.InferenceResponse([])
    later.send(late_response)  # before execute returned, without the final flag
    assert later._detach(taken.append) is None
    assert taken == []
    later.send(flags=final)  # after: the final flag completes the request
    assert taken == [late_response]


def test_get_response_sender_is_for_requests_given_to_execute() -> None:
    request = pb_utils.InferenceRequest(model_name="m", inputs=[], requested_output_names=[])  # a BLS request
    with pytest.raises(pb_utils.TritonError, match="decoupled transaction policy"):
        request.get_response_sender()


def test_non_decoupled_model_answers_with_its_response_senders(repo: Repository) -> None:
    code = """
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            for request in requests:
                x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
                response = pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x * 2)])
                request.get_response_sender().send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return None
    """
    instance = repo.instance(repo.write("sender", code, ADD_SUB_CONFIG))
    answers = instance.execute([make_request(), make_request()])
    for answer in answers:
        np.testing.assert_array_equal(response_of(answer).outputs[0].data, np.arange(16, dtype=np.float32) * 2)


def test_decoupled_execute_must_return_none(repo: Repository) -> None:
    config = ADD_SUB_CONFIG + "\nmodel_transaction_policy {{ decoupled: true }}\n"
    code = """
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            return [pb_utils.InferenceResponse([]) for _ in requests]
    """
    instance = repo.instance(repo.write("decoupled_returns", code, config))
    request = make_request()
    request.response_sink = lambda response, final: None
    with pytest.raises(TritonError) as raised:
        instance.execute([request])
    assert raised.value.message.endswith("is using the decoupled mode and the execute function must return None.")


def test_python_backend_calls_finalize_on_close(repo: Repository) -> None:
    code = """
    import asyncio
    import os

    class TritonPythonModel:
        def initialize(self, args):
            self.marker = os.path.join(args["model_repository"], "finalized")

        async def execute(self, requests):
            return []

        def finalize(self):
            open(self.marker, "w").close()
    """
    ctx = repo.write("fin", code, ADD_SUB_CONFIG)
    instance = repo.instance(ctx)
    assert not (ctx.model_dir / "finalized").exists()
    instance.close()
    assert (ctx.model_dir / "finalized").exists()


def test_python_backend_keeps_models_named_model_py_apart(repo: Repository) -> None:
    code = """
    import numpy as np
    import triton_python_backend_utils as pb_utils
    from helper import VALUE

    class TritonPythonModel:
        def execute(self, requests):
            out = pb_utils.Tensor("OUT", np.array([VALUE], dtype=object))
            return [pb_utils.InferenceResponse([out]) for _ in requests]
    """
    first = repo.instance(repo.write("first", code, STRING_CONFIG, helper="VALUE = b'first'"))
    second = repo.instance(repo.write("second", code, STRING_CONFIG, helper="VALUE = b'second'"))
    second_v2 = repo.instance(repo.write("second", code, STRING_CONFIG, version=2, helper="VALUE = b'second v2'"))
    values = [response_of(i.execute([make_request()])[0]).outputs[0].data[0] for i in (first, second, second_v2)]
    assert values == [b"first", b"second", b"second v2"]
    assert "helper" not in sys.modules
    assert sys.modules["triton_python_backend_utils"].__name__ == "airtower.backends.python.triton_python_backend_utils"


def test_python_backend_releases_module_and_sys_path_on_close(repo: Repository) -> None:
    ctx = repo.write("add_sub", ADD_SUB_MODEL, ADD_SUB_CONFIG)
    model = repo.backend.load(repo.config(ctx), ctx)
    assert model.module.__name__ in sys.modules
    assert str(ctx.version_dir) in sys.path
    model.close()
    assert model.module.__name__ not in sys.modules
    assert str(ctx.version_dir) not in sys.path
    assert str(ctx.model_dir) not in sys.path


def test_python_backend_never_shifts_a_sys_path_list_another_import_may_be_reading(repo: Repository) -> None:
    """Imports on other threads iterate the sys.path list they found: loading and closing a model replaces
    sys.path with new lists, so no list is shortened under such an iteration (which would skip entries)."""
    code = ADD_SUB_MODEL + "\nimport sys\nPATH_SEEN = sys.path\nPATH_COPY = list(sys.path)\n"
    ctx = repo.write("add_sub", code, ADD_SUB_CONFIG)
    before, before_copy = sys.path, list(sys.path)
    model = repo.backend.load(repo.config(ctx), ctx)
    assert model.module.PATH_COPY[:2] == [str(ctx.version_dir), str(ctx.model_dir)]
    assert model.module.PATH_SEEN == model.module.PATH_COPY
    assert before == before_copy
    loaded, loaded_copy = sys.path, list(sys.path)
    assert loaded[-2:] == [str(ctx.version_dir), str(ctx.model_dir)]
    model.close()
    assert loaded == loaded_copy
    assert sys.path == before_copy
