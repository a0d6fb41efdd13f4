"""Unit tests for airtower.repository.layout: model discovery, version directories, version policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from airtower.core.model_config import parse_config_text
from airtower.errors import InvalidArgumentError, ModelConfigError
from airtower.repository.layout import (
    DUPLICATE_MODEL_REASON,
    ModelLocation,
    available_versions,
    scan_repositories,
    select_versions,
)


def _dirs(root: Path, *names: str) -> None:
    for name in names:
        (root / name).mkdir(parents=True)


def test_scan_repositories_finds_every_model_directory(tmp_path: Path) -> None:
    _dirs(tmp_path, "a/1", "b", ".hidden/1")
    (tmp_path / "notes.txt").write_text("x")
    models, duplicates = scan_repositories([tmp_path])
    assert models == {
        "a": ModelLocation("a", tmp_path, tmp_path / "a"),
        "b": ModelLocation("b", tmp_path, tmp_path / "b"),
    }
    assert duplicates == {}


def test_scan_repositories_reports_names_in_two_repositories(tmp_path: Path) -> None:
    first, second = tmp_path / "r1", tmp_path / "r2"
    _dirs(first, "dup", "only1")
    _dirs(second, "dup", "only2")
    models, duplicates = scan_repositories([first, second])
    assert sorted(models) == ["only1", "only2"]
    assert models["only2"].repository == second
    assert duplicates == {"dup": DUPLICATE_MODEL_REASON}
    assert DUPLICATE_MODEL_REASON == "model appears in two or more repositories"


def test_scan_repositories_raises_when_repository_missing(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"failed to stat file .*missing"):
        scan_repositories([tmp_path / "missing"])


def test_available_versions_ignores_non_numeric_and_leading_zero(tmp_path: Path) -> None:
    _dirs(tmp_path, "1", "10", "3", "01", "0", "abc", "configs", "-2")
    (tmp_path / "7").write_text("a file, not a version")
    assert available_versions(tmp_path) == [1, 3, 10]


def test_available_versions_is_empty_for_missing_dir(tmp_path: Path) -> None:
    assert available_versions(tmp_path / "nope") == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("", [10]),
        ("version_policy { latest { num_versions: 2 } }", [3, 10]),
        ("version_policy { latest { num_versions: 9 } }", [1, 3, 10]),
        ("version_policy { all { } }", [1, 3, 10]),
        ("version_policy { specific { versions: [ 3, 1 ] } }", [1, 3]),
        ("version_policy { specific { versions: [ 1, 7 ] } }", [1]),
    ],
)
def test_select_versions_applies_policy(policy: str, expected: list[int]) -> None:
    config = parse_config_text(f'name: "m" {policy}', "c")
    assert select_versions(config, [1, 3, 10]) == expected


@pytest.mark.parametrize(
    ("policy", "available"),
    [("", []), ("version_policy { specific { versions: [ 7 ] } }", [1, 2]), ("version_policy { all { } }", [])],
)
def test_select_versions_raises_when_nothing_to_serve(policy: str, available: list[int]) -> None:
    config = parse_config_text(f'name: "m" {policy}', "c")
    with pytest.raises(ModelConfigError, match="at least one version must be available under the version policy"):
        select_versions(config, available)
