"""The kernel under test: its source (``source``: presets, tarballs, trees;
``patches``), the harness's work copy where patches are applied and
reverted (``workcopy``), the layered config (``kconfig``), the build
(``build``) with the toolchain fixes old kernels need (``compat``), and the
kernel's own selftests built for the guest (``kselftest``)."""
