"""Model repository layout: ``<repository>/<model>/<version>/``, and which versions a policy serves.

Pure file-system reads; nothing here loads or runs a model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from airtower.core.model_config import ModelConfig
from airtower.errors import InvalidArgumentError, ModelConfigError

logger = logging.getLogger(__name__)

#: Index reason for a model name found in more than one repository (Triton's wording).
DUPLICATE_MODEL_REASON = "model appears in two or more repositories"


@dataclass(frozen=True)
class ModelLocation:
    """Where one model lives: ``model_dir`` is ``repository / name``."""

    name: str
    repository: Path
    model_dir: Path


def scan_repositories(repositories: Sequence[Path]) -> tuple[dict[str, ModelLocation], dict[str, str]]:
    """Every model directory of every repository.

    Each subdirectory of a repository is a model; files and hidden directories (``.git``,
    ``.ipynb_checkpoints``) are skipped. (Triton 2.51 tries to load hidden directories as models
    and fails them; skipping is a deliberate difference.)

    Returns:
        ``(models, duplicates)``: name → location for unique names, and name → reason for names
        found in more than one repository (Triton makes those UNAVAILABLE).

    Raises:
        InvalidArgumentError: a repository path does not exist or is not a directory.
    """
    found: dict[str, list[ModelLocation]] = {}
    for repository in repositories:
        if not repository.is_dir():
            raise InvalidArgumentError(f"failed to stat file {repository}")
        for entry in sorted(repository.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            found.setdefault(entry.name, []).append(ModelLocation(entry.name, repository, entry))
    models: dict[str, ModelLocation] = {}
    duplicates: dict[str, str] = {}
    for name, locations in found.items():
        if len(locations) > 1:
            logger.error("failed to poll model '%s': not unique across all model repositories", name)
            duplicates[name] = DUPLICATE_MODEL_REASON
        else:
            models[name] = locations[0]
    return models, duplicates


def available_versions(model_dir: Path) -> list[int]:
    """The numeric version directories of a model, ascending.

    Names that are not integers, or that start with "0" (e.g. "01", "0"), are ignored, as
    Triton ignores them.
    """
    versions: list[int] = []
    if not model_dir.is_dir():
        return versions
    for entry in model_dir.iterdir():
        if not entry.is_dir():
            continue
        name = entry.name
        if name.isdigit() and name.isascii() and not name.startswith("0"):
            versions.append(int(name))
        elif not name.startswith("0") and name not in ("configs", "warmup", "initial_state"):
            logger.warning("ignore version directory '%s' which fails to convert to integral number", name)
    return sorted(versions)


def select_versions(config: ModelConfig, available: Sequence[int]) -> list[int]:
    """The versions ``config.version_policy`` serves out of ``available``, ascending.

    ``latest { num_versions }`` (the default, with 1), ``all {}`` or ``specific { versions }``.
    A specific version without a directory is logged and skipped, as Triton does.

    Raises:
        ModelConfigError: no version is left to serve ("at least one version must be available
            under the version policy of model ...").
    """
    present = sorted(set(available))
    policy = config.version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        selected = present
    elif kind == "specific":
        selected = []
        for version in sorted(set(policy.specific.versions)):
            if version in present:
                selected.append(version)
            else:
                logger.error(
                    "version %d is specified for model '%s', but the version directory is not present",
                    version,
                    config.name,
                )
    else:
        num_versions = policy.latest.num_versions if kind == "latest" else 1
        selected = present[-num_versions:] if num_versions > 0 else []
    if not selected:
        raise ModelConfigError(
            f"at least one version must be available under the version policy of model '{config.name}'"
        )
    return selected
