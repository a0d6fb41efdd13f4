"""Unit tests for airtower.repository.config_loader against behaviour seen on tritonserver 2.51."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as pb

from airtower.backends.base import ModelContext
from airtower.core.model_config import ModelConfig, config_to_json
from airtower.errors import InvalidArgumentError, ModelConfigError
from airtower.repository import config_loader
from airtower.repository.config_loader import load_model_config, model_file_path
from airtower.repository.layout import ModelLocation
from tests.reference_configs import REFERENCE_ADD_SUB_JSON

IO = """
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


class FakeBackend:
    """Records auto-complete calls; ``complete`` edits the config like a real backend would."""

    def __init__(self, name: str, complete: Callable[[ModelConfig], None] | None = None) -> None:
        self.name = name
        self.complete = complete
        self.preferred_instance_kind: int | None = None
        self.contexts: list[ModelContext] = []

    def auto_complete_config(self, config: ModelConfig, ctx: ModelContext) -> None:
        self.contexts.append(ctx)
        if self.complete is not None:
            self.complete(config)


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeBackend]:
    """Fake backends by name, installed in place of the registry's get_backend."""
    fakes = {"python": FakeBackend("python"), "onnxruntime": FakeBackend("onnxruntime")}

    def get_backend(name: str) -> FakeBackend:
        if name not in fakes:
            raise InvalidArgumentError(f"unable to find backend '{name}'")
        return fakes[name]

    monkeypatch.setattr(config_loader, "get_backend", get_backend)
    return fakes


def make_model(
    root: Path,
    name: str,
    config: str | None,
    files: tuple[str, ...] = ("1/model.py",),
    configs: dict[str, str] | None = None,
) -> ModelLocation:
    """Write ``<root>/<name>`` with an optional config.pbtxt, model files and configs/*.pbtxt."""
    model_dir = root / name
    model_dir.mkdir(parents=True)
    if config is not None:
        (model_dir / "config.pbtxt").write_text(config)
    for relative in files:
        path = model_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative.endswith("/"):
            path.mkdir(exist_ok=True)
        else:
            path.write_text("")
    for config_name, text in (configs or {}).items():
        (model_dir / "configs").mkdir(exist_ok=True)
        (model_dir / "configs" / f"{config_name}.pbtxt").write_text(text)
    return ModelLocation(name, root, model_dir)


PY = f'backend: "python"\nmax_batch_size: 2\n{IO}'


def test_load_model_config_matches_reference_json_for_python_model(
    tmp_path: Path, backends: dict[str, FakeBackend]
) -> None:
    text = (
        f'backend: "python"\nmax_batch_size: 8\n{IO}\ndynamic_batching {{ max_queue_delay_microseconds: 100 }}\n'
        "instance_group [ { count: 2 kind: KIND_CPU } ]"
    )
    config = load_model_config(make_model(tmp_path, "add_sub", text))
    assert config_to_json(config) == REFERENCE_ADD_SUB_JSON


def test_load_model_config_default_instance_group_is_named_after_model(
    tmp_path: Path, backends: dict[str, FakeBackend]
) -> None:
    config = load_model_config(make_model(tmp_path, "m", PY))
    [group] = config_to_json(config)["instance_group"]
    assert (group["name"], group["kind"], group["count"]) == ("m", "KIND_CPU", 1)


def test_load_model_config_names_unnamed_groups_by_index(tmp_path: Path, backends: dict[str, FakeBackend]) -> None:
    text = PY + 'instance_group [ { kind: KIND_CPU }, { count: 3 }, { name: "mine" kind: KIND_AUTO } ]'
    groups = config_to_json(load_model_config(make_model(tmp_path, "groups", text)))["instance_group"]
    assert [(g["name"], g["kind"], g["count"]) for g in groups] == [
        ("groups_0", "KIND_CPU", 1),
        ("groups_1", "KIND_CPU", 3),
        ("mine", "KIND_CPU", 1),
    ]


def test_load_model_config_auto_kind_becomes_gpu_when_gpus_exist(
    tmp_path: Path, backends: dict[str, FakeBackend]
) -> None:
    config = load_model_config(make_model(tmp_path, "m", PY), gpus=(0, 1))
    [group] = config_to_json(config)["instance_group"]
    assert (group["kind"], group["gpus"]) == ("KIND_GPU", [0, 1])


