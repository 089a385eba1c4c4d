"""The mTHP plan (e04m) on a recorded 6.12 run (x86_64 and arm64): every
check passes as recorded, and a capture edited the way a kernel that
counted otherwise would have written it fails the check that guards it."""
import re

import pytest

from harness.pipeline import recheck
from harness.report.model import outcome_of
from harness.result import Status

from .test_replay import materialize

RUN = "6.12-mthp-x86_64+arm64"


def failed(doc, arch):
    return [(c.step, c.name) for c in outcome_of(doc, arch, "mthp").checks if c.status is Status.FAIL]


def test_the_recorded_mthp_run_passes_on_both_arches(tmp_path):
    doc = recheck(materialize(RUN, tmp_path), reports=False, only=["mthp"])
    for arch in ("x86_64", "arm64"):
        checks = outcome_of(doc, arch, "mthp").checks
        assert len(checks) > 100 and all(c.status is Status.PASS for c in checks), failed(doc, arch)


def edit_trace(run, arch, old, new, count=1):
    path = run / arch / "mthp" / "trace.out"
    text, n = re.subn(old, new, path.read_text())
    assert n == count, (old, n)
    path.write_text(text)


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_an_mthp_counted_as_a_thp_fails(arch, tmp_path):
    """mthp-counted-as-thp: the four folios of the heads step as THPs."""
    run = materialize(RUN, tmp_path)
    edit_trace(run, arch, r"nr_succeeded=64 nr_failed=0 nr_thp_succeeded=0 (.*reason=syscall_or_cpuset)",
               r"nr_succeeded=64 nr_failed=0 nr_thp_succeeded=4 \1")
    doc = recheck(run, reports=False, only=["mthp"])
    assert ("heads", "mm_migrate_pages events") in failed(doc, arch)


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_a_moved_mthp_that_moves_again_whole_fails(arch, tmp_path):
    """mthp-copy-not-requeued: mbind's move back without the four splits."""
    run = materialize(RUN, tmp_path)
    edit_trace(run, arch, r"nr_split=4 (mode=MIGRATE_SYNC reason=mempolicy_mbind)", r"nr_split=0 \1")
    doc = recheck(run, reports=False, only=["mthp"])
    assert ("mbind-back", "mm_migrate_pages events") in failed(doc, arch)
