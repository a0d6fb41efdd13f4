"""How a model actually runs: the backend contract and its implementations.

Backends know nothing of frontends, schedulers or the model manager. Heavy frameworks
(onnxruntime, torch) are imported lazily through ``registry.py``.
"""

from __future__ import annotations
