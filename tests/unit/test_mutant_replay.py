"""Recorded runs of real v5.0 mutants (tests/fixtures/mutants), re-checked
offline: the checks that must kill each one do, with messages that name
what went wrong (and pristine recordings pass the same checks: see
test_replay)."""
import json
import re
from pathlib import Path

from harness.pipeline import recheck
from harness.result import ScenarioOutcome

from .test_replay import materialize

MUTANTS = Path(__file__).resolve().parents[1] / "fixtures" / "mutants"


def failures(name, tmp_path, scenario):
    doc = recheck(materialize(name, tmp_path, MUTANTS), reports=False, only=[scenario])
    out = {}
    for arch, arch_doc in doc["arches"].items():
        out[arch] = [c for c in ScenarioOutcome.from_dict(arch_doc["scenarios"][scenario]).checks if c.status.name == "FAIL"]
    return out


def test_zsmalloc_pages_that_cannot_migrate_fail_the_zram_scenario(tmp_path):
    for arch, failed in failures("zsmalloc-never-isolate", tmp_path, "zram").items():
        assert [c.name for c in failed] == [
            "zspages compaction moved (zfill reads them back after)",
            "zsmalloc pages compaction examined moved (none stays at its PFN)"], arch
        assert failed[0].observed == 0 and failed[0].kind.name == "BOUNDED"
        assert failed[1].message.startswith("no zsmalloc page moved: the migration scanner examined ")
        assert failed[1].observed > 0 and failed[1].expected == 0 and failed[1].kind.name == "EXACT"


def test_a_skipped_page_copy_fails_with_the_pages_named(tmp_path):
    failed = failures("migrate-copy-skipped", tmp_path, "move-pages-basic")["x86_64"]
    content = [c for c in failed if c.name.startswith("page contents intact")]
    assert [c.step for c in content] == ["move-64", "move-again", "alternating"]
    first = content[0]
    assert first.expected == [] and first.observed[:2] == ["buf:0", "buf:1"]
    assert "64 of 72 pages lost their content after this step: buf:0, buf:1" in first.message


def test_the_mutants_are_recorded_with_their_patch(tmp_path):
    for name in ("zsmalloc-never-isolate", "migrate-copy-skipped"):
        run = json.loads((MUTANTS / name / "run.json").read_text())
        assert [p["name"] for p in run["inputs"]["patches"]] == [f"{name}.patch"]


def test_a_half_batch_scan_fails_the_cluster_rule(tmp_path):
    """The recorded v5.0 capture edited the way compaction-half-batches
    would write it: a scan that stops inside a pageblock with 16 pages."""
    import re

    from .test_replay import RUNS

    run_dir = materialize("v5.0-x86_64+arm64", tmp_path, RUNS)
    trace = run_dir / "x86_64" / "compact-memory" / "trace.out"
    text = trace.read_text()

    def halve(match):
        end = int(match.group(2), 16)
        return match.group(0).replace("nr_taken=32", "nr_taken=16") if end % 512 else match.group(0)

    edited = re.sub(r"mm_compaction_isolate_migratepages: range=\((0x[0-9a-f]+) ~ (0x[0-9a-f]+)\) nr_scanned=\d+ nr_taken=32",
                    halve, text, count=1)
    assert edited != text
    trace.write_text(edited)
    doc = recheck(run_dir, reports=False)
    failed = [c for c in ScenarioOutcome.from_dict(doc["arches"]["x86_64"]["scenarios"]["compact-memory"]).checks if c.status.name == "FAIL"]
    rule = [c for c in failed if c.name.startswith("I7 a scan that stops inside a pageblock")]
    assert rule and "16: 1" in rule[0].message


def test_swap_cache_pages_expected_to_hold_one_reference_too_few_fail_to_move(tmp_path):
    """migrate-file-refs-off-by-one: expected_page_refs() forgets the swap
    cache's reference, so every swap-cache page stays busy (-EAGAIN) for
    ten passes and fails; the plain anonymous pages still move."""
    for arch, failed in failures("migrate-file-refs-off-by-one", tmp_path, "swap-cache").items():
        names = [(c.step, c.name) for c in failed]
        assert ("move", "query status") in names and ("move", "Δpgmigrate_fail") in names, arch
        query = next(c for c in failed if c.name == "query status" and c.step == "move")
        assert query.expected == [1] * 80
        assert query.observed == [0] * 64 + [1] * 16  # the swap-cache pages (listed first) stayed on node 0
        fail = next(c for c in failed if c.name == "Δpgmigrate_fail" and c.step == "move")
        assert (fail.expected, fail.observed) == (0, 64)


