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
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

from harness.errors import InfraError, UserError

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
    def staging(self, final: Path, complete: Optional[Callable[[Path], bool]] = None) -> Iterator[Path]:
        """A temporary directory next to ``final``, renamed onto it when the
        block completes; removed when it fails.  If a complete ``final``
        appeared in the meantime (a concurrent run), the new copy is
        discarded; an incomplete one (``complete(final)`` is false: say its
        image was deleted) is replaced, never kept."""
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(final.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
        try:
            _owner_file(tmp).write_text(f"{os.getpid()} {_boot_id()}\n")
            yield tmp
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and final.is_dir():
                    if complete is None or complete(final):
                        shutil.rmtree(tmp, ignore_errors=True)
                    else:
                        broken = Path(tempfile.mkdtemp(prefix=f".tmp-broken-{final.name}-", dir=final.parent))
                        os.rename(final, broken / final.name)
                        os.rename(tmp, final)
                        shutil.rmtree(broken, ignore_errors=True)
                else:
                    raise
            _owner_file(tmp).unlink(missing_ok=True)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            _owner_file(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
                raise cache_error(self.root, exc) from None
            raise


def owned_scratch(parent: Path, name: str) -> Path:
    """A ``.tmp-NAME-*`` directory under ``parent`` owned by this process
    (its owner file says so), for files that live as long as one run: a
    run killed with SIGKILL leaves it behind, and the next ``sweep_stale``
    of ``parent`` removes it.  ``drop_scratch`` removes it at the end."""
    parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=parent))
    _owner_file(tmp).write_text(f"{os.getpid()} {_boot_id()}\n")
    return tmp


def drop_scratch(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    _owner_file(tmp).unlink(missing_ok=True)


def _owner_file(tmp: Path) -> Path:
    """Beside a staging directory (not in it: its contents are the entry):
    "PID BOOT_ID" of the process filling it."""
    return tmp.with_name(tmp.name + ".owner")


#: A staging directory with no owner file is left alone this long.
STALE_UNOWNED_S = 6 * 3600


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "-"


def owner_alive(tmp: Path) -> bool:
    try:
        pid, boot = _owner_file(tmp).read_text().split()
    except (OSError, ValueError):
        try:  # no owner written yet (just made) or an old layout: go by age
            return (time.time() - tmp.stat().st_mtime) < STALE_UNOWNED_S
        except OSError:
            return False
    if boot != _boot_id():
        return False  # the machine rebooted since
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def sweep_stale(parent: Path) -> list[Path]:
    """Remove the ``.tmp-*`` staging directories under ``parent`` whose
    owner is gone (a run killed with SIGKILL, a machine that lost power):
    they are never reused, and now they do not stay for ever either."""
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(".tmp-") and entry.is_dir() and not owner_alive(entry):
            shutil.rmtree(entry, ignore_errors=True)
            _owner_file(entry).unlink(missing_ok=True)
            removed.append(entry)
        elif entry.name.startswith(".tmp-") and entry.name.endswith(".owner") and not entry.with_suffix("").exists():
            entry.unlink(missing_ok=True)
    return removed


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1))


def free_space(path: Path) -> str:
    """Free space on ``path``'s filesystem, for people ("12.3 MiB free")."""
    free = free_bytes(path)
    if free is None:
        return "free space unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if free < 1024 or unit == "TiB":
            return f"{free:.1f} {unit} free" if unit != "B" else f"{free} B free"
        free /= 1024
    return ""


def disk_full(path: Path, what: str = "") -> InfraError:
    """The cache's disk filled up: infrastructure (exit 3), with the path
    and the free space left, never a kernel or input error."""
    return InfraError(
        f"cache disk full: {path} ({free_space(path)})" + (f" while {what}" if what else ""),
        hint=f"free space there, or point {ENV} at a disk with room (a kernel build needs about 2 GB, "
             "a guest image about 300 MB); the half-written entry was removed and will not be reused",
    )


NO_SPACE = ("No space left on device", "Disk quota exceeded")
#: Less room than this left where a failed command wrote: the full disk is
#: what failed it, whatever the command said (a truncated generated file
#: makes an assembler or a linker fail in its own words).
LOW_SPACE_BYTES = 64 << 20


def free_bytes(path: Path) -> Optional[int]:
    """Bytes free to us on ``path``'s filesystem (None if unknown)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        stat = os.statvfs(probe)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def raise_if_disk_full(paths: "Path | Sequence[Path]", what: str = "", output: str = "") -> None:
    """A command that failed where the disk is (nearly) full failed for that
    reason, not the kernel's or the input's: raise the infrastructure
    error.  Decided by the free space after the failure; a command that
    said the disk was full is believed as well."""
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        free = free_bytes(Path(path))
        if free is not None and free < LOW_SPACE_BYTES:
            raise disk_full(Path(path), what)
    if any(marker in output for marker in NO_SPACE):
        raise disk_full(Path(paths if isinstance(paths, (str, Path)) else paths[0]), what)


def cache_error(root: Path, exc: OSError) -> "UserError | InfraError":
    if is_disk_full(exc):
        return disk_full(root)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
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
