"""Options and argument types several subcommands share."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.arches import ARCHES
from harness.host import proc
from harness.image.initramfs import ImageBuilder, ImageRequest
from harness.kernel.build import Builder, BuildRequest
from harness.kernel.source import SourceRequest
from harness.model.kernels import KERNELS
from harness.vm.machine import MachineRequest, auto_guests


def one_or_or(names) -> str:
    """'a, b or c'."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


#: What --arch takes and what --kernel names for the model, from the data.
ARCH_NAMES = one_or_or(ARCHES)
MODEL_KERNELS = one_or_or(KERNELS)


def split_list(values) -> list[str]:
    """Repeatable, comma-separated option values, in order."""
    return [item for value in values for item in value.split(",") if item]


def add_source_options(parser: argparse.ArgumentParser, multi_arch: bool = False) -> None:
    parser.add_argument("--kernel", default="v5.0", metavar="SOURCE",
                        help="v5.0 (kernel.org tarball, cached), debian-5.10, debian-6.1, debian-6.12 (Debian packages), a kernel tree path, or a tarball path")
    if multi_arch:
        parser.add_argument("--arch", action="append", default=[],
                            help=f"{ARCH_NAMES}; repeatable or comma-separated (default x86_64)")
    else:
        parser.add_argument("--arch", default="x86_64", help=ARCH_NAMES)
    parser.add_argument("--tarball", type=Path, help="the v5.0 tarball from disk (linux-5.0.tar.xz)")
    parser.add_argument("--patch", type=Path, action="append", default=[], help="patch to apply (repeatable, in order)")
    parser.add_argument("--fragment", type=Path, action="append", default=[], help="extra kconfig fragment (repeatable)")
    parser.add_argument("--option", action="append", default=[], metavar="CONFIG_X=y", help="extra config option (repeatable)")
    parser.add_argument("--debug", action="store_true", help="add the debug layer (DEBUG_VM, PAGE_OWNER, ...)")
    parser.add_argument("--offline", action="store_true", help="never touch the network")
    parser.add_argument("-j", "--jobs", type=positive_jobs, help="parallel make jobs (default: all CPUs)")


def build_request(args: argparse.Namespace, quiet: bool):
    return BuildRequest(
        source=SourceRequest(args.kernel, args.tarball, tuple(args.patch), args.offline),
        arch=args.arch,
        fragments=tuple(args.fragment),
        options=tuple(args.option),
        debug=args.debug,
        base=getattr(args, "base", "allnoconfig"),
        jobs=args.jobs,
        quiet=quiet,
    )


def positive(text: str, not_a_number: str, too_small: str) -> int:
    """An argument that must be a whole number of at least 1; the messages
    take the text ({text!r}) or the value ({value})."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(not_a_number.format(text=text)) from None
    if value < 1:
        raise argparse.ArgumentTypeError(too_small.format(value=value))
    return value


def positive_mb(text: str) -> int:
    return positive(text, "{text!r} is not a size in MiB", "a disk of {value} MiB: give at least 1")


def positive_jobs(text: str) -> int:
    return positive(text, "{text!r} is not a number of make jobs",
                     "{value} make jobs: give at least 1 (or leave -j out for one per CPU)")


def guests(text: str) -> int:
    if text == "auto":

        return auto_guests()
    return positive(text, "{text!r} is not a number of guests (or 'auto')", "{value} guests at once: give at least 1")


def repeats(text: str) -> int:
    return positive(text, "{text!r} is not a number of repeats", "--repeat {value}: give at least 1")


def add_vm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kernel-image", type=Path, help="boot this kernel image instead of building one")
    parser.add_argument("--initrd", type=Path, help="boot this initramfs instead of the cached image")
    parser.add_argument("--memory", type=int, default=2048, help="guest memory in MiB (default 2048)")
    parser.add_argument("--cpus", type=int, default=2, help="guest CPUs (default 2)")
    parser.add_argument("--append", action="append", default=[], help="extra kernel command-line word (repeatable)")
    parser.add_argument("--boot-timeout", type=float, default=90.0, help="seconds to reach the guest's READY line")
    parser.add_argument("--disk", type=positive_mb, metavar="MB", help="a scratch virtio disk of MB MiB (/dev/vda)")
    parser.add_argument("--accel", choices=["kvm", "tcg"], help="force the accelerator (default: KVM when it really works)")
    parser.add_argument("--runs", type=Path, help="where run directories go (default ./runs or $HARNESS_RUNS)")


def machine_request(args: argparse.Namespace, kernel: Path, initrd: Path):
    return MachineRequest(
        arch=args.arch,
        kernel=Path(kernel),
        initrd=Path(initrd),
        memory_mb=args.memory,
        cpus=args.cpus,
        append=tuple(args.append),
        boot_timeout=args.boot_timeout,
        accel=args.accel,
        disk_mb=getattr(args, "disk", 0) or 0,
    )


def boot_inputs(args: argparse.Namespace):
    """Kernel image and initramfs: given, or built/reused from the cache."""
    echo = proc.stderr_echo(args.quiet)
    if args.kernel_image:
        kernel = args.kernel_image
    else:
        kernel = Builder(echo=echo).build(build_request(args, args.quiet)).image
    initrd = args.initrd or ImageBuilder(echo=echo).build(ImageRequest(args.arch, args.offline, args.quiet)).path
    return kernel, initrd
