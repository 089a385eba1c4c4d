"""6.1 and 6.12 (Debian's linux-source-6.1 6.1.176 and -6.12 6.12.117): each
field that differs from 5.10 changes a prediction, shown here by turning the
field back (the same scenario under the 6.x rules with that one field at its
5.10 value), plus the folio loop's counts read from the trees."""
import re
from dataclasses import replace

import pytest

from harness.model import kernel, simulate
from harness.model import scenario as scenario_mod
from harness.model.constants import MigrateMode, MigrateReason
from harness.model.engine import Env, TargetSupply
from harness.model.memory import Memory
from harness.model.migrate import migrate_pages
from harness.model.scenario import parse_pages

S = None


def run(data, rules, monkeypatch):
    """simulate() under ``rules`` (a KernelRules not in the table)."""
    monkeypatch.setattr(scenario_mod, "kernel", lambda name: rules)
    (pred,) = simulate(dict(data, kernel=rules.name))
    return pred


def events(pred):
    return [(e.succeeded, e.failed, e.thp_succeeded, e.thp_failed, e.thp_split) for e in pred.events]


MOVE_ALL = [{"pages": "all", "node": 1}]


def test_the_four_versions_are_known_with_their_debian_aliases():
    assert [kernel(n).name for n in ("v5.0", "debian-5.10", "debian-6.1", "debian-6.12", "6.12")] == \
        ["v5.0", "5.10", "6.1", "6.12", "6.12"]


def test_6x_rules_differ_from_510_only_in_named_fields():
    base = kernel("5.10").as_dict()
    common = {"reason_names", "migrate_loop", "lru_cache_disabled_in_syscalls", "move_pages_untried_exact",
              "numa_thp_via_migrate_pages", "numa_scan_knobs", "compaction_migratepages_from_succeeded",
              "mlock_migrate_events", "hugetlb_pud_lookup", "swapcache_counter", "uring_ring_inserted"}
    for name, expected in (("6.1", common), ("6.12", common | {"trace_format", "split_mapped_thp_counts_deferred",
                                                                  "compact_memory_suitable_event", "zspage_kpageflags_mmap",
                                                                  "move_pages_folio_walk", "mthp_anon",
                                                                  "mthp_migration_marks_partially_mapped",
                                                                  "compaction_fast_free_traced",
                                                                  "migrate_to_node_counts_unisolated"})):
        rules = kernel(name).as_dict()
        assert {k for k in base if base[k] != rules[k]} - {"name", "version", "description"} == expected


# --- migrate_loop ---------------------------------------------------------

@pytest.mark.parametrize("name", ["6.1", "6.12"])
def test_hugetlb_pages_count_their_base_pages(name, monkeypatch):
    """6.x migrate_hugetlbs(): stats->nr_succeeded += folio_nr_pages()."""
    data = {"arch": "x86_64", "pages": ["hugetlb*2"], "call": "move_pages", "entries": MOVE_ALL}
    rules = kernel(name)
    assert events(run(data, rules, monkeypatch)) == [(1024, 0, 0, 0, 0)]
    assert run(data, rules, monkeypatch).vmstat_deltas()["pgmigrate_success"] == 1024
    assert events(run(data, replace(rules, migrate_loop="v5.0"), monkeypatch)) == [(2, 0, 0, 0, 0)]


@pytest.mark.parametrize("name", ["6.1", "6.12"])
def test_a_thp_split_for_want_of_a_target_is_also_a_thp_failure(name, monkeypatch):
    """No order-9 target: 6.x counts the split THP in nr_thp_failed (and
    thp_migration_fail) besides nr_thp_split; its pieces then move."""
    data = {"arch": "x86_64", "pages": ["thp"], "call": "move_pages", "entries": MOVE_ALL,
            "targets": {1: {"thp_blocks": 0}}}
    rules = kernel(name)
    pred = run(data, rules, monkeypatch)
    assert events(pred) == [(512, 0, 0, 1, 1)] and pred.ret == 0
    deltas = pred.vmstat_deltas()
    assert (deltas["thp_migration_fail"], deltas["thp_migration_split"], deltas["thp_split_page"]) == (1, 1, 1)
    old = run(data, replace(rules, migrate_loop="v5.0"), monkeypatch)
    assert events(old) == [(512, 0, 0, 0, 1)]


