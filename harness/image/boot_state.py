"""What every guest's init (``guest/init.j2``) sets up before it says
READY, that the scenarios' guest commands rely on: one place, for the
image that renders it and for the commands that ask for the same."""

#: The per-CPU trace ring buffer (KiB).  The init sizes it while booting,
#: before any scenario, and trace-setup (``harness.observe.trace``) asks for
#: the same size, so a scenario's start allocates nothing: growing it there
#: took 0.12 s under TCG and placed 16 MiB of unmovable pages a CPU in the
#: middle of the scenario's memory.  A cold and a restored guest both have
#: it from boot.
TRACE_BUFFER_KB = 16384
