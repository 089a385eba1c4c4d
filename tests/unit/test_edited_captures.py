"""Every check kind of the newer scenarios, shown failing: a recorded v5.0
capture (tests/fixtures/runs) edited the way a broken kernel would have
written it, re-checked offline; the pristine recording passes the same
checks (test_replay)."""
import json

import pytest

from harness.pipeline import recheck
from harness.result import ScenarioOutcome
from harness.scenarios.cma import parse_area
from harness.scenarios.compaction import free_mb
from harness.scenarios.offline import movable_block, parse_blocks

from .test_replay import materialize

RUN = "v5.0-x86_64+arm64"


def failed(run_dir, arch, scenario):
    doc = recheck(run_dir, reports=False, only=[scenario])
    return [c for c in ScenarioOutcome.from_dict(doc["arches"][arch]["scenarios"][scenario]).checks if c.status.name in ("FAIL", "ERROR")]


def edit(path, old, new, count=1):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def keep_first_balloon_page(sdir):
    """Edit kpf-after: the first balloon page of kpf-before is still a
    balloon page at its PFN after compaction (it did not move)."""
    before = json.loads(next(l for l in (sdir / "kpf-before.out").read_text().splitlines() if l.startswith("RESULT"))[7:])
    first = before["ranges"][0][0]
    after = sdir / "kpf-after.out"
    line = next(l for l in after.read_text().splitlines() if l.startswith("RESULT"))
    data = json.loads(line[7:])
    data["ranges"] = [[first, 1]] + data["ranges"]
    data["count"] += 1
    after.write_text(after.read_text().replace(line, "RESULT " + json.dumps(data)))


@pytest.fixture
def run(tmp_path):
    return materialize(RUN, tmp_path)


def test_recorded_helpers_read_the_guests_own_words(run):
    size, blocks = parse_blocks((run / "x86_64" / "memory-offline" / "memory-blocks.out").read_text())
    assert size == 128 << 20 and [b.index for b in blocks] == sorted(b.index for b in blocks)
    block = movable_block(blocks)
    assert block.node == "node1" and block.zones == "Movable"
    assert block.index == min(b.index for b in blocks if b.node == "node1" and b.zones == "Movable")
    area, base, count = parse_area((run / "x86_64" / "cma" / "cma-area.out").read_text())
    assert area.endswith("reserved") and count == 16384 and base > 0
    free = free_mb((run / "x86_64" / "balloon" / "free-memory.out").read_text())
    assert sorted(free) == [0, 1] and all(mb > 100 for mb in free.values())


def test_a_balloon_page_compaction_examined_that_stayed_is_named(run):
    # the pristine capture: every examined balloon page left the balloon
    # set; put one of them back, as if balloon_page_migrate() had refused it
    sdir = run / "x86_64" / "balloon"
    keep_first_balloon_page(sdir)
    names = [c.name for c in failed(run, "x86_64", "balloon")]
    assert any(n.startswith("balloon pages compaction examined moved") for n in names), names


def test_an_mlocked_page_moved_while_compact_unevictable_allowed_is_0_fails(run):
    sdir = run / "x86_64" / "compact-unevictable"
    out = sdir / "workload.out"
    lines = out.read_text().splitlines()
    pfns = [i for i, l in enumerate(lines) if '"cmd":"pfns"' in l]
    after_forbidden = json.loads(lines[pfns[1]][7:])
    after_forbidden["pfns"][5] += 1  # page 5 is somewhere else after the compaction
    lines[pfns[1]] = "RESULT " + json.dumps(after_forbidden, separators=(",", ":"))
    out.write_text("\n".join(lines) + "\n")
    bad = [c for c in failed(run, "x86_64", "compact-unevictable") if "passed over stayed" in c.name]
    assert bad and bad[0].observed == [after_forbidden["pfns"][5] - 1]
    assert "1 of 16384 mlocked pages moved although compact_unevictable_allowed is 0" in bad[0].message