@pytest.mark.parametrize("name", ["6.1", "6.12"])
def test_the_return_value_counts_failed_folios(name, monkeypatch):
    """A THP that fails for good is one failed folio on 6.x, 512 (its
    subpages) from 5.9 to 6.2; nr_failed counts base pages either way."""
    data = {"arch": "x86_64", "pages": ["thp+writeback"], "call": "migrate", "mode": "MIGRATE_SYNC_LIGHT"}
    rules = kernel(name)
    pred = run(data, rules, monkeypatch)
    assert pred.ret == 1 and events(pred) == [(0, 512, 0, 1, 0)]
    assert run(data, replace(rules, migrate_loop="v5.0"), monkeypatch).ret == 512


def test_612_tries_a_batch_async_first_then_each_folio_in_its_mode():
    """migrate_pages_sync(): a page locked by another task is not locked in
    the 3 MIGRATE_ASYNC passes and is locked at once in the first
    MIGRATE_SYNC pass (no forcing); 6.1 forces the lock from pass 3."""

    def log(name):
        rules = kernel(name)
        memory = Memory(parse_pages(["anon+locked", "anon"]))
        env = Env(rules, rules.arch("x86_64"), MigrateMode.MIGRATE_SYNC, MigrateReason.MR_SYSCALL, False, 1, TargetSupply())
        result = migrate_pages([obj.entry(i) for i, obj in enumerate(memory.objects)], env)
        assert result.rc == 0 and result.event.succeeded == 2
        return [line.split(":")[0] for line in result.log if "page 0 " in line]

    assert log("6.1") == ["pass 0", "pass 1", "pass 2", "pass 3"]
    assert log("6.12") == ["async pass 0", "async pass 1", "async pass 2", "sync pass 0"]


# --- split_mapped_thp_counts_deferred --------------------------------------

def test_612_does_not_count_a_split_thp_as_deferred(monkeypatch):
    data = {"arch": "x86_64", "pages": ["thp"], "call": "move_pages", "entries": MOVE_ALL,
            "targets": {1: {"thp_blocks": 0}}}
    rules = kernel("6.12")
    assert run(data, rules, monkeypatch).vmstat_deltas()["thp_deferred_split_page"] == 0
    assert run(data, replace(rules, split_mapped_thp_counts_deferred=True), monkeypatch).vmstat_deltas()["thp_deferred_split_page"] == 1
    assert run(data, kernel("6.1"), monkeypatch).vmstat_deltas()["thp_deferred_split_page"] == 1


# --- lru_cache_disabled_in_syscalls -----------------------------------------

@pytest.mark.parametrize("name", ["6.1", "6.12"])
def test_a_page_given_twice_moves_again_under_lru_cache_disable(name, monkeypatch):
    """The issue-19 plan move dup:0-5=1 dup:3-8=1 dup:0-11=0: v5.0 and 5.10
    refuse the pages sitting in the lru_add pagevec (-EBUSY); 6.x moves
    them, since do_pages_move() runs under lru_cache_disable()."""
    data = {"arch": "x86_64", "pages": ["anon*12"], "call": "move_pages",
            "entries": [{"pages": "0-5", "node": 1}, {"pages": "3-8", "node": 1}, {"pages": "0-11", "node": 0}]}
    rules = kernel(name)
    pred = run(data, rules, monkeypatch)
    # entry 6 (page 3) is still on this batch's list: -EBUSY on every version
    assert pred.status == [1] * 6 + [-16] + [1] * 5 + [0] * 12 and pred.ret == 0
    assert [(e.succeeded, e.failed) for e in pred.events] == [(6, 0), (3, 0), (9, 0)]
    old = run(data, replace(rules, lru_cache_disabled_in_syscalls=False), monkeypatch)
    assert old.status == [1] * 6 + [-16] + [1] * 5 + [-16] * 9 + [0] * 3


# --- move_pages_untried_exact -----------------------------------------------

@pytest.mark.parametrize("name", ["6.1", "6.12"])
def test_move_pages_returns_the_failed_pages_exactly(name, monkeypatch):
    """e3 on 5.10 returns 1 for 2 failed pages (n - i - 1 at the final flush)."""
    data = {"arch": "x86_64", "pages": ["anon+mlocked*4", "anon*6", "anon+pinned*2", "anon*20"],
            "call": "move_pages", "entries": MOVE_ALL}
    rules = kernel(name)
    assert run(data, rules, monkeypatch).ret == 2
    assert run(data, replace(rules, move_pages_untried_exact=False), monkeypatch).ret == 1


