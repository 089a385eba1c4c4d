"""harness deps, sources, build, image and mutants: what a run is built from."""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

from harness.commands.options import (
    ARCH_NAMES,
    add_source_options,
    build_request,
    split_list,
)
from harness.errors import ExitCode
from harness.host import deps, proc
from harness.host.cache import Cache
from harness.image.initramfs import ImageBuilder, ImageRequest
from harness.arches import arch as lookup_arch
from harness.kernel.build import Builder, NotBuilt
from harness.kernel.source import PRESETS, SourceRequest, SourceResolver
from harness.workflows.mutation import catalogue_name, is_catalogue, load_catalogue, select


def _cmd_deps(args: argparse.Namespace) -> int:
    arches = split_list(args.arch) or ["x86_64"]
    installed = deps.ensure(arches, install=args.install, echo=lambda line: print(line, file=sys.stderr))
    print("installed: " + " ".join(installed) if installed else "all system packages are present")
    return ExitCode.PASS


def _add_deps(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("deps", help="check (and as root, install) the Debian packages the harness needs")
    parser.add_argument("--arch", action="append", default=[], help="arches to support (repeatable or comma-separated)")
    parser.add_argument("--install", action="store_true", help="install what is missing (root only)")
    parser.set_defaults(handler=_cmd_deps)


def _cmd_sources(args: argparse.Namespace) -> int:
    resolver = SourceResolver(Cache())
    if args.register:
        name, path = args.register
        record = resolver.register(name, Path(path))
        print(f"registered {path} as {name} ({record})")
        return ExitCode.PASS
    if args.check:
        where = resolver.available_offline(args.check)
        print(f"{args.check}: {where or 'not available offline'}")
        return ExitCode.PASS if where else ExitCode.CHECKS_FAILED
    for name, preset in PRESETS.items():
        print(f"{name:12} {resolver.available_offline(name) or 'not cached (needs the network once)'}")
    return ExitCode.PASS


def _add_sources(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sources", help="the named kernel sources and whether they are available offline")
    parser.add_argument("--check", choices=list(PRESETS), help="exit 0 when this source is available offline")
    parser.add_argument("--register", nargs=2, metavar=("NAME", "PATH"), help="use a pristine local tree for a named source")
    parser.set_defaults(handler=_cmd_sources)


def _cmd_build(args: argparse.Namespace) -> int:
    if args.check:
        return _check_build(args)
    result = Builder(echo=proc.stderr_echo(args.quiet)).build(build_request(args, args.quiet))
    if args.json:
        print(json.dumps(result.metadata, indent=2))
    else:
        state = "cached" if result.cached else f"built in {result.elapsed:.0f}s"
        print(f"{result.image}  ({result.arch}, Linux {result.kernel_version}, {state})")
    return ExitCode.PASS


def _check_build(args: argparse.Namespace) -> int:
    """``harness build --check``: is this build in the cache?  Builds,
    fetches and unpacks nothing new: exit 0 with the image when it is, 1
    with the reason when it is not (the source not available offline, the
    compiler whose version is part of the key missing, or no build with
    these inputs).  Bad input stays bad input (exit 2)."""
    request = build_request(args, True)
    request = dataclasses.replace(request, cache_only=True,
                                  source=dataclasses.replace(request.source, offline=True))
    the_arch = lookup_arch(request.arch)
    resolver = SourceResolver(Cache())
    resolver.check_spec(request.source)
    name = request.source.spec
    if name in PRESETS and not request.source.tarball and not resolver.available_offline(name):
        print(f"not cached: the {name} source is not available offline (the first build fetches it)")
        return ExitCode.CHECKS_FAILED
    compiler = f"{the_arch.kernel_cross}gcc"
    if shutil.which(compiler) is None:
        print(f"not cached: {compiler} is missing, and its version is part of the build's key "
              f"(apt-get install {the_arch.kernel_cross_package})")
        return ExitCode.CHECKS_FAILED
    try:
        result = Builder(echo=proc.stderr_echo(True)).build(request)
    except NotBuilt as exc:
        print(f"not cached: {exc.message}")
        return ExitCode.CHECKS_FAILED
    print(f"{result.image}  ({result.arch}, Linux {result.kernel_version}, cached)")
    return ExitCode.PASS


def _add_build(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("build", help="build a kernel (cached by its inputs)")
    add_source_options(parser)
    parser.add_argument("--base", default="allnoconfig", choices=["allnoconfig", "defconfig"],
                        help="config to start from before the fragments (default allnoconfig)")
    parser.add_argument("--json", action="store_true", help="print build.json")
    parser.add_argument("--check", action="store_true",
                        help="build nothing: exit 0 when this build is in the cache, 1 when it is not (CI's time budget)")
    parser.set_defaults(handler=_cmd_build)


def _cmd_image(args: argparse.Namespace) -> int:
    result = ImageBuilder(echo=proc.stderr_echo(args.quiet)).build(ImageRequest(args.arch, args.offline, args.quiet))
    print(f"{result.path}  ({result.arch}, {'cached' if result.cached else 'built'})")
    return ExitCode.PASS


def _add_image(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("image", help="build the guest initramfs for an arch (cached)")
    parser.add_argument("--arch", default="x86_64", help=ARCH_NAMES)
    parser.add_argument("--offline", action="store_true", help="use cached packages only")
    parser.set_defaults(handler=_cmd_image)


def _cmd_mutants(args: argparse.Namespace) -> int:
    name, source = catalogue_name(args.catalogue), None
    if name == args.catalogue and not is_catalogue(name):
        # a kernel (debian-6.12): the catalogue of its version
        source = SourceResolver(Cache()).resolve(SourceRequest(args.catalogue, offline=True))
        name = catalogue_name(args.catalogue, source.version.short)
    catalogue = load_catalogue(name)
    if args.patch:
        (mutation,) = select(catalogue, [args.patch])
        tree = args.tree or (source or SourceResolver(Cache()).resolve(SourceRequest(args.catalogue, offline=True))).tree
        sys.stdout.write(mutation.patch(Path(tree)).data.decode())
        return ExitCode.PASS
    for m in catalogue:
        print(f"{m.id:38} {m.category:12} {m.file}:{m.function}  {m.what}" + ("  [equivalent]" if m.equivalent else ""))
    return ExitCode.PASS


def _add_mutants(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("mutants", help="the catalogue of small migration-code mutations (for bench/teeth.py)")
    parser.add_argument("--catalogue", default="v5.0", help="which catalogue: v5.0, 6.12, or a kernel (debian-6.12: its version's) (default v5.0)")
    parser.add_argument("--patch", metavar="ID", help="print this mutant as a patch against the tree")
    parser.add_argument("--tree", type=Path, help="the tree to make the patch against (default: the v5.0 source)")
    parser.set_defaults(handler=_cmd_mutants)


ADDERS = [_add_deps, _add_sources, _add_build, _add_image, _add_mutants]
