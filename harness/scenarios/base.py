"""What a scenario is: preconditions, steps driven in the guest, raw
captures saved, an observation (JSON) that ``check`` turns into results
without the VM (so ``harness check RUN_DIR`` can redo it offline)."""
from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Protocol, Sequence

from harness.arches import Arch
from harness.arches import arch as lookup_arch
from harness.errors import HarnessError, InfraError, KernelError
from harness.model.kernels import KernelRules
from harness.model.kernels import kernel as model_kernel
from harness.observe import kmsg as kmsg_mod
from harness.observe import trace as trace_mod
from harness.observe import workload as workload_mod
from harness.result import CheckResult
from harness.vm.command import CommandResult, partial_output

#: Common preconditions (MODEL-SPEC section 7, P0), applied before each
#: scenario; each line tolerates a knob this kernel does not have.
P0 = (
    "echo 0 > /proc/sys/kernel/numa_balancing 2>/dev/null",
    "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null",
    "echo madvise > /sys/kernel/mm/transparent_hugepage/defrag 2>/dev/null",
    "echo 0 > /sys/kernel/mm/transparent_hugepage/khugepaged/defrag 2>/dev/null",
    "echo 0 > /proc/sys/vm/watermark_boost_factor 2>/dev/null",
    "echo 0 > /proc/sys/vm/compaction_proactiveness 2>/dev/null",
    "sync; echo 3 > /proc/sys/vm/drop_caches",
)
#: Read back what P0 set, for the record.
P0_READ = (
    "for f in /proc/sys/kernel/numa_balancing /sys/kernel/mm/transparent_hugepage/enabled "
    "/sys/kernel/mm/transparent_hugepage/defrag /proc/sys/vm/watermark_boost_factor "
    "/proc/sys/vm/compaction_proactiveness /proc/sys/vm/compact_unevictable_allowed; do "
    "[ -e $f ] && echo \"$f $(cat $f)\"; done"
)


@dataclass(frozen=True)
class Target:
    """The kernel and arch a run is about, as the checks need them."""

    arch: Arch
    rules: KernelRules
    kernel_version: str
    #: The built kernel's .config as {NAME: value}.
    config: Mapping[str, str]
    numa_nodes: int
    #: What the pipeline built for the scenarios that asked (``assets``):
    #: {"kselftest-vm": {"directory": ..., "programs": {...}}}.
    assets: Mapping[str, Any] = field(default_factory=dict)

    def has(self, option: str) -> bool:
        return self.config.get(option, "n") in ("y", "m")

    def as_dict(self) -> dict:
        return {
            "arch": self.arch.name,
            "model": self.rules.name,
            "kernel_version": self.kernel_version,
            "numa_nodes": self.numa_nodes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], config: Mapping[str, str]) -> "Target":
        return cls(lookup_arch(data["arch"]), model_kernel(data["model"]), data["kernel_version"], dict(config), data["numa_nodes"])


class Guest(Protocol):
    """What scenarios use of a Machine."""

    def run(self, command: str, timeout: float = ..., stdin: Optional[bytes] = ..., check: bool = ...) -> CommandResult: ...

    def upload(self, data: bytes, remote: str, mode: str = ...) -> None: ...


#: Each guest command's name, wall time and exit status, one JSON line per command.
TIMINGS = "commands.jsonl"


class Captures:
    """Raw captures of one scenario, saved as files in its directory."""

    def __init__(self, directory: Path, allowed_messages: Iterable[re.Pattern] = ()) -> None:
        self.directory = directory
        # kernel messages this scenario may cause (its own and the version's
        # ambient ones): a failing command with only these logged is not the
        # kernel's failure
        self.allowed_messages = list(allowed_messages)
        directory.mkdir(parents=True, exist_ok=True)
        self.files: list[str] = []

    def save(self, name: str, text: str) -> str:
        path = self.directory / name
        path.write_text(text)
        if name not in self.files:
            self.files.append(name)
        return name

    def load(self, name: str) -> str:
        return (self.directory / name).read_text()

    def timed(self, name: str, seconds: float, status: Optional[int]) -> None:
        """One guest command's wall time, as a line of commands.jsonl: where
        a scenario's time goes."""
        with (self.directory / TIMINGS).open("a") as out:
            out.write(json.dumps({"name": name, "seconds": round(seconds, 3), "status": status}) + "\n")
        if TIMINGS not in self.files:
            self.files.append(TIMINGS)


