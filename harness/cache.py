"""The harness cache: where sources, trees, builds and images live.

Layout under ``$HARNESS_CACHE`` (default ``$XDG_CACHE_HOME/harness`` or
``~/.cache/harness``)::

    sources/   verified downloads (v5.0 tarball, Debian .debs)
    trees/     extracted or patched kernel trees (ours, never a user's)
    objs/      out-of-tree build directories (O=), reused for rebuilds
    builds/    finished builds, one directory per cache key
    images/    guest initramfs images
    apt/       private apt state for foreign-arch and other-suite downloads
    ccache/    compiler cache

Entries are installed atomically: built in a ``.tmp-*`` sibling and renamed
into place, so an interrupted run never leaves an entry that looks complete.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Mapping, Optional

from harness.errors import UserError

ENV = "HARNESS_CACHE"


def default_root(env: Optional[Mapping[str, str]] = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV):
        return Path(env[ENV]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return Path(base) / "harness"


class Cache:
    def __init__(self, root: Optional[Path] = None) -> None:
        self.root = Path(root) if root else default_root()

    def dir(self, *parts: str) -> Path:
        """A cache subdirectory, created on demand (clear error if we cannot)."""
        path = self.root.joinpath(*parts)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise cache_error(self.root, exc) from None
        return path

    def check_writable(self) -> None:
        """Fail early, with the fix, on a read-only or full cache."""
        root = self.dir()
        try:
            with tempfile.NamedTemporaryFile(dir=root, prefix=".probe-") as handle:
                handle.write(b"x" * 4096)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise cache_error(self.root, exc) from None

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive lock shared by every harness process on this cache."""
        path = self.dir("locks") / f"{name}.lock"
        with open(path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def staging(self, final: Path) -> Iterator[Path]:
        """A temporary directory next to ``final``, renamed onto it when the
        block completes; removed when it fails.  If ``final`` appeared in the
        meantime (a concurrent run), the new copy is discarded."""
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
        try:
            yield tmp
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and final.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    raise
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
                raise cache_error(self.root, exc) from None
            raise


def cache_error(root: Path, exc: OSError) -> UserError:
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1):
        what = "is full"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        what = "is not writable"
    else:
        what = f"cannot be used ({exc.strerror})"
    return UserError(
        f"the harness cache {root} {what}",
        hint=f"free space there, or point {ENV} at a writable directory with room (a kernel build needs about 2 GB)",
    )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def key_of(parts: Mapping[str, object]) -> str:
    """A short stable key for a mapping of cache inputs."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]
