"""Live models and their lifecycle: the model manager, loaded model versions, instances.

Imports scheduling, repository, backends, observability, core. Never imports frontends
or the server.
"""

from __future__ import annotations
