"""The run: build, image, and for every arch and scenario a fresh guest,
the scenario driven, its captures saved, checked against the model.

The run directory is created first and ``run.json`` written at once, then
completed in ``finally``, so a crash still leaves evidence.  ``recheck``
redoes every check offline from a saved run directory."""
from __future__ import annotations

import datetime as _dt
import json
import platform
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Collection, Optional, Sequence, Tuple

from harness import __version__
from harness.arches import arch as lookup_arch
from harness.check.closed_world import ambient_messages
from harness.errors import HarnessError, UserError
from harness.host import proc
from harness.host.cache import Cache, disk_full, drop_scratch, is_disk_full, owned_scratch, sweep_stale
from harness.host.progress import Steps
from harness.host.rundir import (
    EncodedParts,
    mark_abandoned,
    new_run_dir,
    runs_root,
    unusable_runs_root,
    write_json,
)
from harness.host.rundir import owner as rundir_owner
from harness.image.initramfs import ImageBuilder, ImageRequest
from harness.kernel import compat, kconfig
from harness.kernel.build import Builder, BuildRequest, layers
from harness.kernel.kselftest import SelftestBuilder
from harness.kernel.source import SourceRequest, SourceResolver
from harness.model.kernels import kernel_for_version
from harness.observe import kmsg as kmsg_mod
from harness.report import write_all
from harness.report.model import run_exit_code, run_status
from harness.result import (
    CONSOLE_CHECK,
    KERNEL_LOG_CHECK,
    KERNEL_WARN_CHECK,
    CheckKind,
    CheckResult,
    ScenarioOutcome,
    Status,
)
from harness.scenarios import Scenario, Target, scenarios_for_run, select
from harness.scenarios.base import Captures
from harness.scenarios.plan.scenario import load_plan_file
from harness.vm.console import scan
from harness.vm.machine import BuildOverlap, Machine, MachineRequest, SavedGuest, build_overlap, kill_all


@dataclass(frozen=True)
class RunRequest:
    source: SourceRequest
    arches: Tuple[str, ...]
    scenarios: Tuple[str, ...] = ()
    fragments: Tuple[Path, ...] = ()
    options: Tuple[str, ...] = ()
    debug: bool = False
    jobs: Optional[int] = None
    quiet: bool = False
    runs_root: Optional[Path] = None
    accel: Optional[str] = None
    #: Stop at the first failed or errored scenario.
    fail_fast: bool = False
    reproducer: str = ""
    #: A developer's own plan files, run with the built-in scenarios or,
    #: with ``only_plans``, instead of them.
    plans: Tuple[Path, ...] = ()
    only_plans: bool = False
    #: The run directory's name under ``runs_root`` (a series stage); by
    #: default a dated name.
    run_name: Optional[str] = None
    #: Guests at once: scenarios (of every arch) run in up to this many
    #: fresh guests in parallel; 1 runs them one after the other.
    vms: int = 1
    #: Run the suite this many times, each scenario in a fresh guest every
    #: time (the performance metrics' samples): repeat k > 1 of scenario S
    #: is recorded as ``S@k`` (its directory too).
    repeat: int = 1
    #: Boot every scenario's guest (the old way); by default the guests of
    #: one shape (memory, NUMA, disk, kernel words) used more than once in
    #: an arch's run start from one saved guest of that shape (QEMU
    #: migration to a file, -incoming), each still fresh and identical.
    cold_boot: bool = False
    #: Build the next arch's kernel while the guests of the arches before
    #: it run: None decides by the CPUs the guests leave (build_overlap),
    #: True asks for it (still refused where no CPU is spare), False never.
    overlap_builds: Optional[bool] = None


def repeat_key(name: str, repeat: int) -> str:
    """The results key (and directory) of repeat ``repeat`` of a scenario."""
    return name if repeat == 1 else f"{name}@{repeat}"


def base_name(key: str) -> str:
    """The scenario a results key is a repeat of."""
    return key.split("@", 1)[0]


@dataclass
class _ArchRun:
    """One arch of a run, ready for its scenarios."""

    name: str
    target: Target
    kernel: Path
    initrd: Path
    directory: Path
    info: dict
    started: float


@dataclass
class RunOutcome:
    run_dir: Path
    status: Status
    doc: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return run_exit_code(self.doc)


