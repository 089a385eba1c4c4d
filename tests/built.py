"""The kernel and guest image the real-QEMU tests boot: taken from the
harness cache (HARNESS_TEST_KERNEL, default debian-5.10), never built by a
test; a missing one skips the test with the reason."""
import os
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.image.initramfs import ImageBuilder, ImageRequest
from harness.kernel.build import Builder, BuildRequest
from harness.kernel.source import SourceRequest

KERNEL = os.environ.get("HARNESS_TEST_KERNEL", "debian-5.10")
ARCHES = [a for a in os.environ.get("HARNESS_TEST_ARCHES", "x86_64").split(",") if a]


def built(arch: str) -> tuple[Path, Path]:
    try:
        build = Builder().build(BuildRequest(SourceRequest(KERNEL, offline=True), arch, quiet=True, cache_only=True))
        image = ImageBuilder().build(ImageRequest(arch, offline=True, quiet=True))
    except UserError as exc:
        pytest.skip(f"{arch}: {exc.message}")
    return build.image, image.path
