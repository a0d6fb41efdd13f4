"""Pure data and pure functions: tensors, requests, responses, config helpers, validation.

No asyncio, no frameworks, no backends, no frontends. numpy and protobuf only.
"""

from __future__ import annotations
