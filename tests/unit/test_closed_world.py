"""The closed world, on recorded runs whose every step kept the whole
snapshot (tests/fixtures/runs/*-closed-world-*): a pristine run explains
every field that moved; a capture edited to move a field nobody predicts
fails as unexplained, naming the field, its node, its delta and the step;
each ambient entry is needed (taking it out makes a pristine run fail);
an error-level kernel message inside a step is the kernel's failure."""
import json
import re

import pytest
import yaml

from harness.check import closed_world
from harness.check.closed_world import CHECK_NAME, ambient_list
from harness.observe import kmsg as kmsg_mod
from harness.observe import snapshot as snapshot_mod
from harness.pipeline import recheck
from harness.report.model import outcome_of, run_exit_code
from harness.result import KERNEL_LOG_CHECK, Blame, Status

from .test_replay import materialize

RUNS = {"v5.0": "v5.0-closed-world-x86_64+arm64", "5.10": "5.10-closed-world-x86_64+arm64", "6.1": "6.1-x86_64+arm64",
        "6.12": "6.12-x86_64+arm64"}


def closed_checks(doc):
    return [(arch, name, c) for arch, a in doc["arches"].items() for name in a["scenarios"]
            for c in outcome_of(doc, arch, name).checks if c.name == CHECK_NAME]


@pytest.mark.parametrize("version", sorted(RUNS))
def test_a_pristine_run_explains_every_field_that_moved(version, tmp_path):
    doc = recheck(materialize(RUNS[version], tmp_path), reports=False)
    checks = closed_checks(doc)
    assert len(checks) >= 10
    assert all(c.status is Status.PASS for _, _, c in checks), [c.message for _, _, c in checks if c.status is not Status.PASS]
    # and they looked at something: fields moved, the model predicted some of them
    assert all("predicted" in c.message and not c.message.startswith("0 fields") for _, _, c in checks)


def edit_snapshot(sdir, step: int, path: str, name: str, by: int) -> None:
    """Move ``name`` in file ``path`` of the snapshot that closes ``step``
    by ``by``, as a kernel that changed it would have written it."""
    out = sdir / "workload.out"
    lines = out.read_text().splitlines()
    results = [json.loads(l[7:]) if l.startswith("RESULT ") else None for l in lines]
    end = next(i for i, r in enumerate(results) if r and r.get("text") == f"harness step {step} end")
    closing = next(i for i in range(end, len(results)) if results[i] and results[i]["cmd"] == "vmstat")
    data = results[closing]
    text, count = re.subn(rf"^{name} (\d+)$", lambda m: f"{name} {int(m.group(1)) + by}", data["files"][path], flags=re.M)
    assert count == 1, (path, name)
    data["files"][path] = text
    lines[closing] = "RESULT " + json.dumps(data)
    out.write_text("\n".join(lines) + "\n")


def test_a_field_nobody_predicts_that_moved_fails_as_unexplained(tmp_path):
    run = materialize(RUNS["v5.0"], tmp_path)
    # NFS's unstable pages: nothing in a move_pages step may touch them
    edit_snapshot(run / "x86_64" / "move-pages-basic", 1, "/sys/devices/system/node/node1/vmstat", "nr_unstable", 3)
    doc = recheck(run, reports=False, only=["move-pages-basic"])
    failed = [c for c in outcome_of(doc, "x86_64", "move-pages-basic").checks if c.status is Status.FAIL]
    assert [(c.step, c.name) for c in failed] == [("move-64", CHECK_NAME)]
    assert failed[0].observed == ["node1 vmstat nr_unstable +3"]
    assert "during step move-64" in failed[0].message and "node1 vmstat nr_unstable +3" in failed[0].message