def test_load_model_config_default_group_is_the_backends_preferred_kind(
    tmp_path: Path, backends: dict[str, FakeBackend]
) -> None:
    # As Triton with a CPU build of onnxruntime_backend on a GPU machine: models that name no group
    # run where the backend can, and explicit KIND_AUTO groups still go to the GPU.
    backends["python"].preferred_instance_kind = pb.ModelInstanceGroup.KIND_CPU
    [group] = config_to_json(load_model_config(make_model(tmp_path, "cpu", PY), gpus=(0,)))["instance_group"]
    assert (group["name"], group["kind"], group["gpus"]) == ("cpu", "KIND_CPU", [])
    text = PY + "instance_group [ { kind: KIND_AUTO } ]"
    [group] = config_to_json(load_model_config(make_model(tmp_path, "auto", text), gpus=(0,)))["instance_group"]
    assert (group["kind"], group["gpus"]) == ("KIND_GPU", [0])
    # A preferred KIND_GPU applies only where there is a GPU.
    backends["python"].preferred_instance_kind = pb.ModelInstanceGroup.KIND_GPU
    [group] = config_to_json(load_model_config(make_model(tmp_path, "gpu", PY), gpus=(1,)))["instance_group"]
    assert (group["kind"], group["gpus"]) == ("KIND_GPU", [1])
    [group] = config_to_json(load_model_config(make_model(tmp_path, "nogpu", PY)))["instance_group"]
    assert group["kind"] == "KIND_CPU"


def test_load_model_config_kind_gpu_without_gpus_is_an_error(tmp_path: Path, backends: dict[str, FakeBackend]) -> None:
    location = make_model(tmp_path, "kindgpu", PY + "instance_group [ { kind: KIND_GPU } ]")
    with pytest.raises(
        ModelConfigError, match=r"^instance group kindgpu_0 of model kindgpu has kind KIND_GPU but no GPUs"
    ):
        load_model_config(location)
    location = make_model(tmp_path, "badgpu", PY + "instance_group [ { kind: KIND_GPU gpus: [ 3 ] } ]")
    with pytest.raises(ModelConfigError, match=r"unsupported gpu id 3\. .* of 7\.500000 are: 0$"):
        load_model_config(location, gpus=(0,), min_compute_capability=7.5)


def test_load_model_config_auto_kind_naming_an_unusable_gpu_is_cpu_and_so_an_error(
    tmp_path: Path, backends: dict[str, FakeBackend]
) -> None:
    # Triton: KIND_AUTO falls back to KIND_CPU when a listed GPU is not usable; a CPU group naming GPUs fails.
    text = PY + "instance_group [ { kind: KIND_GPU gpus: [ 0 ] }, { kind: KIND_AUTO gpus: [ 1 ] } ]"
    with pytest.raises(ModelConfigError, match=r"^instance group m_1 of model m has kind KIND_CPU but specifies one"):
        load_model_config(make_model(tmp_path, "m", text), gpus=(0,))
    text = PY + "instance_group [ { kind: KIND_AUTO gpus: [ 1 ] } ]"
    [group] = config_to_json(load_model_config(make_model(tmp_path, "m2", text), gpus=(0, 1)))["instance_group"]
    assert (group["kind"], group["gpus"]) == ("KIND_GPU", [1])


def test_load_model_config_onnxruntime_cpu_groups_default_to_two_instances(
    tmp_path: Path, backends: dict[str, FakeBackend]
) -> None:
    text = f'platform: "onnxruntime_onnx"\nmax_batch_size: 2\n{IO}'
    config = load_model_config(make_model(tmp_path, "onnx", text, files=("1/model.onnx",)))
    assert (config.backend, config.platform, config.default_model_filename) == (
        "onnxruntime", "onnxruntime_onnx", "model.onnx"
    )  # fmt: skip
    assert config.instance_group[0].count == 2


