"""Just enough ELF to collect a dynamic binary's library closure: the
program interpreter (PT_INTERP) and DT_NEEDED names.  Works on any
architecture's binaries (32/64-bit, either endianness)."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Optional

PT_INTERP = 3
PT_DYNAMIC = 2
PT_LOAD = 1
DT_NEEDED = 1
DT_STRTAB = 5
DT_NULL = 0


class NotElf(ValueError):
    pass


@dataclass
class ElfInfo:
    bits: int
    machine: int
    interp: Optional[str] = None
    needed: list[str] = field(default_factory=list)

    @property
    def static(self) -> bool:
        return self.interp is None and not self.needed


def parse(data: bytes) -> ElfInfo:
    if data[:4] != b"\x7fELF":
        raise NotElf("not an ELF file")
    bits = {1: 32, 2: 64}.get(data[4])
    endian = {1: "<", 2: ">"}.get(data[5])
    if bits is None or endian is None:
        raise NotElf("unknown ELF class or data encoding")
    if bits == 64:
        machine, = struct.unpack_from(endian + "H", data, 18)
        phoff, = struct.unpack_from(endian + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 54)
    else:
        machine, = struct.unpack_from(endian + "H", data, 18)
        phoff, = struct.unpack_from(endian + "I", data, 28)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 42)
    info = ElfInfo(bits, machine)
    loads = []  # (vaddr, offset, filesz)
    dynamic = None
    for index in range(phnum):
        base = phoff + index * phentsize
        if bits == 64:
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(endian + "IIQQQQ", data, base)
        else:
            p_type, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(endian + "IIIII", data, base)
        if p_type == PT_INTERP:
            info.interp = data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
        elif p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return info
    entry = 16 if bits == 64 else 8
    fmt = endian + ("qQ" if bits == 64 else "iI")
    needed_offsets, strtab = [], None
    offset, size = dynamic
    for pos in range(offset, offset + size, entry):
        tag, value = struct.unpack_from(fmt, data, pos)
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            needed_offsets.append(value)
        elif tag == DT_STRTAB:
            strtab = value
    if strtab is None:
        return info
    strtab_off = _vaddr_to_offset(strtab, loads)
    for name_off in needed_offsets:
        start = strtab_off + name_off
        end = data.index(b"\0", start)
        info.needed.append(data[start:end].decode())
    return info


def _vaddr_to_offset(vaddr: int, loads) -> int:
    for seg_vaddr, seg_offset, filesz in loads:
        if seg_vaddr <= vaddr < seg_vaddr + filesz:
            return vaddr - seg_vaddr + seg_offset
    return vaddr