@pytest.mark.parametrize("name", ["6.1", "6.12"])
def test_move_pages_adds_the_untried_entries_after_a_node_change(name, monkeypatch):
    """A failed batch before a node change: 6.1 adds every entry from the
    change on (nr_pages - i); 5.6-6.0 one fewer."""
    data = {"arch": "x86_64", "pages": ["anon+pinned", "anon*3"], "call": "move_pages",
            "entries": [{"page": 0, "node": 1}, {"page": 1, "node": 1}, {"pages": "2-3", "node": 0}]}
    rules = kernel(name)
    pred = run(data, rules, monkeypatch)
    assert pred.ret == 1 + 2 and pred.status == [S] * 4
    assert run(data, replace(rules, move_pages_untried_exact=False), monkeypatch).ret == 1 + 1


# --- numa_thp_via_migrate_pages -------------------------------------------

@pytest.mark.parametrize("name", ["6.1", "6.12"])
def test_numa_balancing_moves_a_thp_through_migrate_pages(name, monkeypatch):
    data = {"arch": "x86_64", "pages": ["thp@1", "anon@1"], "call": "numa_balancing", "node": 0}
    rules = kernel(name)
    pred = run(data, rules, monkeypatch)
    assert [(e.succeeded, e.thp_succeeded, e.mode, e.reason) for e in pred.events] == [
        (512, 1, MigrateMode.MIGRATE_ASYNC, MigrateReason.MR_NUMA_MISPLACED), (1, 0, MigrateMode.MIGRATE_ASYNC, MigrateReason.MR_NUMA_MISPLACED)]
    deltas = pred.vmstat_deltas()
    assert (deltas["numa_pages_migrated"], deltas["thp_migration_success"], deltas["pgmigrate_success"]) == (513, 1, 513)
    old = run(data, replace(rules, numa_thp_via_migrate_pages=False), monkeypatch)
    assert [e.succeeded for e in old.events] == [1] and old.vmstat_deltas()["thp_migration_success"] == 0
    assert old.vmstat_deltas()["numa_pages_migrated"] == 513


# --- the trace event --------------------------------------------------------

def test_612_prints_nr_split_and_the_newer_reasons():
    (pred,) = simulate({"kernel": "6.12", "arch": "x86_64", "pages": ["thp"], "call": "move_pages", "entries": MOVE_ALL,
                        "targets": {1: {"thp_blocks": 0}}})
    assert pred.trace_lines() == [
        "mm_migrate_pages: nr_succeeded=512 nr_failed=0 nr_thp_succeeded=0 nr_thp_failed=1 nr_thp_split=1 "
        "nr_split=1 mode=MIGRATE_SYNC reason=syscall_or_cpuset"]
    assert kernel("6.12").reason_name(MigrateReason.MR_DAMON) == "damon"
    assert kernel("6.1").reason_name(MigrateReason.MR_DEMOTION) == "demotion"
    assert kernel("5.10").reason_name(MigrateReason.MR_DEMOTION) == "0x8"


def test_numa_scan_knobs_are_sysctls_before_513_and_debugfs_files_after():
    from harness.scenarios.numa_balancing import knob_writes

    assert "/proc/sys/kernel/numa_balancing_scan_delay_ms" in knob_writes(kernel("5.10").numa_scan_knobs)
    writes = knob_writes(kernel("6.12").numa_scan_knobs)
    assert "/sys/kernel/debug/sched/numa_balancing/scan_size_mb" in writes and "numa_balancing_scan" not in writes
    assert writes.startswith("echo 1 > /proc/sys/kernel/numa_balancing;")


def test_numa_thp_counters_beside_the_events():
    from harness.model import numa

    assert numa.misplaced_thp_counters(4, deferred_split_full_unmap=True)["pgmigrate_success"] == 2048
    assert set(numa.misplaced_thp_counters(4, via_migrate_pages=True).values()) == {0}


def test_compact_memory_asks_suitable_per_zone_until_612():
    from harness.model.compaction import compact_memory_suitable_events

    zones = ["0:DMA32", "1:Normal"]
    assert compact_memory_suitable_events(kernel("6.1"), zones) == 2
    assert compact_memory_suitable_events(kernel("6.12"), zones) == 0
    assert compact_memory_suitable_events(replace(kernel("6.12"), compact_memory_suitable_event=True), zones) == 2


