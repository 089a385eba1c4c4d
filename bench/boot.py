#!/usr/bin/env python3
"""Boot benchmark: QEMU start -> first SSH command, per arch, median of N
boots; the baseline, measured in the same run on the same machine, is QEMU
start -> the kernel's first console output (QEMU and firmware cost).

    python bench/boot.py --kernel debian-5.10 --arch x86_64,arm64 [--boots 7]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.image.initramfs import ImageBuilder, ImageRequest  # noqa: E402
from harness.kernel.build import Builder, BuildRequest  # noqa: E402
from harness.kernel.source import SourceRequest  # noqa: E402
from harness.vm.machine import Machine, MachineRequest  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="v5.0")
    parser.add_argument("--arch", default="x86_64,arm64")
    parser.add_argument("--boots", type=int, default=7)
    args = parser.parse_args()
    print(f"{'arch':8} {'boots':>5} {'first output':>13} {'ready':>8} {'ssh':>8} {'ssh/first':>10}  accel")
    for arch in [a for a in args.arch.split(",") if a]:
        kernel = Builder().build(BuildRequest(SourceRequest(args.kernel, offline=True), arch, quiet=True)).image
        initrd = ImageBuilder().build(ImageRequest(arch, quiet=True)).path
        first, ready, ssh = [], [], []
        accel = "?"
        with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp:
            for n in range(args.boots):
                with Machine(MachineRequest(arch=arch, kernel=kernel, initrd=initrd), Path(tmp) / f"b{n}") as m:
                    t = m.times.as_dict()
                    first.append(t["first_output_s"])
                    ready.append(t["ready_s"])
                    ssh.append(t["ssh_s"])
                    accel = m.accel.accel if m.accel else "?"
        med = statistics.median
        print(f"{arch:8} {args.boots:5} {med(first):12.2f}s {med(ready):7.2f}s {med(ssh):7.2f}s {med(ssh) / med(first):9.1f}x  {accel}")
        print(f"{'':8} ssh times: {' '.join(f'{s:.2f}' for s in ssh)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
