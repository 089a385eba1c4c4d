"""harness lava jobs and collect without a lab: the job definitions a run
gives (its kernel, its image plus the scenario's script, the machine the
local run gives the scenario, TCG), and a job's console turned back into a
run directory that checks like the local run it mirrors.

The console fed to collect here is made from a recorded local run's
captures, printed in the script's own format (markers, base64): it tests
the plumbing; tests/fixtures/lava holds a real job's log."""
import base64
import gzip
import json
import shutil
from pathlib import Path

import pytest
import yaml

from harness.errors import UserError
from harness.image import cpio
from harness.observe import trace as trace_mod
from harness.pipeline import recheck
from harness.workflows.lava import collect as collect_mod
from harness.workflows.lava import jobs as jobs_mod
from harness.workflows.lava import transcript as tr

from .test_replay import materialize

RUN = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "v5.0-x86_64+arm64"


def image(lava=True):
    init = "#!/bin/busybox sh\n" + ("if grep -qw harness.lava /proc/cmdline; then exec sh; fi\n" if lava else "") + "sleep 1\n"
    entries = [cpio.Entry.dir("dev"), cpio.Entry.node("dev/console", "c", 5, 1), cpio.Entry.file("init", init, 0o755)]
    return gzip.compress(cpio.archive(entries))


@pytest.fixture
def run_dir(tmp_path):
    """A local run directory like `harness run` leaves, whose kernel and
    image are small stand-ins; targets and config from a recorded run."""
    doc = json.loads(gzip.decompress((RUN / "results.json.gz").read_bytes()))
    run = tmp_path / "run"
    for arch in ("x86_64", "arm64"):
        (run / arch).mkdir(parents=True)
        shutil.copyfile(RUN / arch / "kernel.config", run / arch / "kernel.config")
        (run / arch / "kernel").write_bytes(b"kernel " + arch.encode())
        (run / arch / "initrd.gz").write_bytes(image())
        doc["arches"][arch]["target"].update(kernel=str(run / arch / "kernel"), initrd=str(run / arch / "initrd.gz"))
    (run / "results.json").write_text(json.dumps(doc))
    (run / "run.json").write_text("{}")
    return run


def test_a_job_boots_the_runs_kernel_and_image_with_the_scenarios_machine(run_dir, tmp_path):
    jobs, left_out = jobs_mod.make_jobs(run_dir, tmp_path / "jobs", scenarios=("move-pages-basic", "compact-memory", "page-cache"))
    assert sorted((j.arch, j.scenario) for j in jobs) == [("arm64", "move-pages-basic"), ("arm64", "page-cache"),
                                                          ("x86_64", "move-pages-basic"), ("x86_64", "page-cache")]
    assert any(w.startswith("x86_64 compact-memory: ") and "reads the live guest" in w for w in left_out)
    job = yaml.safe_load((tmp_path / "jobs" / "x86_64-move-pages-basic" / "job.yaml").read_text())
    assert job["device_type"] == "qemu" and job["context"]["arch"] == "x86_64" and job["context"]["no_kvm"] is True
    extra = job["context"]["extra_options"]
    assert extra[extra.index("-numa") + 1] == "node,nodeid=0,cpus=0,memdev=mem0"  # the local run's two nodes
    kernel = job["actions"][0]["deploy"]["images"]["kernel"]
    assert kernel["url"] == (run_dir / "x86_64" / "kernel").as_uri() and "harness.lava" in kernel["image_arg"]
    assert job["actions"][1]["boot"]["prompts"] == [jobs_mod.PROMPT]
    assert job["actions"][2]["test"]["definitions"][0]["repository"]["run"]["steps"][0] == "sh /harness/lava/run.sh"
    # the scratch disk of page-cache goes with its job
    disk_job = yaml.safe_load((tmp_path / "jobs" / "arm64-page-cache" / "job.yaml").read_text())
    drive = disk_job["context"]["extra_options"][disk_job["context"]["extra_options"].index("-drive") + 1]
    assert drive.startswith(f"file={tmp_path / 'jobs' / 'arm64-page-cache' / 'disk.img'},")
    # one archive: the image's entries (device nodes kept) and the script with its inputs
    entries = {e.path: e for e in cpio.read(gzip.decompress((tmp_path / "jobs" / "x86_64-move-pages-basic" / "initramfs.cpio.gz").read_bytes()))}
    assert entries["dev/console"].data == b"5:1"
    _, commands = jobs_mod.load_commands(tmp_path / "jobs" / "x86_64-move-pages-basic")
    assert entries["harness/lava/run.sh"].data.decode() == tr.guest_script(commands)
    stdin = next(c for c in commands if c.stdin is not None)
    assert entries[f"harness/lava/{tr.stdin_name(stdin)}"].data == stdin.stdin


