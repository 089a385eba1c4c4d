"""The harness's own work copy of a base source, where patches are applied
and reverted so that ``make`` rebuilds incrementally and ccache hits.

One work copy per base tree (``work/<base>/tree``), with one build
directory per arch and config base beside it (``work/<base>/objs-<arch>``).
Every build brings the copy to exactly "base + these patches":

* the patches are first applied to a scratch copy of the files they touch
  (never to the work copy), so a patch that does not apply changes nothing
  and its rejected hunk is reported;
* only files whose content differs from what the copy holds are rewritten,
  each atomically and with a fresh mtime, so make recompiles exactly them
  (and a reverted file, whose object was built from the patched text, too);
* before the first file is touched, ``state.json`` records every file about
  to change (status ``syncing``); a sync that dies half-way leaves that
  list, and the next sync recomputes those files from the base, so a
  half-applied patch never leaks into a later build;
* a base tree that is not the harness's own (a registered or a developer's
  tree) is compared with the manifest (size, mtime) of what the copy was
  made from, and files changed there are brought over the same way.

The caller holds :meth:`lock` around ``sync`` and the build that follows.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

from harness.errors import UserError
from harness.host import proc, toolchain
from harness.host.cache import Cache
from harness.host.rundir import write_json
from harness.kernel.patches import Patch
from harness.kernel.source import copy_tree, stat_manifest

SCHEMA = 1


@dataclass
class SyncReport:
    #: Files rewritten or removed in the work copy (relative paths).
    changed: list[str] = field(default_factory=list)
    #: Files that differ from the base after the sync (the patches' files).
    touched: list[str] = field(default_factory=list)
    #: The work copy was created by this sync.
    created: bool = False
    #: Files changed in the base tree since the last sync.
    base_drift: list[str] = field(default_factory=list)


def work_name(base_tree: Path) -> str:
    return hashlib.sha256(str(Path(base_tree).resolve()).encode()).hexdigest()[:16]


class WorkCopy:
    def __init__(self, cache: Cache, base_tree: Path, immutable: bool, echo: Optional[proc.Echo] = None) -> None:
        self.cache = cache
        self.base = Path(base_tree).resolve()
        #: The base is the harness's own extraction: no need to look for drift.
        self.immutable = immutable
        self.echo = echo
        self.root = cache.dir("work", work_name(self.base))
        self.tree = self.root / "tree"
        self.state_path = self.root / "state.json"
        self.manifest_path = self.root / "manifest.json"

    def objs(self, arch: str, config_base: str = "allnoconfig") -> Path:
        suffix = "" if config_base == "allnoconfig" else f"-{config_base}"
        return self.cache.dir("work", self.root.name, f"objs-{arch}{suffix}")

    @contextmanager
    def lock(self) -> Iterator[None]:
        with self.cache.lock(f"work-{self.root.name}"):
            yield

    # ------------------------------------------------------------------
    def state(self) -> dict:
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if data.get("schema") == SCHEMA else {}

    def check(self, patches: Sequence[Patch]) -> None:
        """Apply the patches to a scratch copy only: a user error naming the
        first that does not apply (and its rejected hunk); nothing changes."""
        self._desired(patches)

    def sync(self, patches: Sequence[Patch]) -> SyncReport:
        """Bring the work copy to base + ``patches`` (caller holds the lock)."""
        report = SyncReport()
        state = self.state()
        if not state or not (self.tree / "Makefile").is_file():
            self._create()
            state = self.state()
            report.created = True
        desired = self._desired(patches)
        manifest = self._manifest()
        current = manifest if self.immutable else stat_manifest(self.base)
        drift = sorted(p for p in set(manifest) | set(current) if manifest.get(p) != current.get(p))
        report.base_drift = drift
        affected = sorted(set(state.get("touched", [])) | set(state.get("dirty", [])) | set(desired) | set(drift))
        # Record what is about to change before changing anything.
        write_json(self.state_path, dict(state, status="syncing", dirty=affected))
        for rel in affected:
            want = desired[rel] if rel in desired else _read(self.base / rel)
            if _read(self.tree / rel) == want:
                continue
            mode_from = self.base / rel if rel not in desired else None
            _install(self.tree / rel, want, mode_from)
            report.changed.append(rel)
        if drift:
            self.manifest_path.write_text(json.dumps(current))
        report.touched = sorted(desired)
        write_json(self.state_path, {
            "schema": SCHEMA, "status": "clean", "base": str(self.base),
            "patches": [p.as_dict() for p in patches], "touched": report.touched, "dirty": [],
        })
        if self.echo and report.changed:
            shown = ", ".join(report.changed[:6]) + (f" and {len(report.changed) - 6} more" if len(report.changed) > 6 else "")
            self.echo(f"work copy {self.tree}: {len(report.changed)} file(s) changed ({shown})")
        return report

    # ------------------------------------------------------------------
    def _create(self) -> None:
        """A fresh copy of the base (atomically; a half-made copy is never
        used), with the manifest of what it was made from."""
        if self.tree.exists():
            shutil.rmtree(self.tree)
        # objects built from an earlier copy would look newer than the
        # fresh copy's files (which keep the base's mtimes): start over
        for objs in self.root.glob("objs-*"):
            shutil.rmtree(objs, ignore_errors=True)
        manifest = stat_manifest(self.base)
        with self.cache.staging(self.tree) as tmp:
            copy_tree(self.base, tmp, self.echo)
        self.manifest_path.write_text(json.dumps(manifest))
        write_json(self.state_path, {"schema": SCHEMA, "status": "clean", "base": str(self.base), "patches": [],
                                     "touched": [], "dirty": []})

    def _manifest(self) -> dict:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return stat_manifest(self.base)

    def _desired(self, patches: Sequence[Patch]) -> dict[str, Optional[bytes]]:
        """{path: content (None: absent)} of every file the patches touch,
        computed by applying them, in order, to a scratch copy of those
        files taken from the base."""
        if not patches:
            return {}
        toolchain.require(["patch"], "applying patches")
        paths = sorted({p for patch in patches for p in patch.touched()})
        scratch = Path(tempfile.mkdtemp(prefix=".scratch-", dir=self.root))
        try:
            for rel in paths:
                src = self.base / rel
                if src.is_file():
                    (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, scratch / rel)
            for patch in patches:
                _apply(scratch, patch, self.echo)
            return {rel: _read(scratch / rel) for rel in paths}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _apply(scratch: Path, patch: Patch, echo) -> None:
    argv = ["patch", f"-p{patch.strip}", "--forward", "--batch", "--no-backup-if-mismatch"]
    result = proc.run(argv, cwd=scratch, echo=echo, input_bytes=patch.data)
    if result.returncode == 0:
        return
    output = result.stdout.splitlines()
    failed = [line for line in output if "FAILED" in line or "Reversed" in line or "can't find file" in line.lower()
              or "malformed" in line.lower() or "No file to patch" in line]
    rejects = []
    for rej in sorted(scratch.rglob("*.rej")):
        rejects.append(f"--- rejected hunk(s) of {rej.relative_to(scratch).as_posix()[:-4]}:")
        rejects += rej.read_text(errors="replace").splitlines()[:25]
    first = failed[0].strip() if failed else (output[-1].strip() if output else f"patch exited {result.returncode}")
    raise UserError(
        f"patch {patch.name} does not apply: {first}",
        hint="rebase it onto the source you are building (patches apply in order, each on top of the ones before)",
        log_tail=(output[-12:] + rejects)[:60],
    )


def _read(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _install(path: Path, content: Optional[bytes], mode_from: Optional[Path]) -> None:
    """Replace ``path`` by ``content`` atomically (fresh mtime), or remove it."""
    if content is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.harness-tmp")
    tmp.write_bytes(content)
    try:
        if mode_from is not None and mode_from.exists():
            shutil.copymode(mode_from, tmp)
        elif path.exists():
            shutil.copymode(path, tmp)
    except OSError:
        pass
    os.replace(tmp, path)