def test_load_model_config_normalises_batching_defaults(tmp_path: Path, backends: dict[str, FakeBackend]) -> None:
    text = PY + "dynamic_batching { }"
    got = config_to_json(load_model_config(make_model(tmp_path, "m", text)))
    assert got["dynamic_batching"]["preferred_batch_size"] == [2]
    assert got["version_policy"] == {"latest": {"num_versions": 1}}
    assert got["optimization"]["input_pinned_memory"] == {"enable": True}
    non_batching = f'backend: "python"\nmax_batch_size: 0\n{IO}\ndynamic_batching {{ }}'
    got = config_to_json(load_model_config(make_model(tmp_path, "nb", non_batching)))
    assert got["dynamic_batching"]["preferred_batch_size"] == []


def test_load_model_config_normalises_sequence_defaults(tmp_path: Path, backends: dict[str, FakeBackend]) -> None:
    text = PY + "sequence_batching { oldest { max_candidate_sequences: 2 } }"
    sequence = config_to_json(load_model_config(make_model(tmp_path, "s", text)))["sequence_batching"]
    assert sequence["max_sequence_idle_microseconds"] == 1000000
    assert sequence["oldest"]["preferred_batch_size"] == [2]


def test_load_model_config_infers_backend_from_model_files(tmp_path: Path, backends: dict[str, FakeBackend]) -> None:
    cases = {
        "py": ("1/model.py", "python", "", "model.py"),
        "onnx": ("1/model.onnx", "onnxruntime", "onnxruntime_onnx", "model.onnx"),
        "pt": ("1/model.pt", "pytorch", "pytorch_libtorch", "model.pt"),
        "plan": ("1/model.plan", "tensorrt", "tensorrt_plan", "model.plan"),
        "tf": ("1/model.savedmodel/", "tensorflow", "tensorflow_savedmodel", "model.savedmodel"),
    }
    for name, (file, backend, platform, filename) in cases.items():
        location = make_model(tmp_path, name, f"max_batch_size: 0\n{IO}", files=(file,))
        config = load_model_config(location, auto_complete=False)
        assert (config.backend, config.platform, config.default_model_filename) == (backend, platform, filename)
        assert model_file_path(location, config, 1) == location.model_dir / file.rstrip("/")


def test_load_model_config_uses_latest_version_and_backend_settings(
    tmp_path: Path, backends: dict[str, FakeBackend]
) -> None:
    location = make_model(tmp_path, "m", PY, files=("1/model.py", "3/model.py", "abc/"))
    settings = {"": {"default-max-batch-size": "8", "x": "global"}, "python": {"x": "python"}}
    load_model_config(location, backend_config=lambda b: settings.get(b, {}))
    [ctx] = backends["python"].contexts
    assert (ctx.name, ctx.model_dir, ctx.repository, ctx.version) == ("m", location.model_dir, tmp_path, 3)
    assert ctx.backend_config == {"default-max-batch-size": "8", "x": "python"}


def test_load_model_config_rejects_bad_default_max_batch_size(tmp_path: Path, backends: dict[str, FakeBackend]) -> None:
    with pytest.raises(InvalidArgumentError, match="default-max-batch-size"):
        load_model_config(make_model(tmp_path, "m", PY), backend_config=lambda b: {"default-max-batch-size": "-1"})


def test_load_model_config_without_file_uses_backend_auto_complete(
    tmp_path: Path, backends: dict[str, FakeBackend]
) -> None:
    def complete(config: ModelConfig) -> None:
        config.max_batch_size = 4
        config.input.add(name="IN", data_type=11, dims=[4])  # TYPE_FP32
        config.output.add(name="OUT", data_type=11, dims=[4])
        config.dynamic_batching.SetInParent()

    backends["python"].complete = complete
    config = load_model_config(make_model(tmp_path, "ac", None))
    got = config_to_json(config)
    assert (got["name"], got["backend"], got["max_batch_size"]) == ("ac", "python", 4)
    # Normalisation runs again after the backend (reference: preferred_batch_size [4]).
    assert got["dynamic_batching"]["preferred_batch_size"] == [4]


def test_load_model_config_without_file_fails_when_auto_complete_disabled(
    tmp_path: Path, backends: dict[str, FakeBackend]
) -> None:
    location = make_model(tmp_path, "m", None)
    with pytest.raises(ModelConfigError, match=r"failed to open text file for read .*m/config.pbtxt"):
        load_model_config(location, auto_complete=False)
    assert backends["python"].contexts == []


