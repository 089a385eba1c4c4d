"""Recorded runs of pristine kernels that a check once judged wrongly
(tests/fixtures/races): the kernel did something legitimate that the check
did not account for.  Each is re-checked offline: it passes now, and the
same capture edited to the behaviour the check exists for still fails."""
import json
from pathlib import Path

from harness.pipeline import recheck
from harness.result import ScenarioOutcome
from harness.scenarios.unevictable import unculled_pages

from .test_replay import materialize

RACES = Path(__file__).resolve().parents[1] / "fixtures" / "races"
UNCULLED = "v5.0-compact-unevictable-unculled-arm"
CULLED = "Δunevictable_pgs_culled = the model's per mlocked page × mlocked pages moved"


def culled_checks(run_dir):
    doc = recheck(run_dir, reports=False)
    checks = ScenarioOutcome.from_dict(doc["arches"]["arm"]["scenarios"]["compact-unevictable"]).checks
    return {c.step.rsplit("=", 1)[1]: c for c in checks if c.name == CULLED}, doc


def snapshots(out):
    lines = out.read_text().splitlines()
    return lines, [i for i, line in enumerate(lines) if '"cmd":"vmstat"' in line]


def test_a_page_mlocked_in_another_cpus_pagevec_is_culled_inside_the_step(tmp_path):
    # v5.0 arm, CI 2026-12-04: one "allowed" page was mlocked while it sat in
    # the other CPU's pagevec (mmdrive's drain then drained only its own CPU):
    # nr_mlock 16385, nr_unevictable 16384 before the step, Δculled 1 in it
    run_dir = materialize(UNCULLED, tmp_path, RACES)
    lines, at = snapshots(run_dir / "arm" / "compact-unevictable" / "workload.out")
    before = json.loads(lines[at[2]][7:])["values"]
    assert unculled_pages(before) == 1
    recorded = json.loads((run_dir / "results.json").read_text())
    checks, doc = culled_checks(run_dir)
    assert recorded["arches"]["arm"]["scenarios"]["compact-unevictable"]["status"] == "FAIL"
    assert doc["arches"]["arm"]["scenarios"]["compact-unevictable"]["status"] == "PASS"
    assert checks["1"].observed == {"Δunevictable_pgs_culled": 1}
    assert "+ 1 mlocked before the step but not yet on the unevictable LRU" in next(iter(checks["1"].expected))


def test_without_the_unculled_page_the_same_delta_fails(tmp_path):
    # the same capture, but every mlocked page on the unevictable LRU before
    # the step: the one culled page is then the kernel's doing and fails
    run_dir = materialize(UNCULLED, tmp_path, RACES)
    out = run_dir / "arm" / "compact-unevictable" / "workload.out"
    lines, at = snapshots(out)
    snap = json.loads(lines[at[2]][7:])
    snap["values"]["nr_unevictable"] = snap["values"]["nr_mlock"]
    lines[at[2]] = "RESULT " + json.dumps(snap, separators=(",", ":"))
    out.write_text("\n".join(lines) + "\n")
    checks, _ = culled_checks(run_dir)
    assert checks["1"].status.name == "FAIL" and checks["1"].expected == {"0 × 16384": 0}
    assert checks["0"].status.name == "PASS"


def test_more_culled_pages_than_were_unculled_fail(tmp_path):
    run_dir = materialize(UNCULLED, tmp_path, RACES)
    out = run_dir / "arm" / "compact-unevictable" / "workload.out"
    lines, at = snapshots(out)
    snap = json.loads(lines[at[3]][7:])
    snap["values"]["unevictable_pgs_culled"] += 1
    lines[at[3]] = "RESULT " + json.dumps(snap, separators=(",", ":"))
    out.write_text("\n".join(lines) + "\n")
    checks, _ = culled_checks(run_dir)
    assert checks["1"].status.name == "FAIL" and checks["1"].observed == {"Δunevictable_pgs_culled": 2}


STACK_FREED = "v5.0-page-cache-stack-freed-arm64"
CLOSED = "closed world: every field that moved is explained"


def page_cache_closed_checks(run_dir):
    doc = recheck(run_dir, reports=False)
    outcome = ScenarioOutcome.from_dict(doc["arches"]["arm64"]["scenarios"]["page-cache"])
    return {c.step: c for c in outcome.checks if c.name == CLOSED}, outcome


