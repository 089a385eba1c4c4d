"""/proc/vmstat sampled in real guests while compact_memory ran (recorded
v5.0 run, x86_64 and arm64): parsed off the capture without disturbing the
snapshots around it, written as CSV, and plotted in report.html."""
import base64
import csv
import io

import pytest

from harness.observe import samples
from harness.pipeline import recheck
from harness.report.plots import buddy_free
from harness.scenarios.compaction import split_snapshots

from .test_html_report import CHROMIUM, _png_size_and_colours, rendered, screenshot
from .test_replay import RUNS, materialize

RUN = "v5.0-compact-memory-samples-x86_64+arm64"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = materialize(RUN, tmp_path_factory.mktemp("samples"), RUNS)
    recheck(run_dir)
    return run_dir


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_samples_show_compaction_migrating_while_it_runs(run, arch):
    text = (run / arch / "compact-memory" / "compact-memory.out").read_text()
    taken = samples.parse(text)
    assert len(taken) >= 3
    times = [ms for ms, _ in taken]
    assert times == sorted(times) and all(b - a >= samples.INTERVAL_MS for a, b in zip(times, times[1:]))
    success = [v["pgmigrate_success"] for _, v in taken]
    assert success == sorted(success) and success[-1] > success[0]  # rising during compact_memory
    # the snapshots around the step still parse, and the samples lie between them
    before, after = split_snapshots(text)
    assert before["pgmigrate_success"] <= success[0] and success[-1] <= after["pgmigrate_success"]
    assert "SAMPLE" not in samples.split(text)[0]


def test_a_capture_without_samples_is_unchanged_by_the_split():
    text = "== before\npgmigrate_success 1\n== after\npgmigrate_success 2\n"
    assert samples.split(text) == (text, "") and samples.parse(text) == []
    assert split_snapshots(text) == ({"pgmigrate_success": 1}, {"pgmigrate_success": 2})


def test_samples_as_csv_one_row_each():
    rows = list(csv.reader(io.StringIO(samples.to_csv([(10, {"b": 2, "a": 1}), (110, {"a": 3})]))))
    assert rows == [["ms", "a", "b"], ["10", "1", "2"], ["110", "3", ""]]


def test_buddyinfo_free_blocks_per_order_over_all_zones():
    text = ("Node 0, zone      DMA      1      0      2\n"
            "Node 1, zone    DMA32     10      3      0\n")
    assert buddy_free(text) == [11, 3, 2]


def test_the_report_plots_the_samples_and_writes_them_as_csv(run):
    page = rendered(run / "report.html")
    assert "plots" in page.ids
    html = (run / "report.html").read_text()
    images = [part.split('"', 1)[0] for part in html.split('src="data:image/png;base64,')[1:]]
    # per arch: compact_memory's samples and the free blocks per order
    # (compact-node1 ends within one sample: no line to draw)
    assert len(images) == 4
    for image in images:
        path = run / "plot.png"
        path.write_bytes(base64.b64decode(image))
        width, height, colours = _png_size_and_colours(path)
        assert (width, height) in ((720, 416), (720, 224)) and colours > 20
    csv_path = run / "x86_64" / "compact-memory" / "samples-compact-memory.csv"
    assert "x86_64/compact-memory/samples-compact-memory.csv" in page.links
    rows = list(csv.DictReader(csv_path.open()))
    assert int(rows[-1]["pgmigrate_success"]) > int(rows[0]["pgmigrate_success"])


@pytest.mark.skipif(not CHROMIUM, reason="needs headless Chromium (Debian package chromium)")
def test_the_plots_are_drawn_in_the_browser(run, tmp_path):
    """Screenshots of the report and of the same page without its images:
    the plots add colours (lines, bars, legends) a page of tables lacks."""
    import re

    bare = run / "report-without-plots.html"
    bare.write_text(re.sub(r'<img class="plot"[^>]*>', "", (run / "report.html").read_text()))
    colours = []
    for page in (run / "report.html", bare):
        shot = tmp_path / f"{page.stem}.png"
        log = screenshot(page, shot)
        assert shot.exists(), log[-2000:]
        colours.append(_png_size_and_colours(shot)[2])
    assert colours[0] > colours[1] + 20, colours


@pytest.fixture
def fake_sampler(tmp_path, monkeypatch):
    """A stand-in for the guest's vmsample on PATH: a sample every 10 ms
    until SIGTERM (the shell around it is the real one the guest runs)."""
    tool = tmp_path / "bin" / "vmsample"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\ntrap 'exit 0' TERM\ni=0\nwhile :; do echo \"SAMPLE $i x=$i\"; i=$((i+10)); sleep 0.01; done\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}:/usr/bin:/bin")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tool


def test_sampling_around_a_workload_keeps_its_stdin_output_and_exit_code(fake_sampler):
    import subprocess
    command = (samples.sampler_start("t") + "cat; sleep 0.1; (exit 3); rc=$?" + samples.sampler_stop("t") + "; exit $rc")
    proc = subprocess.run(["sh", "-c", command], input=b"RESULT {\"cmd\":\"exit\"}\n", capture_output=True, timeout=30)
    text = proc.stdout.decode()
    head, _ = samples.split(text)
    assert proc.returncode == 3
    assert head == "RESULT {\"cmd\":\"exit\"}\n"  # the workload had its stdin, the sampler none of it
    assert len(samples.parse(text)) >= 2


def test_a_daemon_sampler_outlives_its_command_and_stops_on_request(fake_sampler):
    import subprocess
    started = subprocess.run(["sh", "-c", samples.daemon_start("d")], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    pid = started.stdout.decode().strip()
    assert pid.isdigit()
    subprocess.run(["sleep", "0.1"])
    stopped = subprocess.run(["sh", "-c", samples.daemon_stop("d", int(pid))], capture_output=True, timeout=30)
    assert len(samples.parse(stopped.stdout.decode())) >= 2
    with pytest.raises(ValueError):
        samples.daemon_stop("d", "1; reboot")


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_samples_show_the_balloon_filling_and_numa_balancing_moving(tmp_path, arch):
    # recorded v5.0 run: vmsample ran in the guest while the host inflated
    # and deflated the balloon over QMP, and while the NUMA workload ran
    run_dir = materialize("v5.0-balloon-numa-samples-x86_64+arm64", tmp_path, RUNS)
    doc = recheck(run_dir)
    inflated = next(c for c in doc["arches"][arch]["scenarios"]["balloon"]["checks"]
                    if c["step"] == "inflate" and c["name"] == "Δballoon_inflate")
    for what, counter in (("inflate", "balloon_inflate"), ("deflate", "balloon_deflate")):
        taken = samples.parse((run_dir / arch / "balloon" / f"{what}-samples.out").read_text())
        values = [v[counter] for _, v in taken]
        assert values == sorted(values)
        # the samples saw (nearly all of) the resize the snapshots around it counted
        assert 0 < values[-1] - values[0] <= inflated["expected"]
    workload = (run_dir / arch / "numa-balancing" / "workload.out").read_text()
    moved = [v["numa_pages_migrated"] for _, v in samples.parse(workload)]
    assert moved == sorted(moved) and moved[-1] > moved[0]
    # the sampler's own RESULT line stays in the samples section, out of the workload's results
    assert '"cmd":"vmsample"' in samples.split(workload)[1] and '"cmd":"vmsample"' not in samples.split(workload)[0]
    assert doc["arches"][arch]["scenarios"]["numa-balancing"]["status"] == "PASS"
    html = (run_dir / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 8  # per arch: balloon's compaction, inflate, deflate; NUMA
