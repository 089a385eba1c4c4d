"""``harness bisect``: find the commit that broke migration, with
``git bisect run`` on the harness's own clone of the developer's tree (the
developer's working tree and repository are never touched: the clone
shares their objects read-only).

The bad commit is run first, to learn how it fails (which checks, or a
kernel that does not build or boot), and the good one must pass.  Each
bisection step then builds the checked-out commit on the work copy (an
incremental rebuild), runs the chosen scenarios and exits with the usual
contract: 0 good, 1 bad (a check failed, or the kernel failed the way the
bad commit did), 125 skip (infrastructure trouble, or -- when asked -- a
commit that does not build although the bad one does).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness.errors import InfraError, KernelError, UserError
from harness.host import proc
from harness.host.cache import Cache
from harness.host.paths import PROJECT
from harness.host.rundir import new_run_dir, write_json
from harness.kernel.source import SourceRequest
from harness.perf import decide
from harness.perf.collect import samples
from harness.perf.stats import summary
from harness.pipeline import Pipeline, RunRequest
from harness.report.model import outcomes
from harness.result import Status

GOOD, BAD, SKIP, ABORT = 0, 1, 125, 128


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return proc.run(["git", "-C", str(repo), *args], timeout=600, separate_stderr=True)
    except FileNotFoundError:
        raise UserError("git is not installed", hint="apt-get install git") from None
    except subprocess.TimeoutExpired:
        raise InfraError(f"git {' '.join(args)} did not finish within 600 s in {repo}") from None


def git(repo: Path, *args: str, check: bool = True) -> str:
    """A git command on the harness's own clone (or a read of the tree):
    one that fails is the infrastructure's trouble, not the user's input
    (refs the user gave are checked first, as user errors)."""
    out = _git(repo, *args)
    if check and out.returncode != 0:
        raise InfraError(f"git {' '.join(args)} failed in {repo}: {(out.stderr or out.stdout).strip()}")
    return out.stdout.strip()


@dataclass
class Outcome:
    """What one commit did."""

    commit: str
    #: "good", "bad", "skip" or "abort".
    verdict: str
    #: Failing checks: {"id", "kind", "expected", "observed", "bound", "message"}.
    failing: list = field(default_factory=list)
    #: "build" or "kernel" (boot, panic) when the kernel failed, else "".
    kernel_failure: str = ""
    error: str = ""
    run_dir: str = ""
    seconds: float = 0.0
    #: Bisect on a metric: every sample of it at this commit (all repeats
    #: of every run), and the decision's confidence (1 - p).
    samples: list = field(default_factory=list)
    confidence: float = 0.0
    #: The metric's direction ("higher"/"lower") and unit, as recorded.
    better: str = ""
    unit: str = ""
    note: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class BisectRequest:
    tree: Path
    good: str
    bad: str
    arches: tuple = ("x86_64",)
    scenarios: tuple = ()
    fragments: tuple = ()
    options: tuple = ()
    skip_build_errors: bool = False
    runs_root: Optional[Path] = None
    quiet: bool = False
    accel: Optional[str] = None
    #: "module:function" evaluating one commit (a seam for tests).
    runner: str = "harness.workflows.bisect:run_suite"
    #: Bisect on a performance metric ("SCENARIO/METRIC", as compare names
    #: it) instead of the checks: a commit is bad when its samples look
    #: like the bad end's (significantly worse than the good end's), good
    #: when they look like the good end's, and gets more repeats while
    #: unclear, then is skipped.
    metric: Optional[str] = None
    #: The regression the ends must show (percent of the good end's mean).
    threshold: float = 5.0
    #: Repeats per commit at first, and at most (per commit, in all).
    min_repeats: int = 3
    max_repeats: int = 9
    #: Mann-Whitney U by default: a bisection step decides on few samples,
    #: and one outlier (TCG's noise: 0.336 among eleven of 0.138-0.168)
    #: inflates Welch's variance until neither end is significant.
    test: str = "mann-whitney"
    alpha: float = 0.05


# --------------------------------------------------------------------------
# one commit


def run_suite(state: dict, commit: str, run_dir: Path) -> Outcome:
    """Build the clone's checked-out commit and run the scenarios."""

    request = RunRequest(
        source=SourceRequest(state["clone"]), arches=tuple(state["arches"]), scenarios=tuple(state["scenarios"]),
        fragments=tuple(Path(f) for f in state["fragments"]), options=tuple(state["options"]), quiet=state["quiet"],
        runs_root=run_dir.parent, run_name=run_dir.name, accel=state.get("accel"), repeat=int(state.get("repeat", 1)),
    )
    try:
        result = Pipeline(request).run()
    except KernelError as exc:
        return Outcome(commit, "", kernel_failure="build", error=exc.render(), run_dir=str(run_dir))
    if state.get("metric"):
        found = samples(result.doc, state["arches"][0]).get(state["metric"])
        if found is None:
            return Outcome(commit, "skip", error=f"no sample of {state['metric']} in {run_dir}", run_dir=str(run_dir))
        metric, values = found
        return Outcome(commit, "", samples=values, better=metric.better, unit=metric.unit, run_dir=str(run_dir))
    failing, kernel = [], ""
    for arch, name, outcome in outcomes(result.doc):
        if outcome.error_blame == "kernel":
            kernel = "kernel"
        if outcome.error_blame == "infra":
            return Outcome(commit, "skip", error=outcome.error, run_dir=str(run_dir))
        for check in outcome.checks:
            if check.status in (Status.FAIL, Status.ERROR):
                failing.append({"id": f"{arch}/{check.id}", "kind": check.kind.value, "expected": check.expected,
                                "observed": check.observed, "bound": check.bound, "message": check.message})
    return Outcome(commit, "", failing=failing, kernel_failure=kernel, run_dir=str(run_dir))


