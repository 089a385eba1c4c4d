"""kselftest-vm: the kernel's own tools/testing/selftests/vm programs, as
v5.0's run_vmtests runs them (guest/kselftest-vm.yaml), built from the
tree of the kernel under test and run one by one in the guest.  Each test
is one check: its exit status (0 pass, 4 KSFT_SKIP, else fail), as
kselftest itself judges it; the model plays no part.  It is the anchor
the harness's own scenarios are measured against (bench/teeth.py)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Optional

from harness.check import Checker
from harness.errors import InfraError
from harness.kernel.kselftest import KSFT_SKIP, load_prepare, tests_for
from harness.result import CheckResult
from harness.scenarios.base import Captures, Guest, Scenario, Target, guest_command
from harness.vm.cmdline import MachineSpec

GUEST_DIR = "/tmp/ksft"  # world-readable: on-fault-limit runs as nobody
_STATUS = re.compile(r"^KSFT-STATUS (\d+)$", re.M)


class KselftestVm(Scenario):
    name = "kselftest-vm"
    title = "the kernel's own kselftest vm programs, as run_vmtests runs them"
    needs_config = ("HUGETLBFS",)
    #: The pipeline builds these before the scenario runs (Target.assets).
    assets = ("kselftest-vm",)
    timeout = 900.0
    #: Versions whose programs pass in a 1 GiB guest (measured, v5.0 on
    #: x86_64 and arm64): compaction_test compacts the whole of memory,
    #: so it takes half the time there (8 s on TCG at 2 GiB).  The other
    #: versions run more programs (hugetlb pools of 256 huge pages,
    #: uffd-stress, ksm, cow) and keep the 2 GiB guest.
    small_guest_versions = frozenset({(5, 0)})

    def guest_memory_mb(self, target: Target) -> int:
        return 1024 if _version(target) in self.small_guest_versions else self.memory_mb

    def extra_cpus(self, target: Target) -> int:
        """The migration test moves pages while a thread per other CPU
        touches them: it wants 3 CPUs (2 threads) and skips itself with 2."""
        needed = max((t.min_cpus for t in tests_for(_version(target))), default=0)
        return max(0, needed - MachineSpec.cpus)

    def expected_messages(self, target: Target) -> list:
        """The kernel messages the tests that run on this version make the
        kernel log on purpose (``messages:`` in the recipe)."""
        return [re.compile(pattern) for test in tests_for(_version(target)) for pattern in test.messages]

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        observation = self.prepare(guest, captures)
        built = target.assets.get("kselftest-vm")
        if not built or built.get("error"):
            raise InfraError(f"the kselftest vm programs were not built: {(built or {}).get('error', 'nothing was built')}")
        tests = tests_for(_version(target))
        programs = built["programs"]
        guest_command(guest, captures, "ksft-mkdir", f"mkdir -p {GUEST_DIR} && chmod 755 {GUEST_DIR}")
        for program, problem in sorted(programs.items()):
            if problem is None:
                guest.upload(Path(built["directory"], program).read_bytes(), f"{GUEST_DIR}/{program}")
        prepare = load_prepare()
        if prepare:
            guest_command(guest, captures, "ksft-prepare", f"cd {GUEST_DIR}; {prepare}", timeout=300, check=False)
        ran = []
        for test in tests:
            elsewhere = test.not_run_on(target.arch.name)
            if elsewhere:
                ran.append({"name": test.name, "status": None, "not_on_arch": elsewhere})
                continue
            missing = test.missing_config(target.arch.name, target.has)
            if missing:
                ran.append({"name": test.name, "status": None, "missing_config": missing})
                continue
            if programs.get(test.program, ["not in this tree's selftests/vm"]) is not None:
                ran.append({"name": test.name, "status": None,
                            "not_built": programs.get(test.program) or ["not in this tree's selftests/vm"]})
                continue
            entry = run_test(guest, captures, test, target.kernel_version)
            ran.append(entry)
        observation["kselftest"] = ran
        # the selftests' own bugs the harness fixed in its copy of their source
        observation["source_fixes"] = built.get("source_fixes", {})
        return observation

    def check(self, observation: Mapping[str, Any], target: Target, captures: Optional[Captures] = None) -> list[CheckResult]:
        assert captures is not None
        ck = Checker(self.name, "run_vmtests")
        tests = {t.name: t for t in tests_for(_version(target))}
        for test in observation["kselftest"]:
            evidence = [str(captures.directory / test["output"])] if test.get("output") else []
            if test.get("output"):  # the status as the raw capture has it (harness check redoes it from there)
                found = _STATUS.findall(captures.load(test["output"]))
                test = dict(test, status=int(found[-1]) if found else None)
            if test.get("not_on_arch"):
                ck.skip(test["name"], test["not_on_arch"])
            elif test.get("missing_config"):
                ck.skip(test["name"], "kernel lacks " + ", ".join(f"CONFIG_{o}" for o in test["missing_config"]))
            elif test.get("not_built"):
                ck.skip(test["name"], f"not built for {target.arch.name}: {' '.join(test['not_built'])[-200:]}")
            elif test["status"] == KSFT_SKIP:
                ck.skip(test["name"], "the test skipped itself (KSFT_SKIP): " + _last_line(captures, test))
            elif test["status"] is None:
                ck.error(test["name"], "no exit status came back", evidence=evidence)
            else:
                recipe = tests.get(test["name"])
                if recipe and test.get("reruns"):
                    fixes = observation.get("source_fixes", {}).get(recipe.program, [])
                    _judge_reruns(ck, recipe, test, target, captures, evidence,
                                  f"; {recipe.program} built with the harness's source fixes: {', '.join(fixes)}" if fixes else "")
                    continue
                why = recipe.excused(target.kernel_version, test["status"], _output(captures, test)) \
                    if test["status"] and recipe else ""
                if why:
                    ck.skip(test["name"], f"known to fail on {target.kernel_version} ({why}): exit status {test['status']}: "
                            + _last_line(captures, test))
                    continue
                message = "" if test["status"] == 0 else f"exit status {test['status']}: " + _last_line(captures, test)
                fixes = observation.get("source_fixes", {}).get(recipe.program if recipe else "", [])
                if fixes:
                    message += ("; " if message else "") + f"{recipe.program} built with the harness's source fixes: {', '.join(fixes)}"
                known = recipe.known_failure(target.kernel_version)[0] if recipe else ""
                if test["status"] and known:
                    message += f" (not the known failure of this version: {known})"
                ck.exact(test["name"], 0, test["status"], message, evidence=evidence)
        return ck.results


def run_test(guest: Guest, captures: Captures, test, kernel_version: str) -> dict:
    """Run one test; a failure that is this version's known flake runs
    again (the failing case where the program can be told), until a run
    again passes or the flake's attempts are spent.  Its observation entry."""
    result = guest_command(guest, captures, f"ksft-{test.name}", test.command(GUEST_DIR), timeout=test.timeout + 60, check=False)
    entry = {"name": test.name, "status": _status(result.stdout), "seconds": round(result.elapsed, 1),
             "output": f"ksft-{test.name}.out"}
    rerun = test.flake(kernel_version, entry["status"], _output(captures, entry))
    if rerun is None:
        return entry
    entry["reruns"] = []
    while len(entry["reruns"]) < rerun.attempts:
        name = f"ksft-{test.name}-again{len(entry['reruns']) + 1}"
        again = guest_command(guest, captures, name, test.command(GUEST_DIR, rerun.args), timeout=test.timeout + 60, check=False)
        entry["reruns"].append({"args": list(rerun.args), "status": _status(again.stdout), "output": f"{name}.out",
                                "seconds": round(again.elapsed, 1)})
        if rerun.passed(entry["reruns"][-1]["status"], _output(captures, entry["reruns"][-1])):
            break
    return entry