def test_load_model_config_skips_backend_when_auto_complete_disabled(
    tmp_path: Path, backends: dict[str, FakeBackend]
) -> None:
    config = load_model_config(make_model(tmp_path, "m", "max_batch_size: 0"), auto_complete=False)
    # Backend fields are still filled (as Triton does); python models need no inputs.
    assert (config.backend, config.default_model_filename, len(config.input)) == ("python", "model.py", 0)
    assert backends["python"].contexts == []


def test_load_model_config_prefers_custom_config_name(tmp_path: Path, backends: dict[str, FakeBackend]) -> None:
    custom = PY.replace("max_batch_size: 2", "max_batch_size: 6")
    location = make_model(tmp_path, "m", PY, configs={"custom": custom})
    assert load_model_config(location, config_name="custom").max_batch_size == 6
    assert load_model_config(location, config_name="other").max_batch_size == 2
    assert load_model_config(location).max_batch_size == 2
    only_custom = make_model(tmp_path, "c", None, configs={"custom": custom})
    assert load_model_config(only_custom, config_name="custom", auto_complete=False).max_batch_size == 6


def test_load_model_config_rejects_name_not_matching_directory(
    tmp_path: Path, backends: dict[str, FakeBackend]
) -> None:
    location = make_model(tmp_path, "wrongname", 'name: "other"\n' + PY)
    with pytest.raises(
        ModelConfigError,
        match=r"^unexpected directory name 'wrongname' for model 'other', directory name must equal model name$",
    ):
        load_model_config(location)


def test_load_model_config_reports_broken_pbtxt_with_path(tmp_path: Path, backends: dict[str, FakeBackend]) -> None:
    location = make_model(tmp_path, "broken", 'backend: "python"\nmax_batch_size: 2 zzz')
    with pytest.raises(ModelConfigError, match=r"failed to read text proto from .*broken/config.pbtxt"):
        load_model_config(location)


