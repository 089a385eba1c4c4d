"""Real-QEMU tests: they boot kernels the harness already built.

HARNESS_TEST_KERNEL names the source (default debian-5.10), and
HARNESS_TEST_ARCHES the arches (default x86_64); a kernel or image that is
not in the harness cache skips the test with the reason (build it with
`make test-guest` or `harness build` first)."""
import os
from pathlib import Path

import pytest

from harness.build import BuildRequest, Builder
from harness.errors import UserError
from harness.image import ImageBuilder, ImageRequest
from harness.source import SourceRequest

KERNEL = os.environ.get("HARNESS_TEST_KERNEL", "debian-5.10")
ARCHES = [a for a in os.environ.get("HARNESS_TEST_ARCHES", "x86_64").split(",") if a]


def built(arch: str) -> tuple[Path, Path]:
    try:
        build = Builder().build(BuildRequest(SourceRequest(KERNEL, offline=True), arch, quiet=True, cache_only=True))
        image = ImageBuilder().build(ImageRequest(arch, offline=True, quiet=True))
    except UserError as exc:
        pytest.skip(f"{arch}: {exc.message}")
    return build.image, image.path


@pytest.fixture(params=ARCHES)
def guest_inputs(request):
    kernel, initrd = built(request.param)
    return request.param, kernel, initrd