def test_a_kernel_thread_that_ended_inside_a_step_is_ambient_on_v50(tmp_path):
    # v5.0 arm64, CI 2026-12-06: node1 nr_kernel_stack -16 kB during
    # move-back, 2.2 s after boot, nothing else of a process moved
    run_dir = materialize(STACK_FREED, tmp_path, RACES)
    recorded = json.loads((run_dir / "results.json").read_text())
    assert recorded["arches"]["arm64"]["scenarios"]["page-cache"]["status"] == "FAIL"
    checks, outcome = page_cache_closed_checks(run_dir)
    assert outcome.status.name == "PASS"
    assert "ambient" in checks["move-back"].message


def test_a_stack_freed_beside_a_page_table_freed_still_fails(tmp_path):
    # the same step with a page-table page gone too: a process (with an mm)
    # ended inside a step that forks nothing, which no entry explains
    run_dir = materialize(STACK_FREED, tmp_path, RACES)
    out = run_dir / "arm64" / "page-cache" / "workload.out"
    lines, at = snapshots(out)
    snap = json.loads(lines[at[-1]][7:])
    files = snap["files"]
    key = next(k for k in files if k.endswith("node1/vmstat"))
    text = files[key]
    value = int(next(l.split()[1] for l in text.splitlines() if l.startswith("nr_page_table_pages ")))
    files[key] = text.replace(f"nr_page_table_pages {value}\n", f"nr_page_table_pages {value - 1}\n")
    lines[at[-1]] = "RESULT " + json.dumps(snap, separators=(",", ":"))
    out.write_text("\n".join(lines) + "\n")
    checks, outcome = page_cache_closed_checks(run_dir)
    assert checks["move-back"].status.name == "FAIL"
    assert checks["move-back"].observed == ["node1 vmstat nr_page_table_pages -1"]


SCAN_BEFORE = "5.10-numa-scan-before-window-arm64"
PMDS = "Δnuma_huge_pte_updates (the THPs' PMDs made protnone)"


def thp_checks(run_dir):
    doc = recheck(run_dir, reports=False)
    checks = ScenarioOutcome.from_dict(doc["arches"]["arm64"]["scenarios"]["numa-balancing"]).checks
    return {c.name: c for c in checks if c.step == "thp-touch-loop"}, doc


def test_thp_pmds_the_scanner_changed_before_the_window_count(tmp_path):
    # 5.10 arm64, CI 2026-12-07: the scanner made the 4 THPs' PMDs protnone
    # between their fault and the window's opening snapshot; the window saw
    # their 4 migrations and not one PMD update
    run_dir = materialize(SCAN_BEFORE, tmp_path, RACES)
    lines, at = snapshots(run_dir / "arm64" / "numa-balancing" / "workload.out")
    values = [json.loads(lines[i][7:])["values"]["numa_huge_pte_updates"] for i in at]
    assert len(values) == 4 and values[3] - values[2] == 0 and values[2] - values[1] == 4  # none in the window
    recorded = json.loads((run_dir / "results.json").read_text())
    assert recorded["arches"]["arm64"]["scenarios"]["numa-balancing"]["status"] == "FAIL"
    checks, doc = thp_checks(run_dir)
    assert doc["arches"]["arm64"]["scenarios"]["numa-balancing"]["status"] == "PASS"
    assert checks[PMDS].observed == 4 and checks["THPs moved to node 0"].observed == 4


def test_a_kernel_that_never_counts_a_thps_pmd_still_fails(tmp_path):
    # the same capture with no PMD update counted since the THPs were faulted
    # (numa_huge_pte_updates never moving): the THPs' migrations had no
    # protnone PMD to fault on, as far as the counters say
    run_dir = materialize(SCAN_BEFORE, tmp_path, RACES)
    out = run_dir / "arm64" / "numa-balancing" / "workload.out"
    lines, at = snapshots(out)
    for i in at:
        snap = json.loads(lines[i][7:])
        snap["values"]["numa_huge_pte_updates"] = 0
        lines[i] = "RESULT " + json.dumps(snap, separators=(",", ":"))
    out.write_text("\n".join(lines) + "\n")
    checks, _ = thp_checks(run_dir)
    assert checks[PMDS].status.name == "FAIL" and checks[PMDS].observed == 0