def test_bad_inputs_name_the_problem(run_dir, tmp_path):
    with pytest.raises(UserError, match="no readable results.json"):
        jobs_mod.make_jobs(tmp_path, tmp_path / "jobs")
    with pytest.raises(UserError, match="unknown scenario 'no-such'"):
        jobs_mod.make_jobs(run_dir, tmp_path / "jobs", scenarios=("no-such",))
    with pytest.raises(UserError, match="no scenario of the run can run as a LAVA job"):
        jobs_mod.make_jobs(run_dir, tmp_path / "jobs", scenarios=("compact-memory", "balloon"))
    (run_dir / "x86_64" / "initrd.gz").write_bytes(image(lava=False))
    with pytest.raises(UserError, match="has no LAVA mode"):
        jobs_mod.make_jobs(run_dir, tmp_path / "jobs", scenarios=("move-pages-basic",), arches=("x86_64",))
    with pytest.raises(UserError, match="no job in .* has a log"):
        jobs_mod.make_jobs(run_dir, tmp_path / "jobs2", scenarios=("move-pages-basic",), arches=("arm64",))
        collect_mod.collect(tmp_path / "jobs2", tmp_path / "runs")


def console_from_captures(commands, outputs):
    """What run.sh prints on a console for these outputs (its format)."""
    lines = ["harness-lava# sh /harness/lava/run.sh"]
    for command, out in zip(commands, outputs):
        lines.append(f"{tr.MARK} BEGIN {command.index} 0")
        encoded = base64.b64encode(out.encode()).decode()
        lines += [encoded[i:i + 76] for i in range(0, len(encoded), 76)]
        lines += [f"{tr.MARK} STDERR {command.index}", f"{tr.MARK} END {command.index}"]
    return lines + [f"{tr.MARK} DONE {len(commands)}"]


def test_collect_turns_a_jobs_console_into_a_run_that_checks_like_the_local_one(run_dir, tmp_path):
    jobs_mod.make_jobs(run_dir, tmp_path / "jobs", scenarios=("move-pages-basic",), arches=("x86_64",))
    jdir = tmp_path / "jobs" / "x86_64-move-pages-basic"
    _, commands = jobs_mod.load_commands(jdir)
    recorded = RUN / "x86_64" / "move-pages-basic"
    names = ["preconditions", "trace-setup", "workload", "trace", "trace-stats"]
    outputs = [(recorded / f"{n}.out").read_text() if (recorded / f"{n}.out").exists() else
               gzip.decompress((recorded / f"{n}.out.gz").read_bytes()).decode() for n in names]
    # the trace and its stats are one command's output since they are read together
    outputs[3:] = [outputs[3] + trace_mod.STATS_MARK + "\n" + outputs[4]]
    log = [{"dt": "2026-12-04T00:00:00", "lvl": "info", "msg": "start: 1 tmpfs-deploy"}]
    log += [{"dt": "2026-12-04T00:00:01", "lvl": "target", "msg": line} for line in console_from_captures(commands, outputs)]
    (jdir / collect_mod.LOG).write_text(yaml.safe_dump(log))
    (jdir / collect_mod.JOB).write_text(json.dumps({"id": "7", "health": "Complete"}))
    collected = collect_mod.collect(tmp_path / "jobs", tmp_path / "runs")
    doc = recheck(collected, reports=False)
    entry = doc["arches"]["x86_64"]["scenarios"]["move-pages-basic"]
    local = recheck(materialize(RUN.name, tmp_path / "local"), reports=False)["arches"]["x86_64"]["scenarios"]["move-pages-basic"]
    assert entry["status"] == "PASS" and entry["lava_job"] == "7"
    by_name = lambda checks: {(c["step"], c["name"]): (c["status"], c["observed"]) for c in checks}  # noqa: E731
    ours = by_name(entry["checks"])
    assert {k: v for k, v in by_name(local["checks"]).items() if k[0] != "kernel"} == {k: v for k, v in ours.items() if k[0] != "kernel"}
    # a broken kernel's job fails the same way: a status[] the model does not expect
    outputs[2] = outputs[2].replace('"status":[1,1,1', '"status":[0,1,1', 1)
    log = [{"dt": "t", "lvl": "target", "msg": line} for line in console_from_captures(commands, outputs)]
    (jdir / collect_mod.LOG).write_text(yaml.safe_dump(log))
    doc = recheck(collect_mod.collect(tmp_path / "jobs", tmp_path / "runs", run_name="broken"), reports=False)
    failed = [c for c in doc["arches"]["x86_64"]["scenarios"]["move-pages-basic"]["checks"] if c["status"] == "FAIL"]
    assert failed and failed[0]["name"] in ("status[]", "query status")


def test_a_job_for_a_plan_with_a_memoryless_node_gives_it_its_cpu():
    from harness.scenarios import select
    scenario = select(["memoryless-node"])[0]
    job = jobs_mod.job_yaml("arm64", scenario, "file:///k", "file:///r", None, 2, "arm64-memoryless-node")
    extra = job["context"]["extra_options"]
    assert extra[extra.index("-smp") + 1].startswith(f"{jobs_mod.CPUS + 1},")
    assert "node,nodeid=2,cpus=2" in extra and extra.count("-numa") == 3