def test_compaction_migratepages_reads_nr_succeeded_from_61():
    """An -ENOMEM abort in a 32-page batch (nr_succeeded 20, 3 counted
    failed): 5.10 shows the entries taken off the list, 6.1 nr_succeeded
    and the rest of the batch."""
    from harness.model.compaction import compaction_migratepages

    assert compaction_migratepages(32, 20, 3, rules=kernel("6.1")) == [(20, 12)]
    assert compaction_migratepages(32, 20, 3, rules=replace(kernel("6.1"), compaction_migratepages_from_succeeded=False)) == [(22, 10)]
    # a whole batch with failures: one reading on 6.x, two possible on 5.10 for the last batch
    assert compaction_migratepages(32, 29, 3, last=True, rules=kernel("6.12")) == [(29, 3)]
    assert compaction_migratepages(32, 29, 3, last=True, rules=kernel("5.10")) == [(29, 3), (31, 1)]


def test_zspages_are_found_without_kpf_mmap_on_612():
    from harness.scenarios.zram import zspage_selector

    assert zspage_selector(kernel("6.1")).startswith("kpageflags 35,11 ")
    typed = zspage_selector(kernel("6.12"))
    assert typed.startswith("kpageflags 35 ") and ",11," in typed.split("not=")[1]


def test_mm_stat_columns_a_newer_kernel_adds_are_kept():
    from harness.observe import zram

    six = zram.parse_mm_stat("1 2 3 4 5 6 7 8 9\n")
    assert six["huge_pages_since"] == 9
    assert zram.parse_mm_stat("1 2 3 4 5 6 7 8 9 10\n")["col10"] == 10


UNEVICTABLE = ("unevictable_pgs_cleared", "unevictable_pgs_stranded", "unevictable_pgs_rescued",
               "unevictable_pgs_mlocked", "unevictable_pgs_culled")


@pytest.mark.parametrize("name", ["6.1", "6.12"])
def test_an_mlocked_page_migrated_is_stranded_rescued_mlocked_and_culled(name, monkeypatch):
    data = {"arch": "x86_64", "pages": ["anon+mlocked*3"], "call": "move_pages", "entries": MOVE_ALL}
    rules = kernel(name)
    deltas = run(data, rules, monkeypatch).vmstat_deltas()
    assert [deltas[k] for k in UNEVICTABLE] == [0, 3, 3, 3, 3]
    old = run(data, replace(rules, mlock_migrate_events="v5.0"), monkeypatch).vmstat_deltas()
    assert [old[k] for k in UNEVICTABLE] == [3, 3, 0, 3, 0]


def test_612_leaves_a_migrated_mlocked_thp_munlocked(monkeypatch):
    data = {"arch": "x86_64", "pages": ["thp+mlocked"], "call": "move_pages", "entries": MOVE_ALL}
    six12 = run(data, kernel("6.12"), monkeypatch).vmstat_deltas()
    assert [six12[k] for k in UNEVICTABLE] == [0, 512, 512, 0, 0]
    six1 = run(data, kernel("6.1"), monkeypatch).vmstat_deltas()
    assert [six1[k] for k in UNEVICTABLE] == [0, 512, 512, 512, 512]


def test_612_finds_no_page_at_an_untouched_anonymous_address(monkeypatch):
    """-ENOENT, not -EFAULT, in the move and the query (LTP move_pages04)."""
    data = {"arch": "x86_64", "pages": ["anon"], "call": "move_pages", "query": True,
            "entries": [{"page": 0, "node": 1}, {"fault": "untouched_anon", "node": 1}, {"fault": "io_vma", "node": 1}]}
    rules = kernel("6.12")
    pred = run(data, rules, monkeypatch)
    assert pred.status == [1, -2, -14] and pred.query == [1, -2, -2]
    old = run(data, replace(rules, move_pages_folio_walk=False), monkeypatch)
    assert old.status == [1, -14, -14] and old.query == [1, -14, -14]


def test_612_moves_a_hugetlb_page_given_by_a_tail_address(monkeypatch):
    data = {"arch": "x86_64", "pages": ["hugetlb"], "call": "move_pages", "entries": [{"page": 0, "subpages": "5", "node": 1}]}
    rules = kernel("6.12")
    pred = run(data, rules, monkeypatch)
    assert pred.status == [1] and events(pred) == [(512, 0, 0, 0, 0)]
    assert run(data, replace(rules, move_pages_folio_walk=False), monkeypatch).status == [-13]


