"""Where the project's own files are.  The harness runs from its checkout
(``pip install -e``): the package sits beside ``guest/`` (init template,
workloads, image recipe) and ``kconfigs/`` (the layered fragments)."""
from __future__ import annotations

import os
from pathlib import Path

#: The ``harness`` package directory.
PACKAGE = Path(__file__).resolve().parents[1]
#: The checkout: what ``python -m harness`` needs on PYTHONPATH.
PROJECT = PACKAGE.parent


def guest_dir() -> Path:
    """``guest/`` (``HARNESS_GUEST`` overrides it)."""
    return Path(os.environ.get("HARNESS_GUEST", PROJECT / "guest"))


def kconfigs_path() -> Path:
    """``kconfigs/`` (``HARNESS_KCONFIGS`` overrides it)."""
    return Path(os.environ.get("HARNESS_KCONFIGS", PROJECT / "kconfigs"))
