"""MODEL-SPEC 2.8: one test per row of the decision table, per mode.

Each expectation is written from the spec (and the v5.0 source it cites):
(nr_succeeded, nr_failed) of the single migrate_pages() call, and where it
matters the return value and extra counters.
"""
import pytest

from harness.model import simulate

ASYNC, LIGHT, SYNC, NOCOPY = "MIGRATE_ASYNC", "MIGRATE_SYNC_LIGHT", "MIGRATE_SYNC", "MIGRATE_SYNC_NO_COPY"
MODES = (ASYNC, LIGHT, SYNC, NOCOPY)
OK, FAIL = (1, 0), (0, 1)


def run_one(page, mode, arch="x86_64", kernel="v5.0", pf_memalloc=False, **extra):
    data = {
        "kernel": kernel,
        "arch": arch,
        "pages": [page],
        "call": "migrate",
        "mode": mode,
        "reason": "compaction",
        "pf_memalloc": pf_memalloc,
        "node": 1,
    }
    data.update(extra)
    (pred,) = simulate(data)
    assert len(pred.events) == 1
    event = pred.events[0]
    return (event.succeeded, event.failed), pred


# (row label, page spec, {mode: (succeeded, failed)})
ROWS = [
    ("anon mapped, no extra refs", "anon", dict.fromkeys(MODES, OK)),
    ("anon in swapcache", "anon_swapcache", dict.fromkeys(MODES, OK)),
    ("anon in swapcache, unmapped", "anon_swapcache+unmapped", dict.fromkeys(MODES, OK)),
    ("shmem clean", "shmem", dict.fromkeys(MODES, OK)),
    ("shmem dirty", "shmem+dirty", dict.fromkeys(MODES, OK)),
    ("ext4 clean with buffers", "file+buffers", dict.fromkeys(MODES, OK)),
    ("ext4 dirty with buffers", "file+buffers+dirty", dict.fromkeys(MODES, OK)),
    ("ext4 with a locked buffer", "file+buffers+buffer_locked", {ASYNC: FAIL, LIGHT: OK, SYNC: OK, NOCOPY: OK}),
    ("fs without migratepage, clean", "file_nomigrate", dict.fromkeys(MODES, OK)),
    ("fs without migratepage, clean with buffers", "file_nomigrate+buffers", dict.fromkeys(MODES, OK)),
    ("fs without migratepage, dirty", "file_nomigrate+dirty", {ASYNC: FAIL, LIGHT: FAIL, SYNC: OK, NOCOPY: OK}),
    ("ramfs dirty (no writepage)", "file_nomigrate+dirty+nowritepage", dict.fromkeys(MODES, FAIL)),
    ("page under writeback", "anon+writeback", {ASYNC: FAIL, LIGHT: FAIL, SYNC: OK, NOCOPY: OK}),
    ("page locked by someone else", "anon+locked", {ASYNC: FAIL, LIGHT: OK, SYNC: OK, NOCOPY: OK}),
    ("extra reference (pin)", "anon+pinned", dict.fromkeys(MODES, FAIL)),
    ("mlocked, mapped", "anon+mlocked", dict.fromkeys(MODES, OK)),
    ("a mapping survives try_to_unmap", "anon+unmap_fails", dict.fromkeys(MODES, FAIL)),
    ("freed after isolation", "anon+freed", dict.fromkeys(MODES, OK)),
    ("balloon page", "balloon", {ASYNC: OK, LIGHT: OK, SYNC: OK, NOCOPY: FAIL}),
    ("balloon page, balloon_lock held", "balloon+balloon_lock_held", dict.fromkeys(MODES, FAIL)),
    ("zsmalloc subpage", "zsmalloc", {ASYNC: OK, LIGHT: OK, SYNC: OK, NOCOPY: FAIL}),
    ("zsmalloc subpage with a mapped object", "zsmalloc+zs_mapped", dict.fromkeys(MODES, FAIL)),
]


@pytest.mark.parametrize("label,spec,expected", ROWS, ids=[r[0] for r in ROWS])
@pytest.mark.parametrize("mode", MODES)
def test_decision_table_row(label, spec, expected, mode):
    counts, pred = run_one(spec, mode)
    assert counts == expected[mode]
    assert pred.ret == expected[mode][1]  # migrate_pages returns nr_failed


@pytest.mark.parametrize("mode", MODES)
def test_locked_page_under_pf_memalloc_never_blocks(mode):
    """Direct compaction runs with PF_MEMALLOC: a locked page stays -EAGAIN
    even when forced, so it fails after ten passes in every mode."""
    counts, _ = run_one("anon+locked", mode, pf_memalloc=True)
    assert counts == FAIL


