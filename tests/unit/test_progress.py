"""Build progress a person can follow: objects against the previous build
of the same configuration, percentage and ETA; a rich bar on a terminal,
plain lines (no control characters) in a log, nothing with -q."""
import io
import re

from harness.host.progress import Progress, estimate
from harness.kernel.build import _expected_objects, _record_objects

LINES = ["  CC      mm/migrate.o", "  CC      mm/compaction.o", "  LD      vmlinux", "  AS      arch/x86/entry/entry_64.o"]


def test_the_estimate_follows_the_previous_build_and_never_passes_100_percent():
    assert estimate(50, 200, 10.0) == (0.25, 30.0)
    assert estimate(250, 200, 10.0)[0] == 0.99 and estimate(250, 200, 10.0)[1] == 0.0
    assert estimate(10, None, 5.0) == (None, None)
    assert estimate(0, 200, 5.0) == (0.0, None)  # nothing compiled yet: no rate to go by


class Log(io.StringIO):
    def isatty(self):
        return False


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_plain_lines_with_percentage_and_eta():
    out = Log()
    progress = Progress("build x86_64 5.0.0", stream=out, interval=0.0, expected=4)
    progress.set_stage("compiling")
    for line in LINES:
        progress.kbuild_line(line)
    progress.done("built it")
    text = out.getvalue()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)  # no \r, no escape sequences
    assert "3/4 objects (75%, ETA" in text and text.endswith(")\n")
    assert "[build x86_64 5.0.0] built it (0m00s)" in text


def test_quiet_prints_nothing_and_a_terminal_gets_a_bar_that_goes_away():
    quiet = Log()
    progress = Progress("b", quiet=True, stream=quiet, interval=0.0, expected=4)
    progress.set_stage("compiling")
    progress.kbuild_line(LINES[0])
    progress.done("built")
    assert quiet.getvalue() == ""
    tty = Terminal()
    progress = Progress("build arm64 5.0.0", stream=tty, expected=4)
    progress.set_stage("compiling")
    progress.kbuild_line(LINES[0])
    progress._emit(force=True)
    assert progress._bar is not None  # rich's bar, drawn on the terminal
    progress.done("built")
    assert progress._bar is None and tty.getvalue().endswith("[build arm64 5.0.0] built (0m00s)\n")


def test_the_object_count_of_a_configuration_is_remembered_per_build_directory(tmp_path):
    history = tmp_path / "objects.json"
    assert _expected_objects(history, "cfg") is None
    _record_objects(history, "cfg", 2971)
    _record_objects(history, "other", 12)
    assert _expected_objects(history, "cfg") == 2971 and _expected_objects(history, "other") == 12
    history.write_text("{half")
    assert _expected_objects(history, "cfg") is None  # a damaged record predicts nothing
    _record_objects(history, "cfg", 5)
    assert _expected_objects(history, "cfg") == 5


def test_steps_print_lines_above_their_spinners_and_nothing_when_quiet(monkeypatch):
    from harness.host import progress
    from harness.host.progress import Steps

    clock = iter([100.0, 103.46, 200.0, 212.5])  # start and finish of each step, in turn
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    quiet = Terminal()
    steps = Steps(quiet, quiet=True)
    steps.start("a", "[x86_64] a: booting")
    steps.line("said")
    assert steps.finish("a") == 3.5 and quiet.getvalue() == ""  # its elapsed time, rounded, and nothing said
    log = Log()
    steps = Steps(log)
    steps.start("a", "[x86_64] a: booting")
    writer = steps.writer()
    writer.write("[image x86_64] built /x\n[image x86_64] par")
    writer.write("tial\n")
    assert steps.finish("a") == 12.5 and steps.finish("never started") == 0.0
    monkeypatch.undo()
    assert log.getvalue() == "[image x86_64] built /x\n[image x86_64] partial\n"
    tty = Terminal()
    steps = Steps(tty)
    steps.start("a", "[x86_64] a: running")
    steps.start("b", "[arm64] b: booting")  # guests in parallel: two spinners
    steps.finish("a")
    assert steps._live is not None  # b still runs
    steps.line("[arm64] b: booted in 1.0s (tcg)")
    steps.finish("b")
    assert steps._live is None and "[arm64] b: booted in 1.0s (tcg)" in tty.getvalue()
