"""The kernel's log as /dev/kmsg gives it (mmdrive's ``kmsg`` command):
every record with its level, facility, sequence number and timestamp, and
the markers the harness writes into it (``harness: ...`` at debug level)
to tell which step a message was logged in.  Pure."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

#: The capture of the kernel's log, kept per scenario.
CAPTURE = "kmsg.out"
#: The harness's own records (mmdrive's mark, the shell scenarios' mark,
#: the scenario's start).
MARK = "harness: "
SCENARIO_BEGINS = "harness: scenario begins"
#: Levels (include/linux/kern_levels.h): 3 is KERN_ERR, 4 KERN_WARNING
#: (also a printk without a level: MESSAGE_LOGLEVEL_DEFAULT).
ERR = 3
WARNING = 4
#: A report (warn_alloc()'s, an oops, show_mem()) is logged as many records
#: one after another, each printed to the serial console before the next
#: (loglevel=7): the records of one report come less than this apart.
REPORT_GAP_USEC = 1_000_000
#: Reports logged below error level that are failures all the same (an
#: allocation the caller did not expect to fail: warn_alloc()).
ALSO_ERRORS = (re.compile(r"page allocation failure"),)


@dataclass(frozen=True)
class Record:
    level: int
    facility: int
    seq: int
    usec: int
    text: str

    @property
    def kernel(self) -> bool:
        return self.facility == 0

    def __str__(self) -> str:
        return f"<{self.level}>[{self.usec / 1e6:12.6f}] {self.text}"


def parse(text: str) -> list[Record]:
    """The records of a ``kmsg`` RESULT line (the first one in ``text``)."""
    for line in text.splitlines():
        if line.startswith("RESULT "):
            data = json.loads(line[7:])
            if data.get("cmd") == "kmsg":
                return [Record(int(p) & 7, int(p) >> 3, int(s), int(u), str(m)) for p, s, u, m in data["records"]]
    return []


@dataclass(frozen=True)
class Logged:
    """An error the kernel logged during a scenario, and where."""

    record: Record
    #: The step it fell in ("step 2", "compact_memory"), or "" between steps.
    step: str


_STEP = re.compile(r"^harness: harness (.+) (begin|end)$")


def errors(records: Sequence[Record], allowed: Iterable[re.Pattern] = ()) -> list[Logged]:
    """Kernel messages of error level or worse (and allocation failure
    reports) logged after the scenario began, with the step each fell in;
    those an ``allowed`` pattern matches (predicted by the scenario, or
    ambient for the kernel version) left out."""
    allowed = list(allowed)
    start = next((i for i, r in enumerate(records) if r.text == SCENARIO_BEGINS), None)
    if start is None:
        return []
    out, step = [], ""
    for record in records[start + 1:]:
        found = _STEP.match(record.text)
        if found:
            step = found.group(1) if found.group(2) == "begin" else ""
            continue
        if not record.kernel or record.text.startswith(MARK):
            continue
        serious = record.level <= ERR or any(p.search(record.text) for p in ALSO_ERRORS)
        if serious and not any(p.search(record.text) for p in allowed):
            out.append(Logged(record, step))
    return out


def warnings(records: Sequence[Record], allowed: Iterable[re.Pattern] = ()) -> list[Logged]:
    """Kernel messages at warning level logged after the scenario began,
    with the step each fell in: a kernel that warns where it did not
    before (on a path that succeeded, say) does something else than the
    one the checks know.  Left out: those an ``allowed`` pattern matches
    (predicted by the scenario, or ambient for the version), error-level
    ones (``errors`` reports them), and the rest of a report whose first
    record was one of those (warn_alloc()'s call trace and Mem-Info: the
    records that follow with no harness marker and less than
    ``REPORT_GAP_USEC`` between them)."""
    allowed = list(allowed)
    start = next((i for i, r in enumerate(records) if r.text == SCENARIO_BEGINS), None)
    if start is None:
        return []
    out, step, in_report, last_usec = [], "", False, None
    for record in records[start + 1:]:
        found = _STEP.match(record.text)
        if found or record.text.startswith(MARK):
            if found:
                step = found.group(1) if found.group(2) == "begin" else ""
            in_report = False
            continue
        if not record.kernel:
            continue
        within = last_usec is not None and record.usec - last_usec < REPORT_GAP_USEC
        last_usec = record.usec
        serious = record.level <= ERR or any(p.search(record.text) for p in ALSO_ERRORS)
        if serious or any(p.search(record.text) for p in allowed):
            in_report = True
            continue
        if in_report and within:
            continue
        in_report = False
        if record.level == WARNING:
            out.append(Logged(record, step))
    return out


def first_line(logged: Sequence[Logged]) -> Optional[str]:
    return f"{logged[0].record.text!r}" + (f" during {logged[0].step}" if logged[0].step else "") if logged else None
