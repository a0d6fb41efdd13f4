"""What changed in a model repository between two scans (``--model-control-mode=poll``).

Triton's poll mode reloads a model when anything under its directory changed (config, version
folders, model files), loads new models and unloads removed ones. A model's fingerprint is the
path, size and modification time of every file under its directory; two scans are compared
name by name. Pure apart from reading the file system in ``fingerprint``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: (relative path, size, mtime in ns) of every file under a model directory, sorted.
Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(model_dir: Path) -> Fingerprint:
    """The files under ``model_dir`` (hidden files and ``__pycache__`` left out)."""
    entries: list[tuple[str, int, int]] = []
    for root, dirs, files in os.walk(model_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        for name in files:
            if name.startswith("."):
                continue
            path = Path(root) / name
            try:
                stat = path.stat()
            except OSError:
                continue  # removed while scanning: the next poll sees it
            entries.append((str(path.relative_to(model_dir)), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


@dataclass(frozen=True, slots=True)
class RepositoryChanges:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    modified: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)


def compare(before: Mapping[str, Fingerprint], after: Mapping[str, Fingerprint]) -> RepositoryChanges:
    """Models that appeared, disappeared or changed between two scans, each sorted by name."""
    return RepositoryChanges(
        added=tuple(sorted(set(after) - set(before))),
        removed=tuple(sorted(set(before) - set(after))),
        modified=tuple(sorted(name for name in set(before) & set(after) if before[name] != after[name])),
    )
