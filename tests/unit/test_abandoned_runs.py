"""A run whose harness was killed (SIGKILL: nothing can write) still says
"running"; the next run under the same root finds it and says "killed"."""
import json
import subprocess

from harness.host import rundir
from harness.host.rundir import mark_abandoned, owner, owner_gone, write_json


def run_json(root, name, status, who):
    path = root / name
    path.mkdir(parents=True)
    info = {"schema": 1, "status": status, "started": "2026-12-04T10:00:00+00:00"}
    if who is not None:
        info["owner"] = who
    write_json(path / "run.json", info)
    return path


def dead_owner():
    child = subprocess.Popen(["sleep", "30"])
    record = {"pid": child.pid, "boot_id": rundir._boot_id(), "start": rundir._start_ticks(child.pid)}
    assert record["start"] is not None
    child.kill()
    child.wait()
    return record


def test_a_run_whose_harness_is_gone_is_marked_killed_and_the_rest_left_alone(tmp_path):
    killed = run_json(tmp_path, "20261204-1-run-x86_64", "running", dead_owner())
    stage = run_json(tmp_path / "20261204-2-series-x86_64", "01-0001-a.patch", "running", dead_owner())
    alive = run_json(tmp_path, "20261204-3-run-x86_64", "running", owner())
    old = run_json(tmp_path, "20261204-4-run-x86_64", "running", None)
    done = run_json(tmp_path, "20261204-5-run-x86_64", "PASS", dead_owner())
    found = mark_abandoned(tmp_path, "run 20261204-6-run-x86_64")
    assert sorted(found) == sorted([killed, stage])
    info = json.loads((killed / "run.json").read_text())
    assert info["status"] == "killed" and "ended without finishing" in info["error"]
    assert f"pid {info['owner']['pid']}" in info["error"] and "20261204-6-run-x86_64" in info["error"]
    for path, status in ((alive, "running"), (old, "running"), (done, "PASS")):
        assert json.loads((path / "run.json").read_text())["status"] == status


def test_an_owner_is_one_process_of_one_boot():
    me = owner()
    assert not owner_gone(me)
    assert owner_gone(dict(me, boot_id="another boot"))
    # the same pid reused later by another process: its start time differs
    assert owner_gone(dict(me, start=str(int(me["start"]) + 1)))
    assert not owner_gone({})


def test_a_runs_root_that_is_not_there_has_nothing_to_mark(tmp_path):
    assert mark_abandoned(tmp_path / "nowhere", "run x") == []