def test_a_hugetlb_page_that_cannot_be_isolated_fails_soft_offline_on_both_arches(tmp_path):
    """hugetlb-isolate-refused: soft_offline_huge_page() answers -EBUSY
    before any migration.  On arm64 v5.0, where move_pages never reaches
    isolation (no hugetlb migration there), this is the check that kills it:
    -EBUSY where the model says -EIO (a migration tried and failed)."""
    failed = failures("hugetlb-isolate-refused", tmp_path, "soft-offline-hugetlb")
    for arch, expected in (("x86_64", 0), ("arm64", -5)):
        ret = next(c for c in failed[arch] if c.name == "return value")
        assert (ret.expected, ret.observed) == (expected, -16), arch
        events = next(c for c in failed[arch] if c.name == "mm_migrate_pages events")
        assert events.observed == [] and len(events.expected) == 1  # no migration was even tried


def test_a_hugetlb_target_that_skips_the_pool_fails_the_hugetlb_scenario(tmp_path):
    # hugetlb-no-pool, x86_64: the move still succeeds, on a fresh surplus page
    failed = failures("hugetlb-no-pool", tmp_path, "hugetlb")["x86_64"]
    assert [(c.step, c.name, c.expected, c.observed) for c in failed] == [("head", "Δhtlb_buddy_alloc_success", 0, 1)]
    assert "made fresh from the buddy allocator" in failed[0].message


LEFT = "frames the moved pages left are freed or reused (kpagecount, kpageflags)"


def test_an_old_page_never_freed_fails_where_pages_moved(tmp_path):
    """6.12's moved-old-folio-kept: migrate_folio_done() keeps the old
    folio's last reference after a move_pages or migrate_pages(2) move.
    Nothing else notices (the counters, trace and contents are right);
    the frames the pages left still hold them: anonymous, unmapped, off
    the LRU."""
    for scenario, steps in (("move-pages-basic", ["move-64", "alternating"]), ("thp", ["head", "all-subpages"]),
                            ("migrate-pages", ["migrate"])):
        failed = failures("moved-old-folio-kept", tmp_path / scenario, scenario)["x86_64"]
        assert [(c.step, c.name) for c in failed] == [(step, LEFT) for step in steps], scenario
        first = failed[0]
        assert first.expected == [] and first.observed and all("kpageflags 0x" in o for o in first.observed)
        assert "still hold their page unmapped and off the LRU" in first.message
    # mbind moves with MR_MEMPOLICY_MBIND: the mutant leaves it alone
    assert failures("moved-old-folio-kept", tmp_path / "mbind", "mbind")["x86_64"] == []


def test_the_pristine_kernel_frees_every_frame_it_moves_from(tmp_path):
    from .test_replay import RUNS

    doc = recheck(materialize("6.12-left-frames-x86_64", tmp_path, RUNS), reports=False)
    checks = [c for entry in doc["arches"]["x86_64"]["scenarios"].values()
              for c in ScenarioOutcome.from_dict(entry).checks if c.name == LEFT]
    assert len(checks) >= 6 and all(c.status.name == "PASS" for c in checks)
    assert all(re.match(r"\d+ frames left, all free or in use again", c.message) for c in checks)
    assert sum(int(c.message.split()[0]) for c in checks) >= 64 + 512 + 64


def test_a_warning_on_a_path_that_succeeded_fails_the_warning_check(tmp_path):
    """6.12's move-pages-logs-success: every fully successful move_pages
    batch logs a pr_warn; everything else is as the model says."""
    from harness.result import KERNEL_WARN_CHECK

    failed = failures("move-pages-logs-success", tmp_path, "move-pages-basic")["x86_64"]
    assert [(c.step, c.name) for c in failed] == [("kernel", KERNEL_WARN_CHECK)]
    assert failed[0].message == "the kernel logged a warning: 'migrate: move_pages moved every page to node 1' during step 1"


PINNED_RUNS = "isolation runs over pinned pages took none of them (trace: nr_taken at most the range's other pages)"


def test_compaction_that_isolates_pinned_pages_fails_compact_pinned(tmp_path):
    """6.12's compaction-isolates-pinned: isolate_migratepages_block() no
    longer passes over anonymous pages with extra references; compaction
    takes the vmsplice-pinned pages, fails every one and puts it back.
    They stay where they were, so only the isolation runs show it.  (The
    recorded trace is kept without its set_migration_pte and
    remove_migration_pte events, 15 MB that no check reads.)"""
    failed = failures("compaction-isolates-pinned", tmp_path, "compact-pinned")["x86_64"]
    assert [c.name for c in failed] == [PINNED_RUNS]
    assert failed[0].message.startswith("63 of ") and "compaction isolated pinned pages it knows must fail" in failed[0].message
    assert failed[0].observed[0] == "range 0x199d-0x1a00: took 99, 99 of its 99 PFNs pinned"


