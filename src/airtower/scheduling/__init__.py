"""How requests become executions: schedulers deciding which requests run together, where.

Schedulers see model instances only through the ``Executor`` protocol; they never import
``airtower.models`` or a backend. Decisions are plain functions of the pending state.
"""

from __future__ import annotations
