"""The modules on the request path that are compiled to C extensions with mypyc, and the guard
that keeps a stale build from loading.

``make compile`` (part of ``make serve`` and ``make test``) compiles ``MODULES`` in place: each gets a
``<name>.cpython-*.so`` beside its ``.py``, which Python's import system prefers. The code is
the same typed Python; mypyc turns it into C calls instead of bytecode, which takes about a
fifth off the event loop thread's CPU per request (docs/performance.md).

Compiled modules call each other directly, so they load as one group or not at all: when any
of their sources is newer than its extension (edited, or checked out, since the last build), an
extension exists for a module no longer listed, the build's shared library is missing, or
``AIRTOWER_PURE_PYTHON=1`` is set, ``prefer_sources`` makes every one of them load from its
``.py``. Without a build (no compiler, or a wheel) everything is plain Python.

``make compile`` also builds ``ACCELERATORS``: small hand-written C extensions for work that is
slow in Python whatever compiles it (the JSON float writer); each loads only when built from its
current ``.c`` (``accelerator``), and its module keeps the Python implementation the tests hold
it to.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

#: Package-relative module names, by layer. Only modules whose annotations hold at run time (mypyc
#: checks them) belong here; ``server`` stays out, as tests hand the frontends fakes of it.
MODULES: tuple[str, ...] = (
    "frontends.http.app",
    "frontends.http.codec",
    "frontends.http.endpoints",
    "frontends.grpc.http2",
    "frontends.grpc.calls",
    "frontends.grpc.codec",
    "models.model",
    "models.instance",
    "scheduling.scheduler",
    "scheduling.direct",
    "scheduling.dynamic_batcher",
    "scheduling.dynamic_batch_scheduler",
    "scheduling.sequence_batcher",
    "scheduling.sequence_batch_scheduler",
    "backends.python.backend",
    "observability.stats",
    "core.request",
    "core.response",
    "core.tensor",
    "core.validation",
)

#: Hand-written C extensions, package-relative: each is built from ``<name>.c`` beside the module
#: that loads it (through ``accelerator``), which keeps a Python implementation for when it is not.
ACCELERATORS: tuple[str, ...] = ("frontends.http._rapidjson_double",)

PACKAGE = Path(__file__).resolve().parent
_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def _source(module: str, package: Path = PACKAGE) -> Path:
    return package.joinpath(*module.split(".")).with_suffix(".py")


def extensions(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module under ``package`` that has a compiled extension beside its source."""
    found: dict[str, Path] = {}
    for suffix in _SUFFIXES:
        for extension in package.rglob(f"*{suffix}"):
            source = extension.with_name(extension.name[: -len(suffix)] + ".py")
            if source.exists():
                found[".".join(source.relative_to(package).with_suffix("").parts)] = extension
    return found


def _runtimes(package: Path) -> list[Path]:
    """The build's shared libraries (``<hash>__mypyc.*`` beside the package): the per-module
    extensions cannot load without theirs (a copy of the package alone, say)."""
    return [path for suffix in _SUFFIXES for path in package.parent.glob(f"*__mypyc{suffix}")]


def built(package: Path = PACKAGE, modules: Sequence[str] = MODULES, found: dict[str, Path] | None = None) -> bool:
    """Whether exactly ``modules`` have extensions, each at least as new as its source (an
    extension left from a longer list of modules is stale too). ``found``: ``extensions(package)``
    when the caller has it already."""
    if found is None:
        found = extensions(package)
    if set(found) != set(modules) or not _runtimes(package):
        return False
    return all(found[module].stat().st_mtime >= _source(module, package).stat().st_mtime for module in modules)


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' ``.py`` files ahead of their extensions."""

    def __init__(self, names: dict[str, Path]) -> None:
        self._names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self._names.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def prefer_sources() -> bool:
    """Load the compiled modules from source when their build is stale or unwanted; True if so.

    Called by ``airtower/__init__.py`` before any of them is imported.
    """
    wanted = os.environ.get("AIRTOWER_PURE_PYTHON", "") not in ("", "0")
    found = extensions()
    if not found or (built(found=found) and not wanted):
        return False
    names = {f"{__package__}.{module}": _source(module) for module in (*found, *MODULES)}
    sys.meta_path.insert(0, _SourceFinder(names))
    return True


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled extension."""
    return str(getattr(module, "__file__", "")).endswith(_SUFFIXES)


def build(*, force: bool = False, strict: bool = False) -> int:
    """Compile ``MODULES`` in place with mypyc unless the build is up to date (its C sources go to
    ``src/build/``). A failed build leaves plain Python and returns 0, unless ``strict``."""
    found = extensions()
    if built(found=found) and not force:
        print("airtower: compiled modules are up to date")
        return 0
    for extension in (*found.values(), *_runtimes(PACKAGE)):  # modules no longer listed keep no old build
        extension.unlink()
    root = PACKAGE.parent
    files = [str(_source(module).relative_to(root)) for module in MODULES]
    config = root.parent / "pyproject.toml"
    command = [sys.executable, "-m", "mypyc", "--config-file", str(config), *files]
    print(f"airtower: compiling {len(files)} modules with mypyc (about a minute)")
    done = subprocess.run(command, cwd=root, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
        print("airtower: mypyc failed; the server runs as plain Python", file=sys.stderr)
        return done.returncode if strict else 0
    for extension in extensions().values():  # the build is newer than every source it was made from
        extension.touch()
    return 0


def _accelerator_paths(module: str, package: Path = PACKAGE) -> tuple[Path, Path]:
    """The C source of accelerator ``module`` and its extension's path."""
    source = _source(module, package).with_suffix(".c")
    return source, source.with_name(source.stem + str(sysconfig.get_config_var("EXT_SUFFIX")))


def accelerator(module: str) -> ModuleType | None:
    """Accelerator ``module`` (package-relative, one of ``ACCELERATORS``) when it is built from its
    current C source and ``AIRTOWER_PURE_PYTHON`` is not set; else None, and the caller runs Python."""
    if os.environ.get("AIRTOWER_PURE_PYTHON", "") not in ("", "0"):
        return None
    source, extension = _accelerator_paths(module)
    if not extension.exists() or (source.exists() and extension.stat().st_mtime < source.stat().st_mtime):
        return None
    try:
        return importlib.import_module(f"{__package__}.{module}")
    except ImportError:
        return None


def build_accelerators(*, force: bool = False, strict: bool = False) -> int:
    """Compile each of ``ACCELERATORS`` that is missing or older than its source with the compiler
    Python was built with. A failure leaves the Python implementation and returns 0, unless ``strict``."""
    include = sysconfig.get_paths()["include"]
    link = str(sysconfig.get_config_var("LDSHARED") or "cc -shared").split()
    for module in ACCELERATORS:
        source, extension = _accelerator_paths(module)
        if extension.exists() and extension.stat().st_mtime >= source.stat().st_mtime and not force:
            continue
        print(f"airtower: compiling {source.name}")
        command = [*link, "-O2", "-fPIC", f"-I{include}", str(source), "-o", str(extension)]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
            print(f"airtower: {source.name} did not compile; its Python implementation runs", file=sys.stderr)
            extension.unlink(missing_ok=True)
            if strict:
                return done.returncode
    return 0


def main(arguments: Sequence[str]) -> int:
    force, strict = "--force" in arguments, "--strict" in arguments
    return build(force=force, strict=strict) or build_accelerators(force=force, strict=strict)
