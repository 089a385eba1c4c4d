"""Checks: observed against predicted.

Every check says what it is: ``exact`` (the model predicts the value),
``bounded`` (the model predicts a range; the bound is printed), or
``invariant`` (a relation the kernel's accounting must keep between two
observed quantities, e.g. the sum of ``nr_succeeded`` over the
``mm_migrate_pages`` events equals the ``pgmigrate_success`` delta).
Expected values come from the model, never from the observation they are
compared with."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

from harness.observe.snapshot import GLOBAL, Field
from harness.result import CheckKind, CheckResult, Status


@dataclass
class Checker:
    """Collects the checks of one scenario step."""

    scenario: str
    step: str
    evidence: list[str] = field(default_factory=list)
    results: list[CheckResult] = field(default_factory=list)
    #: The fields of the closed-world snapshot these checks account for,
    #: with how (exact, bounded, invariant): a check named "Δcounter"
    #: covers /proc/vmstat's counter, others name what they cover.
    covered: dict = field(default_factory=dict)

    def _add(self, name, kind, ok, expected, observed, message, bound=None, evidence=None, covers=()) -> CheckResult:
        result = CheckResult(
            self.scenario, self.step, name, kind, Status.PASS if ok else Status.FAIL,
            expected, observed, bound, message, list(evidence or self.evidence),
        )
        self.results.append(result)
        for f in [*covers, *_named(name)]:
            if self.covered.get(f) is not CheckKind.EXACT:
                self.covered[f] = kind
        return result

    def cover(self, fields: Iterable[Field], kind: CheckKind) -> None:
        """Fields a check of this step accounts for without naming them."""
        for f in fields:
            if self.covered.get(f) is not CheckKind.EXACT:
                self.covered[f] = kind

    def exact(self, name: str, expected: Any, observed: Any, message: str = "", evidence: Optional[list] = None,
              covers: Iterable[Field] = ()) -> CheckResult:
        ok = expected == observed
        if not ok and not message:
            message = _difference(expected, observed)
        return self._add(name, CheckKind.EXACT, ok, expected, observed, message, evidence=evidence, covers=covers)

    def bounded(
        self, name: str, observed: Any, low: Optional[float] = None, high: Optional[float] = None,
        allowed: Optional[Sequence] = None, message: str = "", evidence: Optional[list] = None, covers: Iterable[Field] = (),
    ) -> CheckResult:
        if allowed is not None:
            # A list of observations: each one must be allowed.
            ok = all(v in allowed for v in observed) if isinstance(observed, list) else observed in allowed
            bound = f"one of {list(allowed)}"
        else:
            ok = (low is None or observed >= low) and (high is None or observed <= high)
            bound = " and ".join(p for p in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if p)
        return self._add(name, CheckKind.BOUNDED, ok, None, observed, message, bound=bound, evidence=evidence, covers=covers)

    def invariant(self, name: str, lhs_name: str, lhs: Any, rhs_name: str, rhs: Any, relation: str = "==",
                  message: str = "", evidence: Optional[list] = None, covers: Iterable[Field] = ()) -> CheckResult:
        ops: dict[str, Callable[[Any, Any], bool]] = {
            "==": lambda a, b: a == b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
        }
        ok = ops[relation](lhs, rhs)
        text = message or f"{lhs_name} {relation} {rhs_name}"
        return self._add(name, CheckKind.INVARIANT, ok, {rhs_name: rhs}, {lhs_name: lhs}, text, evidence=evidence,
                         covers=[*covers, *_named(lhs_name), *_named(rhs_name)])

    def every(self, name: str, predicted: Any, observed: Sequence, what: str = "events", evidence: Optional[list] = None) -> CheckResult:
        """Exact: every observed value is the predicted one.  The values
        compared are the distinct ones (stable from run to run); how many
        there were is in the message.  No observations pass (nothing
        contradicts the model), and the message says so."""
        distinct = sorted({json_key(v) for v in observed})
        expected = [json_key(predicted)] if observed else []
        counts = ", ".join(f"{v}: {sum(1 for o in observed if json_key(o) == v)}" for v in distinct)
        message = f"{len(observed)} {what}" + (f" ({counts})" if len(distinct) > 1 else "") if observed else f"no {what} to check"
        return self._add(name, CheckKind.EXACT, distinct == expected, expected, distinct, message, evidence=evidence)

    def error(self, name: str, message: str, evidence: Optional[list] = None) -> CheckResult:
        result = CheckResult(self.scenario, self.step, name, CheckKind.EXACT, Status.ERROR, message=message,
                             evidence=list(evidence or self.evidence))
        self.results.append(result)
        return result

    def skip(self, name: str, message: str) -> CheckResult:
        result = CheckResult(self.scenario, self.step, name, CheckKind.EXACT, Status.SKIP, message=message)
        self.results.append(result)
        return result


_DELTA = re.compile(r"Δ([a-z][a-z0-9_]*)")


def _named(name: str) -> list[Field]:
    """The /proc/vmstat counters a check's name says it checks ("Δcounter")."""
    return [Field("vmstat", GLOBAL, counter) for counter in _DELTA.findall(name)]


def json_key(value: Any) -> Any:
    """A sortable, hashable form of a value for ``every``."""
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _difference(expected: Any, observed: Any) -> str:
    """A one-line description of where two values differ."""
    if isinstance(expected, list) and isinstance(observed, list):
        if len(expected) != len(observed):
            return f"length {len(observed)}, expected {len(expected)}"
        for index, (e, o) in enumerate(zip(expected, observed)):
            if e != o:
                return f"first difference at index {index}: expected {e!r}, observed {o!r}"
    if isinstance(expected, dict) and isinstance(observed, dict):
        keys = sorted(k for k in set(expected) | set(observed) if expected.get(k) != observed.get(k))
        return "differs in " + ", ".join(f"{k} (expected {expected.get(k)!r}, observed {observed.get(k)!r})" for k in keys[:6])
    return f"expected {expected!r}, observed {observed!r}"


#: (vmstat counter, mm_migrate_pages field): the kernel counts both from the
#: same variables at the end of migrate_pages() (invariants I1, I2; 5.10
#: adds the THP ones).
MIGRATION_SUMS = (
    ("I1", "pgmigrate_success", "nr_succeeded"),
    ("I2", "pgmigrate_fail", "nr_failed"),
    ("I1 THP", "thp_migration_success", "nr_thp_succeeded"),
    ("I2 THP", "thp_migration_fail", "nr_thp_failed"),
    ("I2 split", "thp_migration_split", "nr_thp_split"),
)


def migration_invariants(ck: Checker, delta: dict, events: Sequence) -> None:
    """Each migration counter's delta equals the sum of its field over the
    window's mm_migrate_pages events (when the kernel has both)."""
    migrate = [e for e in events if e.name == "mm_migrate_pages"]
    for label, counter, field_name in MIGRATION_SUMS:
        if counter not in delta:
            continue
        if migrate and field_name not in migrate[0].fields:
            continue
        total = sum(int(e.fields.get(field_name, 0)) for e in migrate)
        ck.invariant(f"{label} {counter}", f"Δ{counter}", delta[counter], f"Σ {field_name}", total)