def test_a_page_that_arrives_clean_or_evictable_is_named(run):
    # move-pages-basic: after step 1 every buf page is on node 1, dirty;
    # clear PG_dirty (bit 4) and PG_unevictable (bit 18) of one page's word
    out = run / "x86_64" / "move-pages-basic" / "workload.out"
    lines = out.read_text().splitlines()
    flags = [i for i, l in enumerate(lines) if '"cmd":"pageflags"' in l and '"name":"buf"' in l]
    post = json.loads(lines[flags[1]][7:])
    post["kflags"][3] &= ~(1 << 4)
    lines[flags[1]] = "RESULT " + json.dumps(post, separators=(",", ":"))
    out.write_text("\n".join(lines) + "\n")
    bad = [c for c in failed(run, "x86_64", "move-pages-basic") if c.name.startswith("page states carried")]
    assert bad and bad[0].step == "move-64"
    assert bad[0].observed[0].startswith("buf:3 pfn ") and bad[0].observed[0].endswith("lost dirty")


def test_an_extra_migrate_pages_call_on_a_free_cma_range_fails(run):
    trace = run / "x86_64" / "cma" / "trace.out"
    line = next(l for l in trace.read_text().splitlines() if "mm_migrate_pages:" in l and "contig_range" in l)
    edit(trace, line, line + "\n" + line)
    names = [c.name for c in failed(run, "x86_64", "cma")]
    assert any(n.startswith("mm_migrate_pages lines (model: one call on the empty list)") for n in names), names


def test_a_page_left_in_an_offlined_block_fails(run):
    out = run / "x86_64" / "memory-offline" / "workload.out"
    lines = out.read_text().splitlines()
    nodes = [i for i, l in enumerate(lines) if '"cmd":"nodes"' in l]
    after = json.loads(lines[nodes[1]][7:])
    pfns = [json.loads(l[7:]) for l in lines if '"cmd":"pfns"' in l]
    moved = next(i for i, (a, b) in enumerate(zip(pfns[0]["pfns"], pfns[1]["pfns"])) if a != b)
    after["nodes"][moved] = 1  # still on the offlined node
    lines[nodes[1]] = "RESULT " + json.dumps(after, separators=(",", ":"))
    out.write_text("\n".join(lines) + "\n")
    bad = [c for c in failed(run, "x86_64", "memory-offline") if c.name.startswith("they moved to the other node")]
    assert bad and bad[0].observed == [moved]


def test_a_kselftest_that_fails_fails_its_check(run):
    out = run / "x86_64" / "kselftest-vm" / "ksft-compaction_test.out"
    edit(out, "KSFT-STATUS 0", "KSFT-STATUS 1")
    bad = failed(run, "x86_64", "kselftest-vm")
    assert [c.name for c in bad] == ["compaction_test"] and bad[0].observed == 1


@pytest.mark.parametrize("damage", ["other message", "timed out"])
def test_a_known_failing_kselftest_is_excused_only_for_its_known_failure(tmp_path, damage):
    # 5.10's userfaultfd fails its signal test with "Signal repeated" on
    # x86_64 (recorded): a skip with the reason.  The same test failing
    # another way, or hanging until timeout(1) ends it, fails.
    run = materialize("5.10-x86_64+arm64", tmp_path)
    sdir = run / "x86_64" / "kselftest-vm"
    checks = {c.name: c for c in ScenarioOutcome.from_dict(recheck(run, reports=False, only=["kselftest-vm"])["arches"]["x86_64"]["scenarios"]["kselftest-vm"]).checks}
    assert checks["userfaultfd"].status.name == "SKIP" and "known to fail" in checks["userfaultfd"].message
    if damage == "other message":
        edit(sdir / "ksft-userfaultfd.err", "Signal repeated", "UFFDIO_COPY error -12")
    else:
        edit(sdir / "ksft-userfaultfd.out", "KSFT-STATUS 1", "KSFT-STATUS 124")
    bad = failed(run, "x86_64", "kselftest-vm")
    assert [c.name for c in bad] == ["userfaultfd"]
    assert "not the known failure of this version" in bad[0].message


