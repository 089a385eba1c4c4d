"""Shared by every test suite.

A shell that starts a job in the background (`bash .ci/run &`, a CI runner
without job control) starts it with SIGINT ignored, and Python then never
installs its KeyboardInterrupt handler: the Ctrl-C tests would see their
SIGINT vanish. Put Python's own handler back, in this process (every xdist
worker imports this file); the processes the tests start inherit SIG_DFL
through exec, and their Python installs the handler again."""
import signal

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