def test_a_node_counter_the_model_accounts_that_moved_wrongly_fails_by_node(tmp_path):
    run = materialize(RUNS["v5.0"], tmp_path)
    edit_snapshot(run / "arm64" / "move-pages-basic", 1, "/sys/devices/system/node/node1/vmstat", "nr_shmem", 2)
    doc = recheck(run, reports=False, only=["move-pages-basic"])
    failed = [c for c in outcome_of(doc, "arm64", "move-pages-basic").checks if c.status is Status.FAIL]
    assert [(c.step, c.name.split(":")[0]) for c in failed] == [("move-64", "node1")]
    assert "nr_shmem expected +0, observed +2" in failed[0].message


#: More recorded plan runs of a version, for entries only they show: 6.12
#: arm64's e27, whose first move made a kworker (nr_kernel_stack +16 kB).
MORE_RUNS = {"6.12": ("6.12-memoryless-node-arm64", "6.12-mthp-x86_64+arm64")}


#: Recorded runs of the class-based scenarios whose shell steps kept the
#: whole snapshot (compaction, direct compaction, zram, balloon).
SHELL_RUNS = {"v5.0": "v5.0-shell-closed-world-x86_64+arm64+arm", "5.10": "5.10-shell-closed-world-x86_64+arm64",
              "6.1": "6.1-x86_64+arm64", "6.12": "6.12-x86_64+arm64"}


