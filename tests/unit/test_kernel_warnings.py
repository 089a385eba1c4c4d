"""The kernel's warnings, on recorded logs (/dev/kmsg as mmdrive read it
in real runs): no recorded run of any version logged a warning its
scenario does not expect; warn_alloc()'s report, excused as a whole
where the scenario expects it, hides nothing after it; a warning the
kernel logs in a step (a pr_warn on a path that succeeded) fails the
check; each declared message is needed by a recorded run."""
import gzip
from pathlib import Path

import pytest

from harness.arches import arch as lookup_arch
from harness.check.closed_world import ambient_messages
from harness.model import kernels
from harness.observe import kmsg as kmsg_mod
from harness.scenarios import scenarios_for_run
from harness.scenarios.base import Target

RUNS = Path(__file__).resolve().parent.parent / "fixtures" / "runs"
VERSIONS = ("v5.0", "5.10", "6.12", "6.1")  # (6.12 before 6.1: the prefix "6.1" matches both)


def _version(run: str) -> str:
    return next(v for v in VERSIONS if run.startswith(v + "-"))


def _logs():
    """(run, arch, scenario, path) of every recorded kernel log."""
    out = []
    for path in sorted(RUNS.glob("*/*/*/kmsg.out*")):
        scenario, arch, run = path.parent.name, path.parent.parent.name, path.parent.parent.parent.name
        out.append((run, arch, scenario, path))
    return out


def _records(path: Path) -> list:
    data = path.read_bytes()
    return kmsg_mod.parse((gzip.decompress(data) if path.suffix == ".gz" else data).decode(errors="replace"))


def _target(run: str, arch: str) -> Target:
    version = _version(run)
    numbers = {"v5.0": "5.0.0", "5.10": "5.10.223", "6.1": "6.1.176", "6.12": "6.12.57"}[version]
    return Target(lookup_arch(arch), kernels.kernel(version), numbers, {}, 2)


def _allowed(run: str, arch: str, scenario: str) -> list:
    target = _target(run, arch)
    found = scenarios_for_run(RUNS / run).get(scenario)
    return ambient_messages(target.rules.name) + (list(found.expected_messages(target)) if found else [])


LOGS = _logs()


def test_there_are_recorded_logs_of_every_version():
    assert {_version(run) for run, *_ in LOGS} == set(VERSIONS)
    assert len(LOGS) >= 100


@pytest.mark.parametrize("run,arch,scenario,path", LOGS, ids=[f"{r}/{a}/{s}" for r, a, s, _ in LOGS])
def test_no_recorded_run_logged_an_unexpected_warning(run, arch, scenario, path):
    found = kmsg_mod.warnings(_records(path), _allowed(run, arch, scenario))
    assert not found, [str(f.record) for f in found]


def _insert_after(records: list, text: str, record: kmsg_mod.Record) -> list:
    at = next(i for i, r in enumerate(records) if r.text == text)
    return records[:at + 1] + [record] + records[at + 1:]


def _in_step(path: Path, step: str, text: str, level: int = kmsg_mod.WARNING) -> list:
    """The recorded log with ``text`` logged right after ``step`` began,
    as a kernel that warns there would have written it."""
    records = _records(path)
    begin = next(r for r in records if r.text == f"harness: harness {step} begin")
    return _insert_after(records, begin.text, kmsg_mod.Record(level, 0, begin.seq, begin.usec + 10, text))


MOVE_PAGES = RUNS / "6.12-x86_64+arm64" / "x86_64" / "move-pages-basic" / "kmsg.out"


def test_a_warning_logged_in_a_step_fails_and_says_where():
    records = _in_step(MOVE_PAGES, "step 1", "migrate: move_pages moved every page to node 1")
    found = kmsg_mod.warnings(records, _allowed("6.12-x86_64+arm64", "x86_64", "move-pages-basic"))
    assert [(f.record.text, f.step) for f in found] == [("migrate: move_pages moved every page to node 1", "step 1")]
    assert "during step 1" in kmsg_mod.first_line(found)
    # notices and info are not warnings; errors are the other check's
    for level in (5, 6, 3):
        assert kmsg_mod.warnings(_in_step(MOVE_PAGES, "step 1", "something", level)) == []


ENOMEM = RUNS / "6.1-x86_64+arm64" / "x86_64" / "enomem" / "kmsg.out"


def test_warn_allocs_report_is_excused_as_a_whole_and_hides_nothing_after_it():
    records = _records(ENOMEM)
    allowed = _allowed("6.1-x86_64+arm64", "x86_64", "enomem")
    # the report: one allocation failure, then dozens of warning-level records
    report = [r for r in records if r.level == kmsg_mod.WARNING and r.kernel]
    assert len(report) > 30 and any("page allocation failure" in r.text for r in report)
    assert kmsg_mod.warnings(records, allowed) == []
    # a warning a second after the report's last record is not part of it
    last = report[-1]
    late = kmsg_mod.Record(kmsg_mod.WARNING, 0, last.seq + 1, last.usec + kmsg_mod.REPORT_GAP_USEC + 1, "late warning")
    found = kmsg_mod.warnings(_insert_after(records, last.text, late), allowed)
    assert [f.record.text for f in found] == ["late warning"]


def test_the_kselftest_warning_is_excused_only_in_that_scenario():
    path = RUNS / "6.1-x86_64+arm64" / "x86_64" / "kselftest-vm" / "kmsg.out"
    records = _records(path)
    target = _target("6.1-x86_64+arm64", "x86_64")
    assert kmsg_mod.warnings(records, ambient_messages("6.1")) != []
    assert kmsg_mod.warnings(records, _allowed("6.1-x86_64+arm64", "x86_64", "kselftest-vm")) == []
    scenario = scenarios_for_run()["kselftest-vm"]
    assert [p.pattern for p in scenario.expected_messages(target)] == [
        r"__vm_enough_memory: pid: \d+, comm: virtual_address, no enough memory for the allocation"]


def test_the_mount_warning_is_needed_and_ambient_only_for_kernels_that_have_it():
    path = RUNS / "5.10-closed-world-x86_64+arm64" / "x86_64" / "page-cache" / "kmsg.out"
    found = kmsg_mod.warnings(_records(path))
    assert [f.record.text for f in found] == [
        "ext4 filesystem being mounted at /mnt/disk supports timestamps until 2038 (0x7fffffff)"]
    assert kmsg_mod.warnings(_records(path), ambient_messages("5.10")) == []
    # v5.0 predates mnt_warn_timestamp_expiry() (5.4): not ambient there
    assert not any(p.search(found[0].record.text) for p in ambient_messages("v5.0"))