def test_a_balloon_page_that_stayed_is_not_excused_by_its_batchs_failure(run):
    # as if virtballoon_migratepage() always answered -EAGAIN: the page
    # stays, and its batch counts it among its failures; the model says
    # it moves (the balloon lock is free in a quiesced guest)
    sdir = run / "x86_64" / "balloon"
    keep_first_balloon_page(sdir)
    trace = sdir / "trace.out"
    text = trace.read_text()
    import re

    # every batch of the window counts one failure more
    trace.write_text(re.sub(r"mm_migrate_pages: nr_succeeded=(\d+) nr_failed=(\d+)",
                            lambda m: f"mm_migrate_pages: nr_succeeded={m.group(1)} nr_failed={int(m.group(2)) + 1}", text))
    bad = [c for c in failed(run, "x86_64", "balloon") if c.name.startswith("balloon pages compaction examined moved")]
    assert bad and bad[0].observed == 1 and "still at their old PFN" in bad[0].message, bad


def _pageflags_lines(out, name):
    lines = out.read_text().splitlines()
    return lines, [i for i, l in enumerate(lines) if '"cmd":"pageflags"' in l and f'"name":"{name}"' in l]


def _edit_kflags(out, lines, index, page, clear):
    data = json.loads(lines[index][7:])
    data["kflags"][page] &= ~clear
    lines[index] = "RESULT " + json.dumps(data, separators=(",", ":"))
    out.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("kernel", ["v5.0", "5.10"])
def test_a_page_not_in_the_swap_cache_before_the_step_is_named(kernel, tmp_path):
    # the setup read sc back from swap: clear PG_swapcache (bit 13) of page 7
    # in the flags read before the first step (as if swap-in had skipped the
    # swap cache, as zram's does): the step would test plain anonymous pages
    run = materialize(f"{kernel}-swap-cache-x86_64+arm64", tmp_path)
    out = run / "arm64" / "swap-cache" / "workload.out"
    lines, flags = _pageflags_lines(out, "sc")
    _edit_kflags(out, lines, flags[0], 7, 1 << 13)
    bad = failed(run, "arm64", "swap-cache")
    # (and the moved page seems to have gained the state: named too)
    assert [(c.step, c.name) for c in bad] == [("setup", "pages in the swap cache before the first step (kpageflags anon+swapcache)"),
                                               ("move", "page states carried to the new page (kpageflags)")]
    assert bad[0].expected == 64 and bad[0].observed == 63 and "not in the swap cache: sc:7" in bad[0].message
    assert len(bad[1].observed) == 1 and bad[1].observed[0].startswith("sc:7 ") and bad[1].observed[0].endswith("gained swapcache")


