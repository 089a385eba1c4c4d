"""Real-QEMU tests: they boot kernels the harness already built.

HARNESS_TEST_KERNEL names the source (default debian-5.10), and
HARNESS_TEST_ARCHES the arches (default x86_64); a kernel or image that is
not in the harness cache skips the test with the reason (build it with
`make test-guest` or `harness build` first)."""
import pytest

from tests.built import ARCHES, built


@pytest.fixture(params=ARCHES)
def guest_inputs(request):
    kernel, initrd = built(request.param)
    return request.param, kernel, initrd