def guest_command(guest: Guest, captures: Captures, name: str, command: str, timeout: float = 600.0, stdin: Optional[bytes] = None,
                  check: bool = True) -> CommandResult:
    """Run a command, keep its output as ``name``.out (and .err) and its
    wall time in commands.jsonl."""
    start = time.monotonic()
    try:
        result = guest.run(command, timeout=timeout, stdin=stdin)
    except HarnessError as exc:
        partial = partial_output(exc)
        if partial is not None:  # evidence: what it printed before its time ran out
            captures.timed(name, time.monotonic() - start, None)
            captures.save(f"{name}.out", partial[0])
            if partial[1]:
                captures.save(f"{name}.err", partial[1])
        raise
    captures.timed(name, time.monotonic() - start, result.status)
    captures.save(f"{name}.out", result.stdout)
    if result.stderr:
        captures.save(f"{name}.err", result.stderr)
    if check and not result.ok:
        logged = kernel_errors(guest, captures.allowed_messages)
        if logged:
            # the command died of the kernel's trouble, not the machinery's
            raise KernelError(
                f"guest command for {name} failed with status {result.status} while the kernel logged "
                f"{kmsg_mod.first_line(logged)}",
                log_tail=[str(entry.record) for entry in logged[:10]],
                log_path=captures.directory / f"{name}.err",
            )
        raise InfraError(
            f"guest command for {name} failed with status {result.status}",
            log_tail=(result.stderr or result.stdout).strip().splitlines()[-10:],
            log_path=captures.directory / f"{name}.err",
        )
    return result


def kernel_errors(guest: Guest, allowed: Iterable[re.Pattern] = ()) -> list:
    """Error-level messages the kernel logged since the scenario began,
    less the ``allowed`` ones ([] when the log cannot be read)."""
    try:
        answer = guest.run("mmdrive -c kmsg", timeout=60)
    except HarnessError:
        return []
    return kmsg_mod.errors(kmsg_mod.parse(answer.stdout), allowed) if answer.ok else []


def collect_trace(guest: Guest, captures: Captures) -> None:
    """Read the trace buffer (trace.out) and then its per-CPU stats
    (trace-stats.out), in one guest command."""
    result = guest_command(guest, captures, "trace", trace_mod.READ_WITH_STATS, timeout=300)
    trace_text, stats = trace_mod.split_stats(result.stdout)
    captures.save("trace.out", trace_text)
    captures.save("trace-stats.out", stats)


def run_mmdrive(guest: Guest, captures: Captures, text: str, timeout: float, after: Sequence[tuple[str, str]] = ()) -> dict:
    """A class scenario's workload: one mmdrive script (kept as
    workload.script, its output workload.out; its failure is judged by
    ``workload_results``), then the ``after`` commands (name, command),
    then the trace.  The observation keys it adds."""
    captures.save("workload.script", text)
    guest_command(guest, captures, "workload", "mmdrive", stdin=text.encode(), timeout=timeout, check=False)
    for name, command in after:
        guest_command(guest, captures, name, command)
    collect_trace(guest, captures)
    return {"workload": "workload.out"}


def workload_evidence(captures: Captures) -> list[str]:
    """What a class scenario's checks are read from: the workload's output and the trace."""
    return [str(captures.directory / "workload.out"), str(captures.directory / "trace.out")]


def workload_results(ck, captures: "Captures") -> Optional[list]:
    """The results of the scenario's mmdrive script (``workload.out``), or
    None with the reason an ERROR on ``ck``: the workload failed, or the
    trace ring buffer lost events (every event-based check would be wrong)."""
    results, errors = workload_mod.parse(captures.load("workload.out"))
    if errors:
        ck.error("workload", f"the workload failed: {errors[0].get('message')} (command {errors[0].get('cmd')})")
        return None
    if trace_overran(ck, captures):
        return None
    return results


def trace_overran(ck, captures: Captures) -> bool:
    """An ERROR result, and True, when the ring buffer lost events: every
    event-based check of the scenario would be wrong."""

    lost = {cpu: n for cpu, n in trace_mod.overruns(captures.load("trace-stats.out")).items() if n}
    if lost:
        ck.error("trace buffer", f"the trace ring buffer overran ({lost}): raise the buffer size")
    return bool(lost)


def held_pids(text: str, cmd: str) -> list[int]:
    """The pids of held workloads (``fragment anon ... hold``, ``zfill ...
    hold``) from their RESULT lines."""

    return [int(r["pid"]) for r in workload_mod.parse(text)[0] if r.get("cmd") == cmd and r.get("pid")]


def verify_held(guest: Guest, captures: Captures, name: str, program: str, pids: Sequence[int], timeout: float = 600.0) -> None:
    """Ask held workloads to check every page they hold (SIGUSR1), and keep
    their answers as ``name``.out (one RESULT line each)."""
    if not pids:
        return
    parts = []
    for pid in pids:
        out = f"/tmp/{program}-{pid}.verify"
        parts.append(f"rm -f {out}; kill -USR1 {pid} && i=0; while [ ! -e {out} ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i+1)); done; "
                     f"cat {out}")
    guest_command(guest, captures, name, "; ".join(parts), timeout=timeout)


def intact_check(ck, captures: Captures, name: str, after: str, program: str, expected: int) -> None:
    """Exact: every page the held workloads wrote still holds its pattern
    after ``after`` (absent in runs recorded before this check)."""

    if not (captures.directory / f"{name}.out").exists():
        return
    answers = [r for r in workload_mod.parse(captures.load(f"{name}.out"))[0] if r.get("cmd") == f"{program}-verify"]
    if len(answers) != expected:
        ck.error(f"{program} pages intact", f"{len(answers)} of {expected} held {program} processes answered the verify request")
        return
    errors = sum(int(a["errors"]) for a in answers)
    bad = [a for a in answers if a["errors"]]
    ck.exact(f"{program} pages intact after {after}", 0, errors,
             "" if not errors else
             f"{errors} of {sum(int(a['pages']) for a in answers)} {program} pages lost their content after {after}; "
             + ", ".join(f"first bad page {a['first_bad']} of {a['errors']}" for a in bad))


