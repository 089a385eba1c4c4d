"""The workloads of the closed-world issue on recorded runs
(tests/fixtures/runs/*-new-workloads-*): kcompactd, NUMA balancing of
THPs, move_pages to a disallowed and to a memoryless node, zram read back
after compaction.  A pristine recording passes; a capture edited the way a
broken kernel would have written it fails, naming what moved."""
import gzip
import json
import re

import pytest

from harness.check.closed_world import CHECK_NAME
from harness.pipeline import recheck
from harness.report.model import outcome_of
from harness.result import Status

from .test_closed_world import edit_mmdrive_snapshot
from .test_replay import materialize

RUNS = {"v5.0": "v5.0-new-workloads-x86_64+arm64", "5.10": "5.10-new-workloads-x86_64+arm64"}
SCENARIOS = ("kcompactd", "numa-balancing", "disallowed-node", "memoryless-node", "zram")


def failed(doc, arch, scenario):
    return [c for c in outcome_of(doc, arch, scenario).checks if c.status is Status.FAIL]


@pytest.mark.parametrize("version", sorted(RUNS))
def test_a_pristine_recording_of_each_new_workload_passes_and_judges_something(version, tmp_path):
    doc = recheck(materialize(RUNS[version], tmp_path), reports=False, only=list(SCENARIOS))
    for arch in ("x86_64", "arm64"):
        for scenario in SCENARIOS:
            checks = outcome_of(doc, arch, scenario).checks
            assert checks and all(c.status is Status.PASS for c in checks), (arch, scenario, [c.name for c in checks
                                                                                            if c.status is not Status.PASS])
        names = {c.name for c in outcome_of(doc, arch, "numa-balancing").checks if c.step == "thp-touch-loop"}
        assert "each THP's pages on one node (migrated whole, not split)" in names
        thp = {c.name: c for c in outcome_of(doc, arch, "numa-balancing").checks if c.step == "thp-touch-loop"}
        assert thp["THPs moved to node 0"].observed == 4
        returns = [c.observed for c in outcome_of(doc, arch, "disallowed-node").checks if c.name == "return value"]
        assert returns[:2] == [-13, -13], returns


@pytest.mark.parametrize("version", sorted(RUNS))
def test_a_thp_counted_on_the_wrong_node_after_numa_balancing_fails_naming_it(version, tmp_path):
    run = materialize(RUNS[version], tmp_path)
    # the THP phase's closing snapshot is mmdrive's fourth
    edit_mmdrive_snapshot(run / "x86_64" / "numa-balancing" / "workload.out", 3, "/sys/devices/system/node/node1/vmstat",
                          "nr_anon_transparent_hugepages", 1)
    doc = recheck(run, reports=False, only=["numa-balancing"])
    bad = failed(doc, "x86_64", "numa-balancing")
    assert [c.step for c in bad] == ["thp-touch-loop"], [(c.step, c.name) for c in bad]
    assert "node1 vmstat nr_anon_transparent_hugepages -3 (expected -4)" in bad[0].message, bad[0].message


def test_a_thp_split_by_numa_balancing_fails_as_unexplained(tmp_path):
    """thp_split_pmd is nobody's in the THP phase: a kernel that split
    instead of moving whole fails there, by the closed world alone."""
    run = materialize(RUNS["v5.0"], tmp_path)
    out = run / "arm64" / "numa-balancing" / "workload.out"
    lines = out.read_text().splitlines()
    seen = -1
    for i, line in enumerate(lines):
        if line.startswith("RESULT ") and '"cmd":"vmstat"' in line.replace(" ", ""):
            seen += 1
            if seen == 3:
                data = json.loads(line[7:])
                data["values"]["thp_split_pmd"] += 1  # /proc/vmstat is mmdrive's "values"
                lines[i] = "RESULT " + json.dumps(data)
    out.write_text("\n".join(lines) + "\n")
    doc = recheck(run, reports=False, only=["numa-balancing"])
    bad = failed(doc, "arm64", "numa-balancing")
    assert [(c.step, c.name) for c in bad] == [("thp-touch-loop", CHECK_NAME)], [(c.step, c.name) for c in bad]
    assert bad[0].observed == ["vmstat thp_split_pmd +1"]


