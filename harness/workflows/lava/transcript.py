"""A scenario's guest commands as one shell script for a LAVA test shell,
and the commands' results read back from the job's console log.

A scenario drives its guest through ``Guest.run`` (over SSH in a local
run).  On LAVA there is no SSH: the job boots the same kernel and image
and runs a script on the serial console.  ``transcribe`` runs the
scenario's ``drive`` against a ``Recorder`` guest that keeps every command
(and its stdin) instead of running it; ``guest_script`` turns them into a
POSIX shell script that runs each one as SSH would (``sh -c``, stdin from a
file, a timeout) and prints its exit status, stdout and stderr in base64
between markers.  ``parse_console`` reads those back from the console; a
``Replayer`` guest then hands each result to ``drive`` again, in order, so
that the scenario writes the same captures and observation as in a local
run and ``harness check`` checks them the same way.

Only scenarios whose commands do not depend on what earlier commands
printed can run so (``transcribe`` finds out: a second transcription with
different outputs must give the same commands), and none that needs QMP.
Pure: no LAVA, no VM."""
from __future__ import annotations

import base64
import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from harness.errors import InfraError, UserError
from harness.scenarios.base import Captures
from harness.scenarios.plan.scenario import PlanScenario
from harness.vm.command import CommandResult

#: Where the job's files sit in the guest (an initramfs overlay).
GUEST_DIR = "/harness/lava"
MARK = "HARNESS-LAVA"


@dataclass(frozen=True)
class Command:
    index: int
    command: str
    timeout: float
    stdin: Optional[bytes]


class Recorder:
    """A Guest that keeps the commands.  Every command "succeeds" with the
    given stdout (empty by default): a scenario that parses an output to
    decide its next command shows itself by transcribing differently."""

    def __init__(self, output: str = "") -> None:
        self.commands: list[Command] = []
        self.output = output

    def run(self, command: str, timeout: float = 600.0, stdin: Optional[bytes] = None, check: bool = True) -> CommandResult:
        self.commands.append(Command(len(self.commands), command, float(timeout), stdin))
        return CommandResult(command, 0, self.output, "", 0.0)

    def upload(self, data: bytes, remote: str, mode: str = "0755") -> None:
        raise UserError("this scenario uploads files to its guest: it cannot run as a LAVA job yet",
                        hint="leave it out (--scenario) of the LAVA jobs")


class NotTranscribable(UserError):
    pass


def transcribe(scenario, target) -> list[Command]:
    """The commands ``scenario.drive`` runs on ``target``, or
    NotTranscribable saying why it cannot run as a LAVA job."""

    if not isinstance(scenario, PlanScenario):
        # a class-based scenario's driver reads the guest (free memory, PIDs,
        # CMA areas) to decide what to run next: it needs the live guest
        raise NotTranscribable(f"{scenario.name} cannot run as a LAVA job: its driver reads the live guest "
                               "to decide its next command (only plan scenarios run as LAVA jobs)")
    commands = _record(scenario, target, "")
    if commands != _record(scenario, target, "0\n"):
        raise NotTranscribable(f"{scenario.name} cannot run as a LAVA job: its commands depend on what earlier ones printed")
    return commands


def _record(scenario, target, output: str) -> list[Command]:
    """The commands ``drive`` runs when every one of them prints ``output``."""


    recorder = Recorder(output)
    with tempfile.TemporaryDirectory(prefix="harness-lava-") as tmp:
        try:
            scenario.drive(recorder, target, Captures(Path(tmp)), qmp=None)
        except NotTranscribable:
            raise
        except UserError as exc:
            raise NotTranscribable(f"{scenario.name}: {exc.message}") from None
        except Exception as exc:  # it needed QMP, or parsed an output
            raise NotTranscribable(f"{scenario.name} cannot run as a LAVA job: its driver needs a live guest "
                                   f"({type(exc).__name__}: {exc})") from None
    return recorder.commands


def stdin_name(command: Command) -> str:
    return f"stdin-{command.index}"


