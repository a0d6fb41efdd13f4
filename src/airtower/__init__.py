"""airtower: a Triton-compatible inference server."""

from __future__ import annotations

from airtower import compiled as _compiled

__version__ = "0.1.0"

# Before any compiled module is imported: a stale build (sources edited since) loads from source.
_compiled.prefer_sources()
