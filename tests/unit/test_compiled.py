"""The mypyc build of the request path: what loads, and when a build counts as stale."""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from airtower import compiled

EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]


def make_package(root: Path, *, built: bool) -> Path:
    root = root / "pkg"
    if built:  # the build's shared library sits beside the package
        (root.parent / f"0123__mypyc{EXTENSION}").write_bytes(b"")
    for module in ("alpha", "beta.gamma"):
        source = root.joinpath(*module.split(".")).with_suffix(".py")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("")
        if built:
            source.with_suffix(EXTENSION).write_bytes(b"")
    return root


def test_a_build_is_fresh_until_a_source_is_newer(tmp_path: Path) -> None:
    package = make_package(tmp_path, built=True)
    modules = ("alpha", "beta.gamma")
    assert compiled.built(package, modules)
    assert not compiled.built(package, ("alpha",))  # an extension left from a longer list is stale
    assert set(compiled.extensions(package)) == {"alpha", "beta.gamma"}
    shared = tmp_path / f"0123__mypyc{EXTENSION}"
    shared.unlink()
    assert not compiled.built(package, modules)  # the extensions cannot load without their shared library
    shared.write_bytes(b"")
    source = package / "beta" / "gamma.py"
    later = source.stat().st_mtime + 10
    os.utime(source, (later, later))
    assert not compiled.built(package, modules)  # one stale module: the group loads from source


def test_no_build_means_plain_python(tmp_path: Path) -> None:
    package = make_package(tmp_path, built=False)
    assert not compiled.built(package, ("alpha", "beta.gamma"))
    assert compiled.extensions(package) == {}


def test_pure_python_can_be_asked_for() -> None:
    code = (
        "import airtower.frontends.http.app as app, airtower.models.model as model\n"
        "from airtower.compiled import is_compiled\n"
        "print(is_compiled(app), is_compiled(model))"
    )
    env = dict(os.environ, AIRTOWER_PURE_PYTHON="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


@pytest.mark.skipif(not os.environ.get("AIRTOWER_EXPECT_COMPILED"), reason="set by `make test`, which builds first")
def test_make_test_runs_the_compiled_modules() -> None:
    loaded = {module: importlib.import_module(f"airtower.{module}") for module in compiled.MODULES}
    assert [name for name, module in loaded.items() if not compiled.is_compiled(module)] == []


@pytest.mark.skipif(not os.environ.get("AIRTOWER_EXPECT_COMPILED"), reason="set by `make test`, which builds first")
def test_per_request_classes_construct_in_compiled_code() -> None:
    # A dataclass-generated __init__ is a Python function even in a compiled module (it runs
    # interpreted, on every request); a written-out one compiles to a slot wrapper.
    from airtower.core.request import InferenceRequest, RequestedOutput
    from airtower.core.response import InferenceResponse
    from airtower.core.tensor import Tensor
    from airtower.frontends.http.endpoints import Deferred, HttpRequest, HttpResponse
    from airtower.observability.stats import ExecutionTiming
    from airtower.scheduling.dynamic_batcher import BatchDecision
    from airtower.scheduling.scheduler import Pending

    classes = [InferenceRequest, RequestedOutput, InferenceResponse, Tensor, HttpRequest, HttpResponse, Deferred]
    classes += [ExecutionTiming, BatchDecision, Pending]
    assert [cls.__name__ for cls in classes if isinstance(vars(cls)["__init__"], types.FunctionType)] == []


def test_no_compiled_coroutine_re_raises_with_a_bare_raise_after_an_await() -> None:
    # mypyc's coroutines do not keep the exception an except block handles across an await: a
    # bare `raise` after one re-raises whatever another coroutine handled last (two models that
    # failed to load at once each reported the other's error).
    package = Path(compiled.__file__).parent
    found = []
    for module in compiled.MODULES:
        source = package.joinpath(*module.split(".")).with_suffix(".py")
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ExceptHandler):
                inner = [child for statement in node.body for child in ast.walk(statement)]
                awaits = any(isinstance(child, ast.Await) for child in inner)
                if awaits and any(isinstance(child, ast.Raise) and child.exc is None for child in inner):
                    found.append(f"{module}:{node.lineno}")
    assert found == []


def test_an_accelerator_loads_only_when_built_from_its_current_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "frontends.http._rapidjson_double"
    source, extension = compiled._accelerator_paths(module)
    assert source.exists()
    if not extension.exists():
        assert not os.environ.get("AIRTOWER_EXPECT_COMPILED"), "make test builds the accelerators"
        pytest.skip("the accelerators are not built (make compile)")
    assert compiled.accelerator(module) is not None
    monkeypatch.setenv("AIRTOWER_PURE_PYTHON", "1")
    assert compiled.accelerator(module) is None
    monkeypatch.delenv("AIRTOWER_PURE_PYTHON")
    edited = tmp_path / source.name  # a source edited since the build
    edited.write_text(source.read_text())
    later = extension.stat().st_mtime + 10
    os.utime(edited, (later, later))
    monkeypatch.setattr(compiled, "_accelerator_paths", lambda name, package=compiled.PACKAGE: (edited, extension))
    assert compiled.accelerator(module) is None