def guest_script(commands: Sequence[Command]) -> str:
    """The shell script the LAVA test shell runs (from GUEST_DIR)."""
    lines = [
        "#!/bin/sh",
        "# harness: a scenario's commands, each as SSH would run it; results in base64 between markers",
        "dmesg -n 1 2>/dev/null  # no kernel messages in the middle of the output",
        "cd /root 2>/dev/null || cd /",
        "out=/tmp/harness-lava.out; err=/tmp/harness-lava.err",
    ]
    for command in commands:
        stdin = f"{GUEST_DIR}/{stdin_name(command)}" if command.stdin is not None else "/dev/null"
        limit = max(1, int(command.timeout + 0.999))
        lines += [
            f"timeout -s KILL {limit} sh -c {shlex.quote(command.command)} < {stdin} > $out 2> $err; rc=$?",
            f'echo "{MARK} BEGIN {command.index} $rc"',
            "base64 $out",
            f'echo "{MARK} STDERR {command.index}"',
            "base64 $err",
            f'echo "{MARK} END {command.index}"',
        ]
    lines.append(f'echo "{MARK} DONE {len(commands)}"')
    return "\n".join(lines) + "\n"


_MARKER = re.compile(rf"{MARK} (BEGIN|STDERR|END|DONE) (\d+)(?: (-?\d+))?\s*$")


def parse_console(lines: Sequence[str], commands: Sequence[Command]) -> list[CommandResult]:
    """Each command's result from the console lines the script printed.
    Missing or garbled output is infrastructure trouble naming the command."""
    results: dict[int, CommandResult] = {}
    state = None
    index = rc = -1
    out: list[str] = []
    err: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n").strip()
        found = _MARKER.search(line)
        if found:
            what, number = found.group(1), int(found.group(2))
            if what == "BEGIN":
                state, index, rc, out, err = "out", number, int(found.group(3) or -1), [], []
            elif what == "STDERR" and state == "out" and number == index:
                state = "err"
            elif what == "END" and state == "err" and number == index:
                command = commands[index] if index < len(commands) else None
                if command is None:
                    raise InfraError(f"the LAVA log has a result for command {index}, but the scenario has {len(commands)}")
                results[index] = CommandResult(command.command, rc, _decode(out, index, "stdout"), _decode(err, index, "stderr"), 0.0)
                state = None
            continue
        if state == "out":
            out.append(line)
        elif state == "err":
            err.append(line)
    missing = [c.index for c in commands if c.index not in results]
    if missing:
        first = commands[missing[0]]
        raise InfraError(f"the LAVA log has no result for {len(missing)} of {len(commands)} commands, the first "
                         f"#{first.index}: {first.command[:80]!r} (did the job time out, or the guest die?)")
    return [results[c.index] for c in commands]


def _decode(lines: list[str], index: int, what: str) -> str:
    try:
        return base64.b64decode("".join(lines), validate=True).decode(errors="replace")
    except (ValueError, base64.binascii.Error) as exc:  # type: ignore[attr-defined]
        raise InfraError(f"the {what} of command #{index} in the LAVA log is not intact base64 ({exc}): "
                         "console output was garbled") from None


class Replayer:
    """A Guest that answers each command with its result from the LAVA log,
    in order; a command that differs from the transcript is an error."""

    def __init__(self, commands: Sequence[Command], results: Sequence[CommandResult]) -> None:
        self.commands = list(commands)
        self.results = list(results)
        self.next = 0

    def run(self, command: str, timeout: float = 600.0, stdin: Optional[bytes] = None, check: bool = True) -> CommandResult:
        if self.next >= len(self.commands) or self.commands[self.next].command != command:
            raise InfraError(f"replaying the LAVA job: command #{self.next} differs from the job's "
                             f"({command[:60]!r}): the job was made by another harness or for another scenario")
        result = self.results[self.next]
        self.next += 1
        return result

    def upload(self, data: bytes, remote: str, mode: str = "0755") -> None:
        raise InfraError("replaying the LAVA job: the scenario uploads a file, which its transcript did not")
