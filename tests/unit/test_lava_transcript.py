"""A scenario's guest commands as a LAVA test-shell script, and back: the
script really runs (the host's sh standing in for the guest's), its console
output parses into the same results SSH would have given, and replaying
them through the scenario's driver writes the captures of a local run."""
import gzip
import json
import subprocess
from pathlib import Path

import pytest

from harness.errors import InfraError
from harness.kernel import kconfig
from harness.observe import trace as trace_mod
from harness.scenarios import Target, select
from harness.scenarios.base import Captures
from harness.scenarios.plan.script import guest_script
from harness.workflows.lava import transcript as tr

RUN = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "v5.0-x86_64+arm64"


def target(arch="x86_64"):
    doc = json.loads(gzip.decompress((RUN / "results.json.gz").read_bytes()))
    return Target.from_dict(doc["arches"][arch]["target"], kconfig.parse_dotconfig((RUN / arch / "kernel.config").read_text()))


def scenario(name):
    (found,) = select([name])
    return found


def run_script(commands, tmp_path, monkeypatch):
    """The generated script, run by the host's sh with GUEST_DIR moved to tmp."""
    guest_dir = tmp_path / "guest"
    guest_dir.mkdir()
    for command in commands:
        if command.stdin is not None:
            (guest_dir / tr.stdin_name(command)).write_bytes(command.stdin)
    script = tr.guest_script(commands).replace(tr.GUEST_DIR, str(guest_dir))
    script = script.replace("dmesg -n 1", "true").replace("/tmp/harness-lava", str(tmp_path / "io"))
    proc = subprocess.run(["sh", "-c", script], capture_output=True, timeout=60)
    # the console: \r\n line ends and a kernel line in the middle of nowhere
    return ("[   12.345] random: crng init done\r\n" + proc.stdout.decode().replace("\n", "\r\n")).splitlines()


def test_the_script_runs_each_command_as_ssh_would_and_the_console_gives_the_results_back(tmp_path, monkeypatch):
    commands = [tr.Command(0, "echo out; echo err >&2; exit 3", 10, None),
                tr.Command(1, "cat; printf 'no newline'", 10, b"from stdin\n"),
                tr.Command(2, "head -c 3000 /dev/zero | tr '\\0' x", 10, None),
                tr.Command(3, "sleep 5", 1, None)]
    results = tr.parse_console(run_script(commands, tmp_path, monkeypatch), commands)
    assert [(r.status, r.stdout, r.stderr) for r in results[:2]] == [(3, "out\n", "err\n"), (0, "from stdin\nno newline", "")]
    assert results[2].stdout == "x" * 3000  # base64 wrapped over many console lines
    assert results[3].status not in (0, 3)  # killed by its timeout


def test_a_job_cut_short_or_garbled_is_infrastructure_trouble_naming_the_command(tmp_path, monkeypatch):
    commands = [tr.Command(0, "echo a", 10, None), tr.Command(1, "echo b", 10, None)]
    lines = run_script(commands, tmp_path, monkeypatch)
    cut = lines[:next(i for i, line in enumerate(lines) if "BEGIN 1" in line)]
    with pytest.raises(InfraError, match=r"no result for 1 of 2 commands, the first #1: 'echo b'"):
        tr.parse_console(cut, commands)
    garbled = [line.replace("YQo=", "Y!o=") for line in lines]  # base64 of "a\n"
    with pytest.raises(InfraError, match="stdout of command #0 .* not intact base64"):
        tr.parse_console(garbled, commands)


def test_plan_scenarios_transcribe_and_scenarios_that_read_the_guest_do_not():
    commands = tr.transcribe(scenario("move-pages-basic"), target())
    # preconditions, trace setup, the workload, the trace with its stats
    assert [c.index for c in commands] == [0, 1, 2, 3]
    assert commands[0].command.startswith("echo 0 > /proc/sys/kernel/numa_balancing")
    assert commands[2].command == "taskset 1 mmdrive 2>&1 || mmdrive" and commands[2].timeout == 600.0
    assert [c.stdin is not None for c in commands] == [False, False, True, False]
    assert commands[2].stdin.decode() == guest_script(scenario("move-pages-basic").plan)  # the plan's mmdrive script as stdin
    with pytest.raises(tr.NotTranscribable, match="reads the live guest"):
        tr.transcribe(scenario("compact-memory"), target())
    with pytest.raises(tr.NotTranscribable, match="QMP"):
        tr.transcribe(scenario("writeback"), target())


def test_replaying_a_recorded_run_through_the_driver_writes_the_same_captures(tmp_path):
    # the recorded local run's outputs, fed back in order: the driver saves
    # the same captures and returns the same observation
    recorded = RUN / "x86_64" / "move-pages-basic"
    commands = tr.transcribe(scenario("move-pages-basic"), target())

    def capture(name):
        for path in (recorded / f"{name}.out", recorded / f"{name}.out.gz"):
            if path.exists():
                data = path.read_bytes()
                return (gzip.decompress(data) if path.suffix == ".gz" else data).decode()
        return ""

    names = ["preconditions", "trace-setup", "workload", "trace"]
    assert len(names) == len(commands)
    outputs = [capture(n) for n in names]
    outputs[3] += trace_mod.STATS_MARK + "\n" + capture("trace-stats")  # (read in one command)
    results = [tr.CommandResult(c.command, 0, out, "", 0.0) for c, out in zip(commands, outputs)]
    guest = tr.Replayer(commands, results)
    observation = scenario("move-pages-basic").drive(guest, target(), Captures(tmp_path / "replayed"), qmp=None)
    assert observation == {k: v for k, v in json.loads((recorded / "observation.json").read_text()).items() if k != "captures"}
    assert (tmp_path / "replayed" / "workload.out").read_text() == capture("workload")
    with pytest.raises(InfraError, match="command #0 differs"):
        tr.Replayer(commands, results).run("echo something else")
