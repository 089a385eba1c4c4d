"""Subcommands of the build, image, VM and run stages.  Each builds a
request from its options and calls its stage."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness import proc


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kernel", default="v5.0", metavar="SOURCE",
                        help="v5.0 (kernel.org tarball, cached), debian-5.10, a kernel tree path, or a tarball path")
    parser.add_argument("--arch", default="x86_64", help="x86_64, arm64 or arm")
    parser.add_argument("--tarball", type=Path, help="the v5.0 tarball from disk (linux-5.0.tar.xz)")
    parser.add_argument("--patch", type=Path, action="append", default=[], help="patch to apply (repeatable, in order)")
    parser.add_argument("--fragment", type=Path, action="append", default=[], help="extra kconfig fragment (repeatable)")
    parser.add_argument("--option", action="append", default=[], metavar="CONFIG_X=y", help="extra config option (repeatable)")
    parser.add_argument("--debug", action="store_true", help="add the debug layer (DEBUG_VM, PAGE_OWNER, ...)")
    parser.add_argument("--offline", action="store_true", help="never touch the network")
    parser.add_argument("--copy-tree", action="store_true", help="allow source-level compat fixes on a copy of your tree")
    parser.add_argument("-j", "--jobs", type=int, help="parallel make jobs (default: all CPUs)")


def build_request(args: argparse.Namespace, quiet: bool):
    from harness.build import BuildRequest
    from harness.source import SourceRequest

    return BuildRequest(
        source=SourceRequest(args.kernel, args.tarball, tuple(args.patch), args.offline, args.copy_tree),
        arch=args.arch,
        fragments=tuple(args.fragment),
        options=tuple(args.option),
        debug=args.debug,
        base=getattr(args, "base", "allnoconfig"),
        jobs=args.jobs,
        quiet=quiet,
    )


def _cmd_build(args: argparse.Namespace) -> int:
    from harness.build import Builder

    result = Builder(echo=proc.stderr_echo(args.quiet)).build(build_request(args, args.quiet))
    if args.json:
        print(json.dumps(result.metadata, indent=2))
    else:
        state = "cached" if result.cached else f"built in {result.elapsed:.0f}s"
        print(f"{result.image}  ({result.arch}, Linux {result.kernel_version}, {state})")
    return 0


def _add_build(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("build", help="build a kernel (cached by its inputs)")
    _add_source_options(parser)
    parser.add_argument("--base", default="allnoconfig", choices=["allnoconfig", "defconfig"],
                        help="config to start from before the fragments (default allnoconfig)")
    parser.add_argument("--json", action="store_true", help="print build.json")
    parser.set_defaults(handler=_cmd_build)


ADDERS: list = [_add_build]