@pytest.mark.parametrize("name, head, tail", [("5.10", -2, -2), ("6.1", 1, -13), ("6.12", 1, 1)])
def test_a_1g_hugetlb_page_is_found_by_61_and_612(name, head, tail, monkeypatch):
    data = {"arch": "x86_64", "pages": ["hugetlb_1g"], "call": "move_pages"}
    got = []
    for sub in (0, 7):
        pred = run(dict(data, entries=[{"page": 0, "subpages": str(sub), "node": 1}]), kernel(name), monkeypatch)
        got.append(pred.status[0])
    assert got == [head, tail]


@pytest.mark.parametrize("name", ["6.1", "6.12"])
def test_nr_swapcached_moves_with_a_swap_cache_page(name, monkeypatch):
    data = {"arch": "x86_64", "pages": ["anon_swapcache*3"], "call": "move_pages", "entries": MOVE_ALL}
    rules = kernel(name)
    nodes = run(data, rules, monkeypatch).node_deltas
    assert (nodes[(0, "nr_swapcached")], nodes[(1, "nr_swapcached")]) == (-3, 3)
    assert (0, "nr_swapcached") not in run(data, replace(rules, swapcache_counter=False), monkeypatch).node_deltas


def test_the_versions_document_is_generated_from_the_rules():
    from pathlib import Path

    from harness.model import versions_doc

    doc = Path(__file__).resolve().parents[2] / "docs" / "kernel-versions.md"
    assert doc.read_text() == versions_doc.markdown(), "run: harness model kernels --markdown > docs/kernel-versions.md"


def test_an_account_quotes_a_whole_first_sentence_not_a_cut_at_an_ellipsis():
    """compare's and plan check's account quote a field's first sentence; an
    ellipsis inside a commit title ("... target") or opening a comment that
    continues the one before ("... but 6.12's") does not end it (it did: the
    6.1 -> 6.12 compaction account read "..")."""
    from harness.model import versions_doc

    assert versions_doc.first_sentence('"a source" and "... target" (70b44595eafe): scans untraced. More.') == \
        '"a source" and "... target" (70b44595eafe): scans untraced'
    assert versions_doc.first_sentence("x " * 150, 40).endswith("...") and len(versions_doc.first_sentence("x " * 150, 40)) == 40
    docs = versions_doc.field_docs(type(kernel("6.12")))
    for field_name, text in docs.items():
        first = versions_doc.first_sentence(text, limit=10**6)
        assert len(first) >= 25 and not first.endswith(".."), (field_name, first)
    assert "fast_isolate_freepages() traces" in versions_doc.first_sentence(docs["compaction_fast_free_traced"])
    assert "70b44595eafe" in versions_doc.first_sentence(docs["compaction_fast_scanners_untraced"])


def test_every_field_that_changes_after_510_says_which_upstream_change():
    """A 6.x difference names the tree lines it was read from or the change:
    a version or file reference in the field's comment."""
    from harness.model import versions_doc

    docs = versions_doc.field_docs(type(kernel("6.12")))
    base = kernel("5.10")
    for name in ("6.1", "6.12"):
        rules = kernel(name)
        for field_name in rules.as_dict():
            if field_name in ("name", "version", "description") or getattr(rules, field_name) == getattr(base, field_name):
                continue
            text = docs.get(field_name, "")
            if field_name in ("reason_names", "trace_format"):
                continue  # their values cite the trace header in kernels.py
            assert re.search(r"\b(5\.1[1-9]|6\.\d+)\b", text) and re.search(r"(mm/|include/|kernel/|fs/|\"|[0-9a-f]{12})", text), \
                f"{field_name}: its comment names no version or upstream change: {text!r}"


@pytest.mark.parametrize("name", ["6.1", "6.12"])
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_every_call_simulates_on_6x(name, arch):
    """Each caller model runs under the 6.x rules (a mixed set of pages)."""
    from harness.model.scenario import _RUNNERS

    pages = ["anon*4", "thp", "hugetlb", "anon+mlocked", "anon_swapcache", "file+dirty", "shmem"]
    for call in _RUNNERS:
        step = {"call": call}
        if call == "move_pages":
            step["entries"] = MOVE_ALL
        elif call == "mbind":
            step.update(nodes=[1], flags="MOVE")
        elif call == "migrate_pages":
            step.update({"from": [0], "to": [1]})
        elif call == "soft_offline":
            step["page"] = 0
        (pred,) = simulate({"kernel": name, "arch": arch, "pages": pages, "steps": [step]})
        assert pred.rules.name == name
        assert all(e.mode in MigrateMode.__members__.values() for e in pred.events), call


