"""Metrics beside the checks, on recorded runs: a recheck computes them from
the captures, and each equals the counters it is made of (read here from
the same snapshots by hand)."""
import json
import re

import pytest

from harness.observe import vmstat as vmstat_mod
from harness.perf.metric import Metric
from harness.pipeline import recheck
from harness.report.model import outcome_of
from harness.scenarios.compaction import split_snapshots

from .test_replay import materialize


def metrics_of(doc, arch, scenario):
    return {m["name"]: Metric.from_dict(m) for m in outcome_of(doc, arch, scenario).metrics}


@pytest.mark.parametrize("run", ["v5.0-x86_64+arm64", "6.12-x86_64+arm64"])
def test_compact_memory_reports_pages_migrated_per_page_scanned(run, tmp_path):
    run_dir = materialize(run, tmp_path)
    doc = recheck(run_dir, reports=False, only=["compact-memory"])
    for arch in ("x86_64", "arm64"):
        before, after = split_snapshots((run_dir / arch / "compact-memory" / "compact-memory.out").read_text())
        delta = vmstat_mod.delta(before, after)
        got = metrics_of(doc, arch, "compact-memory")
        assert got["compaction.migrated_per_migrate_scanned"].value == pytest.approx(
            delta["pgmigrate_success"] / delta["compact_migrate_scanned"])
        assert got["compaction.migrated_per_free_scanned"].value == pytest.approx(
            delta["pgmigrate_success"] / delta["compact_free_scanned"])
        assert 0 < got["compaction.migrated_per_migrate_scanned"].value <= 1
        assert got["compaction.migrated_per_free_scanned"].better == "higher"
    # kept in results.json with the checks
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["arches"]["x86_64"]["scenarios"]["compact-memory"]["metrics"]


def test_direct_compaction_reports_thpcompacts_numbers(tmp_path):
    run_dir = materialize("v5.0-x86_64+arm64", tmp_path)
    doc = recheck(run_dir, reports=False, only=["direct-compaction"])
    before, after = split_snapshots((run_dir / "x86_64" / "direct-compaction" / "thp-faults.out").read_text())
    delta = vmstat_mod.delta(before, after)
    got = metrics_of(doc, "x86_64", "direct-compaction")
    alloc, fallback = delta.get("thp_fault_alloc", 0), delta.get("thp_fault_fallback", 0)
    assert got["thp_fault.huge_pct"].value == pytest.approx(100 * alloc / (alloc + fallback))
    assert got["thp_fault.huge_pct"].unit == "%" and 0 <= got["thp_fault.huge_pct"].value <= 100
    assert "direct_compaction.migrated_per_migrate_scanned" in got
    # stall time: the faulting task's compact_zone() calls, read here from
    # the raw trace lines by hand, per Δcompact_stall
    lines = (run_dir / "x86_64" / "direct-compaction" / "trace.out").read_text().splitlines()
    inside = lines[next(i for i, l in enumerate(lines) if "harness thp_faults begin" in l):]
    opened, total = {}, 0.0
    for line in inside:
        m = re.match(r"\s*(\S+)-(\d+)\s+\[\d+\].*?([\d.]+): (mm_compaction_begin|mm_compaction_end):", line)
        if m and not m.group(1).startswith("kcompactd"):
            if m.group(4) == "mm_compaction_begin":
                opened[m.group(2)] = float(m.group(3))
            elif m.group(2) in opened:
                total += float(m.group(3)) - opened.pop(m.group(2))
        if "harness thp_faults end" in line:
            break
    assert total > 0
    assert got["direct_compaction.stall_us_mean"].value == pytest.approx(total * 1e6 / delta["compact_stall"])
    assert got["direct_compaction.stall_us_mean"].better == "lower"
    # a capture of an mmdrive that did not time its faults: no latency
    assert "thp_fault.latency_us_mean" not in got


def test_time_compacting_pairs_each_tasks_begin_with_its_end():
    """A worked example: two tasks interleaved, kcompactd left out, an
    unmatched begin (trace cut) not counted."""
    from harness.observe.compaction import time_compacting
    from harness.observe.trace import parse

    text = "\n".join([
        "  mmdrive-74 [001] .... 10.000000: mm_compaction_begin: zone_start=0x1000",
        "  other-80   [000] .... 10.100000: mm_compaction_begin: zone_start=0x1000",
        "  kcompactd0-30 [000] .... 10.150000: mm_compaction_begin: zone_start=0x1000",
        "  mmdrive-74 [001] .... 10.250000: mm_compaction_end: zone_start=0x1000 status=success",
        "  kcompactd0-30 [000] .... 10.900000: mm_compaction_end: zone_start=0x1000 status=success",
        "  other-80   [000] .... 10.400000: mm_compaction_end: zone_start=0x1000 status=success",
        "  mmdrive-74 [001] .... 11.000000: mm_compaction_begin: zone_start=0x1000",
    ])
    assert time_compacting(parse(text)) == pytest.approx(0.25 + 0.3)
    assert time_compacting(parse(text), direct_only=False) == pytest.approx(0.25 + 0.3 + 0.75)
    assert time_compacting(parse(text.splitlines()[-1])) is None