def pattern_check(ck, name: str, verify: Optional[dict], after: str) -> None:
    """Exact: mmdrive's ``verify`` found every written page intact
    (nothing to check in runs recorded before the pattern check)."""
    if verify is None:
        return
    bad = [f"{b['region']}:{b['page']}" for b in verify.get("bad", [])]
    ck.exact(name, [], bad, "" if not verify.get("bad_count") else
             f"{verify['bad_count']} of {verify['checked']} pages lost their content {after}: "
             + ", ".join(bad[:8]) + (" ..." if verify["bad_count"] > 8 else ""))


class Scenario:
    """A scenario: subclasses set the class attributes and implement
    ``drive`` (in the guest) and ``check`` (pure, on the observation)."""

    name: str = ""
    experiment: str = ""
    title: str = ""
    #: Needs at least two NUMA nodes.
    needs_numa: bool = False
    #: Kernel options that must be =y (or =m).
    needs_config: Sequence[str] = ()
    #: Needs THP (arm only has it with LPAE).
    needs_thp: bool = False
    #: Guest memory this scenario wants (MiB) and extra kernel words.
    memory_mb: int = 2048
    append: Sequence[str] = ()
    #: Boot this scenario's guest itself instead of starting it from the
    #: run's saved guest of its shape (for a scenario whose checks read
    #: what the boot did).
    cold_boot: bool = False
    #: A scratch disk (/dev/vda) of this many MiB; 0: none.
    disk_mb: int = 0
    #: NUMA nodes with a CPU each and no memory (N_CPU, not N_MEMORY),
    #: numbered after the memory nodes; the guest gets a CPU more for each.
    memoryless_nodes: int = 0

    #: Scenarios that change global state run in their own VM anyway; this
    #: is how long a scenario may take in the guest.
    timeout: float = 600.0
    #: Things the pipeline must build before this scenario runs (see
    #: ``Target.assets``), e.g. "kselftest-vm".
    assets: Sequence[str] = ()

    def guest_memory_mb(self, target: Target) -> int:
        """The guest memory (MiB) this scenario wants on ``target``."""
        return self.memory_mb

    def extra_cpus(self, target: Target) -> int:
        """vCPUs this scenario wants on ``target`` beyond the usual two
        (and a memoryless node's own)."""
        return 0

    def skip_reason(self, target: Target) -> Optional[str]:
        if self.needs_numa and target.numa_nodes < 2:
            return f"needs two NUMA nodes; {target.arch.name} has {'no NUMA' if not target.arch.numa else target.numa_nodes}"
        missing = [opt for opt in self.needs_config if not target.has(opt)]
        if missing:
            return "kernel lacks " + ", ".join(f"CONFIG_{m}" for m in missing)
        if self.needs_thp and not target.has("TRANSPARENT_HUGEPAGE"):
            return "kernel has no transparent huge pages"
        return None

    def prepare(self, guest: Guest, captures: Captures) -> dict:
        guest_command(guest, captures, "preconditions", "; ".join(P0) + "; " + P0_READ, timeout=120)
        return {"preconditions": captures.load("preconditions.out").splitlines()}

    def drive(self, guest: Guest, target: Target, captures: Captures, qmp=None) -> dict:
        raise NotImplementedError

    def check(self, observation: Mapping[str, Any], target: Target) -> list[CheckResult]:
        raise NotImplementedError

    def metrics(self, observation: Mapping[str, Any], target: Target, captures: "Captures") -> list:
        """Performance metrics (``harness.perf.metric.Metric``) from the
        same captures the checks read; none by default."""
        return []

    def expected_messages(self, target: Target) -> list:
        """Patterns (compiled regexes) of the error-level kernel messages
        this scenario makes the kernel log on purpose."""
        return []

    #: The ``KernelRules`` fields this scenario's checks read (directly or
    #: through the model functions they call): between two kernel
    #: versions, the ones that differ are the model's account of why the
    #: scenario's values differ.
    rule_fields: Sequence[str] = ()

    def account(self, target: Target, other: Target) -> list[str]:
        """The model's account of why this scenario differs between two
        targets (for the cross-arch and cross-version views): the rules it
        reads that differ between the two kernels, each with the upstream
        change its comment names."""
        if target.rules.name == other.rules.name:
            return []
        from harness.model.kernels import KernelRules
        from harness.model.versions_doc import field_docs, first_sentence

        docs = field_docs(KernelRules)
        notes = []
        for name in self.rule_fields:
            mine, theirs = getattr(target.rules, name), getattr(other.rules, name)
            if mine != theirs:
                notes.append(f"{name} ({_short(mine)} on {target.rules.name}, {_short(theirs)} on {other.rules.name}): "
                             + first_sentence(docs.get(name, "")))
        return notes


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."


def quote(text: str) -> str:
    return shlex.quote(text)