def _entries(version):
    """(index in the version's flattened list, pattern, steps) of each entry."""
    data = yaml.safe_load(closed_world.AMBIENT_FILE.read_text())
    flat = [e for name in data["kernels"][version] for e in data["lists"][name]]
    return [(i, "|".join(e["fields"]) if isinstance(e["fields"], list) else e["fields"], e.get("steps")) for i, e in enumerate(flat)]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Each recorded run unpacked once for the module (rechecks rewrite
    its results, nothing else)."""
    out = {}

    def get(name):
        if name not in out:
            out[name] = materialize(name, tmp_path_factory.mktemp("recorded"))
        return out[name]
    return get


#: Recorded runs of the class-based scenarios whose steps run inside one
#: mmdrive process (compact-unevictable, cma, numa-balancing).
QUIET_RUNS = {"v5.0": "v5.0-quiet-closed-world-x86_64+arm64+arm", "5.10": "5.10-quiet-closed-world-x86_64+arm64"}


#: Recorded memory-offline runs (x86_64: arm64 has no memory hot-remove).
OFFLINE_RUNS = {"v5.0": "v5.0-offline-closed-world-x86_64", "5.10": "5.10-offline-closed-world-x86_64"}


@pytest.mark.parametrize("name", sorted(SHELL_RUNS.values()) + sorted(QUIET_RUNS.values()) + sorted(OFFLINE_RUNS.values()))
def test_a_pristine_run_explains_every_field_its_class_based_steps_moved(name, recorded):
    doc = recheck(recorded(name), reports=False)
    checks = closed_checks(doc)
    assert len(checks) >= (1 if "offline" in name else 8), [(a, n) for a, n, _ in checks]
    assert all(c.status is Status.PASS for _, _, c in checks), [c.message for _, _, c in checks if c.status is not Status.PASS]
    assert all("ambient" in c.message and not c.message.startswith("0 fields") for _, _, c in checks)


@pytest.mark.parametrize("version,index,pattern,steps", [(v, *e) for v in sorted(RUNS) for e in _entries(v)])
def test_every_ambient_entry_is_needed(version, index, pattern, steps, recorded, tmp_path, monkeypatch):
    """Without the entry, a pristine run of the version fails naming a field
    the entry would have explained (a plan run, or a run of the class-based
    scenarios for an entry of shell steps): the list cannot grow into
    everything."""
    data = yaml.safe_load(closed_world.AMBIENT_FILE.read_text())
    entries = [e for name in data["kernels"][version] for e in data["lists"][name]]
    del entries[index]
    data["lists"] = {"all": entries}
    data["kernels"] = {version: ["all"]}
    trimmed = tmp_path / "ambient.yaml"
    trimmed.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(closed_world, "AMBIENT_FILE", trimmed)
    runs = [(SHELL_RUNS[version], "shell")] if steps == "shell" else \
        [(RUNS[version], "plan"), (SHELL_RUNS[version], "shell")] + [(name, "plan") for name in MORE_RUNS.get(version, ())]
    rule = closed_world.Ambient(pattern, "test", steps)
    seen = []
    for name, kind in runs:
        doc = recheck(recorded(name), reports=False)
        unexplained = [o for _, _, c in closed_checks(doc) if c.status is Status.FAIL for o in c.observed]
        seen += unexplained
        if any(rule.matches(field_of(o), kind) for o in unexplained):
            return
    pytest.fail(f"without {pattern!r} no pristine run fails on a field it matches: {seen[:12]}")


def field_of(text: str) -> snapshot_mod.Field:
    """'node1 vmstat nr_free_pages +3' -> the Field."""
    words = text.split()
    node = int(words[0][4:]) if words[0].startswith("node") else snapshot_mod.GLOBAL
    source, name = (words[1], " ".join(words[2:-1])) if node != snapshot_mod.GLOBAL else (words[0], " ".join(words[1:-1]))
    return snapshot_mod.Field(source, node, name)


def test_an_error_level_kernel_message_inside_a_step_is_the_kernels_failure(tmp_path):
    run = materialize(RUNS["v5.0"], tmp_path)
    log = run / "x86_64" / "move-pages-basic" / kmsg_mod.CAPTURE
    text = log.read_text()
    data = json.loads(next(l for l in text.splitlines() if l.startswith("RESULT "))[7:])
    begin = next(i for i, r in enumerate(data["records"]) if r[3] == "harness: harness step 2 begin")
    seq, usec = data["records"][begin][1], data["records"][begin][2]
    # what a kernel that corrupted a page's state would log (mm/page_alloc.c bad_page())
    data["records"].insert(begin + 1, [1, seq, usec + 10, "BUG: Bad page state in process mmdrive  pfn:1a2b3"])
    log.write_text("RESULT " + json.dumps(data) + "\n")
    doc = recheck(run, reports=False, only=["move-pages-basic"])
    outcome = outcome_of(doc, "x86_64", "move-pages-basic")
    (failed,) = [c for c in outcome.checks if c.status is Status.FAIL]
    assert (failed.step, failed.name) == ("kernel", KERNEL_LOG_CHECK)
    assert "Bad page state in process mmdrive" in failed.message and "during step 2" in failed.message
    assert outcome.blame is Blame.KERNEL and run_exit_code(doc) == 4


def test_the_recorded_kernel_logs_parse_with_levels_and_markers(tmp_path):
    run = materialize(RUNS["5.10"], tmp_path)
    records = kmsg_mod.parse((run / "arm64" / "entry-errors" / kmsg_mod.CAPTURE).read_text())
    assert records[0].seq == 0 and records[0].kernel and any("Linux version 5.10" in r.text for r in records[:5])
    marks = [r.text for r in records if r.text.startswith(kmsg_mod.MARK)]
    assert marks[0] == kmsg_mod.SCENARIO_BEGINS and "harness: harness step 1 begin" in marks
    assert all(r.level == 7 for r in records if r.text.startswith(kmsg_mod.MARK))
    assert kmsg_mod.errors(records) == []


def test_the_recorded_snapshot_files_parse_into_fields(tmp_path):
    run = materialize(RUNS["v5.0"], tmp_path)
    results = [json.loads(l[7:]) for l in (run / "x86_64" / "page-cache" / "workload.out").read_text().splitlines()
               if l.startswith("RESULT ")]
    fields = snapshot_mod.parse_files(next(r for r in results if r["cmd"] == "vmstat")["files"])
    nodes = {f.node for f in fields if f.source == "vmstat"}
    assert nodes == {0, 1}
    for node in nodes:
        # a node's meminfo is its vmstat in kB
        kb = fields[snapshot_mod.Field("meminfo", node, "FilePages")]
        assert kb == fields[snapshot_mod.Field("vmstat", node, "nr_file_pages")] * 4
        assert snapshot_mod.Field("numastat", node, "numa_hit") in fields
        assert snapshot_mod.Field("hugepages", node, "hugepages-2048kB free_hugepages") in fields
    assert any(f.source == "buddyinfo" for f in fields) and snapshot_mod.Field("meminfo", -1, "MemTotal") in fields


def test_ambient_lists_name_their_reason_per_version():
    for version in RUNS:
        entries = ambient_list(version)
        assert entries and all(len(e.why) > 20 for e in entries)
    with pytest.raises(Exception):
        ambient_list("4.19")


class _Guest:
    """A guest whose command fails, with a kernel log of the given records."""

    def __init__(self, records):
        self.records = records

    def run(self, command, timeout=0, stdin=None, check=False):
        from harness.vm.command import CommandResult

        if command == "mmdrive -c kmsg":
            return CommandResult(command, 0, "RESULT " + json.dumps({"cmd": "kmsg", "records": self.records}) + "\n", "", 0.1)
        return CommandResult(command, 1, "", "zram: Decompression failed!\n", 0.1)


def test_a_command_that_fails_while_the_kernel_logs_an_error_is_the_kernels_failure(tmp_path):
    from harness.errors import InfraError, KernelError
    from harness.scenarios.base import Captures, guest_command

    begins = [6, 10, 1000, kmsg_mod.SCENARIO_BEGINS]
    error = [3, 11, 2000, "zram: Decompression failed! err=-22, buf=0x0"]
    with pytest.raises(KernelError) as raised:
        guest_command(_Guest([begins, error]), Captures(tmp_path), "verify", "zfill verify")
    assert "Decompression failed" in raised.value.message and "verify" in raised.value.message
    # the same failure with a quiet kernel log is the machinery's
    with pytest.raises(InfraError):
        guest_command(_Guest([begins]), Captures(tmp_path), "verify", "zfill verify")
    # and a message from before the scenario began is not the scenario's
    with pytest.raises(InfraError):
        guest_command(_Guest([error, begins]), Captures(tmp_path), "verify", "zfill verify")


def test_a_failing_command_with_only_expected_kernel_messages_is_not_the_kernels(tmp_path):
    """A message the scenario declares (its plan's ``logs:``) or the
    version's ambient list allows does not turn a failing command into the
    kernel's failure; an undeclared one beside it still does."""
    import re

    from harness.errors import InfraError, KernelError
    from harness.scenarios.base import Captures, guest_command

    begins = [6, 10, 1000, kmsg_mod.SCENARIO_BEGINS]
    warned = [4, 11, 2000, "mmdrive: page allocation failure: order:0, mode:0x6000c0(GFP_KERNEL)"]
    declared = Captures(tmp_path, [re.compile(r"page allocation failure")])
    with pytest.raises(InfraError):
        guest_command(_Guest([begins, warned]), declared, "verify", "zfill verify")
    error = [3, 12, 3000, "zram: Decompression failed! err=-22, buf=0x0"]
    with pytest.raises(KernelError) as raised:
        guest_command(_Guest([begins, warned, error]), declared, "verify", "zfill verify")
    assert "Decompression failed" in raised.value.message
    # undeclared, the same allocation failure is the kernel's
    with pytest.raises(KernelError):
        guest_command(_Guest([begins, warned]), Captures(tmp_path), "verify", "zfill verify")


def edit_shell_snapshot(path, file: str, name: str, by: int) -> None:
    """Move ``name`` in ``file`` of a shell step's closing snapshot by ``by``."""
    text = path.read_text()
    head, sep, after = text.partition("== after")
    section = after.index(f"== {file}\n")
    end = after.find("\n== /", section + 1)
    end = len(after) if end < 0 else end
    part, count = re.subn(rf"^{name} (\d+)$", lambda m: f"{name} {int(m.group(1)) + by}", after[section:end], flags=re.M)
    assert count == 1, (file, name)
    path.write_text(head + sep + after[:section] + part + after[end:])


SHELL_EDITS = {
    # nothing in a compaction step may touch shmem
    "unexplained": ("/sys/devices/system/node/node1/vmstat", "nr_shmem", 3, "closed world: every field that moved is explained",
                    "node1 vmstat nr_shmem +3"),
    # a page compaction isolated and never put back
    "isolated": ("/sys/devices/system/node/node1/vmstat", "nr_isolated_anon", 2, "resting state", "node1 vmstat nr_isolated_anon"),
    # pages lost from the LRU beyond what the shell holds
    "footprint": ("/sys/devices/system/node/node0/vmstat", "nr_inactive_anon", -600, "the step's shell", "node0 vmstat nr_inactive_anon"),
}


@pytest.mark.parametrize("edit", sorted(SHELL_EDITS))
def test_a_shell_step_edited_to_move_what_it_may_not_fails_naming_the_field(edit, tmp_path):
    """On a recorded pristine compact_memory step (class-based, shell): a
    field nobody explains, a page left isolated, or LRU pages gone beyond the
    shell's footprint fail that step, naming the field."""
    file, name, by, check, named = SHELL_EDITS[edit]
    run = materialize(SHELL_RUNS["v5.0"], tmp_path)
    edit_shell_snapshot(run / "x86_64" / "compact-memory" / "compact-memory.out", file, name, by)
    doc = recheck(run, reports=False, only=["compact-memory"])
    failed = [c for c in outcome_of(doc, "x86_64", "compact-memory").checks if c.status is Status.FAIL]
    assert [c.step for c in failed] == ["compact_memory"] and failed[0].name.startswith(check), [(c.step, c.name) for c in failed]
    assert named in failed[0].message or named in str(failed[0].observed), failed[0].message


def edit_mmdrive_snapshot(path, index: int, file: str, name: str, by: int) -> None:
    """Move ``name`` in ``file`` of the ``index``-th whole snapshot mmdrive
    took (a RESULT line of cmd vmstat)."""
    lines = path.read_text().splitlines()
    seen = -1
    for i, line in enumerate(lines):
        if line.startswith("RESULT ") and '"cmd":"vmstat"' in line.replace(" ", ""):
            seen += 1
            if seen == index:
                data = json.loads(line[7:])
                text, count = re.subn(rf"^{name} (\d+)$", lambda m: f"{name} {int(m.group(1)) + by}", data["files"][file], flags=re.M)
                assert count == 1, (file, name)
                data["files"][file] = text
                lines[i] = "RESULT " + json.dumps(data)
                break
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("scenario,step,name", [
    ("numa-balancing", "touch-loop", "nr_anon_pages"),   # a page counted on the wrong node
    ("compact-unevictable", "compact_memory, compact_unevictable_allowed=1", "nr_mlock"),  # an mlocked page lost its count
    ("cma", "idle area", "nr_unevictable"),             # something joined an LRU
])
def test_a_quiet_class_step_whose_page_counters_moved_wrongly_fails_naming_them(scenario, step, name, tmp_path):
    """The class-based steps run inside one mmdrive process check every
    node's page counters exactly: one page more on node 0 fails the step."""
    run = materialize(QUIET_RUNS["v5.0"], tmp_path)
    out = run / "x86_64" / scenario / "workload.out"
    index = 3 if step.endswith("allowed=1") else 1  # the closing snapshot of the step
    edit_mmdrive_snapshot(out, index, "/sys/devices/system/node/node0/vmstat", name, 1)
    doc = recheck(run, reports=False, only=[scenario])
    failed = [c for c in outcome_of(doc, "x86_64", scenario).checks if c.status is Status.FAIL]
    assert [c.step for c in failed] == [step], [(c.step, c.name) for c in failed]
    assert f"node0 vmstat {name} +" in failed[0].message, failed[0].message


@pytest.mark.parametrize("version", sorted(OFFLINE_RUNS))
def test_an_offline_whose_pages_do_not_arrive_on_the_other_node_fails(version, tmp_path):
    """memory-offline: shmem pages that left the offlined node but were
    counted nowhere (node 0's nr_shmem short by 5) fail, naming the counter."""
    run = materialize(OFFLINE_RUNS[version], tmp_path)
    edit_mmdrive_snapshot(run / "x86_64" / "memory-offline" / "workload.out", 1, "/sys/devices/system/node/node0/vmstat",
                          "nr_shmem", -5)
    doc = recheck(run, reports=False, only=["memory-offline"])
    failed = [c for c in outcome_of(doc, "x86_64", "memory-offline").checks if c.status is Status.FAIL]
    assert failed and failed[0].name.startswith("node counters: every page of the block"), [c.name for c in failed]
    assert "nr_shmem" in str(failed[0].observed)


@pytest.mark.parametrize("kind", ["plan", "shell"])
def test_a_view_with_an_ambient_part_that_moved_alone_is_ambient_in_every_step_kind(kind):
    """MemAvailable read a moment apart from its parts (free memory among
    them) moved when none of them did: ambient, not unexplained (seen in a
    v5.0 arm zram compact, a shell step).  A view without an ambient part
    that moved alone in a plan step stays unexplained."""
    g = snapshot_mod.GLOBAL
    fields = [snapshot_mod.Field("vmstat", g, n) for n in ("nr_free_pages", "nr_active_file", "nr_inactive_file",
                                                            "nr_slab_reclaimable", "nr_kernel_misc_reclaimable",
                                                            "nr_active_anon")]
    avail = snapshot_mod.Field("meminfo", g, "MemAvailable")
    active_anon = snapshot_mod.Field("meminfo", g, "Active(anon)")
    acc = closed_world.account({avail: -60}, {}, ambient_list("v5.0"), fields + [avail], step_kind=kind)
    assert acc.how[avail][0] == closed_world.AMBIENT and not acc.unexplained
    if kind == "plan":
        acc = closed_world.account({active_anon: 8}, {}, ambient_list("v5.0"), fields + [active_anon], step_kind=kind)
        assert acc.unexplained == [active_anon]


def test_a_command_that_times_out_keeps_what_it_printed(tmp_path):
    """Evidence survives a timeout: the capture holds what the command
    printed before its time ran out, also when the machine judged the
    timeout the kernel's (the timeout is the error's cause)."""
    import json as json_mod

    from harness.errors import KernelError
    from harness.scenarios.base import Captures, guest_command
    from harness.vm.command import CommandTimeout

    class Stalls:
        def __init__(self, blame_kernel):
            self.blame_kernel = blame_kernel

        def run(self, command, timeout=0, stdin=None, check=False):
            timeout_error = CommandTimeout(f"command {command!r} did not finish within 1s",
                                           stdout="# Starting 5 tests\nok 1 split_pmd_thp\n", stderr="half a line")
            if not self.blame_kernel:
                raise timeout_error
            raise KernelError("the kernel holds split_huge_page (task 350)") from timeout_error

    for blame_kernel, expected in ((False, CommandTimeout), (True, KernelError)):
        captures = Captures(tmp_path / str(blame_kernel))
        with pytest.raises(expected):
            guest_command(Stalls(blame_kernel), captures, "ksft-split", "./split_huge_page_test", timeout=1)
        assert captures.load("ksft-split.out").endswith("ok 1 split_pmd_thp\n")
        assert captures.load("ksft-split.err") == "half a line"
        timing = json_mod.loads((captures.directory / "commands.jsonl").read_text())
        assert timing["name"] == "ksft-split" and timing["status"] is None