def test_percentile_is_nearest_rank():
    from harness.scenarios.direct import percentile

    assert percentile([5, 1, 4, 2, 3], 90) == 5 and percentile([5, 1, 4, 2, 3], 50) == 3
    assert percentile(list(range(1, 101)), 90) == 90 and percentile([7], 90) == 7


def test_a_metric_says_which_way_is_better():
    with pytest.raises(ValueError, match="better is"):
        Metric("x", 1.0, "pages", "up")
    m = Metric("x", 2.5, "pages/s", "lower", "how")
    assert Metric.from_dict(m.as_dict()) == m


def _with_repeats(run_dir, factors):
    """The run's compact-memory metrics as if it had run len(factors) + 1
    times (repeats S@2.. with the first's values times each factor): an
    edited copy of a recorded run, for the comparison's arithmetic."""
    doc = json.loads((run_dir / "results.json").read_text())
    for arch in doc["arches"].values():
        first = arch["scenarios"]["compact-memory"]
        for k, factor in enumerate(factors, 2):
            arch["scenarios"][f"compact-memory@{k}"] = dict(first, metrics=[dict(m, value=m["value"] * factor) for m in first["metrics"]])
    (run_dir / "results.json").write_text(json.dumps(doc))


def test_compare_of_repeated_runs_prints_the_0day_table_and_flags_a_regression(tmp_path, capsys):
    from harness.cli import main

    runs = []
    for name, factors in (("a", [1.01, 0.99, 1.02, 0.98]), ("b", [0.99, 1.01, 0.98, 1.02]), ("c", [0.99, 1.01, 1.0, 1.005])):
        run_dir = materialize("v5.0-x86_64+arm64", tmp_path / name)
        recheck(run_dir, reports=False, only=["compact-memory"])
        doc = json.loads((run_dir / "results.json").read_text())
        for arch in doc["arches"].values():  # every sample of c 20 % lower, the first too
            if name == "c":
                arch["scenarios"]["compact-memory"]["metrics"] = [dict(m, value=m["value"] * 0.8)
                                                                 for m in arch["scenarios"]["compact-memory"]["metrics"]]
        (run_dir / "results.json").write_text(json.dumps(doc))
        _with_repeats(run_dir, factors)
        runs.append(run_dir)
    # the same kernel twice: no regression, exit 0 even with --fail-on-perf
    assert main(["compare", str(runs[0]), str(runs[1]), "--changes", "--fail-on-perf"]) == 0
    out = capsys.readouterr().out
    assert "%stddev" in out and "compact-memory/compaction.migrated_per_free_scanned" in out
    assert "no performance regression" in out and "n=5/5" in out
    # 20 % fewer pages migrated per page scanned: a regression; exit 1 only with --fail-on-perf
    assert main(["compare", str(runs[0]), str(runs[2]), "--changes"]) == 0
    assert main(["compare", str(runs[0]), str(runs[2]), "--changes", "--fail-on-perf"]) == 1
    out = capsys.readouterr().out
    assert "performance regressions: compact-memory/compaction.migrated_per_free_scanned" in out
    line = next(l for l in out.splitlines() if "migrated_per_migrate_scanned" in l and "regression" in l)
    assert "-20." in line or "-19." in line


def test_a_plan_step_that_moved_pages_reports_pages_per_second(tmp_path):
    """The recorded run's move (64 pages) given the duration a newer mmdrive
    writes beside it (ns): the metric is the step's Δpgmigrate_success over
    that time; a step without a duration (older captures) has none."""
    run_dir = materialize("v5.0-x86_64+arm64", tmp_path)
    out = run_dir / "x86_64" / "move-pages-basic" / "workload.out"
    lines = out.read_text().splitlines()
    first_move = next(i for i, l in enumerate(lines) if l.startswith("RESULT ") and json.loads(l[7:])["cmd"] == "move")
    result = json.loads(lines[first_move][7:])
    result["ns"] = 2_000_000  # 2 ms
    lines[first_move] = "RESULT " + json.dumps(result)
    out.write_text("\n".join(lines) + "\n")
    doc = recheck(run_dir, reports=False, only=["move-pages-basic"])
    got = metrics_of(doc, "x86_64", "move-pages-basic")
    assert list(got) == ["move-64.pages_per_s"]  # the other steps' moves have no duration
    assert got["move-64.pages_per_s"].value == pytest.approx(64 / 0.002)
    assert got["move-64.pages_per_s"].better == "higher"
    assert outcome_of(doc, "x86_64", "move-pages-basic").status.name == "PASS"