def test_the_account_of_two_versions_names_the_rule_behind_each_difference():
    """compare's model account: a step predicted differently on 5.10 and
    6.1 names the KernelRules field whose change alone makes the difference,
    with the upstream change its comment cites."""
    from harness.arches import arch as lookup_arch
    from harness.commands.model import plan_target
    from harness.scenarios.plan.scenario import PLANS, load_plan_file

    def account(plan_file, a, b):
        plan = load_plan_file(PLANS / plan_file).plan
        x86 = lookup_arch("x86_64")
        return explain.account(plan, plan_target(plan, x86, kernel(a)), plan_target(plan, x86, kernel(b)))

    from harness.scenarios.plan import explain

    twice = " ".join(account("e20-same-call-twice.yaml", "5.10", "6.1"))
    assert "lru_cache_disabled_in_syscalls" in twice and "d479960e44f2" in twice
    huge = " ".join(account("e04h-hugetlb.yaml", "5.10", "6.12"))
    assert "migrate_loop" in huge and "lru_cache_disabled_in_syscalls" not in huge
    assert account("e01-move-pages.yaml", "6.1", "6.1") == []


def test_an_enomem_among_the_split_pieces_ends_the_call_on_61_not_on_612(monkeypatch):
    """e18's THP step: no order-9 target, so the THP is split, and node 1
    has no base page for its pieces either.  6.1's migrate_pages_batch()
    returns that -ENOMEM from the split pieces' pass; 6.12 ignores what the
    split pieces' pass returns (the pieces fail, the call returns the
    failed folio count)."""
    data = {"arch": "x86_64", "pages": ["thp"], "call": "move_pages", "entries": MOVE_ALL,
            "targets": {1: {"thp_blocks": 0, "free_pages": 0}}}
    assert run(data, kernel("6.1"), monkeypatch).ret == -12
    six12 = run(data, kernel("6.12"), monkeypatch)
    assert six12.ret == 1  # the split THP, one failed folio


@pytest.mark.parametrize("name", ["6.1", "6.12"])
def test_a_hugetlb_page_without_a_target_ends_the_call_with_enomem(name, monkeypatch):
    """migrate_hugetlbs() returns -ENOMEM; the page is still on the list,
    so migrate_pages() does not turn it into 0."""
    data = {"arch": "x86_64", "pages": ["hugetlb", "anon"], "call": "move_pages", "entries": MOVE_ALL,
            "targets": {1: {"hugetlb_pool": 0, "hugetlb_buddy": False}}}
    pred = run(data, kernel(name), monkeypatch)
    assert pred.ret == -12 and events(pred) == [(0, 512, 0, 0, 0)]


def test_an_mthp_moves_whole_counted_in_pages_and_never_in_thp_fields():
    """6.12: a 64 KiB anonymous folio (order 4) given by every address of
    it: the first queues it, the second finds it isolated (-EBUSY) and
    flushes the batch, the rest are on the target node then.  It counts 16
    in pgmigrate_success and nr_succeeded, nothing in thp_*."""
    entries = [{"page": 0, "subpages": "0-15", "node": 1}]
    (pred,) = simulate({"kernel": "6.12", "arch": "x86_64", "pages": ["mthp+order=4"],
                        "call": "move_pages", "entries": entries})
    assert pred.ret == 0 and pred.status == [1, -16] + [1] * 14
    assert [(e.succeeded, e.failed, e.thp_succeeded, e.thp_failed, e.thp_split, e.split) for e in pred.events] == \
        [(16, 0, 0, 0, 0, 0)]
    deltas = pred.vmstat_deltas()
    assert deltas["pgmigrate_success"] == 16
    assert not any(deltas.get(k) for k in ("thp_migration_success", "thp_migration_fail", "thp_split_page"))
    # the same folio as a PMD THP would count in the thp fields: mthp_anon's
    # rule (is_thp = folio_test_pmd_mappable()) is what keeps them at 0
    (thp,) = simulate({"kernel": "6.12", "arch": "x86_64", "pages": ["thp"], "call": "move_pages",
                       "entries": [{"page": 0, "subpages": "0-15", "node": 1}]})
    assert [(e.thp_succeeded,) for e in thp.events] == [(1,)]


