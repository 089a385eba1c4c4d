#!/usr/bin/env python3
"""Build benchmark, in one run, for one source and arch:

1. fresh build of the harness config (allnoconfig + fragments), no ccache,
   empty build directory;
2. rebuild after a fragment-only change (one more option), incremental;
3. cache hit (the same request again);
4. the baseline: fresh build of defconfig + the same fragments (its own
   build directory).

    python bench/build.py --kernel v5.0 --arch x86_64 [--skip-defconfig]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.build import BuildRequest, Builder  # noqa: E402
from harness.cache import Cache  # noqa: E402
from harness.source import SourceRequest, SourceResolver  # noqa: E402


def timed(builder: Builder, request: BuildRequest) -> float:
    start = time.monotonic()
    builder.build(request)
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="v5.0")
    parser.add_argument("--arch", default="x86_64")
    parser.add_argument("--skip-defconfig", action="store_true", help="skip the (slow) defconfig baseline")
    args = parser.parse_args()
    os.environ["CCACHE_DISABLE"] = "1"
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        cache = Cache(Path(tmp) / "cache")
        # The source comes from the user's cache (no download or extraction
        # in the timings); every build goes to the empty cache above.
        real = SourceResolver(Cache()).resolve(SourceRequest(args.kernel, offline=True))
        source = SourceRequest(str(real.tree))
        builder = Builder(cache=cache)
        extra = Path(tmp) / "extra.config"
        extra.write_text("# bench: a fragment-only change\nCONFIG_ZSMALLOC_STAT=y\n")
        base = dict(source=source, arch=args.arch, quiet=True, ccache=False)
        results = {}
        results["harness config, fresh"] = timed(builder, BuildRequest(**base))
        results["fragment-only change, rebuild"] = timed(builder, BuildRequest(**base, fragments=(extra,)))
        results["cache hit"] = timed(builder, BuildRequest(**base, fragments=(extra,)))
        if not args.skip_defconfig:
            # defconfig's function tracer excludes ENABLE_DEFAULT_TRACERS: the
            # baseline is built without stopping on that one option.
            results["defconfig + fragments, fresh (baseline)"] = timed(builder, BuildRequest(**base, base="defconfig", verify=False))
    baseline = results.get("defconfig + fragments, fresh (baseline)")
    print(f"{args.kernel} {args.arch}, {os.cpu_count()} CPUs")
    for name, seconds in results.items():
        ratio = f"{seconds / baseline:6.2f}x baseline" if baseline else ""
        print(f"  {name:42} {seconds:8.1f}s  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
