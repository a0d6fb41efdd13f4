from __future__ import annotations

import os
from pathlib import Path

from airtower.repository.poll import RepositoryChanges, compare, fingerprint


def write(path: Path, text: str, mtime_ns: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_fingerprint_lists_every_file_but_hidden_ones_and_caches(tmp_path: Path) -> None:
    write(tmp_path / "config.pbtxt", "name: 'm'", 10)
    write(tmp_path / "1" / "model.py", "x = 1", 20)
    write(tmp_path / "1" / ".swp", "junk")
    write(tmp_path / "1" / "__pycache__" / "model.pyc", "junk")
    assert fingerprint(tmp_path) == ((os.path.join("1", "model.py"), 5, 20), ("config.pbtxt", 9, 10))


def test_a_changed_file_changes_the_fingerprint(tmp_path: Path) -> None:
    write(tmp_path / "config.pbtxt", "a", 10)
    before = fingerprint(tmp_path)
    write(tmp_path / "config.pbtxt", "a", 11)
    assert fingerprint(tmp_path) != before


def test_compare_finds_added_removed_and_modified_models() -> None:
    before = {"kept": (("c", 1, 1),), "gone": (("c", 1, 1),), "edited": (("c", 1, 1),)}
    after = {"kept": (("c", 1, 1),), "edited": (("c", 1, 2),), "new": (("c", 1, 1),)}
    assert compare(before, after) == RepositoryChanges(added=("new",), removed=("gone",), modified=("edited",))
    assert not compare(after, after)