@pytest.mark.parametrize("mode", [ASYNC, LIGHT])
def test_permanent_failures_are_put_back_after_one_attempt(mode):
    """-EBUSY is permanent: one attempt, no retries."""
    _, pred = run_one("anon+writeback", mode)
    assert sum("pass" in line and "EBUSY" in line for line in pred.log) == 1


def test_pinned_page_is_retried_all_ten_passes():
    _, pred = run_one("anon+pinned", SYNC)
    assert sum(line.startswith("pass ") for line in pred.log) == 10


def test_ramfs_dirty_page_fails_with_einval_in_sync():
    _, pred = run_one("file_nomigrate+dirty+nowritepage", SYNC)
    assert any("-EINVAL" in line for line in pred.log)


@pytest.mark.parametrize("mode", MODES)
def test_mlocked_page_moves_its_mlock(mode):
    _, pred = run_one("anon+mlocked", mode)
    for counter in ("unevictable_pgs_cleared", "unevictable_pgs_stranded", "unevictable_pgs_mlocked"):
        assert pred.vmstat[counter] == 1


def test_mlocked_pinned_page_bumps_mlock_counters_every_pass():
    """A failed pass on an mlocked mapped page bumps cleared, stranded and
    mlocked once each (MODEL-SPEC 2.4)."""
    _, pred = run_one("anon+mlocked+pinned", SYNC)
    assert pred.vmstat["unevictable_pgs_cleared"] == 10
    assert pred.vmstat["unevictable_pgs_mlocked"] == 10


@pytest.mark.parametrize("mode", MODES)
def test_thp_x86_64_moves_whole(mode):
    counts, pred = run_one("thp", mode, arch="x86_64")
    assert counts == (1, 0)
    assert pred.vmstat["thp_split_page"] == 0


def test_thp_x86_64_target_allocation_failure_splits():
    counts, pred = run_one("thp", SYNC, arch="x86_64", targets={1: {"thp_blocks": 0}})
    assert counts == (512, 0)
    assert pred.vmstat["thp_split_page"] == 1


@pytest.mark.parametrize("arch", ["arm64", "arm"])
@pytest.mark.parametrize("mode", MODES)
def test_thp_without_thp_migration_splits(arch, mode):
    counts, pred = run_one("thp", mode, arch=arch, numa_nodes=1) if arch == "arm" else run_one("thp", mode, arch=arch)
    assert counts == (512, 0)
    assert pred.vmstat["thp_split_page"] == 1
    assert pred.vmstat["thp_split_pmd"] == 1


def test_thp_arm64_split_failure_aborts_with_ebusy():
    counts, pred = run_one("thp+pinned", SYNC, arch="arm64")
    assert counts == (0, 1)
    assert pred.ret == -16
    assert pred.vmstat["thp_split_page_failed"] == 1


@pytest.mark.parametrize("mode,expected", [(ASYNC, OK), (LIGHT, OK), (SYNC, OK), (NOCOPY, OK)])
def test_hugetlb_2m_x86_64(mode, expected):
    counts, _ = run_one("hugetlb", mode)
    assert counts == expected


@pytest.mark.parametrize("mode,expected", [(ASYNC, FAIL), (LIGHT, FAIL), (SYNC, OK), (NOCOPY, OK)])
def test_hugetlb_locked_blocks_only_in_sync(mode, expected):
    counts, _ = run_one("hugetlb+locked", mode)
    assert counts == expected


@pytest.mark.parametrize("page,arch", [("hugetlb", "arm64"), ("hugetlb_1g", "x86_64")])
@pytest.mark.parametrize("mode", MODES)
def test_hugetlb_unsupported_is_enosys(page, arch, mode):
    counts, pred = run_one(page, mode, arch=arch)
    assert counts == FAIL
    assert any("-ENOSYS" in line for line in pred.log)


def test_no_target_page_aborts_with_enomem():
    (pred,) = simulate({
        "pages": ["anon*3"], "call": "migrate", "mode": SYNC, "node": 1,
        "targets": {1: {"free_pages": 1}},
    })
    assert pred.ret == -12
    # one success, then -ENOMEM: nr_failed++ and abort; the third page is counted nowhere
    assert (pred.events[0].succeeded, pred.events[0].failed) == (1, 1)


def test_freed_page_with_no_target_v50_is_enomem_but_510_succeeds():
    v50, = simulate({"pages": ["anon+freed"], "call": "migrate", "node": 1, "targets": {1: {"free_pages": 0}}})
    v510, = simulate({"kernel": "5.10", "pages": ["anon+freed"], "call": "migrate", "node": 1, "targets": {1: {"free_pages": 0}}})
    assert v50.ret == -12
    assert v510.ret == 0 and v510.events[0].succeeded == 1