def test_an_mthp_without_a_target_is_split_counting_nr_split_only():
    """6.12 migrate_pages_batch(): -ENOMEM for a large folio splits it
    (nr_split +1, nr_thp_split and thp_split_page only for PMD order) and
    counts it as one failed folio; migrate_pages() tries its 16 pages once,
    MIGRATE_ASYNC, failures uncounted in the return value and -ENOMEM
    ignored there.  With 10 free pages on node 1 ten move, the 11th fails
    (pgmigrate_fail 1), five stay untried; move_pages returns 1 (the failed
    folio) and writes no status."""
    (pred,) = simulate({"kernel": "6.12", "arch": "x86_64", "pages": ["mthp+order=4"], "call": "move_pages",
                        "entries": [{"pages": "all", "node": 1}], "targets": {1: {"free_pages": 10}}})
    assert pred.ret == 1 and pred.status == [None]
    (event,) = pred.events
    assert (event.succeeded, event.failed, event.thp_failed, event.thp_split, event.split) == (10, 1, 0, 0, 1)
    deltas = pred.vmstat_deltas()
    assert not deltas.get("thp_split_page") and not deltas.get("thp_migration_split")
    assert (deltas["pgmigrate_success"], deltas["pgmigrate_fail"]) == (10, 1)
    assert pred.placement == [{"page": 0, "kind": "anon", "split": True, "nodes": {0: 6, 1: 10}}]


@pytest.mark.parametrize("name", ["v5.0", "5.10", "6.1"])
def test_a_kernel_without_anonymous_mthp_refuses_an_mthp_page(name):
    from harness.errors import UserError
    with pytest.raises(UserError, match="no anonymous mTHP"):
        simulate({"kernel": name, "arch": "x86_64", "pages": ["mthp+order=4"], "call": "move_pages", "entries": MOVE_ALL})


def test_an_mthp_page_needs_an_order_below_the_pmds():
    from harness.errors import UserError
    for spec in ("mthp", "mthp+order=9", "mthp+order=1", "anon+order=4"):
        with pytest.raises(UserError, match="order"):
            parse_pages([spec])


def test_an_mthp_moved_once_is_split_when_it_moves_again_on_612(monkeypatch):
    """6.12: the copy of a migrated PTE-mapped mTHP is queued partially
    mapped (its source was, after its first PTE went), so its next
    migration splits it first: nr_split 1, its 16 pages moved as split
    pieces, the call returns 0.  Without the rule it moves whole again."""
    data = {"arch": "x86_64", "pages": ["mthp+order=4"], "steps": [
        {"call": "move_pages", "entries": [{"pages": "all", "node": 1}]},
        {"call": "move_pages", "entries": [{"pages": "all", "node": 0}]}]}
    monkeypatch.setattr(scenario_mod, "kernel", lambda name: rules)
    rules = kernel("6.12")
    first, second = simulate(dict(data, kernel="6.12"))
    assert [(e.succeeded, e.split) for e in first.events] == [(16, 0)]
    assert [(e.succeeded, e.failed, e.split) for e in second.events] == [(16, 0, 1)] and second.ret == 0
    rules = replace(kernel("6.12"), mthp_migration_marks_partially_mapped=False)
    _, again = simulate(dict(data, kernel="6.12"))
    assert [(e.succeeded, e.split) for e in again.events] == [(16, 0)]


def test_a_pinned_mthp_queued_partially_mapped_cannot_be_split_and_stays():
    """The pin keeps split_folio() from freezing it: tried whole, it fails
    every pass (-EAGAIN) and counts its 16 pages once in pgmigrate_fail."""
    (pred,) = simulate({"kernel": "6.12", "arch": "x86_64", "pages": ["mthp+order=4+pinned"], "call": "move_pages",
                        "entries": [{"pages": "all", "node": 1}]})
    assert pred.ret == 1 and [(e.succeeded, e.failed, e.split) for e in pred.events] == [(0, 16, 0)]


