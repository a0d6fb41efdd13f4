"""The model repository: what is on disk, read into locations, versions and complete configs.

``layout`` finds models and versions; ``config_loader`` turns config.pbtxt into a normalised,
validated ModelConfig (calling the backend's auto-complete hook). This package knows nothing about
running models: it may import ``backends`` (registry and contract only), ``core``, ``errors`` and
``types``, never ``models``, ``scheduling``, ``server`` or ``frontends``.
"""

from __future__ import annotations
