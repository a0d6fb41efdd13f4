"""What the server reports about itself: statistics (later metrics, tracing, logging).

Imports only core, errors and types; knows nothing of frontends or backends.
"""

from __future__ import annotations
