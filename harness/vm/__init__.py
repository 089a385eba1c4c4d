"""Virtual machines: QEMU argv (cmdline), accelerator choice (accel), the
console watcher (console), QMP (qmp), SSH (ssh) and the Machine lifecycle
(machine)."""