def test_the_pristine_kernel_passes_over_pinned_pages(tmp_path):
    from .test_replay import RUNS

    doc = recheck(materialize("6.12-compact-pinned-x86_64", tmp_path, RUNS), reports=False)
    outcome = ScenarioOutcome.from_dict(doc["arches"]["x86_64"]["scenarios"]["compact-pinned"])
    assert outcome.status.name == "PASS", [c.message for c in outcome.checks if c.status.name != "PASS"]
    runs = next(c for c in outcome.checks if c.name == PINNED_RUNS)
    assert re.match(r"(\d+) isolation runs over pinned pages, each took only unpinned pages", runs.message)
    assert int(runs.message.split()[0]) >= 10
    stayed = next(c for c in outcome.checks if c.name.startswith("pinned pages compaction passed over stayed"))
    assert "none moved" in stayed.message


def test_free_pages_the_fast_scanner_took_uncounted_fail_i6_on_612(tmp_path, monkeypatch):
    """6.12's fast-free-isolated-uncounted: fast_isolate_freepages() no
    longer counts its pages in compact_isolated.  6.12 traces that scanner
    (compaction_fast_free_traced), so compact_isolated is exactly the
    traced sum again; with the rule off it is a bound (as on 5.10 and
    6.1, whose fast free scanner has no event), which the mutant's count,
    below even the traced sum, still fails."""
    from dataclasses import replace

    import harness.scenarios.base as base_mod
    from harness.model import kernels
    from harness.scenarios.kcompactd import Kcompactd

    assert "compaction_fast_free_traced" in Kcompactd.rule_fields
    failed = failures("fast-free-isolated-uncounted", tmp_path / "a", "kcompactd")["x86_64"]
    assert [c.name for c in failed] == ["I6 compact_isolated"]
    assert failed[0].observed["Δcompact_isolated"] < failed[0].expected["Σ nr_taken"]
    assert "6.12 traces the fast free scanner" in failed[0].message
    untraced = replace(kernels.kernel("6.12"), compaction_fast_free_traced=False)
    monkeypatch.setattr(base_mod, "model_kernel", lambda name: untraced if name == "6.12" else kernels.kernel(name))
    (bound,) = failures("fast-free-isolated-uncounted", tmp_path / "b", "kcompactd")["x86_64"]
    assert bound.name == "I6 compact_isolated" and "Δcompact_isolated >= Σ nr_taken" in bound.message
    assert "without the isolate tracepoints" in bound.message and "==" in failed[0].message


def test_migrate_pages_that_forgets_the_ring_page_it_could_not_isolate_fails_uring_ring(tmp_path):
    """6.12's migrate-to-node-unisolated-uncounted: migrate_to_node() adds
    queue_pages_range()'s nr_failed only when migrate_pages() failed some
    page too.  The io_uring ring's page, met and never isolated, is then
    left out of what migrate_pages(2) returns: 0 where 6.12 returns 1.
    Nothing else tells: the anonymous pages all moved."""
    failed = failures("migrate-to-node-unisolated-uncounted", tmp_path, "uring-ring")["x86_64"]
    assert [c.name for c in failed] == ["return value"]
    assert (failed[0].expected, failed[0].observed) == (1, 0)


def test_the_recorded_ring_runs_show_the_version_difference(tmp_path):
    """The pristine recordings the model was checked against: 6.12's call
    returns 1 (the ring's page, not isolated), 6.1's 0 (skipped silently),
    on both arches, with every anonymous page moved."""
    from .test_replay import RUNS

    for name, ret in (("6.12-uring-ring-x86_64+arm64", 1), ("6.1-uring-ring-x86_64+arm64", 0)):
        doc = recheck(materialize(name, tmp_path / name, RUNS), reports=False, only=["uring-ring"])
        for arch, arch_doc in doc["arches"].items():
            outcome = ScenarioOutcome.from_dict(arch_doc["scenarios"]["uring-ring"])
            assert outcome.status.name == "PASS", (name, arch)
            (check,) = [c for c in outcome.checks if c.name == "return value"]
            assert (check.expected, check.observed) == (ret, ret), (name, arch)