def test_a_swap_cache_page_that_arrives_outside_the_swap_cache_is_named(tmp_path):
    # after the move: the new page of sc:5 lacks PG_swapcache (its swap
    # entry lost); a clean swap-cache page that stays clean is no loss
    run = materialize("v5.0-swap-cache-x86_64+arm64", tmp_path)
    out = run / "x86_64" / "swap-cache" / "workload.out"
    lines, flags = _pageflags_lines(out, "sc")
    pre = json.loads(lines[flags[0]][7:])
    assert all(f >> 13 & 1 and not f >> 4 & 1 for f in pre["kflags"])  # in the swap cache, clean
    _edit_kflags(out, lines, flags[1], 5, 1 << 13)
    bad = failed(run, "x86_64", "swap-cache")
    assert [(c.step, c.name) for c in bad] == [("move", "page states carried to the new page (kpageflags)")]
    assert bad[0].observed[0].startswith("sc:5 pfn ") and bad[0].observed[0].endswith("lost swapcache")


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_a_thp_split_counted_as_failed_fails_the_enomem_thp_step(run, arch):
    # what thp-split-counter-inverted writes: the THP the model splits is
    # counted in thp_split_page_failed, not thp_split_page (the closing
    # snapshot of the thp step, the fourth of the workload's vmstat lines)
    out = run / arch / "enomem" / "workload.out"
    lines = out.read_text().splitlines()
    snapshots = [i for i, l in enumerate(lines) if l.startswith('RESULT {"cmd":"vmstat"')]
    data = json.loads(lines[snapshots[3]][7:])
    data["values"]["thp_split_page"] -= 1
    data["values"]["thp_split_page_failed"] += 1
    lines[snapshots[3]] = "RESULT " + json.dumps(data, separators=(",", ":"))
    out.write_text("\n".join(lines) + "\n")
    bad = {(c.step, c.name): c for c in failed(run, arch, "enomem")}
    assert set(bad) == {("thp", "Δthp_split_page"), ("thp", "Δthp_split_page_failed")}
    assert (bad[("thp", "Δthp_split_page")].expected, bad[("thp", "Δthp_split_page")].observed) == (1, 0)
    assert (bad[("thp", "Δthp_split_page_failed")].expected, bad[("thp", "Δthp_split_page_failed")].observed) == (0, 1)


def test_a_hugetlb_target_taken_from_the_buddy_allocator_fails(run):
    # hugetlb-no-pool: node 1's pool has free pages, yet the target of the
    # head step is a fresh surplus page (alloc_buddy_huge_page counts it)
    out = run / "x86_64" / "hugetlb" / "workload.out"
    lines = out.read_text().splitlines()
    snaps = [i for i, line in enumerate(lines) if '"cmd":"vmstat"' in line]
    after_head = json.loads(lines[snaps[1]][7:])
    after_head["values"]["htlb_buddy_alloc_success"] += 1
    lines[snaps[1]] = "RESULT " + json.dumps(after_head, separators=(",", ":"))
    out.write_text("\n".join(lines) + "\n")
    bad = failed(run, "x86_64", "hugetlb")
    assert [(c.step, c.name, c.expected, c.observed) for c in bad] == [("head", "Δhtlb_buddy_alloc_success", 0, 1)]


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_a_failure_left_uncounted_fails_the_enomem_base_page_step(tmp_path, arch):
    """What 6.12's async-enomem-failures-uncounted writes (the async pass of
    migrate_pages_sync() ended with -ENOMEM and its failed page is not added
    to the caller's counts): the event says nr_failed=0 and pgmigrate_fail
    does not move, on a step where how many pages moved is not known but
    how many failed is."""
    run = materialize("6.12-x86_64+arm64", tmp_path)
    out = run / arch / "enomem" / "workload.out"
    lines = out.read_text().splitlines()
    snapshots = [i for i, l in enumerate(lines) if l.startswith('RESULT {"cmd":"vmstat"')]
    data = json.loads(lines[snapshots[1]][7:])
    data["values"]["pgmigrate_fail"] -= 1
    lines[snapshots[1]] = "RESULT " + json.dumps(data, separators=(",", ":"))
    out.write_text("\n".join(lines) + "\n")
    trace = run / arch / "enomem" / "trace.out"
    text = trace.read_text()
    first = text.index("mm_migrate_pages:")
    assert "nr_failed=1 " in text[first:text.index("\n", first)]
    trace.write_text(text[:first] + text[first:].replace("nr_failed=1 ", "nr_failed=0 ", 1))
    bad = {(c.step, c.name): c for c in failed(run, arch, "enomem")}
    assert ("base-pages", "mm_migrate_pages nr_failed (per event)") in bad and ("base-pages", "Δpgmigrate_fail") in bad
    assert (bad[("base-pages", "Δpgmigrate_fail")].expected, bad[("base-pages", "Δpgmigrate_fail")].observed) == (1, 0)
    assert all(step == "base-pages" for step, _ in bad)