def classify(outcome: Outcome, bad: Optional[Outcome], skip_build_errors: bool) -> str:
    """good / bad / skip for a commit, given how the bad commit failed."""
    if outcome.verdict in ("skip", "abort"):
        return outcome.verdict
    if outcome.kernel_failure == "build":
        if bad is not None and bad.kernel_failure == "build":
            return "bad"
        return "skip" if skip_build_errors else "bad"
    if outcome.failing or outcome.kernel_failure:
        return "bad"
    return "good"


def _run(state: dict, commit: str, run_dir: Path, repeat: int = 1) -> Outcome:
    module, _, name = state["runner"].partition(":")
    runner: Callable[[dict, str, Path], Outcome] = getattr(importlib.import_module(module), name)
    try:
        return runner(dict(state, repeat=repeat), commit, run_dir)
    except InfraError as exc:
        return Outcome(commit, "skip", error=exc.render(), run_dir=str(run_dir))
    except UserError as exc:
        return Outcome(commit, "abort", error=exc.render(), run_dir=str(run_dir))


def measure(state: dict, commit: str, label: str, enough: Callable[[Outcome], bool]) -> Outcome:
    """A commit's metric samples: ``min_repeats`` first, then more (two at
    a time) until ``enough`` says so or ``max_repeats`` are in; each batch
    is a run of its own (``LABEL-COMMIT``, ``LABEL-COMMIT-2``, ...)."""
    base = Path(state["directory"]) / f"{label}-{commit[:12]}"
    outcome = _run(state, commit, base, state["min_repeats"])
    runs = 1
    while not outcome.verdict and not outcome.kernel_failure and len(outcome.samples) < state["max_repeats"] \
            and not enough(outcome):
        runs += 1
        more = _run(state, commit, base.with_name(f"{base.name}-{runs}"), min(2, state["max_repeats"] - len(outcome.samples)))
        if more.verdict or more.kernel_failure:
            break
        outcome.samples = outcome.samples + more.samples
    return outcome


