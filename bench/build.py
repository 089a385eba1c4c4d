#!/usr/bin/env python3
"""Build benchmark for one source and arch, every number from one run on
this machine.

Patched rebuilds (the regression-run workflow), in a fresh cache with its
own (empty) ccache, as a developer meets them:

1. base build: the pristine source, cold;
2. one-file patch to mm/migrate.c: rebuild on the work copy;
3. revert to the pristine source: a cache hit;
4. a second, different patch (mm/compaction.c): rebuild;
5. baseline: a cold build of the same inputs as (2) (fresh cache, no
   ccache) -- what a patched build costs without the work copy.

Config builds (``--config``): fresh harness config without ccache, a
fragment-only change, a cache hit, and defconfig + the same fragments.

    python bench/build.py --kernel v5.0 --arch x86_64 [--config] [--skip-baseline]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.host.cache import Cache  # noqa: E402
from harness.kernel.build import Builder, BuildRequest  # noqa: E402
from harness.kernel.patches import replacement_patch  # noqa: E402
from harness.kernel.source import SourceRequest, SourceResolver  # noqa: E402

#: Two small semantic changes, each as the versions spell its line (the
#: first whose text occurs once in the tree is used): v5.0, 5.10, 6.1, 6.12.
PATCH_MIGRATE = [
    ("mm/migrate.c", "pass < 10 && retry", "pass < 9 && retry", "bench-migrate-passes.patch"),
    ("mm/migrate.c", "pass < 10 && (retry || thp_retry)", "pass < 9 && (retry || thp_retry)", "bench-migrate-passes.patch"),
    ("mm/migrate.c", "pass < NR_MAX_MIGRATE_PAGES_RETRY && (retry || large_retry)",
     "pass < NR_MAX_MIGRATE_PAGES_RETRY - 1 && (retry || large_retry)", "bench-migrate-passes.patch"),
    ("mm/migrate.c", "#define NR_MAX_MIGRATE_ASYNC_RETRY\t3", "#define NR_MAX_MIGRATE_ASYNC_RETRY\t2", "bench-migrate-passes.patch"),
]
PATCH_COMPACTION = [
    ("mm/compaction.c", "if (cc->nr_migratepages == COMPACT_CLUSTER_MAX) {",
     "if (cc->nr_migratepages >= COMPACT_CLUSTER_MAX) {", "bench-compaction-batch.patch"),
    ("mm/compaction.c", "if (cc->nr_migratepages >= COMPACT_CLUSTER_MAX)\n",
     "if (cc->nr_migratepages > COMPACT_CLUSTER_MAX)\n", "bench-compaction-batch.patch"),
]


def timed(builder: Builder, request: BuildRequest) -> tuple[float, bool]:
    start = time.monotonic()
    result = builder.build(request)
    return time.monotonic() - start, result.cached


def patch_of(tree: Path, specs: list):
    """The first spec whose original text occurs once in the tree, as a patch."""
    for rel, old, new, name in specs:
        text = (tree / rel).read_text()
        if text.count(old) == 1:
            return replacement_patch(rel, text, old, new, name)
    raise SystemExit(f"none of the benchmark's patches applies to {tree} ({specs[0][0]}): add this version's line")


def patched_rebuilds(tree: Path, arch: str, tmp: Path, baseline: bool) -> list[tuple[str, float, str]]:
    source = SourceRequest(str(tree))
    one, two = patch_of(tree, PATCH_MIGRATE), patch_of(tree, PATCH_COMPACTION)
    builder = Builder(cache=Cache(tmp / "cache"))
    rows = []

    def step(name, request, note=""):
        seconds, cached = timed(builder, request)
        rows.append((name, seconds, ("cache hit" if cached else "built") + (f"; {note}" if note else "")))
        return seconds

    base = dict(arch=arch, quiet=True)
    step("base build (pristine, cold)", BuildRequest(source=source, **base))
    patched = step("one-file patch to mm/migrate.c", BuildRequest(source=SourceRequest(str(tree), patches=(one,)), **base))
    step("revert to pristine", BuildRequest(source=source, **base))
    step("a second patch (mm/compaction.c)", BuildRequest(source=SourceRequest(str(tree), patches=(two,)), **base))
    if baseline:
        os.environ["CCACHE_DISABLE"] = "1"
        try:
            cold = Builder(cache=Cache(tmp / "cold"))
            seconds, _ = timed(cold, BuildRequest(source=SourceRequest(str(tree), patches=(one,)), ccache=False, **base))
        finally:
            del os.environ["CCACHE_DISABLE"]
        rows.append(("baseline: the same patched inputs, cold, no ccache", seconds, "built"))
        rows.append(("ratio: patched rebuild / cold build", patched / seconds, "ratio"))
    return rows


def config_builds(tree: Path, arch: str, tmp: Path, baseline: bool) -> list[tuple[str, float, str]]:
    os.environ["CCACHE_DISABLE"] = "1"
    builder = Builder(cache=Cache(tmp / "config"))
    extra = tmp / "extra.config"
    extra.write_text("# bench: a fragment-only change\nCONFIG_ZSMALLOC_STAT=y\n")
    base = dict(source=SourceRequest(str(tree)), arch=arch, quiet=True, ccache=False)
    rows = [("harness config, fresh", timed(builder, BuildRequest(**base))[0], "built"),
            ("fragment-only change, rebuild", timed(builder, BuildRequest(**base, fragments=(extra,)))[0], "built"),
            ("cache hit", timed(builder, BuildRequest(**base, fragments=(extra,)))[0], "cache hit")]
    if baseline:
        # defconfig's function tracer excludes ENABLE_DEFAULT_TRACERS: the
        # baseline is built without stopping on that one option.
        seconds = timed(builder, BuildRequest(**base, base="defconfig", verify=False))[0]
        rows.append(("defconfig + fragments, fresh (baseline)", seconds, "built"))
        rows.append(("ratio: harness config / defconfig", rows[0][1] / seconds, "ratio"))
    del os.environ["CCACHE_DISABLE"]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="v5.0")
    parser.add_argument("--arch", default="x86_64")
    parser.add_argument("--config", action="store_true", help="the config builds instead of the patched rebuilds")
    parser.add_argument("--skip-baseline", action="store_true", help="skip the (slow) cold baseline build")
    args = parser.parse_args()
    # The source comes from the user's cache (no download or extraction in
    # the timings); every build goes to an empty cache.
    tree = SourceResolver(Cache()).resolve(SourceRequest(args.kernel, offline=True)).tree
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        run = config_builds if args.config else patched_rebuilds
        rows = run(tree, args.arch, Path(tmp), not args.skip_baseline)
    print(f"{args.kernel} {args.arch}, {os.cpu_count()} CPUs")
    for name, value, note in rows:
        shown = f"{value:8.2f}x" if note == "ratio" else f"{value:8.1f}s"
        print(f"  {name:52} {shown}  {'' if note == 'ratio' else note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
