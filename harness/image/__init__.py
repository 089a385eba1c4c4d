"""The guest image: an initramfs (``initramfs``) built without root from
Debian packages for the target arch (``apt``), their libraries (``elf``),
our static workloads and the init script, written as newc cpio (``cpio``)."""
