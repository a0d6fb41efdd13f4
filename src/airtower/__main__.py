"""``python -m airtower`` → ``airtower`` command line."""

from __future__ import annotations

from airtower.cli import main

main()