def evaluate(state: dict, commit: str, label: str) -> Outcome:
    started = time.monotonic()
    if state.get("metric") and label == "step":
        good, bad = state["good_outcome"], state["bad_outcome"]
        better = bad["better"]

        def decided(o: Outcome) -> bool:
            return classify_metric(good["samples"], bad["samples"], o.samples, better, state).verdict != "unclear"

        outcome = measure(state, commit, label, decided)
    elif state.get("metric"):
        # the bad end: its first repeats; the good end: until the two are
        # apart (a regression) or the repeats run out
        outcome = measure(state, commit, label, lambda o: True if label == "bad" else _ends_apart(state, o))
    else:
        outcome = _run(state, commit, Path(state["directory"]) / f"{label}-{commit[:12]}")
    outcome.seconds = round(time.monotonic() - started, 1)
    bad_outcome = Outcome(**state["bad_outcome"]) if state.get("bad_outcome") else None
    if state.get("metric"):
        outcome.verdict = _metric_verdict(state, outcome, label)
    else:
        outcome.verdict = classify(outcome, bad_outcome, state["skip_build_errors"])
    with open(Path(state["directory"]) / "steps.jsonl", "a") as log:
        log.write(json.dumps(dict(outcome.as_dict(), label=label)) + "\n")
    return outcome


def classify_metric(good: list, bad: list, samples: list, better: str, state: dict):
    return decide.classify(good, bad, samples, better, alpha=state["alpha"], test=state["test"])


def _ends_apart(state: dict, good: Outcome) -> bool:
    """Whether the good end's samples so far set it apart from the bad end's."""
    bad = state["bad_outcome"]
    return decide.ends_differ(good.samples, bad["samples"], bad["better"], state["threshold"], state["alpha"], state["test"]).regression


def _metric_verdict(state: dict, outcome: Outcome, label: str) -> str:
    if outcome.verdict in ("skip", "abort"):
        return outcome.verdict
    if outcome.kernel_failure == "build":
        return "skip" if state["skip_build_errors"] else "bad"
    if outcome.kernel_failure or len(outcome.samples) < 2:
        outcome.note = outcome.note or "too few samples"
        return "skip"
    if label == "bad":
        return "bad"  # what "bad" means is learnt from it; the good end is checked against it
    bad = state["bad_outcome"]
    if label == "good":
        ends = decide.ends_differ(outcome.samples, bad["samples"], bad["better"], state["threshold"], state["alpha"], state["test"])
        outcome.confidence = 1.0 - ends.result.p if ends.result else 0.0
        outcome.note = f"bad vs good: {ends.change_pct:+.1f}% (p={ends.result.p:.3g}), {ends.verdict}" if ends.result and \
            ends.change_pct is not None else ends.verdict
        return "good" if ends.regression else "bad"
    decision = classify_metric(state["good_outcome"]["samples"], bad["samples"], outcome.samples, bad["better"], state)
    outcome.confidence = decision.confidence
    outcome.note = decision.why
    return {"good": "good", "bad": "bad"}.get(decision.verdict, "skip")


def step_main(state_path: Path) -> int:
    """``harness bisect-step STATE``: what ``git bisect run`` calls."""
    state = json.loads(Path(state_path).read_text())
    commit = git(Path(state["clone"]), "rev-parse", "HEAD")
    outcome = evaluate(state, commit, "step")
    print(f"[bisect] {commit[:12]}: {outcome.verdict}" + (f" ({_first_failure(outcome)})" if outcome.verdict == "bad" else ""),
          file=sys.stderr, flush=True)
    return {"good": GOOD, "bad": BAD, "skip": SKIP}.get(outcome.verdict, ABORT)


def _first_failure(outcome: Outcome) -> str:
    if outcome.kernel_failure:
        return f"kernel {outcome.kernel_failure} failure"
    if outcome.failing:
        return outcome.failing[0]["id"]
    if outcome.error:
        return outcome.error.splitlines()[0]
    return outcome.note or "?"  # a metric's step: its samples against both ends


