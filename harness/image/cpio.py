"""A deterministic newc cpio writer (the initramfs format), pure Python.

Entries are written in the order given with mtime 0 and fixed inode
numbers, so the same inputs give the same bytes (and the same cache key).
The kernel unpacks concatenated archives, so a small per-run archive can be
appended to a cached image."""
from __future__ import annotations

import io
import stat
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Union

TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """A file, directory or symlink in the archive (paths without leading /)."""

    path: str
    mode: int
    data: bytes = b""
    uid: int = 0
    gid: int = 0

    @classmethod
    def dir(cls, path: str, perm: int = 0o755) -> "Entry":
        return cls(path, stat.S_IFDIR | perm)

    @classmethod
    def file(cls, path: str, data: Union[bytes, str], perm: int = 0o644) -> "Entry":
        return cls(path, stat.S_IFREG | perm, data.encode() if isinstance(data, str) else data)

    @classmethod
    def symlink(cls, path: str, target: str) -> "Entry":
        return cls(path, stat.S_IFLNK | 0o777, target.encode())

    @classmethod
    def node(cls, path: str, kind: str, major: int, minor: int, perm: int = 0o600) -> "Entry":
        mode = (stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | perm
        return cls(path, mode, f"{major}:{minor}".encode())


def _header(ino: int, entry: Entry, namesize: int, filesize: int, rdev: tuple[int, int]) -> bytes:
    fields = [
        ino, entry.mode, entry.uid, entry.gid, 1, 0, filesize,
        0, 0, rdev[0], rdev[1], namesize, 0,
    ]
    return b"070701" + b"".join(f"{value:08X}".encode() for value in fields)


def _pad(length: int) -> bytes:
    return b"\0" * ((4 - length % 4) % 4)


def write(entries: Iterable[Entry], out: BinaryIO) -> None:
    """Write a complete newc archive (with its trailer) to ``out``."""
    ino = 1
    for entry in list(entries) + [Entry(TRAILER, 0)]:
        name = entry.path.lstrip("/").encode() + b"\0"
        is_dev = stat.S_ISCHR(entry.mode) or stat.S_ISBLK(entry.mode)
        rdev = tuple(int(x) for x in entry.data.decode().split(":")) if is_dev else (0, 0)
        data = b"" if is_dev else entry.data
        header = _header(ino if entry.path != TRAILER else 0, entry, len(name), len(data), rdev)
        out.write(header + name + _pad(len(header) + len(name)))
        out.write(data + _pad(len(data)))
        ino += 1


def archive(entries: Iterable[Entry]) -> bytes:
    buf = io.BytesIO()
    write(entries, buf)
    return buf.getvalue()


def read(data: bytes) -> list[Entry]:
    """Parse a newc archive (the first of concatenated ones): what
    ``archive`` wrote reads back the same, device nodes included."""
    out = []
    pos = 0
    while pos < len(data):
        if data[pos:pos + 6] != b"070701":
            raise ValueError(f"not a newc header at offset {pos}")
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, filesize, namesize = fields[1], fields[2], fields[3], fields[6], fields[11]
        pos += 110
        name = data[pos:pos + namesize - 1].decode()
        pos += namesize + len(_pad(110 + namesize))
        body = data[pos:pos + filesize]
        pos += filesize + len(_pad(filesize))
        if name == TRAILER:
            break
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            body = f"{fields[9]}:{fields[10]}".encode()  # a device node's rdev, as Entry.node keeps it
        out.append(Entry(name, mode, body, uid, gid))
    return out
