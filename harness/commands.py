"""Subcommands of the build, image, VM and run stages (added as they land)."""
from __future__ import annotations

ADDERS: list = []
