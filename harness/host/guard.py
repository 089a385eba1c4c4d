"""The guardian every host command of the harness runs under.

    python -I -S guard.py HARNESS_PID -- COMMAND [ARGS...]

A command the harness starts (make and its compilers, tar, dpkg-deb,
apt-get, patch) runs in its own process group so that Ctrl-C can end the
whole tree.  That same separation means nothing ends it when the harness
itself is killed with SIGKILL: ``make -j`` would go on writing the shared
build directory under the next run's feet.  This small process leads the
group, asks the kernel to signal it when the harness dies
(PR_SET_PDEATHSIG), and then ends its whole group: SIGTERM, and SIGKILL
after a grace period.  Otherwise it is transparent: the command inherits its stdin/stdout/stderr
and its exit status becomes the guardian's (128+N for a signal).

It runs with ``-I -S`` and imports nothing of the harness, so it starts in a
few milliseconds.
"""
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
GRACE_S = 3.0


def _end_group(child: int) -> None:
    """SIGTERM the group (ourselves excepted), SIGKILL what is left, which
    ends the guardian too."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(0, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        try:
            if os.waitpid(child, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            break
        time.sleep(0.05)
    # grandchildren (a compiler of make's) may outlive make: kill the group
    os.killpg(0, signal.SIGKILL)


def main(argv: list) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: guard.py HARNESS_PID -- COMMAND [ARGS...]\n")
        return 2
    parent = int(argv[0])
    command = argv[2:]
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the harness died before we could ask
        return 128 + signal.SIGKILL
    child = 0

    def stop(number, frame):
        _end_group(child)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)  # caught, not ignored: exec resets it in the command
    child = os.fork()
    if child == 0:
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            sys.stderr.write(f"{command[0]}: {exc.strerror}\n")
            sys.stderr.flush()
        os._exit(127)
    if os.getppid() != parent:  # died between the check and the fork
        _end_group(child)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