def test_a_class_scenarios_account_names_the_rules_it_reads_that_differ():
    from dataclasses import fields as dc_fields

    from harness.arches import arch
    from harness.model.kernels import KernelRules
    from harness.scenarios import all_scenarios
    from harness.scenarios.base import Target

    names = {f.name for f in dc_fields(KernelRules)}
    classes = [s for s in all_scenarios() if s.rule_fields]
    assert {s.name for s in classes} >= {"compact-memory", "numa-balancing", "zram", "kcompactd", "direct-compaction"}
    for scenario in classes:
        assert set(scenario.rule_fields) <= names, scenario.name

    def target(version):
        return Target(arch("x86_64"), kernel(version), version, {}, 2)

    numa = next(s for s in classes if s.name == "numa-balancing")
    notes = numa.account(target("5.10"), target("6.1"))
    assert [n.split(" (")[0] for n in notes] == ["numa_thp_via_migrate_pages", "numa_scan_knobs"]
    assert "False on 5.10, True on 6.1" in notes[0]
    assert numa.account(target("6.1"), target("6.12")) == [] and numa.account(target("6.1"), target("6.1")) == []


def test_compare_takes_one_run_per_kernel_version_each_against_the_one_before(tmp_path, capsys):
    from harness.cli import main

    from .test_replay import materialize

    runs = [materialize(name, tmp_path) for name in ("5.10-x86_64+arm64", "6.1-x86_64+arm64", "6.12-x86_64+arm64")]
    assert main(["compare", *map(str, runs), "--changes"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n== ") + out.startswith("== ") == 2
    assert f"== {runs[0]} -> {runs[1]}" in out and f"== {runs[1]} -> {runs[2]}" in out
    # each pairing carries the model's account, naming the rule that changed
    first, second = out.split(f"== {runs[1]} -> {runs[2]}")
    assert "numa_thp_via_migrate_pages (False on 5.10, True on 6.1)" in first
    assert "compact_memory_suitable_event (True on 6.1, False on 6.12)" in second


# --- uring_ring_inserted, migrate_to_node_counts_unisolated ---------------

RING = {"arch": "x86_64", "pages": ["anon*16", "uring"], "call": "migrate_pages", "from": [0], "to": [1]}


def test_migrate_pages_counts_the_ring_page_it_cannot_isolate_on_612_only(monkeypatch):
    """6.12's migrate_to_node() adds queue_pages_range()'s nr_failed: the
    io_uring ring's page (met, never isolated) is one page not moved."""
    rules = kernel("6.12")
    pred = run(RING, rules, monkeypatch)
    assert pred.ret == 1 and events(pred) == [(16, 0, 0, 0, 0)]
    assert run(RING, replace(rules, migrate_to_node_counts_unisolated=False), monkeypatch).ret == 0
    # a VM_PFNMAP ring (5.10's remap_pfn_range) is never walked: nothing to count
    assert run(RING, replace(rules, uring_ring_inserted=False), monkeypatch).ret == 0


@pytest.mark.parametrize("name", ["5.10", "6.1"])
def test_migrate_pages_skips_the_ring_page_silently_before_67(name, monkeypatch):
    rules = kernel(name)
    pred = run(RING, rules, monkeypatch)
    assert pred.ret == 0 and events(pred) == [(16, 0, 0, 0, 0)]
    assert any("skipped silently" in n for n in pred.notes) == rules.uring_ring_inserted
    assert run(RING, replace(rules, migrate_to_node_counts_unisolated=True), monkeypatch).ret == \
        (1 if rules.uring_ring_inserted else 0)


def test_a_ring_page_on_another_node_or_a_ring_elsewhere_is_not_counted(monkeypatch):
    rules = kernel("6.12")
    assert run(dict(RING, pages=["anon*16", "uring@1"]), rules, monkeypatch).ret == 0
    (pred,) = simulate({**RING, "kernel": "6.12", "pages": ["uring"]})
    assert pred.ret == 1 and pred.events == []  # nothing isolated: migrate_pages() never runs, nr_failed still counts


def test_the_model_refuses_a_ring_page_where_it_does_not_follow_one():
    from harness.errors import UserError
    with pytest.raises(UserError, match="migrate_pages"):
        simulate({"kernel": "6.12", "pages": ["uring"], "call": "move_pages", "entries": MOVE_ALL})
    with pytest.raises(UserError, match="io_uring"):
        simulate({"kernel": "v5.0", "pages": ["uring"], "call": "migrate_pages"})