@pytest.mark.parametrize("version", sorted(RUNS))
def test_a_kcompactd_wake_the_trace_does_not_show_fails(version, tmp_path):
    run = materialize(RUNS[version], tmp_path)
    path = run / "x86_64" / "kcompactd" / "thp-faults-defer.out"
    text = path.read_text()
    before, sep, after = text.partition("== after")
    after = re.sub(r"^compact_daemon_wake (\d+)$", lambda m: f"compact_daemon_wake {int(m.group(1)) + 1}", after, count=1,
                   flags=re.M)
    path.write_text(before + sep + after)
    doc = recheck(run, reports=False, only=["kcompactd"])
    bad = failed(doc, "x86_64", "kcompactd")
    assert [c.name for c in bad] == ["Δcompact_daemon_wake = mm_compaction_kcompactd_wake events (kcompactd_do_work counts each)"]


def test_a_direct_compaction_stall_under_defrag_defer_fails(tmp_path):
    run = materialize(RUNS["v5.0"], tmp_path)
    path = run / "arm64" / "kcompactd" / "thp-faults-defer.out"
    before, sep, after = path.read_text().partition("== after")
    for name in ("compact_stall", "compact_fail"):
        after = re.sub(rf"^{name} (\d+)$", lambda m: f"{name} {int(m.group(1)) + 2}", after, count=1, flags=re.M)
    path.write_text(before + sep + after)
    doc = recheck(run, reports=False, only=["kcompactd"])
    names = [c.name for c in failed(doc, "arm64", "kcompactd")]
    assert "Δcompact_stall (defrag=defer: THP faults do not enter direct compaction)" in names, names
    assert "Δcompact_fail (defrag=defer: THP faults do not enter direct compaction)" in names, names


def test_a_move_into_a_disallowed_node_that_worked_fails(tmp_path):
    """A kernel that let the cpuset's task move a page to node 1 returns 0
    and writes the status: the return value and status checks name it."""
    run = materialize(RUNS["v5.0"], tmp_path)
    out = run / "x86_64" / "disallowed-node" / "workload.out"
    lines = out.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("RESULT ") and '"cmd":"move"' in line.replace(" ", ""):
            data = json.loads(line[7:])
            if data.get("errno_name") == "EACCES" and data["n"] == 4:  # the call naming node 1 first
                data.update(ret=0, status=[1, 1, 0, 0])
                data.pop("errno"), data.pop("errno_name")
                lines[i] = "RESULT " + json.dumps(data)
                break
    else:
        pytest.fail("no -EACCES move of four entries in the recording")
    out.write_text("\n".join(lines) + "\n")
    doc = recheck(run, reports=False, only=["disallowed-node"])
    bad = failed(doc, "x86_64", "disallowed-node")
    assert {c.step for c in bad} == {"first"} and "return value" in {c.name for c in bad}, [(c.step, c.name) for c in bad]


def test_zram_read_back_without_swap_ins_fails(tmp_path):
    run = materialize(RUNS["v5.0"], tmp_path)
    path = run / "x86_64" / "zram" / "vmstat-after-swapin.out"
    before = (run / "x86_64" / "zram" / "vmstat-before-swapin.out").read_text()
    pswpin = re.search(r"^pswpin (\d+)$", before, flags=re.M).group(1)
    path.write_text(re.sub(r"^pswpin \d+$", f"pswpin {pswpin}", path.read_text(), flags=re.M))
    doc = recheck(run, reports=False, only=["zram"])
    bad = failed(doc, "x86_64", "zram")
    assert [c.name for c in bad] == ["Δpswpin reading zfill back after compaction (its pages come back from zram)"]


@pytest.mark.parametrize("version", sorted(RUNS))
def test_the_recording_keeps_its_captures_compressed_where_large(version):
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / RUNS[version]
    big = [p for p in root.rglob("*") if p.is_file() and p.suffix != ".gz" and p.stat().st_size > 64 * 1024]
    assert not big, big
    assert all(gzip.decompress(p.read_bytes()) for p in root.rglob("*.gz"))