# --------------------------------------------------------------------------
# the bisection


@dataclass
class BisectResult:
    directory: Path
    first_bad: str
    subject: str
    outcome: Optional[Outcome]
    steps: int
    seconds: float
    #: When only skipped commits are left: the commits the first bad one
    #: could be.
    candidates: list = field(default_factory=list)
    #: Bisect on a metric: its name, the first bad commit's parent as
    #: measured, and the confidence that the first bad commit is bad and
    #: its parent good (the two decisions' 1 - p, multiplied).
    metric: str = ""
    last_good: Optional[Outcome] = None
    confidence: float = 0.0

    def render(self) -> str:
        if not self.first_bad:
            lines = ["the first bad commit could be any of (the others were skipped):"]
            lines += [f"  {c}" for c in self.candidates]
            lines.append(f"{self.steps} commit(s) tested in {self.seconds:.0f}s; log: {self.directory}/bisect.json")
            return "\n".join(lines) + "\n"
        lines = [f"first bad commit: {self.first_bad} {self.subject}"]
        o = self.outcome
        if self.metric and o is not None:
            lines.append(f"  {self.metric} ({o.unit}, {o.better} is better):")
            for what, outcome in (("its parent", self.last_good), ("first bad", o)):
                if outcome is not None and outcome.samples:
                    s = summary(outcome.samples)
                    lines.append(f"    {what:10} {s.mean:.4g} ± {s.stddev_pct:.0f}% (n={s.n}, confidence {outcome.confidence:.3f}): "
                                 f"{outcome.note}")
            lines.append(f"  confidence: {self.confidence:.3f} (the first bad commit bad and its parent good, "
                         "each decided at 1 - p)")
            lines.append(f"  run directory: {o.run_dir}")
        elif o is not None:
            if o.kernel_failure:
                lines.append(f"  the kernel failed ({o.kernel_failure}): {o.error.splitlines()[0] if o.error else ''}")
            for check in o.failing[:5]:
                lines.append(f"  failing check: {check['id']} ({check['kind']})")
                if check.get("message"):
                    lines.append(f"    {check['message']}")
                expected = f"bound {check['bound']}" if check.get("bound") else json.dumps(check.get("expected"), default=str)[:300]
                lines.append(f"    expected: {expected}")
                lines.append(f"    observed: {json.dumps(check.get('observed'), default=str)[:300]}")
            if len(o.failing) > 5:
                lines.append(f"  ... and {len(o.failing) - 5} more failing checks")
            lines.append(f"  run directory: {o.run_dir}")
        lines.append(f"{self.steps} commit(s) tested in {self.seconds:.0f}s; log: {self.directory}/bisect.json")
        return "\n".join(lines) + "\n"