def test_the_noise_table_says_how_many_repeats_each_metric_needs():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("noise", Path(__file__).resolve().parents[2] / "bench" / "noise.py")
    noise = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noise)

    def entry(value):
        return {"status": "PASS", "metrics": [{"name": "m", "value": value, "unit": "pages/s", "better": "higher"},
                                              {"name": "wild", "value": value ** 3, "unit": "pages/s", "better": "higher"}]}
    values = [100.0, 102.0, 98.0, 101.0, 99.0]
    doc = {"arches": {"x86_64": {"scenarios": {("s" if k == 0 else f"s@{k + 1}"): entry(v) for k, v in enumerate(values)}}}}
    rows = {r["metric"]: r for r in noise.table(doc)}
    steady = rows["s/m"]
    assert steady["n"] == 5 and steady["cv_pct"] == pytest.approx(100 * 1.5811388 / 100, rel=1e-5)
    # cv 1.6 %: a 10 % change shows with 2 a side (scipy's noncentral t: power 0.86)
    assert steady["repeats_for_10pct"] == 2 and steady["keep"]
    assert rows["s/wild"]["repeats_for_5pct"] >= steady["repeats_for_5pct"]


def test_the_report_and_the_compare_page_show_the_metrics(tmp_path):
    from harness.report.html import strip_svg
    from harness.workflows import compare as compare_mod

    runs = []
    for name, scale in (("a", 1.0), ("b", 0.8)):
        run_dir = materialize("v5.0-x86_64+arm64", tmp_path / name)
        doc = recheck(run_dir, reports=True, only=["compact-memory"])
        for arch in doc["arches"].values():
            first = arch["scenarios"]["compact-memory"]
            first["metrics"] = [dict(m, value=m["value"] * scale) for m in first["metrics"]]
            for k, f in enumerate((1.01, 0.99, 1.02), 2):
                arch["scenarios"][f"compact-memory@{k}"] = dict(first, metrics=[dict(m, value=m["value"] * f) for m in first["metrics"]])
        (run_dir / "results.json").write_text(json.dumps(doc))
        recheck(run_dir, reports=True, only=[])
        runs.append(run_dir)
    page = (runs[0] / "report.html").read_text()
    assert "Performance metrics" in page and "compact-memory/compaction.migrated_per_free_scanned" in page
    assert page.count("<circle") >= 4 * 2 * 2  # 4 samples of 2 metrics on 2 arches
    assert strip_svg([1.0, 2.0, 3.0]).count("<circle") == 3
    a, b = compare_mod.load_run(runs[0]), compare_mod.load_run(runs[1])
    html = compare_mod.render_html([("", compare_mod.compare(a, b, {}))], "A vs B")
    assert "Performance metrics" in html and 'class="regression"><td>compact-memory/compaction.migrated_per_free_scanned' in html
    assert "-20.0%" in html


def test_numa_balancing_reports_its_convergence_time(tmp_path):
    run_dir = materialize("v5.0-x86_64+arm64", tmp_path)
    doc = recheck(run_dir, reports=False, only=["numa-balancing"])
    loops = [json.loads(l[7:]) for l in (run_dir / "x86_64" / "numa-balancing" / "workload.out").read_text().splitlines()
             if l.startswith("RESULT ") and '"touch_until"' in l]
    got = metrics_of(doc, "x86_64", "numa-balancing")
    assert got["numa_balancing.base_convergence_ms"].value == loops[0]["ms"]
    assert got["numa_balancing.base_convergence_ms"].better == "lower"