def _versions() -> dict:
    def first_line(argv):
        try:
            out = proc.run(argv, timeout=10, separate_stderr=True)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return None

    return {
        "harness": __version__,
        "python": platform.python_version(),
        "host": f"{platform.system()} {platform.release()} {platform.machine()}",
        "qemu_x86_64": first_line(["qemu-system-x86_64", "--version"]),
        "qemu_aarch64": first_line(["qemu-system-aarch64", "--version"]),
    }


class Pipeline:
    def __init__(self, request: RunRequest, stream=None) -> None:
        self.request = request
        self.stream = stream or sys.stderr
        self.echo = proc.stderr_echo(request.quiet)
        self.doc: dict = {}
        self.run_dir: Optional[Path] = None
        #: Where the run is (build, image, boot, scenario, report) and on
        #: what, for the record of an interrupted run.
        self.stage = "setup"
        self.where = ""
        #: The steps under way (image, boot, scenario): spinners on a tty.
        self.steps = Steps(self.stream, request.quiet)
        #: Saved guests per machine shape (None: its boot could not be
        #: saved, so its scenarios boot), how many scenarios of each shape
        #: the run has, and where the states are kept (gone with the run).
        self._saved: dict = {}
        self._shape_uses: Counter = Counter()
        self._saved_numbers: Counter = Counter()
        self._saved_lock = threading.Lock()
        self._shape_locks: dict = {}
        self._saved_root: Optional[Path] = None
        #: The results and run records, written by the guests' threads while
        #: the main thread builds the next arch (overlapped builds).
        self._doc_lock = threading.RLock()

    def say(self, text: str) -> None:
        self.steps.line(text)

    # ------------------------------------------------------------------
    def _validate(self) -> tuple[list, list, list]:
        """Every input the user gave, checked before the run directory
        exists: a user error leaves nothing behind."""
        req = self.request
        for name in req.arches:
            lookup_arch(name)  # unknown arch
        plans = [load_plan_file(path) for path in req.plans]  # a bad plan
        patches = req.source.patch_list()  # a missing patch
        SourceResolver(Cache()).check_spec(req.source)  # an unknown kernel source
        if req.jobs is not None and req.jobs < 1:
            raise UserError(f"{req.jobs} make jobs", hint="give at least 1, or leave -j out for one per CPU")
        if req.vms < 1:
            raise UserError(f"{req.vms} guests at once", hint="give --vms 1 or more")
        for name in req.arches:  # unreadable fragments, malformed options, a required option turned off
            layers(BuildRequest(req.source, name, req.fragments, req.options, req.debug), lookup_arch(name), compat.AppliedFixes(()))
        scenarios = select(req.scenarios, plans, req.only_plans)
        if not scenarios:
            raise UserError("no scenario to run", hint="drop --only-plans or give --plan FILE")
        return scenarios, plans, patches

    def run(self) -> RunOutcome:
        req = self.request
        scenarios, plans, patches = self._validate()
        run_dir = self._run_dir()
        self.run_dir = run_dir
        self.doc = {"run_id": run_dir.name, "arches": {}, "differences": {}}
        # results.json is written again after each scenario: each
        # scenario's entry (a new object each time it is recorded) is
        # encoded once
        self._results_parts = EncodedParts(("arches", "*", "scenarios", "*"))
        # the saved-guest states of a run killed with SIGKILL (~80 MiB a
        # shape) go now, not at the next run that saves a guest: a run of
        # one scenario may never save one
        sweep_stale(Cache().root / "saved-guests")
        info = {
            "schema": 1,
            "status": "running",
            "owner": rundir_owner(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "inputs": {
                "kernel": req.source.spec,
                "tarball": str(req.source.tarball) if req.source.tarball else None,
                "patches": [p.as_dict() for p in patches],
                "fragments": [str(p) for p in req.fragments],
                "options": list(req.options),
                "arches": list(req.arches),
                "scenarios": [s.name for s in scenarios],
                "plans": [str(p) for p in req.plans],
                "only_plans": req.only_plans,
                "debug": req.debug,
                "repeat": req.repeat,
            },
            "versions": _versions(),
            "reproducer": req.reproducer,
            "arches": {},
        }
        write_json(run_dir / "run.json", info)
        for killed in mark_abandoned(run_dir.parent, f"run {run_dir.name}"):
            if killed != run_dir:
                self.say(f"[run] {killed}: its harness was killed before it finished (run.json now says so)")
        if req.plans:
            (run_dir / "plans").mkdir(exist_ok=True)
            for plan, path in zip(plans, req.plans):
                (run_dir / "plans" / f"{plan.name}.yaml").write_text(Path(path).read_text())
        self.say(f"[run] {run_dir}")
        if req.vms > 1:
            self.say(f"[run] up to {req.vms} guests at once")
        overlap = build_overlap(len(req.arches), req.vms, asked=req.overlap_builds)
        info["builds"] = {"overlap": overlap.overlap, "jobs": overlap.jobs or None, "why": overlap.why}
        if len(req.arches) > 1:
            self.say(f"[run] builds: {overlap.why}")
        try:
            if req.vms > 1 or overlap.overlap:
                self._run_parallel(scenarios, run_dir, info, overlap)
            else:
                for arch_name in req.arches:
                    info["arches"][arch_name] = self._run_arch(arch_name, scenarios, run_dir / arch_name)
                    write_json(run_dir / "run.json", info)
                    if req.fail_fast and run_status(self.doc) >= Status.FAIL:
                        break
        except KeyboardInterrupt:
            info["status"] = "interrupted"
            info["error"] = f"interrupted during the {self.stage} stage" + (f" ({self.where})" if self.where else "")
            raise
        except HarnessError as exc:
            info["status"] = f"{exc.blame} error"
            info["error"] = exc.render()
            raise
        except BaseException as exc:
            if is_disk_full(exc):
                error = disk_full(Path(exc.filename) if exc.filename else run_dir)  # type: ignore[attr-defined]
                info["status"] = "infra error"
                info["error"] = error.render()
                raise error from None
            _crashed(info, run_dir, exc)
            raise
        finally:
            self.steps.close()
            if self._saved_root is not None:
                drop_scratch(self._saved_root)
            # A second Ctrl-C (or a SIGTERM) must not cut the reports short:
            # the signals wait until they are written.
            with proc.signals_deferred():
                self.stage, self.where = "report", ""
                try:
                    self._differences(scenarios)
                    status = run_status(self.doc)
                    if info["status"] == "running":
                        info["status"] = status.name
                    info["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
                    write_json(run_dir / "run.json", info)
                    write_json(run_dir / "results.json", self.doc)
                    write_all(run_dir, self.doc)
                except Exception as exc:  # a bug of the report code: the records say so, the traceback stays
                    _crashed(info, run_dir, exc)
                    write_json(run_dir / "run.json", info)
                    raise
        return RunOutcome(run_dir, status, self.doc)

    def _run_dir(self) -> Path:
        req = self.request
        if req.run_name is None:
            return new_run_dir("run", "+".join(req.arches), req.runs_root)
        path = runs_root(req.runs_root) / req.run_name
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise UserError(f"run directory {path} already exists", hint="give another --runs directory") from None
        except OSError as exc:
            raise unusable_runs_root(path.parent, exc) from None
        return path.resolve()

    # ------------------------------------------------------------------
    def _instances(self, scenarios: Sequence[Scenario]) -> list[tuple[Scenario, str]]:
        """(scenario, results key) in running order: the suite once per
        repeat (a repeat's guests are as fresh as the first's)."""
        return [(s, repeat_key(s.name, r)) for r in range(1, self.request.repeat + 1) for s in scenarios]

    def _machine_request(self, scenario: Scenario, target: Target, kernel: Path, initrd: Path) -> MachineRequest:
        return MachineRequest(
            arch=target.arch.name, kernel=kernel, initrd=initrd, memory_mb=scenario.guest_memory_mb(target),
            numa_nodes=target.numa_nodes, append=tuple(scenario.append), accel=self.request.accel, disk_mb=scenario.disk_mb,
            memoryless_nodes=scenario.memoryless_nodes,
            cpus=MachineRequest.cpus + scenario.memoryless_nodes + scenario.extra_cpus(target),
        )

    def _count_shapes(self, ctx: "_ArchRun", instances: Sequence[tuple]) -> None:
        """How many of the arch's guests each machine shape has: a shape
        of one guest boots it (saving and restoring would cost more)."""
        for scenario, _ in instances:
            if not scenario.skip_reason(ctx.target) and not scenario.cold_boot:
                self._shape_uses[self._machine_request(scenario, ctx.target, ctx.kernel, ctx.initrd).shape()] += 1

    def _saved_guest(self, request: MachineRequest, arch_dir: Path) -> Optional[SavedGuest]:
        """The saved guest of this request's shape, booted and saved the
        first time a scenario asks (one boot per shape and arch; its
        console, QMP and machine records in ``ARCH/saved-guests/N``); None
        when the shape boots each time."""
        shape = request.shape()
        if self.request.cold_boot or self._shape_uses[shape] < 2:
            return None
        with self._saved_lock:
            lock = self._shape_locks.setdefault(shape, threading.Lock())
        with lock:
            if shape in self._saved:
                return self._saved[shape]
            with self._saved_lock:  # (two shapes may be saved at once with --vms 2)
                self._saved_numbers[request.arch] += 1
                number = self._saved_numbers[request.arch]
                if self._saved_root is None:
                    # under the cache, owned by this run: a run killed with
                    # SIGKILL leaves its states (~80 MiB a shape) to the
                    # next run's sweep, not to /tmp for ever
                    self._saved_root = owned_scratch(Cache().dir("saved-guests"), "run")
            where = arch_dir / "saved-guests" / str(number)
            started = time.monotonic()
            saved: Optional[SavedGuest] = None
            try:
                with Machine(shape, where, echo=None) as machine:
                    booted = machine.times.as_dict().get("ssh_s")
                    saved = machine.save(self._saved_root / request.arch / str(number))
                self.say(f"[{request.arch}] saved guest {number} ({request.memory_mb} MiB, "
                         f"{request.numa_nodes if request.numa_nodes is not None else 'default'} nodes"
                         + (f", {request.disk_mb} MiB disk" if request.disk_mb else "")
                         + (f", {' '.join(request.append)}" if request.append else "")
                         + f"): booted in {booted:.1f}s, saved in {time.monotonic() - started - (booted or 0):.1f}s; "
                         f"{self._shape_uses[shape]} scenarios start from it")
            except HarnessError as exc:
                self.say(f"[{request.arch}] saved guest {number}: could not be made ({exc.message}); its scenarios boot")
                where.mkdir(parents=True, exist_ok=True)  # (an error before the machine made it)
                (where / "error.txt").write_text(exc.render() + "\n")
            self._saved[shape] = saved
            return saved

    def _run_arch(self, arch_name: str, scenarios: Sequence[Scenario], arch_dir: Path) -> dict:
        ctx = self._prepare_arch(arch_name, scenarios, arch_dir)
        instances = self._instances(scenarios)
        self._count_shapes(ctx, instances)
        order = [key for _, key in instances]
        for scenario, key in instances:
            outcome = self._run_scenario(scenario, ctx.target, ctx.kernel, ctx.initrd, arch_dir / key)
            self._record(ctx, key, outcome, order)
            if self.request.fail_fast and outcome.status in (Status.FAIL, Status.ERROR):
                break
        return self._finish_arch(ctx)

    def _prepare_arch(self, arch_name: str, scenarios: Sequence[Scenario], arch_dir: Path,
                      beside_guests: Optional[BuildOverlap] = None) -> "_ArchRun":
        """Build the kernel and the image, find the target and build the
        scenarios' assets: what every scenario of the arch runs on.
        ``beside_guests``: guests of other arches run meanwhile, so the build
        takes only the CPUs they leave, and says its progress in lines."""
        req = self.request
        arch_dir.mkdir(parents=True, exist_ok=True)
        arch_doc: dict = {"target": {"arch": arch_name}, "scenarios": {}}
        with self._doc_lock:
            self.doc["arches"][arch_name] = arch_doc
        started = time.monotonic()
        self.stage, self.where = "build", arch_name
        jobs = req.jobs
        if beside_guests is not None:
            jobs = min(jobs or beside_guests.jobs, beside_guests.jobs)
            self.say(f"[build {arch_name}] beside the running guests, -j{jobs}")
        build = Builder(echo=self.echo, stream=self.stream if beside_guests is None else self.steps.writer()).build(
            BuildRequest(req.source, arch_name, req.fragments, req.options, req.debug, jobs=jobs, quiet=req.quiet)
        )
        self.stage = "image"
        self.steps.start(f"image {arch_name}", f"[image {arch_name}] building the guest image")
        try:
            image = ImageBuilder(echo=self.echo, stream=self.steps.writer()).build(ImageRequest(arch_name, req.source.offline, req.quiet))
        finally:
            image_s = self.steps.finish(f"image {arch_name}")
        if not image.cached:
            self.say(f"[image {arch_name}] ready in {image_s}s")
        shutil.copyfile(build.config, arch_dir / "kernel.config")
        (arch_dir / "build.json").write_text(json.dumps(build.metadata, indent=2) + "\n")
        version = build.kernel_version.split("-")[0].split(".")
        rules = kernel_for_version(int(version[0]), int(version[1]))
        config = kconfig.parse_dotconfig(build.config.read_text())
        the_arch = lookup_arch(arch_name)
        target = Target(the_arch, rules, build.kernel_version, config, 2 if the_arch.numa and config.get("NUMA") == "y" else 0)
        with self._doc_lock:
            arch_doc["target"] = dict(target.as_dict(), kernel=str(build.image), initrd=str(image.path), build_key=build.key)
        if rules.version != (int(version[0]), int(version[1])):
            arch_doc["target"]["model_note"] = (
                f"the model has no data for Linux {version[0]}.{version[1]}: predictions use its {rules.name} rules, "
                "so a failed check may be a difference between kernel versions")
            self.say(f"[{arch_name}] note: {arch_doc['target']['model_note']}")
        assets = self._assets(scenarios, build, the_arch, target)
        if assets:
            target = replace(target, assets=assets)
        info = {"kernel": str(build.image), "kernel_version": build.kernel_version, "model": rules.name,
                "build": str(build.directory), "image": str(image.path), "scenarios": {}}
        return _ArchRun(arch_name, target, build.image, image.path, arch_dir, info, started)

    def _record(self, ctx: "_ArchRun", name: str, outcome: ScenarioOutcome, order: Sequence[str]) -> None:
        """A finished scenario into the results, in the suite's order
        whichever order the scenarios finished in."""
        with self._doc_lock:
            self._record_locked(ctx, name, outcome, order)

    def _record_locked(self, ctx: "_ArchRun", name: str, outcome: ScenarioOutcome, order: Sequence[str]) -> None:
        arch_doc = self.doc["arches"][ctx.name]
        scenarios = dict(arch_doc["scenarios"], **{name: outcome.as_dict()})
        arch_doc["scenarios"] = {n: scenarios[n] for n in order if n in scenarios}
        ctx.info["scenarios"][name] = {"status": outcome.status.name, "elapsed_s": outcome.elapsed_s, "accel": outcome.accel,
                                       "qemu_argv": outcome.qemu_argv}
        ctx.info["scenarios"] = {n: ctx.info["scenarios"][n] for n in order if n in ctx.info["scenarios"]}
        write_json(self.run_dir / "results.json", self.doc, self._results_parts)

    def _finish_arch(self, ctx: "_ArchRun") -> dict:
        arch_doc = self.doc["arches"][ctx.name]
        ctx.info["elapsed_s"] = round(time.monotonic() - ctx.started, 1)
        arch_doc["target"]["accel"] = next((e["accel"] for e in arch_doc["scenarios"].values() if e.get("accel")), None)
        arch_doc["elapsed_s"] = ctx.info["elapsed_s"]
        return ctx.info

    def _run_parallel(self, scenarios: Sequence[Scenario], run_dir: Path, info: dict,
                      overlap: Optional[BuildOverlap] = None) -> None:
        """Every arch's kernel and image first, then the scenarios of all
        arches in up to ``vms`` fresh guests at once; with ``overlap``, the
        first arch's guests start as soon as it is built, and each next
        arch builds meanwhile on the CPUs the guests leave.  Results,
        reports and the run directory are those of a serial run; Ctrl-C
        kills every guest (the workers then unwind through their own
        shutdown) and the scenarios that were running say they were
        interrupted."""
        req = self.request
        instances = self._instances(scenarios)
        order = [key for _, key in instances]
        lock = self._doc_lock
        stop = threading.Event()
        running: dict = {}
        contexts: list = []

        def work(ctx: _ArchRun, scenario: Scenario, key: str) -> Optional[ScenarioOutcome]:
            if stop.is_set():
                return None
            with lock:
                running[(ctx.name, key)] = time.monotonic()
            try:
                outcome = self._run_scenario(scenario, ctx.target, ctx.kernel, ctx.initrd, ctx.directory / key)
            finally:
                with lock:
                    running.pop((ctx.name, key), None)
            with lock:  # (a scenario Ctrl-C cut short is recorded again below, as interrupted)
                self._record(ctx, key, outcome, order)
            if req.fail_fast and outcome.status in (Status.FAIL, Status.ERROR):
                stop.set()
            return outcome

        def prepare(arch_name: str, beside_guests: Optional[BuildOverlap]) -> _ArchRun:
            ctx = self._prepare_arch(arch_name, scenarios, run_dir / arch_name, beside_guests)
            contexts.append(ctx)
            with lock:
                info["arches"][arch_name] = ctx.info
                write_json(run_dir / "run.json", info)
            self._count_shapes(ctx, instances)
            return ctx

        pool = ThreadPoolExecutor(max_workers=req.vms, thread_name_prefix="guest")
        futures: list = []
        try:
            if overlap is not None and overlap.overlap:
                for arch_name in req.arches:
                    if stop.is_set():  # (--fail-fast: an earlier arch failed)
                        break
                    try:
                        ctx = prepare(arch_name, overlap if futures and not all(f.done() for f in futures) else None)
                    except Exception:
                        # as a serial run would: the arches before it finish first
                        wait(futures)
                        raise
                    futures += [pool.submit(work, ctx, scenario, key) for scenario, key in instances]
            else:
                for arch_name in req.arches:
                    prepare(arch_name, None)
                futures = [pool.submit(work, ctx, scenario, key) for ctx in contexts for scenario, key in instances]
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.5)
            for future in futures:
                future.result()  # a harness bug outside a scenario's own handling
        except KeyboardInterrupt:
            stop.set()
            for future in futures:
                future.cancel()
            with lock:
                interrupted = sorted(running)
            self.stage, self.where = "scenario", ", ".join(f"{a} {n}" for a, n in interrupted) or "between scenarios"
            with proc.signals_deferred():  # a second Ctrl-C waits until the guests are gone
                while not all(f.done() for f in futures):
                    kill_all()
                    wait(futures, timeout=0.2)
                for arch_name, name in interrupted:
                    ctx = next(c for c in contexts if c.name == arch_name)
                    recorded = self.doc["arches"][arch_name]["scenarios"].get(name)
                    outcome = (ScenarioOutcome.from_dict(recorded) if recorded else ScenarioOutcome()).failed(
                        "interrupted during the scenario stage: the scenario did not finish", "infra")
                    self._record(ctx, name, outcome, order)
                    write_json(ctx.directory / name / "results.json", outcome.as_dict())
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            for ctx in contexts:
                self._finish_arch(ctx)
            write_json(run_dir / "run.json", info)

    def _assets(self, scenarios: Sequence[Scenario], build, the_arch, target: Target) -> dict:
        """Build what the scenarios about to run asked for; a failure is
        kept as that asset's error (its scenario errs, the others run)."""
        wanted = {asset for s in scenarios if not s.skip_reason(target) for asset in s.assets}
        out: dict = {}
        if "kselftest-vm" in wanted:

            self.stage = "kselftest build"
            try:
                built = SelftestBuilder(echo=self.echo, offline=self.request.source.offline).build(Path(build.source["tree"]), build.source["identity"], the_arch,
                                                              _version_tuple(build.kernel_version))
                out["kselftest-vm"] = {"directory": str(built.directory), "programs": built.programs,
                                       "source_fixes": built.source_fixes}
            except HarnessError as exc:
                out["kselftest-vm"] = {"error": exc.render()}
        return out

    def _run_scenario(self, scenario: Scenario, target: Target, kernel: Path, initrd: Path, sdir: Path) -> ScenarioOutcome:
        sdir.mkdir(parents=True, exist_ok=True)
        captures = Captures(sdir, ambient_messages(target.rules.name) + list(scenario.expected_messages(target)))
        outcome = ScenarioOutcome(title=scenario.title, experiment=scenario.experiment)
        skip = scenario.skip_reason(target)
        if skip:
            outcome.skip_reason = skip
            self.say(f"[{target.arch.name}] {scenario.name}: skipped ({skip})")
            (sdir / "skipped.txt").write_text(skip + "\n")
            return outcome
        started = time.monotonic()
        self.say(f"[{target.arch.name}] {scenario.name}: {scenario.title}")
        step = f"{target.arch.name} {scenario.name}"
        self.steps.start(step, f"[{target.arch.name}] {scenario.name}: booting")
        request = self._machine_request(scenario, target, kernel, initrd)
        observation: Optional[dict] = None
        self.stage, self.where = "boot", f"{target.arch.name} {scenario.name}"
        try:
            before = time.monotonic()
            saved = None if scenario.cold_boot else self._saved_guest(request, sdir.parent)
            # making the saved guest (the first scenario of its shape) is the
            # shape's cost, not this scenario's: its time is left out
            started += time.monotonic() - before
            # what the kernel logs from the guest's first command on is the
            # scenario's
            request = replace(request, restore=saved, ready_command=f"echo '<7>{kmsg_mod.SCENARIO_BEGINS}' > /dev/kmsg")
            with Machine(request, sdir, echo=None) as machine:
                self.stage = "scenario"
                outcome.accel = machine.accel.accel if machine.accel else None
                outcome.accel_reason = machine.accel.reason if machine.accel else None
                outcome.qemu_argv = machine.argv
                outcome.boot_s = machine.times.as_dict().get("ssh_s")
                if outcome.boot_s is not None:
                    how = "restored" if machine.times.restored else "booted"
                    self.say(f"[{target.arch.name}] {scenario.name}: {how} in {outcome.boot_s:.1f}s ({outcome.accel})")
                self.steps.start(step, f"[{target.arch.name}] {scenario.name}: running")
                # a long command still running after the kernel logged an
                # error it was not allowed ends at the next liveness check
                allowed = captures.allowed_messages
                machine.log_probe = ("mmdrive -c kmsg",
                                     lambda text: kmsg_mod.first_line(kmsg_mod.errors(kmsg_mod.parse(text), allowed)))
                observation = scenario.drive(machine, target, captures, qmp=machine.qmp)
                observation["captures"] = captures.files
                write_json(sdir / "observation.json", observation)
                kmsg = machine.run("mmdrive -c kmsg", timeout=60)
                captures.save(kmsg_mod.CAPTURE, kmsg.stdout)
        except HarnessError as exc:
            outcome.failed(exc.render(), exc.blame)
        except KeyboardInterrupt:
            # The run stops here; the scenario keeps what it had, and says why.
            outcome.failed(f"interrupted during the {self.stage} stage: the scenario did not finish", "infra")
            outcome.elapsed_s = round(time.monotonic() - started, 1)
            self.doc["arches"][target.arch.name]["scenarios"][scenario.name] = outcome.as_dict()
            write_json(sdir / "results.json", outcome.as_dict())
            raise
        except Exception as exc:  # a bug in the harness: this scenario errs, the run goes on, the exit code says so
            if is_disk_full(exc):
                outcome.failed(disk_full(Path(exc.filename) if exc.filename else sdir,  # type: ignore[attr-defined]
                                         f"running {scenario.name}").render(), "infra")
            else:
                outcome.failed(_harness_bug(exc, sdir), "harness")
        finally:
            self.steps.finish(step)
        outcome.elapsed_s = round(time.monotonic() - started, 1)
        outcome.evidence = list(captures.files)
        check_outcome(scenario, target, sdir, observation, outcome)
        write_json(sdir / "results.json", outcome.as_dict())
        self.say(f"[{target.arch.name}] {scenario.name}: {outcome.status.name} ({outcome.elapsed_s}s)")
        return outcome

    def _differences(self, scenarios: Sequence[Scenario]) -> None:
        arches = list(self.doc.get("arches", {}))
        if len(arches) < 2:
            return
        targets = {}
        for arch_name in arches:
            t = self.doc["arches"][arch_name].get("target", {})
            if "model" in t:
                targets[arch_name] = Target.from_dict(t, {})
        if len(targets) < 2:
            return
        first, *others = list(targets.values())
        for scenario in scenarios:
            notes = []
            for other in others:
                try:
                    notes += scenario.account(first, other)
                except HarnessError:
                    continue
            if notes:
                self.doc["differences"][scenario.name] = notes


def _version_tuple(kernel_version: str) -> tuple:
    parts = kernel_version.split("-")[0].split(".")
    return int(parts[0]), int(parts[1])


def _harness_bug(exc: BaseException, directory: Path) -> str:
    """Keep the traceback of a harness bug in ``directory``; the message
    that says so."""
    path = directory / "traceback.txt"
    path.write_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return f"harness bug: {type(exc).__name__}: {exc} (traceback in {path}; please report it with the run directory)"


def _crashed(info: dict, run_dir: Path, exc: BaseException) -> None:
    """The run's record of a harness bug outside any scenario."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    info["status"] = "crashed"
    info["crash"] = text[-4000:]
    (run_dir / "traceback.txt").write_text(text)
    exc.traceback_path = run_dir / "traceback.txt"  # type: ignore[attr-defined]


def check_outcome(scenario: Scenario, target: Target, sdir: Path, observation: Optional[dict], outcome: ScenarioOutcome) -> None:
    """The scenario's checks plus the console check, and the model's
    account, into ``outcome``.  An unusable observation is an ERROR result,
    never a silent pass; an exception from the check code is a harness bug
    (its traceback kept in the scenario's directory)."""
    results: list[CheckResult] = []
    if observation is None and not outcome.error:
        why = "is missing" if not (sdir / "observation.json").exists() else "cannot be read"
        results = [CheckResult(scenario.name, "check", "observation", CheckKind.EXACT, Status.ERROR,
                               message=f"{sdir / 'observation.json'} {why}: the scenario's checks cannot run, so it cannot pass",
                               evidence=[str(sdir)])]
    elif observation is not None and not outcome.error:
        try:
            results = scenario.check(observation, target, Captures(sdir))
            # the performance side, from the same captures
            outcome.metrics = [m.as_dict() for m in scenario.metrics(observation, target, Captures(sdir))]
        except Exception as exc:
            outcome.failed(_harness_bug(exc, sdir), "harness")
        else:
            if not results:
                results = [CheckResult(scenario.name, "check", "checks", CheckKind.EXACT, Status.ERROR,
                                       message="the scenario ran no checks", evidence=[str(sdir)])]
    console = sdir / "console.log"
    if console.exists():
        problems = [e for e in scan(console.read_text(errors="replace").splitlines()) if e.kind.problem]
        results.append(CheckResult(
            scenario.name, "kernel", CONSOLE_CHECK, CheckKind.EXACT,
            Status.PASS if not problems else Status.FAIL, expected=[], observed=[p.line for p in problems],
            message="" if not problems else f"the kernel logged {problems[0].kind.value}: {problems[0].line}",
            evidence=[f"{console}:{problems[0].lineno}"] if problems else [],
        ))
    log = sdir / kmsg_mod.CAPTURE
    if log.exists():
        allowed = ambient_messages(target.rules.name) + list(scenario.expected_messages(target))
        records = kmsg_mod.parse(log.read_text(errors="replace"))
        for name, found, what in ((KERNEL_LOG_CHECK, kmsg_mod.errors(records, allowed), "an error"),
                                  (KERNEL_WARN_CHECK, kmsg_mod.warnings(records, allowed), "a warning")):
            results.append(CheckResult(
                scenario.name, "kernel", name, CheckKind.EXACT, Status.FAIL if found else Status.PASS,
                expected=[], observed=[f"{entry.record}" + (f" (during {entry.step})" if entry.step else "") for entry in found],
                message="" if not found else f"the kernel logged {what}: {kmsg_mod.first_line(found)}",
                evidence=[str(log)],
            ))
    outcome.checks = results
    account = getattr(scenario, "model_account", None)
    if account is not None:
        # the model's per-step prediction and per-page reasoning, for the reports
        try:
            outcome.model = account(target)
        except HarnessError as exc:  # the checks already said what is wrong with the plan
            outcome.model = [{"error": exc.render()}]
        except Exception as exc:
            outcome.failed(_harness_bug(exc, sdir), "harness")


def recheck(run_dir: Path, reports: bool = True, only: Optional[Collection[str]] = None) -> dict:
    """Redo every check of a saved run from its captures (no VM), or only
    those of the scenarios named in ``only`` (the others keep their recorded
    results); results.json is rewritten, and with ``reports`` the reports too
    (``harness check``)."""
    run_dir = Path(run_dir)
    try:
        doc = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        raise UserError(f"{run_dir} has no readable results.json: is it a run directory?") from None
    scenarios = scenarios_for_run(run_dir)
    for arch_name, arch_doc in doc.get("arches", {}).items():
        arch_dir = run_dir / arch_name
        config_path = arch_dir / "kernel.config"
        config = kconfig.parse_dotconfig(config_path.read_text()) if config_path.exists() else {}
        if "model" not in arch_doc.get("target", {}):
            continue
        target = Target.from_dict(arch_doc["target"], config)
        for name, entry in arch_doc.get("scenarios", {}).items():
            outcome = ScenarioOutcome.from_dict(entry)
            if outcome.skip_reason or (only is not None and name not in only):
                continue
            if base_name(name) not in scenarios:
                outcome.failed(f"scenario {name!r} is not known to this harness ({__version__}) and the run kept no plan "
                               f"file for it: its recorded verdict ({entry.get('status')}) cannot be re-checked", "user")
                arch_doc["scenarios"][name] = outcome.as_dict()
                continue
            sdir = arch_dir / name
            try:
                observation = json.loads((sdir / "observation.json").read_text())
            except (OSError, ValueError):
                observation = None
            check_outcome(scenarios[base_name(name)], target, sdir, observation, outcome)
            arch_doc["scenarios"][name] = outcome.as_dict()
    with proc.signals_deferred():  # the records change together or not at all
        write_json(run_dir / "results.json", doc)
        if reports:
            write_all(run_dir, doc)
    return doc