class Bisect:
    def __init__(self, request: BisectRequest, stream=None) -> None:
        self.request = request
        self.stream = stream or sys.stderr
        self.cache = Cache()

    def say(self, text: str) -> None:
        if not self.request.quiet:
            print(text, file=self.stream, flush=True)

    def run(self) -> BisectResult:
        req = self.request
        started = time.monotonic()
        tree = Path(req.tree).expanduser().resolve()
        if not (tree / ".git").exists():
            raise UserError(f"{tree} is not a git tree", hint="bisect needs the developer's git repository (--tree PATH)")
        good, bad = self._commit(tree, req.good, "--good"), self._commit(tree, req.bad, "--bad")
        if good == bad:
            raise UserError(f"--good and --bad name the same commit ({good[:12]})")
        ancestry = _git(tree, "merge-base", "--is-ancestor", good, bad)
        if ancestry.returncode > 1:
            raise InfraError(f"git merge-base --is-ancestor failed in {tree}: {ancestry.stderr.strip()}")
        if ancestry.returncode != 0:
            raise UserError(f"--good {req.good} ({good[:12]}) is not an ancestor of --bad {req.bad} ({bad[:12]})",
                            hint="pass an older good commit that the bad one descends from (git merge-base can find one)")
        clone = self._clone(tree, bad)
        directory = new_run_dir("bisect", "+".join(req.arches), req.runs_root)
        state = {
            "schema": 1, "tree": str(tree), "clone": str(clone), "good": good, "bad": bad, "arches": list(req.arches),
            "scenarios": list(req.scenarios), "fragments": [str(f) for f in req.fragments], "options": list(req.options),
            "skip_build_errors": req.skip_build_errors, "quiet": req.quiet, "accel": req.accel, "runner": req.runner,
            "metric": req.metric, "threshold": req.threshold, "min_repeats": req.min_repeats, "max_repeats": req.max_repeats,
            "test": req.test, "alpha": req.alpha,
            "directory": str(directory), "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        state_path = directory / "bisect.json"
        write_json(state_path, state)
        self.say(f"[bisect] {directory}: {good[:12]}..{bad[:12]} ({git(tree, 'rev-list', '--count', f'{good}..{bad}')} commits) on {clone}")
        try:
            git(clone, "checkout", "-q", "--detach", bad)
            self.say(f"[bisect] the bad commit {bad[:12]} first: how does it fail?")
            bad_outcome = evaluate(state, bad, "bad")
            if req.metric and bad_outcome.verdict != "bad":
                raise UserError(f"the --bad commit {bad[:12]} gave no samples of {req.metric} "
                                f"({bad_outcome.error.splitlines()[0] if bad_outcome.error else bad_outcome.note or bad_outcome.verdict})",
                                hint="name a metric the chosen scenarios record (harness compare lists them: SCENARIO/METRIC)")
            if bad_outcome.verdict != "bad":
                raise UserError(f"the --bad commit {bad[:12]} does not fail the chosen scenarios ({bad_outcome.verdict}: "
                                f"{_first_failure(bad_outcome) if bad_outcome.verdict != 'good' else 'every check passed'})",
                                hint="choose scenarios that fail on it (--scenario), or another --bad commit")
            state["bad_outcome"] = bad_outcome.as_dict()
            write_json(state_path, state)
            git(clone, "checkout", "-q", "--detach", good)
            self.say(f"[bisect] the good commit {good[:12]}: does it pass?")
            good_outcome = evaluate(state, good, "good")
            if req.metric and good_outcome.verdict != "good":
                raise UserError(f"{req.metric} did not regress from --good {good[:12]} to --bad {bad[:12]} "
                                f"({good_outcome.note or good_outcome.verdict}) with {len(good_outcome.samples)} and "
                                f"{len(bad_outcome.samples)} samples",
                                hint=f"a regression is significant (p < {req.alpha}) and at least --threshold {req.threshold:g} %: "
                                     "raise --max-repeats, lower --threshold, or choose other commits")
            state["good_outcome"] = good_outcome.as_dict()
            write_json(state_path, state)
            if good_outcome.verdict != "good":
                raise UserError(f"the --good commit {good[:12]} does not pass: {good_outcome.verdict} ({_first_failure(good_outcome)})",
                                hint="pass a commit on which the chosen scenarios pass")
            git(clone, "bisect", "reset", check=False)
            started_out = git(clone, "bisect", "start", bad, good)
            step = [sys.executable, "-m", "harness", "bisect-step", str(state_path)]
            self.say(f"[bisect] git bisect run {' '.join(step[1:])}")
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")])))
            if "is the first bad commit" in started_out:
                # nothing between good and bad: git decided at once
                ran = subprocess.CompletedProcess([], 0, started_out, "")
            else:
                lines: list[str] = []

                def line(text: str) -> None:
                    lines.append(text)
                    if not req.quiet:
                        print(text, file=sys.stderr, flush=True)

                code = proc.stream(["git", "-C", str(clone), "bisect", "run", *step], on_line=line, env=env)
                ran = subprocess.CompletedProcess([], code, "\n".join(lines) + "\n", "")
            (directory / "git-bisect-run.log").write_text(ran.stdout)
            log = git(clone, "bisect", "log", check=False)
            (directory / "git-bisect.log").write_text(log + "\n")
            first = git(clone, "rev-parse", "--verify", "-q", "refs/bisect/bad", check=False)
            candidates = []
            if "only 'skip'ped commits left" in ran.stdout:
                tail = ran.stdout.split("could be any of:", 1)[-1].split("We cannot bisect more!", 1)[0]
                candidates = [text.split()[0] for text in tail.splitlines() if text.strip()]
                first = ""
            elif ran.returncode != 0 or "is the first bad commit" not in ran.stdout:
                raise InfraError("git bisect run did not finish", log_path=directory / "git-bisect-run.log",
                                 log_tail=ran.stdout.splitlines()[-15:])
        finally:
            git(clone, "bisect", "reset", check=False)
        subject = git(clone, "log", "-1", "--format=%s", first) if first else ""
        outcomes = [json.loads(line) for line in (directory / "steps.jsonl").read_text().splitlines()]
        found = next((Outcome(**{k: v for k, v in o.items() if k != "label"}) for o in reversed(outcomes) if o["commit"] == first), None)
        candidates = [git(clone, "rev-parse", c) for c in candidates]
        result = BisectResult(directory, first, subject, found, len(outcomes), time.monotonic() - started, candidates)
        if req.metric and first:
            result.metric = req.metric
            parent = git(clone, "rev-parse", f"{first}^", check=False)
            last_good = next((Outcome(**{k: v for k, v in o.items() if k != "label"}) for o in reversed(outcomes)
                              if o["commit"] == parent and o["verdict"] == "good"), None)
            result.last_good = last_good
            result.confidence = (found.confidence if found else 0.0) * (last_good.confidence if last_good else 0.0)
        state.update(first_bad=first, subject=subject, candidates=candidates, steps=outcomes, seconds=round(result.seconds, 1),
                     finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        write_json(state_path, state)
        return result

    def _commit(self, tree: Path, ref: str, option: str) -> str:
        out = _git(tree, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}")
        if out.returncode != 0:
            raise UserError(f"{option} {ref} is not a commit of {tree}", hint="pass a commit, tag or branch (git log --oneline)")
        return out.stdout.strip()

    def _clone(self, tree: Path, bad: str) -> Path:
        """The harness's clone of the tree (objects shared read-only), up to
        date with it; nothing is written to the developer's repository."""
        name = hashlib.sha256(str(tree).encode()).hexdigest()[:16]
        clone = self.cache.dir("bisect") / name
        with self.cache.lock(f"bisect-{name}"):
            if not (clone / ".git").is_dir():
                tmp = clone.with_name(f".tmp-{name}-{os.getpid()}")
                shutil.rmtree(tmp, ignore_errors=True)
                try:
                    out = proc.run(["git", "clone", "-q", "--shared", "--no-checkout", str(tree), str(tmp)], separate_stderr=True)
                except FileNotFoundError:
                    raise UserError("git is not installed", hint="apt-get install git") from None
                if out.returncode != 0:
                    raise InfraError(f"cannot clone {tree} into the cache ({tmp}): {out.stderr.strip()}",
                                     hint="is the cache's disk full or read-only?")
                os.replace(tmp, clone)
            else:
                git(clone, "bisect", "reset", check=False)
                git(clone, "fetch", "-q", str(tree), "+refs/heads/*:refs/remotes/origin/*", check=False)
            if _git(clone, "cat-file", "-e", f"{bad}^{{commit}}").returncode != 0:
                git(clone, "fetch", "-q", str(tree), bad)
        return clone


def run_bisect(request: BisectRequest, stream=None) -> BisectResult:
    return Bisect(request, stream).run()


__all__: Sequence[str] = ("Bisect", "BisectRequest", "BisectResult", "Outcome", "classify", "run_bisect", "step_main")