def test_zram_reports_its_compaction_yield(tmp_path):
    from harness.observe import zram as zram_mod

    run_dir = materialize("v5.0-x86_64+arm64", tmp_path)
    doc = recheck(run_dir, reports=False, only=["zram"])
    sdir = run_dir / "arm64" / "zram"
    before = zram_mod.parse_mm_stat((sdir / "mm-stat-after-compaction.out").read_text())
    after = zram_mod.parse_mm_stat((sdir / "mm-stat-after-zram-compact.out").read_text())
    got = metrics_of(doc, "arm64", "zram")["zram.compaction_yield_pct"]
    assert got.value == pytest.approx(100 * (after["pages_compacted"] - before["pages_compacted"]) / (before["mem_used_total"] // 4096))
    assert 0 < got.value < 100


def _timed(run_dir, arch, scenario, ns):
    """Give every measured call of the recorded workload a duration (older
    captures have none): the metric is then pages over that time."""
    out = run_dir / arch / scenario / "workload.out"
    lines = out.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
            if result.get("cmd") in ("move", "mbind", "migrate"):
                lines[i] = "RESULT " + json.dumps(dict(result, ns=ns))
    out.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("run", ["v5.0-thp-timed-x86_64+arm64", "5.10-x86_64+arm64"])
def test_a_thp_moved_whole_is_512_pages_per_second_on_every_kernel(run, tmp_path):
    """v5.0 counts a THP migrated whole once in pgmigrate_success, 5.10 as
    its 512 subpages: the metric counts base pages on both (kpageflags
    shows the folio moved whole), so pages/s compare across versions.
    arm64 v5.0 splits the THP (no THP migration): 512 base pages too.
    (The recorded calls' own durations replaced by 1 ms.)"""
    run_dir = materialize(run, tmp_path)
    for arch in ("x86_64", "arm64"):
        _timed(run_dir, arch, "thp", 1_000_000)
    doc = recheck(run_dir, reports=False, only=["thp"])
    for arch in ("x86_64", "arm64"):
        got = metrics_of(doc, arch, "thp")
        assert got["head.pages_per_s"].value == pytest.approx(512 / 0.001), arch
        assert got["all-subpages.pages_per_s"].value == pytest.approx(512 / 0.001), arch


def test_moved_whole_tells_a_folio_moved_whole_from_one_split_or_left():
    from harness.scenarios.plan.scenario import KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, KPF_HUGE, moved_whole

    head, tail, huge = 1 << KPF_COMPOUND_HEAD, 1 << KPF_COMPOUND_TAIL, 1 << KPF_HUGE
    folio = [head] + [tail] * 3
    pre = {"a": ([10, 11, 12, 13, 20], folio + [0]), "b": ([30, 31, 32, 33], [head | huge] + [tail | huge] * 3),
           "c": ([40, 41, 42, 43], folio), "d": ([50, 51, 52, 53], folio)}
    post = {"a": ([60, 61, 62, 63, 21], folio + [0]),       # moved whole; a base page moved too
            "b": ([70, 71, 72, 73], [head | huge] + [tail | huge] * 3),
            "c": ([80, 81, 82, 83], [0, 0, 0, 0]),           # split, then moved: not whole
            "d": ([50, 51, 52, 53], folio)}                  # left where it was
    assert moved_whole(pre, post) == [(4, False), (4, True)]


def test_which_large_folios_pgmigrate_success_counts_once_per_kernel():
    """THPs in base pages from 5.9, hugetlb pages only from the 6.3 batch
    rework (6.1.176 carries it): pages/s adds the rest where it does not."""
    from harness.model.kernels import KERNELS

    got = {name: (rules.counts_in_base_pages(hugetlb=False), rules.counts_in_base_pages(hugetlb=True))
           for name, rules in KERNELS.items()}
    assert got == {"v5.0": (False, False), "5.10": (True, False), "6.1": (True, True), "6.12": (True, True)}


def test_thp_fault_latency_from_the_faults_mmdrive_timed(tmp_path):
    """A recorded run whose mmdrive timed the first write to each 2 MiB of
    its THP region: mean and nearest-rank p90 of those, read here from the
    capture's alloc result by hand."""
    run_dir = materialize("v5.0-direct-timed-x86_64+arm64", tmp_path)
    doc = recheck(run_dir, reports=False, only=["direct-compaction"])
    for arch in ("x86_64", "arm64"):
        text = (run_dir / arch / "direct-compaction" / "thp-faults.out").read_text()
        alloc = next(json.loads(l[7:]) for l in text.splitlines() if l.startswith('RESULT {"cmd":"alloc"'))
        faults = sorted(alloc["fault_ns"])
        assert len(faults) == 256 * 1024 // 2048  # one per 2 MiB of the 256 MiB region
        got = metrics_of(doc, arch, "direct-compaction")
        assert got["thp_fault.latency_us_mean"].value == pytest.approx(sum(faults) / len(faults) / 1e3)
        assert got["thp_fault.latency_us_p90"].value == pytest.approx(faults[-(-9 * len(faults) // 10) - 1] / 1e3)  # rank ceil(0.9 n)
        assert got["thp_fault.latency_us_mean"].better == "lower" and got["thp_fault.latency_us_mean"].unit == "us"
        assert "direct_compaction.stall_us_mean" in got