def test_load_model_config_custom_backend_from_model_name(tmp_path: Path, backends: dict[str, FakeBackend]) -> None:
    location = make_model(tmp_path, "m.identity", "", files=("1/",))
    config = load_model_config(location, auto_complete=False)
    assert (config.backend, config.default_model_filename) == ("identity", "model.identity")
    with pytest.raises(ModelConfigError, match="Could not determine backend for model 'plain'"):
        load_model_config(make_model(tmp_path, "plain", "", files=("1/",)))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (PY.replace("max_batch_size: 2", "max_batch_size: -1"), "'max_batch_size' must be non-negative value for m"),
        (PY + "dynamic_batching { preferred_batch_size: [ 4 ] }", "preferred size must be <= max batch size for m"),
        (PY + "dynamic_batching { preferred_batch_size: [ 0 ] }", "preferred size must be positive for m"),
        (PY + "dynamic_batching { priority_levels: 2 }", r"default priority level must be in range \[1, 2\] for m"),
        (
            PY + "dynamic_batching { preserve_ordering: true priority_levels: 2 default_priority_level: 1 }",
            "Only one priority level is allowed",
        ),
        (
            'backend: "onnxruntime"\nplatform: "pytorch_libtorch"\nmax_batch_size: 0',
            "unexpected 'platform' and 'backend' pair",
        ),
        ('platform: "weird"\nmax_batch_size: 0', "unexpected platform type 'weird' for m"),
        (
            'backend: "python"\nmax_batch_size: 2\ninput [ { name: "I" data_type: TYPE_FP32 dims: [ 0 ] } ]',
            "^model input 'I' dimension must be integer >= 1, or -1 to indicate a variable-size dimension for m$",
        ),
        (
            'backend: "python"\nmax_batch_size: 2\ninput [ { name: "I" data_type: TYPE_FP32 } ]',
            "^model input 'I' must specify 'dims' for m$",
        ),
        (
            'backend: "python"\nmax_batch_size: 2\ninput [ { name: "I" dims: [ 4 ] } ]',
            "^model input 'I' must specify 'data_type' for m$",
        ),
        (
            'backend: "python"\nmax_batch_size: 2\noutput [ { data_type: TYPE_FP32 dims: [ 4 ] } ]',
            "^model output must specify 'name' for m$",
        ),
        (
            'backend: "python"\nmax_batch_size: 0\n'
            'input [ { name: "I" data_type: TYPE_FP32 dims: [ 1 ] reshape { } } ]',
            "cannot have empty reshape for non-batching model",
        ),
        (
            'backend: "python"\nmax_batch_size: 2\n'
            'input [ { name: "I" data_type: TYPE_FP32 dims: [ 4 ] reshape { shape: [ 3 ] } } ]',
            "has different size for dims and reshape",
        ),
        (
            'backend: "python"\nmax_batch_size: 2\n'
            'input [ { name: "I" data_type: TYPE_FP32 dims: [ 4 ] is_shape_tensor: true } ]',
            "shape tensors are only supported for TensorRT platform",
        ),
        (PY + "instance_group [ { kind: KIND_CPU gpus: [ 0 ] } ]", "has kind KIND_CPU but specifies one or more GPUs"),
        (
            PY + 'sequence_batching { control_input [ { name: "S" control [ { kind: CONTROL_SEQUENCE_START } ] } ] }',
            "sequence batching must specify either 'int32_false_true'",
        ),
        (
            PY + 'sequence_batching { control_input [ { name: "C" control [ { kind: CONTROL_SEQUENCE_CORRID '
            "data_type: TYPE_FP32 } ] } ] }",
            "unexpected data type for control CONTROL_SEQUENCE_CORRID",
        ),
        (PY + "model_transaction_policy { decoupled: true }\nresponse_cache { enable: true }", "Response Cache"),
        ('platform: "ensemble"\nmax_batch_size: 0', "ensemble scheduling must be set for ensemble m"),
        (
            'platform: "ensemble"\nensemble_scheduling { step [ { model_name: "x" } ] }',
            "must specify 'input_map' in step 0 of ensemble 'm'",
        ),
    ],
)
def test_load_model_config_rejects_invalid_config(
    tmp_path: Path, backends: dict[str, FakeBackend], config: str, message: str
) -> None:
    with pytest.raises(ModelConfigError, match=message):
        load_model_config(make_model(tmp_path, "m", config))


@pytest.mark.parametrize(
    "config",
    [
        # Accepted by the reference server: duplicate input names, python models without IO,
        # an unknown-type backend with any platform, variable-size reshape chunks that agree.
        'backend: "python"\nmax_batch_size: 2\ninput [ { name: "I" data_type: TYPE_FP32 dims: [ 4 ] }, '
        '{ name: "I" data_type: TYPE_FP32 dims: [ 4 ] } ]',
        'backend: "python"\nmax_batch_size: 2',
        'backend: "python"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 2',
        'backend: "python"\nmax_batch_size: 2\ninput [ { name: "I" data_type: TYPE_FP32 dims: [ 2, 4, -1, 6 ] '
        "reshape { shape: [ 8, -1, 1, 6 ] } } ]",
        'backend: "python"\nmax_batch_size: 2\ninput [ { name: "I" data_type: TYPE_FP32 dims: [ 1 ] reshape { } } ]',
    ],
)
def test_load_model_config_accepts_what_triton_accepts(
    tmp_path: Path, backends: dict[str, FakeBackend], config: str
) -> None:
    load_model_config(make_model(tmp_path, "m", config))


def test_load_model_config_leaves_ensembles_without_groups_or_optimization(
    tmp_path: Path, backends: dict[str, FakeBackend]
) -> None:
    text = (
        'platform: "ensemble"\nmax_batch_size: 8\ninput [ { name: "A" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'output [ { name: "S" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'ensemble_scheduling { step [ { model_name: "add_sub" model_version: -1 input_map { key: "INPUT0" '
        'value: "A" } output_map { key: "OUTPUT0" value: "S" } } ] }'
    )
    got = config_to_json(load_model_config(make_model(tmp_path, "ens", text, files=("1/",))))
    assert got["instance_group"] == []
    assert "optimization" not in got
    assert (got["backend"], got["default_model_filename"]) == ("", "")
    assert got["ensemble_scheduling"]["step"][0]["model_version"] == -1
