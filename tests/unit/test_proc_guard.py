"""Host commands end with the harness, however it ends: the guardian
(harness/guard.py) leads each command's process group and ends the whole
group, grandchildren included, when the harness dies, even by SIGKILL."""
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness.host import proc

ROOT = Path(__file__).resolve().parents[2]


def alive(tag: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", tag], capture_output=True, text=True)
    return out.stdout.split()


def wait_until(predicate, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def start_fake_harness(tag: str, call: str) -> subprocess.Popen:
    """A Python process that runs ``proc.<call>`` of a command tree whose
    members all carry ``tag`` in their argv (a child and a grandchild)."""
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from harness.host import proc\n"
        "argv = ['sh', '-c', 'sleep %s1 & exec sleep %s2']\n"
        "proc.%s(argv%s)\n"
    ) % (str(ROOT), tag, tag, call, ", on_line=print" if call == "stream" else "")
    return subprocess.Popen([sys.executable, "-c", script])


@pytest.mark.parametrize("call", ["run", "stream"])
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_whole_command_tree_ends_when_the_harness_dies(call, how):
    tag = f"600.{uuid.uuid4().int % 10**8:08d}"  # a unique sleep length marks the tree's processes
    harness = start_fake_harness(tag, call)
    try:
        assert wait_until(lambda: len(alive(f"sleep {tag}")) >= 2), "the command tree did not start"
        harness.send_signal(how)
        harness.wait(timeout=10)
        assert wait_until(lambda: not alive(f"sleep {tag}"), timeout=8), f"left behind: {alive(f'sleep {tag}')}"
    finally:
        for pid in alive(f"sleep {tag}"):
            os.kill(int(pid), signal.SIGKILL)


def test_the_guardian_is_transparent():
    assert proc.run(["sh", "-c", "echo out; echo err >&2; exit 3"]).returncode == 3
    assert proc.run(["sh", "-c", "echo out; echo err >&2"]).stdout == "out\nerr\n"
    assert proc.run(["cat"], input_bytes=b"stdin reaches the command\n").stdout == "stdin reaches the command\n"
    assert proc.run(["sh", "-c", "kill -9 $$"]).returncode == 128 + 9
    missing = proc.run(["/nonexistent/tool"])
    assert missing.returncode == 127 and "No such file" in missing.stdout
    lines = []
    assert proc.stream(["sh", "-c", "echo a; echo b"], on_line=lines.append) == 0 and lines == ["a", "b"]