def _judge_reruns(ck: Checker, recipe, test: dict, target: Target, captures: Captures, evidence: list, fixed: str = "") -> None:
    """A test that failed as its version's known flake and was run again:
    it passes only when the first failure is the flake (its signature, from
    the capture) and a run again passed (exit 0, and its output shows the
    failing case passing); else it fails with every run's status."""
    rerun = recipe.flake(target.kernel_version, test["status"], _output(captures, test))
    runs = []
    for again in test["reruns"]:
        found = _STATUS.findall(captures.load(again["output"])) if again.get("output") else []
        runs.append((again, int(found[-1]) if found else None))
        evidence.append(str(captures.directory / again["output"]))
    first = f"exit status {test['status']}: " + _last_line(captures, test)
    passed = [k for k, (again, status) in enumerate(runs, 1)
              if rerun is not None and rerun.passed(status, _output(captures, again))]
    if rerun is not None and passed:
        k = passed[0]
        ck.exact(test["name"], 0, runs[k - 1][1], f"failed as this version's known flake ({rerun.why}): {first}; passed when run again"
                 f" ({' '.join(runs[k - 1][0].get('args') or []) or 'the whole program'}, run {k} of {len(runs)}){fixed}",
                 evidence=evidence)
        return
    statuses = ", ".join("none" if s is None else str(s) for _, s in runs)
    why = "not its version's known flake" if rerun is None else f"run again {len(runs)} times, exit statuses {statuses}"
    ck.exact(test["name"], 0, test["status"], f"{first} ({why}){fixed}", evidence=evidence)


def _status(stdout: str) -> Optional[int]:
    found = _STATUS.findall(stdout)
    return int(found[-1]) if found else None


def _version(target: Target) -> Optional[tuple]:
    """(major, minor) of the kernel under test, None when unreadable."""
    try:
        return tuple(int(x) for x in target.kernel_version.split("-")[0].split(".")[:2])
    except ValueError:
        return None


def _output(captures: Captures, test: dict) -> str:
    """What the test printed: its stdout and stderr captures."""
    text = []
    for name in (test.get("output") or "", (test.get("output") or "").replace(".out", ".err")):
        try:
            text.append(captures.load(name)) if name else None
        except OSError:
            pass
    return "\n".join(text)


def _last_line(captures: Captures, test: dict) -> str:
    try:
        lines = [line for line in captures.load(test["output"]).splitlines() if line.strip() and not line.startswith("KSFT-")]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""
